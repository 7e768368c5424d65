"""monitor/scenario/truth.py: the speech-extent definition and interval arithmetic."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.scenario.truth import (
    active_frames,
    active_level_db,
    intersect,
    speech_segments,
    subtract,
    total,
    union,
)
from probes.speech_pipeline import Segment

RATE = 16000


def burst(seconds: float, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 300 * t)).astype(np.float32)


def quiet(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.float32)


def test_silences_shorter_than_200_ms_are_filled_and_longer_ones_kept() -> None:
    levels = np.full(100, -20.0)
    levels[10:29] = -100.0  # 190 ms
    levels[50:70] = -100.0  # 200 ms
    active = active_frames(levels, -40.0)
    assert active[10:29].all()
    assert not active[50:70].any()


def test_leading_and_trailing_silence_is_never_filled() -> None:
    levels = np.full(30, -100.0)
    levels[5:10] = -20.0
    active = active_frames(levels, -40.0)
    assert not active[:5].any()
    assert not active[10:].any()


def test_speech_segments_follow_the_bursts_to_the_frame() -> None:
    samples = np.concatenate(
        [quiet(0.5), burst(1.0), quiet(0.15), burst(0.5), quiet(0.6), burst(0.3)]
    )
    segments = speech_segments(samples, -40.0)
    assert segments == [Segment(0.5, 2.15), Segment(2.75, 3.05)]


def test_the_active_level_of_a_steady_tone_with_silence_is_its_rms() -> None:
    samples = np.concatenate([quiet(1.0), burst(2.0, amplitude=0.1), quiet(1.0)])
    expected = 20 * np.log10(0.1 / np.sqrt(2))
    assert active_level_db(samples) == pytest.approx(expected, abs=0.05)


def test_the_active_level_ignores_silence_however_long() -> None:
    short = np.concatenate([burst(1.0), quiet(0.5)])
    long = np.concatenate([burst(1.0), quiet(30.0)])
    assert active_level_db(short) == pytest.approx(active_level_db(long), abs=0.01)


segment_lists = st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 50)), max_size=20).map(
    lambda pairs: union((s / 10, (s + d) / 10) for s, d in pairs)
)


@given(segment_lists, segment_lists)
def test_intersection_and_difference_partition_a_segment_list(
    a: tuple[Segment, ...], b: tuple[Segment, ...]
) -> None:
    common = intersect(a, b)
    rest = subtract(a, b)
    assert total(common) + total(rest) == pytest.approx(total(a))
    assert total(common) <= min(total(a), total(b)) + 1e-9
    assert total(intersect(rest, b)) == pytest.approx(0.0, abs=1e-9)
    assert intersect(a, b) == intersect(b, a)


@given(segment_lists)
def test_union_is_sorted_disjoint_and_idempotent(a: tuple[Segment, ...]) -> None:
    merged = union(a + a)
    assert merged == union(a)
    assert all(x.end < y.start for x, y in itertools.pairwise(merged))
