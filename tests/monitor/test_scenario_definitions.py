"""The composer's truth uses the same definitions as the conversation probe.

A perfect speech detector would hand probes/conversation.py exactly the truth segments;
the conversation figures it derives from them must then be the truth's own: every
interruption (time, who, successful or not, overlap), every backchannel, the turns, gaps,
pauses, longest monologues, talk share and overlap. If this fails, either the composer
wrote an ambiguous scene or the two modules disagree on a definition, and the accuracy
tests would measure that disagreement instead of the detector.
"""

from __future__ import annotations

import statistics

import pytest

from monitor.scenario import ScenarioConfig, compose, match_events
from monitor.voices import voice_ids
from probes.base import Role
from probes.conversation import edges_from_intervals, summarize


@pytest.mark.parametrize("client_voice", voice_ids())
def test_a_perfect_detector_reproduces_the_truth_exactly(client_voice: str) -> None:
    ids = voice_ids()
    therapist_voice = ids[(ids.index(client_voice) + 3) % len(ids)]
    scenario = compose(
        ScenarioConfig(therapist_voice=therapist_voice, client_voice=client_voice),
        seed=ids.index(client_voice),
    )
    truth = scenario.truth

    found = summarize(
        {role: edges_from_intervals(truth.segments(role)) for role in Role}, truth.duration
    )

    interruptions = match_events(
        found.interruptions, truth.interruptions, tolerance=0.005, fields=("by", "successful")
    )
    assert (interruptions.precision, interruptions.recall) == (1.0, 1.0)
    for i, j in interruptions.pairs:
        assert found.interruptions[i].overlap == pytest.approx(truth.interruptions[j].overlap_s)
    backchannels = match_events(found.backchannels, truth.backchannels, tolerance=0.005)
    assert (backchannels.precision, backchannels.recall) == (1.0, 1.0)
    assert found.turns == len(truth.turns)
    assert found.gaps.count == len(truth.gaps)
    assert found.gaps.median == pytest.approx(statistics.median(truth.gaps))
    assert found.pauses.count == len(truth.pauses)
    assert found.pauses.median == pytest.approx(statistics.median(truth.pauses))
    for role in Role:
        assert found.talk_share[role] == pytest.approx(truth.talk_share(role))
        assert found.longest_monologue[role] == pytest.approx(truth.longest_monologue(role))
    assert found.overlap == pytest.approx(truth.overlap)
