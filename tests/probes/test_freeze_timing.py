"""W3C timing freezes and pauses (probes/freeze.py), driven with explicit ``now``."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.base import ConfigError
from probes.freeze import (
    FreezeConfig,
    FreezeDetector,
    FreezeEnded,
    FreezeEvent,
    FreezeStarted,
    PauseEnded,
    PauseStarted,
)


def drive(detector: FreezeDetector, arrivals: Iterable[float]) -> list[FreezeEvent]:
    """Feed frames, firing every deadline that falls before the next frame, as a session
    runtime does (it ticks at once on a probe deadline)."""
    for t in arrivals:
        while (deadline := detector.next_deadline()) is not None and deadline <= t:
            detector.on_timer(now=deadline)
        detector.on_frame(now=t)
    return detector.drain_events()


def steady(fps: float, seconds: float, start: float = 0.0) -> list[float]:
    count = round(seconds * fps)
    return [start + i / fps for i in range(count)]


@dataclass(frozen=True)
class ReferenceInterval:
    start: float
    end: float
    threshold: float | None  # None before 5 frames, and for pauses

    @property
    def is_freeze(self) -> bool:
        return self.threshold is not None and self.end - self.start >= self.threshold


def reference_intervals(arrivals: Sequence[float]) -> dict[float, ReferenceInterval]:
    """The W3C rule written as plainly as possible: the average of the previous (at most
    30) non-pause intervals, at least 4 of them (5 frames), the current one excluded."""
    history: list[float] = []
    found = {}
    for previous, current in itertools.pairwise(arrivals):
        interval = current - previous
        threshold = None
        if interval < 5.0 and len(history) >= 4:
            window = history[-30:]
            avg = sum(window) / len(window)
            threshold = max(3 * avg, avg + 0.150)
        found[round(previous, 9)] = ReferenceInterval(previous, current, threshold)
        if interval < 5.0:  # a pause is neither a freeze nor part of the average
            history.append(interval)
    return found


def stream_with_gaps(
    rng: np.random.Generator, fps: float, gap_count: int
) -> tuple[list[float], list[tuple[float, float]]]:
    """A jittered stream with gaps of random length, many of them within 10 ms of the
    nominal threshold. Returns arrivals and the injected (last frame, gap) pairs."""
    period = 1 / fps
    nominal = max(3 * period, period + 0.150)
    arrivals = [0.0]
    gaps: list[tuple[float, float]] = []
    for _ in range(gap_count):
        for _ in range(int(rng.integers(35, 80))):
            arrivals.append(arrivals[-1] + period + rng.uniform(-0.002, 0.002))
        if rng.random() < 0.5:
            gap = nominal + rng.uniform(-0.010, 0.010)
        else:
            gap = rng.uniform(0.5 * nominal, 3.0)
        gaps.append((arrivals[-1], gap))
        arrivals.append(arrivals[-1] + gap)
    for _ in range(40):
        arrivals.append(arrivals[-1] + period)
    return arrivals, gaps


@pytest.mark.parametrize("fps", [30.0, 15.0, 10.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_gap_at_or_above_the_threshold_is_reported_once_with_its_timing(
    fps: float, seed: int
) -> None:
    rng = np.random.default_rng(seed * 100 + int(fps))
    arrivals, gaps = stream_with_gaps(rng, fps, gap_count=40)
    detector = FreezeDetector()
    events = drive(detector, arrivals)
    started = {round(e.start, 9): e for e in events if isinstance(e, FreezeStarted)}
    ended = {round(e.start, 9): e for e in events if isinstance(e, FreezeEnded)}
    reference = reference_intervals(arrivals)
    period = 1 / fps

    over = [(start, gap) for start, gap in gaps if reference[round(start, 9)].is_freeze]
    under = [(start, gap) for start, gap in gaps if not reference[round(start, 9)].is_freeze]
    assert len(over) >= 10, "the seeded trace should hold plenty of freezes"
    assert len(under) >= 5, "...and gaps just under the threshold"
    for start, gap in over:
        key = round(start, 9)
        threshold = reference[key].threshold
        assert threshold is not None
        crossed = start + threshold
        assert crossed <= started[key].detected_at < crossed + period
        assert abs(ended[key].duration - gap) < period
    for start, _ in under:
        assert round(start, 9) not in started
    # Nothing else was reported: the steady stretches between the gaps are quiet.
    assert set(started) == set(ended) == {round(s, 9) for s, _ in over}
    snapshot = detector.snapshot(now=arrivals[-1])
    assert snapshot.freeze_count == len(over)
    assert snapshot.total_freezes_duration == pytest.approx(sum(e.duration for e in ended.values()))


def test_a_steady_30_fps_stream_with_10_ms_jitter_has_no_freeze_in_10_minutes() -> None:
    rng = np.random.default_rng(7)
    nominal = np.arange(30 * 600) / 30
    arrivals = nominal + rng.uniform(-0.010, 0.010, nominal.size)
    detector = FreezeDetector()
    events = drive(detector, arrivals.tolist())
    snapshot = detector.snapshot(now=float(arrivals[-1]))
    assert events == []
    assert snapshot.freeze_count == 0
    assert snapshot.pause_count == 0
    assert snapshot.frame_count == 18_000
    assert snapshot.fps == pytest.approx(30, abs=1)


@pytest.mark.parametrize(
    ("fps", "threshold"),
    [(30.0, 0.1833), (15.0, 0.2167), (10.0, 0.300)],
)
def test_the_threshold_is_max_of_three_times_and_150_ms_over_the_average(
    fps: float, threshold: float
) -> None:
    detector = FreezeDetector()
    drive(detector, steady(fps, 3))
    assert detector.snapshot(now=3.0).freeze_threshold == pytest.approx(threshold, abs=1e-4)


@pytest.mark.parametrize(("fps", "threshold"), [(15.0, 0.2167), (10.0, 0.300), (30.0, 0.1833)])
@pytest.mark.parametrize(("offset", "is_freeze"), [(-0.004, False), (0.004, True)])
def test_a_gap_just_under_the_threshold_is_no_freeze_and_just_over_is(
    fps: float, threshold: float, offset: float, is_freeze: bool
) -> None:
    arrivals = steady(fps, 3)
    resumed = arrivals[-1] + threshold + offset
    arrivals += [resumed + i / fps for i in range(10)]
    detector = FreezeDetector()
    events = drive(detector, arrivals)
    assert (detector.snapshot(now=arrivals[-1]).freeze_count == 1) is is_freeze
    assert bool(events) is is_freeze


def test_an_ongoing_freeze_is_reported_at_its_deadline_before_any_later_frame() -> None:
    detector = FreezeDetector()
    drive(detector, steady(30, 2))
    last = 59 / 30
    deadline = detector.next_deadline()
    assert deadline == pytest.approx(last + 0.1833, abs=1e-4)
    assert deadline is not None

    detector.on_timer(now=deadline - 0.001)
    assert detector.drain_events() == []
    assert not detector.snapshot(now=deadline - 0.001).frozen

    detector.on_timer(now=deadline)
    assert detector.drain_events() == [FreezeStarted(start=last, detected_at=deadline)]
    during = detector.snapshot(now=last + 1.0)
    assert during.frozen
    assert not during.paused
    assert during.current_freeze_duration == pytest.approx(1.0)
    assert during.freeze_count == 0  # W3C counts the freeze when a frame ends it
    assert during.freezes_recent_count == 1  # ...the live view counts it already
    assert detector.next_deadline() == pytest.approx(last + 5.0)

    detector.on_frame(now=last + 1.2)
    assert detector.drain_events() == [FreezeEnded(start=last, end=last + 1.2, duration=1.2)]
    after = detector.snapshot(now=last + 1.2)
    assert not after.frozen
    assert after.freeze_count == 1
    assert after.total_freezes_duration == pytest.approx(1.2)


def test_a_late_timer_still_reports_the_freeze_from_the_last_frame() -> None:
    detector = FreezeDetector()
    drive(detector, steady(30, 2))
    last = 59 / 30
    detector.on_timer(now=last + 0.9)
    assert detector.drain_events() == [FreezeStarted(start=last, detected_at=last + 0.9)]


def test_a_freeze_ended_by_a_frame_without_any_timer_is_still_started_then_ended() -> None:
    detector = FreezeDetector()
    arrivals = steady(30, 2)
    for t in arrivals:
        detector.on_frame(now=t)
    detector.on_frame(now=arrivals[-1] + 0.5)
    events = detector.drain_events()
    assert [type(e) for e in events] == [FreezeStarted, FreezeEnded]
    assert events[0].start == arrivals[-1]


def test_a_stall_of_more_than_5_s_is_a_pause_and_not_a_freeze() -> None:
    detector = FreezeDetector()
    events = drive(detector, [*steady(30, 2), 59 / 30 + 7.0, 59 / 30 + 7.0 + 1 / 30])
    last = 59 / 30
    assert [type(e) for e in events] == [FreezeStarted, PauseStarted, PauseEnded]
    assert events[1] == PauseStarted(start=last, detected_at=last + 5.0)
    assert isinstance(events[2], PauseEnded)
    assert (events[2].start, events[2].end) == (last, last + 7.0)
    assert events[2].duration == pytest.approx(7.0)
    snapshot = detector.snapshot(now=last + 7.1)
    assert snapshot.pause_count == 1
    assert snapshot.total_pauses_duration == pytest.approx(7.0)
    assert snapshot.freeze_count == 0
    assert snapshot.total_freezes_duration == 0.0


def test_the_picture_reads_frozen_and_paused_during_a_pause() -> None:
    detector = FreezeDetector()
    drive(detector, steady(30, 2))
    snapshot = detector.snapshot(now=59 / 30 + 6.0)
    assert snapshot.frozen
    assert snapshot.paused
    assert snapshot.current_freeze_duration == pytest.approx(6.0)
    assert snapshot.freezes_recent_count == 0  # a pause is not a freeze
    detector.on_timer(now=59 / 30 + 6.0)
    assert detector.next_deadline() is None  # nothing more to notice until a frame


def test_a_pause_does_not_enter_the_average() -> None:
    detector = FreezeDetector()
    drive(detector, [*steady(30, 2), 59 / 30 + 8.0])
    assert detector.snapshot(now=10.0).freeze_threshold == pytest.approx(0.1833, abs=1e-4)


def test_no_freeze_is_detected_before_five_frames() -> None:
    detector = FreezeDetector()
    assert detector.snapshot(now=0.0).freeze_threshold is None
    events = drive(detector, [0.0, 0.033, 0.066, 0.1, 1.5, 1.533])
    assert events == []
    detector = FreezeDetector()
    events = drive(detector, [0.0, 0.033, 0.066, 0.1, 0.133, 1.5])
    assert [type(e) for e in events] == [FreezeStarted, FreezeEnded]


def test_a_lasting_drop_from_30_to_5_fps_stops_counting_as_freezes() -> None:
    detector = FreezeDetector()
    arrivals = steady(30, 5) + steady(5, 60, start=5.0)
    drive(detector, arrivals)
    snapshot = detector.snapshot(now=arrivals[-1])
    assert 1 <= snapshot.freeze_count <= 6
    assert snapshot.fps == pytest.approx(5, abs=0.5)
    assert not snapshot.frozen


def test_time_going_backwards_is_counted_and_ignored() -> None:
    detector = FreezeDetector()
    drive(detector, steady(30, 2))
    last = 59 / 30
    detector.on_frame(now=last - 0.5)
    detector.on_timer(now=last - 1.0)
    snapshot = detector.snapshot(now=last)
    assert snapshot.non_monotonic_count == 1
    assert snapshot.frame_count == 60
    assert detector.drain_events() == []
    assert snapshot.since_last_frame == 0.0


def test_a_repeated_frame_id_is_a_duplicate_and_does_not_hide_a_freeze() -> None:
    detector = FreezeDetector()
    for i, t in enumerate(steady(30, 2)):
        detector.on_frame(now=t, frame_id=i * 3000)
    last = 59 / 30
    detector.on_frame(now=last + 0.1, frame_id=59 * 3000)  # the same frame again
    detector.on_frame(now=last + 0.5, frame_id=60 * 3000)
    snapshot = detector.snapshot(now=last + 0.5)
    assert snapshot.duplicate_frame_count == 1
    assert snapshot.freeze_count == 1
    assert snapshot.total_freezes_duration == pytest.approx(0.5)


def test_frames_at_the_same_instant_are_a_burst_not_an_error() -> None:
    detector = FreezeDetector()
    drive(detector, [0.0, 0.0, 0.066, 0.066, 0.133, 0.133, 0.2])
    snapshot = detector.snapshot(now=0.2)
    assert snapshot.frame_count == 7
    assert snapshot.duplicate_frame_count == snapshot.non_monotonic_count == 0


def test_fps_counts_frames_of_the_last_two_seconds() -> None:
    detector = FreezeDetector()
    drive(detector, steady(15, 10))
    assert detector.snapshot(now=149 / 15).fps == pytest.approx(15, abs=0.5)
    assert detector.snapshot(now=149 / 15 + 1.0).fps == pytest.approx(7.5, abs=0.5)
    assert detector.snapshot(now=149 / 15 + 3.0).fps == 0.0
    young = FreezeDetector()
    assert young.snapshot(now=0.0).fps is None
    drive(young, steady(10, 1))
    assert young.snapshot(now=0.9).fps == pytest.approx(10)


def test_recent_freezes_are_those_that_began_in_the_last_two_minutes() -> None:
    arrivals: list[float] = []
    t = 0.0
    for gap_at in (10.0, 60.0, 110.0):  # three 1-s freezes
        while t < gap_at:
            arrivals.append(t)
            t += 1 / 30
        t += 1.0
    detector = FreezeDetector()
    drive(detector, arrivals + steady(30, 14, start=t))  # up to 125 s
    assert detector.snapshot(now=125.0).freeze_count == 3
    assert detector.snapshot(now=125.0).freezes_recent_count == 3
    drive(detector, steady(30, 10, start=125.0))  # up to 135 s
    assert detector.snapshot(now=135.0).freezes_recent_count == 2
    assert detector.snapshot(now=235.0).freezes_recent_count == 0
    assert detector.snapshot(now=235.0).freeze_count == 3


def test_config_out_of_range_is_refused() -> None:
    with pytest.raises(ConfigError):
        FreezeConfig(min_frames=1)
    with pytest.raises(ConfigError):
        FreezeConfig(pause_after=0)


# -- invariants -------------------------------------------------------------------------

_step = st.one_of(
    st.tuples(st.just("frame"), st.floats(0.0, 0.1)),
    st.tuples(st.just("frame"), st.floats(0.1, 7.0)),
    st.tuples(st.just("timer"), st.floats(0.0, 6.0)),
    st.tuples(st.just("back"), st.floats(0.001, 1.0)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_step, min_size=1, max_size=120))
def test_counts_never_decrease_and_totals_equal_the_reported_durations(
    steps: list[tuple[str, float]],
) -> None:
    detector = FreezeDetector()
    now = 0.0
    events: list[FreezeEvent] = []
    previous_count = previous_pauses = 0
    for kind, value in steps:
        if kind == "back":
            detector.on_frame(now=now - value)
        else:
            now += value
            if kind == "frame":
                detector.on_frame(now=now)
            else:
                detector.on_timer(now=now)
        events += detector.drain_events()
        snapshot = detector.snapshot(now=now)
        assert snapshot.freeze_count >= previous_count
        assert snapshot.pause_count >= previous_pauses
        previous_count, previous_pauses = snapshot.freeze_count, snapshot.pause_count

    snapshot = detector.snapshot(now=now)
    freezes = [e for e in events if isinstance(e, FreezeEnded)]
    pauses = [e for e in events if isinstance(e, PauseEnded)]
    assert snapshot.freeze_count == len(freezes)
    assert snapshot.pause_count == len(pauses)
    assert snapshot.total_freezes_duration == pytest.approx(sum(e.duration for e in freezes))
    assert snapshot.total_pauses_duration == pytest.approx(sum(e.duration for e in pauses))
    # Every ending has its start, in order, and durations are whole frame intervals.
    open_start: float | None = None
    for event in events:
        if isinstance(event, FreezeStarted | PauseStarted):
            assert open_start is None or open_start == event.start
            open_start = event.start
        else:
            assert open_start == event.start
            assert event.duration == pytest.approx(event.end - event.start)
            open_start = None
