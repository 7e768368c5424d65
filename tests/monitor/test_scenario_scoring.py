"""monitor/scenario/scoring.py: precision, recall, talk-share error, spurious overlap."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.scenario import (
    GroundTruth,
    Interruption,
    Segment,
    match_events,
    overlaps_of,
    spurious_overlap_per_min,
    talk_share_error,
)
from probes.base import Role

T, C = Role.THERAPIST, Role.CLIENT


@dataclass(frozen=True)
class Found:
    t: float
    by: Role


def interruption(t: float, by: Role, *, successful: bool = True) -> Interruption:
    return Interruption(t=t, by=by, of=by.other, overlap_s=0.5, successful=successful)


def truth_with(
    therapist: tuple[Segment, ...] = (), client: tuple[Segment, ...] = (), duration: float = 120.0
) -> GroundTruth:
    return GroundTruth(
        duration=duration,
        therapist_segments=therapist,
        client_segments=client,
        interruptions=(),
        backchannels=(),
        turns=(),
        gaps=(),
        pauses=(),
    )


TRUTH = [interruption(10.0, T), interruption(30.0, C), interruption(50.0, T, successful=False)]


def test_perfect_detections_score_one() -> None:
    result = match_events([Found(10.1, T), Found(29.8, C), Found(50.0, T)], TRUTH, tolerance=0.5)
    assert (result.precision, result.recall) == (1.0, 1.0)


def test_a_detection_blaming_the_wrong_person_is_both_false_and_a_miss() -> None:
    result = match_events([Found(10.0, C), Found(30.0, C), Found(50.0, T)], TRUTH)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(2 / 3)
    assert result.wrong_field_pairs == ((0, 0),)
    assert result.missed == (0,)
    assert result.false == (0,)


def test_detections_outside_the_tolerance_do_not_match() -> None:
    result = match_events([Found(10.6, T)], TRUTH, tolerance=0.5)
    assert result.correct_count == 0
    assert result.recall == 0.0


def test_matching_is_one_to_one() -> None:
    result = match_events([Found(9.9, T), Found(10.1, T)], TRUTH[:1])
    assert result.correct_count == 1
    assert result.precision == 0.5


def test_the_closest_agreeing_detection_wins() -> None:
    result = match_events([Found(10.3, T), Found(10.05, T)], TRUTH[:1])
    assert result.pairs == ((1, 0),)


def test_json_dicts_compare_like_dataclasses() -> None:
    detected = [
        {"t": 10.0, "by": "therapist", "successful": True},
        {"t": 50.1, "by": "therapist", "successful": True},
    ]
    by_only = match_events(detected, TRUTH)
    assert by_only.correct_count == 2
    with_kind = match_events(detected, TRUTH, fields=("by", "successful"))
    assert with_kind.correct_count == 1


def test_nothing_to_find_and_nothing_found_is_perfect() -> None:
    result = match_events([], [])
    assert (result.precision, result.recall) == (1.0, 1.0)


@given(st.lists(st.floats(0, 1000), max_size=15, unique=True), st.floats(-0.2, 0.2))
def test_shifted_copies_of_well_separated_events_match_fully(
    times: list[float], shift: float
) -> None:
    times = sorted(times)
    spaced = [t * 10 for t in times]  # >= 10 s apart except duplicates removed above
    truth = [interruption(t, T) for t in spaced]
    detected = [Found(t + shift, T) for t in spaced]
    result = match_events(detected, truth, tolerance=0.25)
    assert 0.0 <= result.precision <= 1.0
    assert 0.0 <= result.recall <= 1.0
    if all(b - a > 0.6 for a, b in itertools.pairwise(spaced)):
        assert (result.precision, result.recall) == (1.0, 1.0)


def test_talk_share_error_is_the_worst_role_in_share_units() -> None:
    truth = truth_with((Segment(0, 30),), (Segment(40, 110),))  # 30 % / 70 %
    assert talk_share_error({T: 0.32, C: 0.68}, truth) == pytest.approx(0.02)
    assert talk_share_error({"therapist": 0.25, "client": 0.75}, truth) == pytest.approx(0.05)
    assert talk_share_error({T: None, C: None}, truth) == math.inf


def test_spurious_overlap_counts_only_detected_overlap_outside_the_true_one() -> None:
    truth = truth_with(
        (Segment(0, 10), Segment(60, 70)), (Segment(9, 20), Segment(65, 80)), duration=120.0
    )
    assert truth.overlaps == (Segment(9, 10), Segment(65, 70))
    assert spurious_overlap_per_min(truth.overlaps, truth) == 0.0
    detected = [(8.5, 10.0), (30.0, 32.0), (65.0, 70.0)]  # 0.5 s early + 2 s invented
    assert spurious_overlap_per_min(detected, truth) == pytest.approx(2.5 / 2)
    assert spurious_overlap_per_min(detected, truth, tolerance=0.5) == pytest.approx(2.0 / 2)


def test_overlaps_of_two_detected_streams() -> None:
    assert overlaps_of([(0, 5), (8, 9)], [(4, 8.5)]) == (Segment(4, 5), Segment(8, 8.5))
