"""Smoother: gated frame decisions become talk spurts (fill short gaps, drop short bursts)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.base import Role
from probes.speech import FRAME, Smoother, SpeechConfig, VoiceEvent, VoiceStarted, VoiceStopped

Pattern = list[tuple[bool, float]]  # (speech, seconds), consecutive from t = 0


def frames_of(pattern: Pattern) -> list[tuple[float, bool]]:
    frames: list[tuple[float, bool]] = []
    k = 0
    for speech, seconds in pattern:
        for _ in range(round(seconds / FRAME)):
            frames.append((k * FRAME, speech))
            k += 1
    return frames


def run(frames: list[tuple[float, bool]], config: SpeechConfig | None = None) -> list[VoiceEvent]:
    smoother = Smoother(Role.THERAPIST, config)
    for t, speech in frames:
        smoother.on_frame(t, speech)
    smoother.advance(now=math.inf)
    return smoother.drain_events()


def segments(events: list[VoiceEvent]) -> list[tuple[float, float]]:
    starts = [e.t for e in events if isinstance(e, VoiceStarted)]
    stops = [e.t for e in events if isinstance(e, VoiceStopped)]
    return [(round(a, 6), round(b, 6)) for a, b in zip(starts, stops, strict=True)]


def test_a_150ms_silence_inside_speech_is_filled() -> None:
    found = segments(run(frames_of([(False, 0.3), (True, 0.6), (False, 0.15), (True, 0.6)])))
    assert found == [(0.3, 1.65)]


def test_a_240ms_silence_on_the_grid_is_filled_too() -> None:
    # 200 ms of true silence reads up to ~50 ms longer on the grid (speech_smoothing.py).
    found = segments(run(frames_of([(False, 0.3), (True, 0.6), (False, 0.24), (True, 0.6)])))
    assert found == [(0.3, 1.74)]


def test_a_270ms_silence_inside_speech_is_not() -> None:
    found = segments(run(frames_of([(False, 0.3), (True, 0.6), (False, 0.27), (True, 0.6)])))
    assert found == [(0.3, 0.9), (1.17, 1.77)]


@pytest.mark.parametrize("burst", [0.03, 0.06, 0.09])  # 80 ms falls between 60 and 90
def test_a_burst_under_100ms_is_dropped(burst: float) -> None:
    assert run(frames_of([(False, 0.3), (True, burst), (False, 1.0)])) == []


def test_a_120ms_burst_is_kept_with_its_true_edges() -> None:
    found = segments(run(frames_of([(False, 0.3), (True, 0.12), (False, 1.0)])))
    assert found == [(0.3, 0.42)]


def test_a_short_burst_within_the_fill_of_speech_joins_it() -> None:
    # Gaps are filled first (DESIGN.md's order): a voice that loses single frames to the
    # crosstalk gate while talking over another stays one spurt.
    pattern = [(True, 0.6), (False, 0.12), (True, 0.06), (False, 0.12), (True, 0.6)]
    assert segments(run(frames_of(pattern))) == [(0.0, 1.5)]


def test_bursts_joined_by_filled_gaps_make_a_spurt_around_one_run_of_90ms() -> None:
    pattern = [(False, 0.3), (True, 0.06), (False, 0.12), (True, 0.09), (False, 1.0)]
    assert segments(run(frames_of(pattern))) == [(0.3, 0.57)]


def test_bursts_of_one_or_two_frames_alone_are_never_talk_however_close() -> None:
    # What the click test lets through of keyboard clicks: stray frames, often in quick
    # succession; no run of 90 ms among them, so no spurt.
    clicks = [(False, 0.3)] + [(True, 0.06), (False, 0.12), (True, 0.03), (False, 0.09)] * 10
    assert run(frames_of([*clicks, (False, 1.0)])) == []


def test_events_are_decided_a_bounded_time_after_their_edge() -> None:
    smoother = Smoother(Role.CLIENT)
    decided: dict[str, float] = {}
    for t, speech in frames_of([(False, 0.3), (True, 0.6), (False, 0.6)]):
        smoother.on_frame(t, speech)
        for event in smoother.drain_events():
            decided[type(event).__name__] = t + FRAME  # when the deciding frame ended
    assert decided["VoiceStarted"] == pytest.approx(0.3 + 0.12)  # min_burst, on the grid
    assert decided["VoiceStopped"] == pytest.approx(0.9 + 0.27)  # fill_gap, on the grid


def test_when_input_stops_the_deadline_closes_the_spurt() -> None:
    smoother = Smoother(Role.CLIENT)
    for t, speech in frames_of([(True, 0.6)]):
        smoother.on_frame(t, speech)
    assert smoother.active
    deadline = smoother.next_deadline()
    assert deadline == pytest.approx(0.85, abs=1e-3)
    smoother.on_timer(now=deadline - 0.01)
    assert smoother.drain_events() == [VoiceStarted(Role.CLIENT, 0.0)]
    smoother.on_timer(now=deadline)
    assert smoother.drain_events() == [VoiceStopped(Role.CLIENT, pytest.approx(0.6))]
    assert not smoother.active
    assert smoother.next_deadline() is None


def test_missing_frames_count_as_silence_and_late_frames_are_dropped() -> None:
    smoother = Smoother(Role.CLIENT)
    for k in range(10):
        smoother.on_frame(k * FRAME, True)
    smoother.on_frame(1.0, True)  # 0.3-1.0 never came: a 700 ms gap
    smoother.on_frame(0.5, True)  # arrives after its time was passed
    for k in range(1, 10):
        smoother.on_frame(1.0 + k * FRAME, True)
    smoother.advance(now=math.inf)
    assert segments(smoother.drain_events()) == [(0.0, 0.3), (1.0, 1.3)]
    assert smoother.late_frame_count == 1


def test_no_event_comes_before_the_horizon_announced_earlier() -> None:
    smoother = Smoother(Role.CLIENT)
    frames = frames_of([(False, 0.3), (True, 0.6), (False, 0.15), (True, 0.3), (False, 0.6)])
    announced = -math.inf
    emitted = 0
    for t, speech in frames:
        smoother.on_frame(t, speech)
        for event in smoother.drain_events():
            assert event.t >= announced - 1e-9
            emitted += 1
        horizon = smoother.horizon
        assert horizon is not None
        assert horizon >= announced - 1e-9
        announced = horizon
    smoother.advance(now=math.inf)
    assert all(event.t >= announced - 1e-9 for event in smoother.drain_events())
    assert emitted == 2  # the 150 ms gap was filled: one spurt, decided within the input


# -- invariants --------------------------------------------------------------------------

patterns = st.lists(st.tuples(st.booleans(), st.integers(1, 20)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(
    patterns,
    st.sampled_from([0.0, 0.06, 0.1, 0.15]),
    st.sampled_from([0.0, 0.1, 0.2, 0.3]),
    st.sampled_from([0.0, 0.03, 0.09]),
    st.sets(st.integers(0, 400), max_size=30),
)
def test_spurts_never_shorter_than_min_burst_nor_gaps_shorter_than_fill(
    runs: list[tuple[bool, int]],
    min_burst: float,
    fill_gap: float,
    min_run: float,
    missing: set[int],
) -> None:
    config = SpeechConfig(min_burst=min_burst, fill_gap=fill_gap, min_run=min_run)
    frames = frames_of([(speech, n * FRAME) for speech, n in runs])
    kept = [(t, speech) for k, (t, speech) in enumerate(frames) if k not in missing]
    events = run(kept, config)
    kinds = [type(e) for e in events]
    assert kinds == [VoiceStarted, VoiceStopped] * (len(events) // 2)
    found = segments(events)
    assert all(end - start >= min_burst - 1e-6 for start, end in found)
    assert all(b[0] - a[1] >= fill_gap - 1e-6 for a, b in itertools.pairwise(found))
    # The spurts are exactly the stretches of speech (runs of speech frames joined across
    # gaps shorter than the fill) that hold a run of min_run and last min_burst.
    speech_runs: list[tuple[float, float]] = []
    for t, speech in kept:
        if speech and speech_runs and abs(speech_runs[-1][1] - t) < 1e-6:
            speech_runs[-1] = (speech_runs[-1][0], t + FRAME)
        elif speech:
            speech_runs.append((t, t + FRAME))
    stretches: list[tuple[float, float, bool]] = []  # start, end, holds a run of min_run
    for start, end in speech_runs:
        anchor = end - start >= min_run - 1e-6
        if stretches and start - stretches[-1][1] < max(fill_gap, 1e-6) - 1e-6:
            first, _, anchored = stretches[-1]
            stretches[-1] = (first, end, anchored or anchor)
        else:
            stretches.append((start, end, anchor))
    expected = [
        (round(a, 6), round(b, 6))
        for a, b, anchored in stretches
        if anchored and b - a >= min_burst - 1e-6
    ]
    assert found == expected


@settings(max_examples=200, deadline=None)
@given(patterns, st.integers(1, 25))
def test_blocks_give_the_same_spurts_as_frames_one_by_one(
    runs: list[tuple[bool, int]], block_size: int
) -> None:
    frames = frames_of([(speech, n * FRAME) for speech, n in runs])
    by_frame = run(frames)
    smoother = Smoother(Role.THERAPIST)
    flags = np.array([speech for _, speech in frames], dtype=bool)
    for start in range(0, len(flags), block_size):
        smoother.on_block(start, flags[start : start + block_size])
    smoother.advance(now=math.inf)
    by_block = smoother.drain_events()
    assert [type(e) for e in by_block] == [type(e) for e in by_frame]
    assert [e.t for e in by_block] == pytest.approx([e.t for e in by_frame])
