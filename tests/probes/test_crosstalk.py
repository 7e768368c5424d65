"""CrosstalkGate: each track's echo of the other voice is not that participant's speech."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from probes.base import ConfigError, Role
from probes.crosstalk import CrosstalkConfig, CrosstalkGate, GatedFrame
from probes.speech import FRAME, FrameBlock, Smoother, SpeechFrame, VadDetector
from probes.speech_pipeline import TrackAnalysis, analyze_tracks
from tests.probes.synthetic_voice import Floats, Segments, to_int16, voice, with_echo

T, C = Role.THERAPIST, Role.CLIENT
RATE = 16000


def talk(segments: Segments) -> float:
    return sum(end - start for start, end in segments)


def overlap(found: TrackAnalysis, role: Role, start: float, end: float) -> float:
    return sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in found.segments[role])


@cache
def monologue(duration: float = 30.0) -> tuple[Floats, Segments]:
    return voice(duration, f0=120.0, seed=21)


def analyse(therapist: Floats, client: Floats) -> TrackAnalysis:
    return analyze_tracks(to_int16(therapist), to_int16(client), sample_rate=RATE)


# -- echo ---------------------------------------------------------------------------------


@pytest.mark.parametrize("leak_db", [20.0, 25.0, 30.0])
def test_the_silent_partys_track_carrying_echo_yields_no_speech_and_the_leak(
    leak_db: float,
) -> None:
    speech, segments = monologue()
    silent = np.zeros_like(speech)
    found = analyse(
        with_echo(speech, silent, leak_db=leak_db, seed=1),
        with_echo(silent, speech, leak_db=leak_db, seed=2),
    )
    assert found.talk_time(C) == 0.0
    assert found.talk_time(T) == pytest.approx(talk(segments), rel=0.05)
    estimate = found.echo[C]
    assert estimate is not None
    assert not estimate.lower_bound
    assert estimate.leak_db == pytest.approx(leak_db, abs=3.0)
    assert estimate.delay is not None
    assert 0.0 <= estimate.delay <= 0.09
    assert found.echo_problem[C] is (leak_db < 20.0)


def test_without_the_gate_that_echo_would_be_talk_time() -> None:
    speech, segments = monologue()
    echo_only = with_echo(np.zeros_like(speech), speech, leak_db=20.0, seed=2)
    detector = VadDetector()
    detector.on_pcm(to_int16(echo_only), sample_rate=RATE, channels=1, t=0.0)
    detector.flush()
    smoother = Smoother(C)
    for f in detector.drain_frames():
        smoother.on_frame(f.t, f.voiced)
    smoother.advance(now=math.inf)
    events = smoother.drain_events()
    spurts = zip(events[::2], events[1::2], strict=True)
    assert sum(stop.t - start.t for start, stop in spurts) > 0.8 * talk(segments)


def test_an_echo_at_minus_10_db_is_reported_as_a_problem_and_still_gated() -> None:
    speech, _ = monologue()
    silent = np.zeros_like(speech)
    found = analyse(
        with_echo(speech, silent, leak_db=10.0, seed=1),
        with_echo(silent, speech, leak_db=10.0, seed=2),
    )
    assert found.echo_problem[C]
    estimate = found.echo[C]
    assert estimate is not None
    assert estimate.leak_db == pytest.approx(10.0, abs=3.0)
    # Before the first estimate the prior (12 dB dominance) lets some echo through; the
    # smoother fills the gaps between its fragments first (about 1 s in all).
    assert found.talk_time(C) < 1.5
    assert all(s.end < 6.0 for s in found.segments[C])


def test_an_echo_buried_in_noise_gives_only_a_lower_bound_and_no_problem() -> None:
    speech, _ = monologue()
    silent = np.zeros_like(speech)
    noisy = -26.0 - 15.0  # SNR 15 dB: the -20 dB echo sits under the noise
    found = analyse(
        with_echo(speech, silent, leak_db=20.0, noise_db=noisy, seed=1),
        with_echo(silent, speech, leak_db=20.0, noise_db=noisy, seed=2),
    )
    estimate = found.echo[C]
    assert estimate is not None
    assert estimate.lower_bound
    assert estimate.delay is None
    assert 5.0 <= estimate.leak_db <= 20.0
    assert not found.echo_problem[C]
    assert found.talk_time(C) == 0.0


# -- real overlaps survive --------------------------------------------------------------------


@cache
def overlap_scene(client_db: float, leak_db: float) -> tuple[TrackAnalysis, Segments]:
    """The client talks first (the gate learns both leaks), then the therapist holds the
    floor while the client speaks over them: turns at 12 s and 18 s, and short bursts."""
    duration = 30.0
    client_turn = [(0.5, 3.0), (3.4, 6.0)]
    therapist_turns = [(6.5, 9.0), (9.4, 12.0), (12.3, 15.0), (15.3, 18.0), (18.3, 21.0)]
    client_over = [(12.5, 14.5), (16.0, 16.5), (19.0, 19.4), (22.0, 25.0)]
    therapist, _ = voice(duration, f0=120.0, seed=31, segments=therapist_turns)
    first, _ = voice(duration, f0=220.0, seed=32, segments=client_turn)
    later, _ = voice(duration, f0=220.0, seed=33, segments=client_over, level_db=-26 + client_db)
    client = first + later
    found = analyse(
        with_echo(therapist, client, leak_db=leak_db, seed=3),
        with_echo(client, therapist, leak_db=leak_db, seed=4),
    )
    return found, client_over


def test_a_genuine_overlap_at_similar_levels_survives_for_both() -> None:
    found, _ = overlap_scene(0.0, 20.0)
    assert overlap(found, C, 12.5, 14.5) > 1.6  # 2 s of the client over the therapist
    assert overlap(found, T, 12.5, 14.5) > 1.6  # and the therapist kept talking
    assert overlap(found, T, 6.5, 21.0) > 0.85 * 13.0
    estimate = found.echo[C]
    assert estimate is not None
    assert estimate.leak_db == pytest.approx(20.0, abs=3.0)


def test_a_backchannel_8db_under_the_speaker_survives_a_minus_20db_leak() -> None:
    found, client_over = overlap_scene(-8.0, 20.0)
    backchannels = [(a, b) for a, b in client_over if b - a <= 0.6]
    for start, end in backchannels:
        assert overlap(found, C, start, end) > 0.1, (start, end)
    assert overlap(found, C, 12.5, 14.5) > 1.0


def test_with_a_minus_10db_leak_a_quiet_backchannel_is_lost_but_turns_are_kept() -> None:
    found, _ = overlap_scene(-8.0, 10.0)
    assert found.echo_problem[C]
    assert found.echo_problem[T]
    assert overlap(found, C, 22.0, 25.0) > 2.5  # the client alone again: kept
    assert overlap(found, C, 16.0, 16.5) == 0.0  # 8 dB under the speaker, 2 dB over echo


# -- the rule on hand-made frames ----------------------------------------------------------------


def frame(k: int, level_db: float, *, voiced: bool = True, floor_db: float = -60.0) -> SpeechFrame:
    return SpeechFrame(k * FRAME, level_db, voiced, floor_db)


def decide(pairs: list[tuple[SpeechFrame | None, SpeechFrame | None]]) -> list[GatedFrame]:
    gate = CrosstalkGate()
    for therapist, client in pairs:
        if therapist is not None:
            gate.on_frame(T, therapist)
        if client is not None:
            gate.on_frame(C, client)
    gate.flush()
    return gate.drain_frames()


@pytest.mark.parametrize(("below_db", "kept"), [(11.0, True), (13.0, False)])
def test_before_any_estimate_a_frame_must_be_within_12db_of_the_louder_track(
    below_db: float, kept: bool
) -> None:
    pairs = [(frame(k, -20.0), frame(k, -20.0 - below_db)) for k in range(5)]
    client = [g for g in decide(pairs) if g.role is C]
    assert [g.speech for g in client] == [kept] * 5
    assert all(g.speech for g in decide(pairs) if g.role is T)


def test_a_loud_frame_up_to_300ms_earlier_still_counts_as_the_echo_source() -> None:
    pairs: list[tuple[SpeechFrame | None, SpeechFrame | None]] = [(frame(0, -20.0), None)]
    pairs += [(frame(k, -70.0, voiced=False), None) for k in range(1, 10)]
    pairs += [(frame(10, -70.0, voiced=False), frame(10, -35.0))]  # 300 ms later
    pairs += [(frame(11, -70.0, voiced=False), frame(11, -35.0))]  # 330 ms later
    client = [g.speech for g in decide(pairs) if g.role is C]
    assert client == [False, True]


def test_frames_arriving_skewed_or_in_chunks_are_decided_as_in_step() -> None:
    rng = np.random.default_rng(5)
    levels = rng.uniform(-60.0, -15.0, size=(2, 300))
    therapist = [frame(k, float(levels[0, k])) for k in range(300)]
    client = [frame(k, float(levels[1, k])) for k in range(300)]
    in_step = decide(list(zip(therapist, client, strict=True)))
    gate = CrosstalkGate()
    gate.on_frames(T, therapist[:200])
    for k in range(120):
        gate.on_frame(C, client[k])
    gate.on_frames(T, therapist[200:])
    gate.on_frames(C, client[120:])
    gate.flush()
    skewed = gate.drain_frames()
    assert skewed == in_step
    blocks = CrosstalkGate()  # the bulk form, in uneven blocks
    for role, frames in ((C, client), (T, therapist)):
        for block in FrameBlock.of(frames[:77]) + FrameBlock.of(frames[77:]):
            blocks.on_block(role, block)
    blocks.flush()
    assert blocks.drain_frames() == in_step


def test_a_silent_role_holds_the_other_back_only_until_the_clock_settles_it() -> None:
    gate = CrosstalkGate()
    for k in range(100):
        gate.on_frame(T, frame(k, -20.0))
    assert gate.drain_frames() == []  # the client may still deliver these frames
    deadline = gate.next_deadline()
    assert deadline == pytest.approx(FRAME + 0.5)
    gate.on_timer(now=2.0)
    decided = gate.drain_frames()  # those that ended 0.5 s ago or more
    assert [g.t for g in decided] == pytest.approx([k * FRAME for k in range(50)])
    assert all(g.role is T and g.speech for g in decided)
    assert gate.decided_until == pytest.approx(50 * FRAME)
    gate.on_frame(C, frame(10, -20.0))  # too late now
    assert gate.late_frame_count == 1


def test_a_frame_one_role_skipped_is_missing_for_good() -> None:
    gate = CrosstalkGate()
    gate.on_frames(T, [frame(k, -20.0) for k in range(10)])
    gate.on_frames(C, [frame(k, -25.0) for k in range(10) if k != 4])
    decided = gate.drain_frames()
    assert [round(g.t / FRAME) for g in decided if g.role is C] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert [round(g.t / FRAME) for g in decided if g.role is T] == list(range(10))


def test_duplicate_and_late_frames_are_counted_and_dropped() -> None:
    gate = CrosstalkGate()
    gate.on_frames(T, [frame(k, -20.0) for k in range(10)])
    gate.on_frames(C, [frame(k, -25.0) for k in range(10)])
    gate.on_frame(T, frame(10, -20.0))
    gate.on_frame(T, frame(10, -10.0))
    gate.on_frame(C, frame(3, -25.0))
    assert (gate.duplicate_frame_count, gate.late_frame_count) == (1, 1)
    gate.flush()
    assert [g.level_db for g in gate.drain_frames()][-1] == -20.0


def test_a_bad_config_fails_fast() -> None:
    with pytest.raises(ConfigError):
        CrosstalkConfig(leak_update_interval=60.0, leak_window=30.0)
    with pytest.raises(ConfigError):
        CrosstalkConfig(max_skew=-1.0)


def test_no_estimate_and_no_problem_before_anyone_spoke() -> None:
    gate = CrosstalkGate()
    gate.on_frames(T, [frame(k, -60.0, voiced=False) for k in range(2000)])
    gate.on_frames(C, [frame(k, -60.0, voiced=False) for k in range(2000)])
    assert gate.echo_leak(C) is None
    assert gate.echo_leak_db(C) is None
    assert not gate.echo_problem(C)
    assert math.isclose(gate.decided_until or 0.0, 2000 * FRAME)
