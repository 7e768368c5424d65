"""Windowed functions read 1-second samples, whatever the spacing of the ticks."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from alerts.expr import NO_DATA, Value
from alerts.window import Sampler


def sampler(capacity: int = 10) -> Sampler:
    return Sampler(lambda s, w: NO_DATA, capacity=capacity)


def feed(s: Sampler, values: list[tuple[float, Value]]) -> None:
    for now, v in values:
        s.record(v, now=now)


def test_ticks_on_whole_seconds_are_sampled_with_their_own_value() -> None:
    s = sampler()
    feed(s, [(i * 0.25, float(i)) for i in range(13)])  # 0.0 .. 3.0
    assert list(s.samples) == [(0, 0.0), (1, 4.0), (2, 8.0), (3, 12.0)]


def test_a_second_between_ticks_takes_the_value_held_from_the_tick_before() -> None:
    s = sampler()
    feed(s, [(0.1, 1.0), (0.6, 2.0), (1.1, 3.0), (1.6, 4.0), (2.1, 5.0)])
    # 1.0 falls between 0.6 and 1.1: the value in effect at 1.0 is 0.6's.
    assert list(s.samples) == [(1, 2.0), (2, 4.0)]


def test_a_deadline_tick_at_the_same_second_does_not_add_a_sample() -> None:
    s = sampler()
    feed(s, [(1.0, True), (1.0, False), (1.25, False), (2.0, False)])
    assert list(s.samples) == [(1, True), (2, False)]


def test_a_gap_between_ticks_is_filled_with_the_held_value() -> None:
    s = sampler(capacity=3)
    feed(s, [(0.0, 1.0), (0.5, 2.0), (9.5, 3.0)])
    # Only as many as the longest window (plus one) are kept.
    assert list(s.samples) == [(6, 2.0), (7, 2.0), (8, 2.0), (9, 2.0)]


def test_the_window_covers_now_minus_w_exclusive_to_now() -> None:
    s = sampler()
    feed(s, [(float(i), True) for i in range(10)])
    assert s.window("count_over", 5, now=9.0) == 5.0  # 5, 6, 7, 8, 9
    assert s.window("count_over", 5, now=9.75) == 5.0
    assert s.window("count_over", 2.5, now=9.0) == 3.0  # 7, 8, 9 (> 6.5)


def test_three_of_five_counts_true_samples() -> None:
    s = sampler()
    feed(s, [(float(i), v) for i, v in enumerate([False, True, False, True, True])])
    assert s.window("count_over", 5, now=4.0) == 3.0
    assert s.window("count_over", 2, now=4.0) == 2.0


def test_a_window_is_no_data_when_its_newest_sample_is() -> None:
    s = sampler()
    feed(s, [(0.0, True), (1.0, True), (2.0, NO_DATA)])
    assert s.window("count_over", 5, now=2.0) is NO_DATA
    feed(s, [(3.0, True)])
    # An older gap is skipped: counted over the samples that have data.
    assert s.window("count_over", 5, now=3.0) == 3.0


def test_a_window_without_samples_is_no_data() -> None:
    s = sampler()
    assert s.window("avg", 5, now=3.0) is NO_DATA
    feed(s, [(3.5, 1.0)])  # first tick off the grid: nothing sampled yet
    assert s.window("avg", 5, now=3.5) is NO_DATA


def test_rises_counts_false_to_true_steps_a_second_apart() -> None:
    s = sampler()
    pattern = [False, True, True, False, True, False, True]
    feed(s, [(float(i), v) for i, v in enumerate(pattern)])
    assert s.window("rises", 10, now=6.0) == 3.0
    # The step into the window's first sample counts (from the sample before it).
    assert s.window("rises", 1, now=6.0) == 1.0
    assert s.window("rises", 1, now=5.0) == 0.0


def test_numeric_windows() -> None:
    s = sampler()
    values: list[Value] = [1.0, 5.0, NO_DATA, 3.0]
    feed(s, [(float(i), v) for i, v in enumerate(values)])
    assert s.window("avg", 4, now=3.0) == 3.0
    assert s.window("max", 4, now=3.0) == 5.0
    assert s.window("min", 4, now=3.0) == 1.0
    assert s.window("delta", 4, now=3.0) == 2.0
    assert s.window("delta", 1, now=3.0) is NO_DATA  # one sample: no change to measure


@given(
    steps=st.lists(st.floats(min_value=0.01, max_value=2.5), min_size=1, max_size=60),
    start=st.floats(min_value=0, max_value=100),
)
def test_samples_sit_on_consecutive_whole_seconds_whatever_the_tick_spacing(
    steps: list[float], start: float
) -> None:
    s = sampler(capacity=500)
    now = start
    for step in steps:
        s.record(now, now=now)
        now += step
    indices = [g for g, _ in s.samples]
    assert indices == list(range(indices[0], indices[0] + len(indices))) if indices else True
    for g, v in s.samples:
        assert isinstance(v, float)
        assert v <= g + 1e-6  # a sample never holds a value from after its second
