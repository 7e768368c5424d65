"""The accuracy checks fail on wrong analyses: each one is shown catching a broken chain.

A check that passes whatever the code does proves nothing; these run the same scoring as
test_per_voice.py on deliberately wrong pipelines and expect the targets to be missed.
"""

from __future__ import annotations

import math
from functools import cache

import pytest

from monitor.analyze import analyze_pcm
from monitor.scenario import Scenario, ScenarioConfig, compose, overlaps_of
from monitor.scenario import spurious_overlap_per_min as spurious_per_min
from probes.base import Role
from probes.speech import Smoother, SpeechConfig, VadDetector
from probes.speech_pipeline import segments_from_events
from tests.accuracy.per_voice import (
    MAX_SHARE_ERROR,
    MAX_SPURIOUS_OVERLAP_PER_MIN,
    MIN_BACKCHANNEL_RECALL,
    MIN_INTERRUPTION_PRECISION,
    MIN_INTERRUPTION_RECALL,
    Pairing,
    score,
)

pytestmark = pytest.mark.slow

PAIRING = Pairing(therapist="en-low", client="hi-en", seed=77)


@cache
def scenario(echo_leak_db: float, snr_db: float | None) -> Scenario:
    return compose(
        ScenarioConfig(
            therapist_voice=PAIRING.therapist,
            client_voice=PAIRING.client,
            duration=150.0,
            echo_leak_db=echo_leak_db,
            snr_db=snr_db,
            monologue_first=20.0,
        ),
        seed=PAIRING.seed,
    )


def test_the_right_chain_passes_on_this_scenario() -> None:
    # The baseline for the checks below: the same scenario, analysed correctly, passes.
    sc = scenario(20.0, 15.0)
    right = score(PAIRING, sc.truth, analyze_pcm(sc.therapist, sc.client))
    assert right.share_error <= MAX_SHARE_ERROR
    assert right.interruptions.precision >= MIN_INTERRUPTION_PRECISION
    assert right.interruptions.recall >= MIN_INTERRUPTION_RECALL
    assert right.backchannels.recall >= MIN_BACKCHANNEL_RECALL
    assert right.spurious_overlap_per_min < MAX_SPURIOUS_OVERLAP_PER_MIN


def test_swapped_roles_fail_the_share_and_the_blame_checks() -> None:
    sc = scenario(20.0, 15.0)
    assert abs(sc.truth.talk_share(Role.CLIENT) - 0.5) > MAX_SHARE_ERROR  # swapping shows
    swapped = score(PAIRING, sc.truth, analyze_pcm(sc.client, sc.therapist))
    assert swapped.share_error > MAX_SHARE_ERROR
    assert swapped.interruptions.precision < MIN_INTERRUPTION_PRECISION
    assert swapped.backchannels.recall < MIN_BACKCHANNEL_RECALL


def test_unsmoothed_speech_fails_the_interruption_check() -> None:
    # Without gap filling every syllable is a talkspurt: long intrusions fall apart into
    # backchannel-sized pieces and interruptions go missing.
    sc = scenario(20.0, 15.0)
    raw = analyze_pcm(sc.therapist, sc.client, speech=SpeechConfig(fill_gap=0.0, min_burst=0.0))
    assert score(PAIRING, sc.truth, raw).interruptions.recall < MIN_INTERRUPTION_RECALL


def test_speech_without_the_crosstalk_gate_fails_the_spurious_overlap_check() -> None:
    # Each track alone through its detector and smoother: the other's echo becomes talk.
    sc = scenario(20.0, None)
    segments = {}
    for role in Role:
        detector, smoother = VadDetector(), Smoother(role)
        detector.on_pcm(sc.track(role), sample_rate=sc.sample_rate, channels=1, t=0.0)
        detector.flush()
        for frame in detector.drain_frames():
            smoother.on_frame(frame.t, frame.voiced)
        smoother.advance(now=math.inf)
        segments[role] = [
            (s.start, s.end) for s in segments_from_events(smoother.drain_events(), role)
        ]
    ungated = overlaps_of(segments[Role.THERAPIST], segments[Role.CLIENT])
    assert spurious_per_min(ungated, sc.truth) > MAX_SPURIOUS_OVERLAP_PER_MIN
    gated = analyze_pcm(sc.therapist, sc.client)
    assert score(PAIRING, sc.truth, gated).spurious_overlap_per_min < (MAX_SPURIOUS_OVERLAP_PER_MIN)
