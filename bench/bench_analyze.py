"""`feltsafe analyze` speed: two 16 kHz tracks of a composed session, in x real time.

Target (issue 3): at least 1000x real time on one core, a 50-minute session in under 3 s.
Figures are CPU time of this process (``time.process_time``), best of several repeats,
which filters out the other tenants of a shared machine; the analysis is single-threaded.

- **analysis**: ``monitor.analyze.analyze_pcm`` on the two decoded tracks (detectors,
  crosstalk gate, smoothing, conversation summary), file decoding excluded;
- **VAD-only floor**: webrtcvad (mode 3) over the same 30 ms frames of both tracks and
  nothing else: no level, no gate, no smoothing. The analysis cannot beat it;
- **stages**: the two detectors (webrtcvad, levels, noise floor) alone, and the rest of
  the chain (gate, smoothers, conversation summary) by difference;
- **decoding** (reported separately): ``monitor.audiofile.read_audio`` of both tracks from
  a 16-bit wav (read directly), FLAC and Ogg Opus, over a shorter stretch of the same
  audio (encoding Opus is slow; the rate is per second of audio either way);
- a cProfile of one analysis, the functions with the most own time.

The session is the scenario composer's (monitor/scenario): two synthetic voices with a
-20 dB echo and 15 dB SNR, the conditions of the accuracy tests.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import webrtcvad

from monitor.analyze import analyze_pcm
from monitor.audiofile import read_audio
from monitor.scenario import Scenario, ScenarioConfig, compose
from probes.base import Role
from probes.speech import FRAME_SAMPLES, VAD_RATE, VadDetector

TARGET_X = 1000.0
SESSION_MINUTES = 50
QUICK_MINUTES = 5
DECODE_SECONDS = 300.0
QUICK_DECODE_SECONDS = 60.0


def _best(work: Callable[[], object], repeats: int) -> float:
    """Least CPU seconds of ``repeats`` runs."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        work()
        best = min(best, time.process_time() - start)
    return best


def _vad_only(tracks: list[npt.NDArray[np.int16]]) -> None:
    width = FRAME_SAMPLES * 2
    for track in tracks:
        vad = webrtcvad.Vad(3)
        audio = memoryview(track.tobytes())
        usable = len(audio) - len(audio) % width
        is_speech = vad.is_speech
        for i in range(0, usable, width):
            is_speech(audio[i : i + width], VAD_RATE, FRAME_SAMPLES)


def _detectors(scenario: Scenario, repeats: int) -> float:
    """CPU seconds of the first stage alone: both tracks through their VadDetector."""

    def detect() -> None:
        for role in Role:
            detector = VadDetector()
            detector.on_pcm(scenario.track(role), sample_rate=VAD_RATE, channels=1, t=0.0)
            detector.flush()
            detector.drain_frames()

    return _best(detect, repeats)


def _write(path: Path, samples: npt.NDArray[np.int16], codec: str) -> Path:
    """Synthetic test audio to ``path`` (bench only; product code never writes audio)."""
    fmt = "ogg" if codec == "libopus" else None
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else VAD_RATE)
        stream.layout = "mono"
        step = 960
        for start in range(0, len(samples), step):
            chunk = np.ascontiguousarray(samples[start : start + step].reshape(1, -1))
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.sample_rate = VAD_RATE
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _decoding(scenario: Scenario, seconds: float, repeats: int) -> dict[str, float]:
    """x real time of reading both tracks back, per file format."""
    n = min(len(scenario.therapist), round(seconds * VAD_RATE))
    pieces = [scenario.therapist[:n], scenario.client[:n]]
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="feltsafe-bench-") as folder:
        for label, codec, suffix in (
            ("wav", "pcm_s16le", "wav"),
            ("flac", "flac", "flac"),
            ("ogg opus", "libopus", "ogg"),
        ):
            paths = [
                _write(Path(folder) / f"{i}.{suffix}", piece, codec)
                for i, piece in enumerate(pieces)
            ]
            cpu = _best(lambda paths=paths: [read_audio(p) for p in paths], repeats)
            rates[label] = n / VAD_RATE / cpu
    return rates


def _profile(scenario: Scenario, seconds: float, top: int = 8) -> list[str]:
    n = round(seconds * VAD_RATE)
    profiler = cProfile.Profile()
    profiler.enable()
    analyze_pcm(scenario.therapist[:n], scenario.client[:n])
    profiler.disable()
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append((own, cumulative, calls, f"{Path(file).name}:{line}({name})"))
    rows.sort(reverse=True)
    lines = [f"cProfile of one {seconds / 60:.0f}-minute analysis (own time, share of total):"]
    lines += [
        f"  {own * 1000:7.1f} ms  {own / total:5.1%}  {calls:7d} calls  {where}"
        for own, _, calls, where in rows[:top]
    ]
    return lines


def run(quick: bool = False) -> Iterator[str]:
    minutes = QUICK_MINUTES if quick else SESSION_MINUTES
    repeats = 1 if quick else 3
    scenario = compose(
        ScenarioConfig(
            therapist_voice="en-low",
            client_voice="fr-en",
            duration=minutes * 60.0,
            echo_leak_db=20.0,
            snr_db=15.0,
        ),
        seed=11,
    )
    duration = scenario.duration
    tracks = [scenario.therapist, scenario.client]
    analysis = _best(lambda: analyze_pcm(scenario.therapist, scenario.client), repeats)
    floor = _best(lambda: _vad_only(tracks), repeats)
    x = duration / analysis
    yield f"session: {duration / 60:.1f} min, two 16 kHz tracks (-20 dB echo, 15 dB SNR)"
    yield ""
    yield "| work | CPU s | x real time |"
    yield "|---|---|---|"
    yield f"| analysis (analyze_pcm, decoding excluded) | {analysis:.3f} | {x:,.0f} |"
    yield f"| VAD-only floor (webrtcvad, same frames) | {floor:.3f} | {duration / floor:,.0f} |"
    detectors = _detectors(scenario, repeats)
    rest = max(analysis - detectors, 1e-9)
    yield f"|   of which the two detectors | {detectors:.3f} | {duration / detectors:,.0f} |"
    yield f"|   of which gate, smoothers, summary | {rest:.3f} | {duration / rest:,.0f} |"
    yield ""
    verdict = "met" if x >= TARGET_X else f"MISSED by {(1 - x / TARGET_X):.0%}"
    yield (
        f"target >= {TARGET_X:,.0f}x real time: {verdict} "
        f"(a 50-minute session in {3000 / x:.2f} s; the analysis costs "
        f"{analysis / floor:.1f}x the VAD-only floor)"
    )
    yield ""
    seconds = QUICK_DECODE_SECONDS if quick else DECODE_SECONDS
    yield f"decoding both tracks (read_audio, {seconds / 60:.0f} min each), x real time:"
    for label, rate in _decoding(scenario, seconds, repeats).items():
        yield f"  {label:8s} {rate:8,.0f}x"
    yield ""
    yield from _profile(scenario, min(duration, 300.0))


if __name__ == "__main__":
    for out in run(quick=False):
        print(out)
