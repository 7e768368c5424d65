"""Issue 3's accuracy targets, for every voice pairing (tests/accuracy/per_voice.py).

Each voice is the therapist in one scenario and the client in another; each scenario is
5 minutes with a -20 dB echo and 15 dB SNR (and a -10 dB echo for the echo report). A
failure names the pairing and the events that were missed or wrongly found.
"""

from __future__ import annotations

from collections import Counter

import pytest

from monitor.voices import voice_ids
from tests.accuracy.per_voice import (
    ECHO_PROBLEM_BELOW_DB,
    MAX_SHARE_ERROR,
    MAX_SPURIOUS_OVERLAP_PER_MIN,
    MIN_BACKCHANNEL_RECALL,
    MIN_INTERRUPTION_PRECISION,
    MIN_INTERRUPTION_RECALL,
    SCENARIO_SECONDS,
    WEAK_ECHO_LEAK_DB,
    Pairing,
    pairings,
    scored,
)

pytestmark = pytest.mark.slow

PAIRINGS = pairings()
by_pairing = pytest.mark.parametrize("pairing", PAIRINGS, ids=[p.name for p in PAIRINGS])


def test_every_voice_is_therapist_once_and_client_once() -> None:
    assert Counter(p.therapist for p in PAIRINGS) == Counter(voice_ids())
    assert Counter(p.client for p in PAIRINGS) == Counter(voice_ids())
    assert all(p.therapist != p.client for p in PAIRINGS)


@by_pairing
def test_scenarios_last_at_least_five_minutes(pairing: Pairing) -> None:
    assert scored(pairing).duration >= SCENARIO_SECONDS


@by_pairing
def test_talk_share_is_within_two_points_of_the_truth(pairing: Pairing) -> None:
    assert scored(pairing).share_error <= MAX_SHARE_ERROR


@by_pairing
def test_interruptions_are_found_and_blamed_on_the_right_person(pairing: Pairing) -> None:
    found = scored(pairing).interruptions
    assert found.truth_count >= 5  # the scenario exercises the measure
    detail = f"missed truth #{found.missed}, false detections #{found.false}"
    assert found.precision >= MIN_INTERRUPTION_PRECISION, detail
    assert found.recall >= MIN_INTERRUPTION_RECALL, detail


@by_pairing
def test_backchannels_are_found(pairing: Pairing) -> None:
    found = scored(pairing).backchannels
    assert found.truth_count >= 5
    assert found.recall >= MIN_BACKCHANNEL_RECALL, f"missed truth #{found.missed}"


@by_pairing
def test_no_backchannel_is_counted_as_an_interruption(pairing: Pairing) -> None:
    assert scored(pairing).backchannels_called_interruptions == 0


@by_pairing
def test_spurious_overlap_stays_under_half_a_second_per_minute(pairing: Pairing) -> None:
    assert scored(pairing).spurious_overlap_per_min < MAX_SPURIOUS_OVERLAP_PER_MIN


@by_pairing
def test_an_echo_at_minus_10_db_is_reported_as_a_problem(pairing: Pairing) -> None:
    weak = scored(pairing, WEAK_ECHO_LEAK_DB)
    for role, leak in weak.echo_leak_db.items():
        assert leak is not None, f"no echo leak measured in the {role}'s track"
        assert leak < ECHO_PROBLEM_BELOW_DB
        assert weak.echo_problem[role]


@by_pairing
def test_an_echo_at_minus_20_db_is_not_called_a_problem(pairing: Pairing) -> None:
    # The leak meets the 20 dB bar; with the noise above the echo it may be unmeasurable,
    # but it must never read as a weak one.
    assert not any(scored(pairing).echo_problem.values())
