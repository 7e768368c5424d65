"""Speech probes speed: two 16 kHz tracks through detector -> crosstalk gate -> smoother.

Figures are seconds of two-track audio analysed per second of CPU (``x real time``),
``time.process_time``, best of several repeats (the machine is shared). Rows:

- **webrtcvad alone**: webrtcvad over the same 30 ms frames of both tracks and nothing
  else, the floor the pipeline cannot beat;
- **detectors**: both tracks through ``VadDetector`` (levels, click test, webrtcvad,
  noise floor, warm-up), blocks out;
- **gate**: ``CrosstalkGate`` over those blocks, echo-leak estimation included;
- **smoothers**: both ``Smoother`` over the gated blocks;
- **pipeline**: ``analyze_tracks`` end to end (the sum, plus the plumbing);
- **live**: ``SpeechPipeline`` fed 20 ms packets of 48 kHz interleaved stereo (what
  aiortc decodes) for both roles, with a session tick every 250 ms: the cost of a live
  session's speech analysis, also as a share of one core.

Audio: a synthetic two-party conversation (tests/probes/synthetic_voice.py: harmonic
voices at 120 and 210 Hz taking turns), each track carrying the other 20 dB down and
40 ms late, plus pink noise 15 dB under the speech: the accuracy tests' conditions. Five
minutes are synthesised and repeated to make the 50-minute session of issue 3's target
(at least 1000x for the whole ``feltsafe analyze`` path: 50 minutes in under 3 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import webrtcvad

from probes.base import Role
from probes.crosstalk import CrosstalkGate, GatedBlock
from probes.speech import FRAME_SAMPLES, VAD_RATE, FrameBlock, SpeechConfig, VadDetector
from probes.speech_pipeline import SpeechPipeline, analyze_tracks
from probes.speech_smoothing import Smoother
from tests.probes.synthetic_voice import to_int16, voice, with_echo

Track = npt.NDArray[np.int16]
ROLES = (Role.THERAPIST, Role.CLIENT)
PIECE_SECONDS = 300.0
SESSION_MINUTES = 50
QUICK_MINUTES = 5
LIVE_SECONDS = 120.0
QUICK_LIVE_SECONDS = 30.0


def _conversation(seconds: float) -> dict[Role, Track]:
    rng = np.random.default_rng(3)
    turns: dict[Role, list[tuple[float, float]]] = {role: [] for role in ROLES}
    position, speaker = 0.5, 0
    while position < seconds - 3.0:
        for _ in range(int(rng.integers(1, 4))):
            end = min(seconds - 0.5, position + rng.uniform(1.0, 3.0))
            turns[ROLES[speaker]].append((position, end))
            position = end + rng.uniform(0.3, 0.7)
        position += rng.uniform(0.0, 0.5)
        speaker ^= 1
    therapist, _ = voice(seconds, f0=120.0, seed=1, segments=turns[Role.THERAPIST])
    client, _ = voice(seconds, f0=210.0, seed=2, segments=turns[Role.CLIENT])
    noise_db = -26.0 - 15.0
    return {
        Role.THERAPIST: to_int16(with_echo(therapist, client, leak_db=20.0, noise_db=noise_db)),
        Role.CLIENT: to_int16(
            with_echo(client, therapist, leak_db=20.0, noise_db=noise_db, seed=1)
        ),
    }


def _best(work: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def _vad_alone(tracks: dict[Role, Track]) -> None:
    width = FRAME_SAMPLES * 2
    for track in tracks.values():
        is_speech = webrtcvad.Vad(SpeechConfig().vad_mode).is_speech
        audio = memoryview(track.tobytes())
        usable = len(audio) - len(audio) % width
        _ = [
            is_speech(audio[i : i + width], VAD_RATE, FRAME_SAMPLES)
            for i in range(0, usable, width)
        ]


def _detect(tracks: dict[Role, Track]) -> dict[Role, list[FrameBlock]]:
    blocks = {}
    for role, track in tracks.items():
        detector = VadDetector()
        detector.on_pcm(track, sample_rate=VAD_RATE, channels=1, t=0.0)
        detector.flush()
        blocks[role] = detector.drain_blocks()
    return blocks


def _gate(blocks: dict[Role, list[FrameBlock]]) -> list[GatedBlock]:
    gate = CrosstalkGate()
    for role in ROLES:
        for block in blocks[role]:
            gate.on_block(role, block)
    gate.flush()
    return gate.drain_blocks()


def _smooth(gated: list[GatedBlock]) -> None:
    smoothers = {role: Smoother(role) for role in ROLES}
    for block in gated:
        smoothers[block.role].on_block(block.k0, block.speech)
    for smoother in smoothers.values():
        smoother.advance(now=float("inf"))


def _live(tracks: dict[Role, Track]) -> None:
    """20 ms packets of 48 kHz stereo per role, a tick every 250 ms."""
    packets = {role: np.repeat(np.repeat(track, 3), 2) for role, track in tracks.items()}
    pipeline = SpeechPipeline()
    size = 1920
    for index, start in enumerate(range(0, len(packets[Role.THERAPIST]) - size + 1, size)):
        t = start / 96000
        for role in ROLES:
            piece = packets[role][start : start + size]
            pipeline.on_pcm(role, piece, sample_rate=48000, channels=2, t=t)
        if index % 12 == 0:
            pipeline.on_timer(now=t + 0.02)
            pipeline.drain_events()
    pipeline.flush()


def _row(name: str, seconds_of_audio: float, cpu: float, frames: int) -> str:
    return f"| {name} | {cpu:.3f} | {seconds_of_audio / cpu:,.0f}x | {cpu / frames * 1e6:.2f} |"


def run(quick: bool = False) -> Iterator[str]:
    minutes = QUICK_MINUTES if quick else SESSION_MINUTES
    repeats = 2 if quick else 3
    piece = _conversation(min(PIECE_SECONDS, minutes * 60.0))
    copies = max(1, round(minutes * 60.0 / PIECE_SECONDS))
    tracks = {role: np.tile(track, copies) for role, track in piece.items()}
    seconds = len(tracks[Role.THERAPIST]) / VAD_RATE
    frames = 2 * (len(tracks[Role.THERAPIST]) // FRAME_SAMPLES)  # both tracks

    vad = _best(lambda: _vad_alone(tracks), repeats)
    detect = _best(lambda: _detect(tracks), repeats)
    blocks = _detect(tracks)
    gate = _best(lambda: _gate(blocks), repeats)
    gated = _gate(blocks)
    smooth = _best(lambda: _smooth(gated), repeats)
    pipeline = _best(
        lambda: analyze_tracks(tracks[Role.THERAPIST], tracks[Role.CLIENT], sample_rate=VAD_RATE),
        repeats,
    )
    yield f"Two 16 kHz tracks, {seconds / 60:.0f} min (-20 dB echo, SNR 15 dB), CPU seconds:"
    yield ""
    yield "| stage | CPU s | x real time | us per frame (both tracks) |"
    yield "|---|---|---|---|"
    yield _row("webrtcvad alone (floor)", seconds, vad, frames)
    yield _row("detectors", seconds, detect, frames)
    yield _row("crosstalk gate", seconds, gate, frames)
    yield _row("smoothers", seconds, smooth, frames)
    yield _row("pipeline (analyze_tracks)", seconds, pipeline, frames)
    yield ""
    verdict = "meets" if seconds / pipeline >= 1000.0 else "MISSES"
    yield (
        f"pipeline {seconds / pipeline:,.0f}x real time, {pipeline / vad:.2f}x the VAD-only "
        f"floor; {verdict} 1000x on its own (the analyze path adds decoding and the "
        "conversation summary: bench_analyze)"
    )

    live_seconds = QUICK_LIVE_SECONDS if quick else LIVE_SECONDS
    live_tracks = {role: track[: round(live_seconds * VAD_RATE)] for role, track in piece.items()}
    live = _best(lambda: _live(live_tracks), repeats)
    yield ""
    yield (
        f"live (20 ms 48 kHz stereo packets, both roles, tick every 250 ms): "
        f"{live_seconds / live:,.0f}x real time, {100 * live / live_seconds:.2f} % of a core "
        "per session"
    )
