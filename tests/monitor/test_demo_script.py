"""The demo's script: each scripted fault is what the detectors will see, at any duration.

The rendered tracks are run through the offline analysis (monitor/analyze.py: the same
speech and conversation chain as a live session) to check that the script's
interruptions are successful interruptions *as the detector sees them*, that the
freeze falls inside a disclosure window the detector opens, and that the calm scenario
gives it nothing to flag.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.analyze import Analysis, analyze_pcm
from monitor.demo.script import (
    DEFAULT_DURATION,
    DIP_LENGTH,
    FREEZE_LENGTH,
    MAX_DURATION,
    MIN_DURATION,
    DemoScript,
    IncidentKind,
    Scenario,
    ScriptError,
    build_script,
    prepared,
    render,
)
from probes.base import FeltsafeError, Role

SAMPLE_RATE = 16000


def _analysis(script: DemoScript) -> Analysis:
    tracks = render(script)
    return analyze_pcm(tracks[Role.THERAPIST], tracks[Role.CLIENT])


def _only(script: DemoScript, kind: IncidentKind) -> tuple[float, float]:
    [incident] = script.incidents_of(kind)
    return incident.start, incident.end


@pytest.fixture(scope="module")
def default_script() -> DemoScript:
    return build_script(Scenario.DEFAULT, DEFAULT_DURATION)


@pytest.fixture(scope="module")
def default_analysis(default_script: DemoScript) -> Analysis:
    return _analysis(default_script)


def test_the_default_session_scripts_all_three_faults_in_story_order(
    default_script: DemoScript,
) -> None:
    kinds = [i.kind for i in default_script.incidents]
    assert kinds == [
        IncidentKind.INTERRUPTIONS,
        IncidentKind.NETWORK_DIP,
        IncidentKind.VIDEO_FREEZE,
    ]
    assert default_script.left_out == ()
    dip = _only(default_script, IncidentKind.NETWORK_DIP)
    assert dip[1] - dip[0] == pytest.approx(DIP_LENGTH)
    freeze = _only(default_script, IncidentKind.VIDEO_FREEZE)
    assert freeze[1] - freeze[0] == pytest.approx(FREEZE_LENGTH)
    [frozen] = default_script.incidents_of(IncidentKind.VIDEO_FREEZE)
    assert frozen.role is Role.THERAPIST
    assert frozen.rules == ("therapist_video_frozen_while_client_speaks",)
    [dipped] = default_script.incidents_of(IncidentKind.NETWORK_DIP)
    assert dipped.role is Role.CLIENT


def test_the_therapist_interrupts_the_client_successfully_at_least_three_times(
    default_script: DemoScript, default_analysis: Analysis
) -> None:
    start, end = _only(default_script, IncidentKind.INTERRUPTIONS)
    found = [
        i
        for i in default_analysis.conversation.interruptions
        if i.by is Role.THERAPIST and i.of is Role.CLIENT and i.successful
    ]
    inside = [i for i in found if start <= i.t <= end]
    assert len(inside) >= 3, found
    assert inside[-1].t - inside[0].t < 120  # "within a couple of minutes"
    # Nobody else interrupts anybody anywhere: the streak is the only one.
    assert len(found) == len(default_analysis.conversation.interruptions) == len(inside)


def test_the_freeze_falls_inside_a_disclosure_window_the_detector_opens(
    default_script: DemoScript, default_analysis: Analysis
) -> None:
    freeze = _only(default_script, IncidentKind.VIDEO_FREEZE)
    windows = default_analysis.conversation.disclosure_windows
    assert any(a < freeze[0] and freeze[1] <= b for a, b in windows), (freeze, windows)
    # The client's monologue lasts more than 20 s (the disclosure window's opening).
    assert default_analysis.conversation.longest_monologue.client > 20


def test_the_network_dip_hits_the_client_talking_without_a_disclosure_window(
    default_script: DemoScript, default_analysis: Analysis
) -> None:
    start, end = _only(default_script, IncidentKind.NETWORK_DIP)
    client = default_analysis.segments(Role.CLIENT)
    talking = sum(max(0.0, min(s.end, end) - max(s.start, start)) for s in client)
    assert talking > 0.6 * (end - start)
    windows = default_analysis.conversation.disclosure_windows
    assert not any(a < end and start < b for a, b in windows)


def test_the_calm_session_has_no_fault_and_nothing_for_the_detector_to_flag() -> None:
    script = build_script(Scenario.CALM, DEFAULT_DURATION)
    assert script.incidents == ()
    analysis = _analysis(script)
    assert analysis.conversation.interruptions == ()
    assert analysis.conversation.longest_monologue.client > 20  # sharing, unfrozen


def test_a_30_second_session_keeps_the_freeze_during_disclosure_and_says_what_it_left_out() -> None:
    script = build_script(Scenario.DEFAULT, MIN_DURATION)
    assert [i.kind for i in script.incidents] == [IncidentKind.VIDEO_FREEZE]
    assert script.left_out == ("interruptions", "network dip")
    freeze = _only(script, IncidentKind.VIDEO_FREEZE)
    assert freeze[1] <= MIN_DURATION - 1.0
    windows = _analysis(script).conversation.disclosure_windows
    assert any(a < freeze[0] and freeze[1] <= b for a, b in windows), (freeze, windows)


@pytest.mark.parametrize(
    ("duration", "left_out"),
    [(45.0, ("interruptions", "network dip")), (80.0, ("network dip",)), (100.0, ())],
)
def test_shorter_sessions_leave_out_the_least_important_faults_first(
    duration: float, left_out: tuple[str, ...]
) -> None:
    script = build_script(Scenario.DEFAULT, duration)
    assert script.left_out == left_out
    assert script.incidents_of(IncidentKind.VIDEO_FREEZE)


@settings(max_examples=25, deadline=None)
@given(
    scenario=st.sampled_from(list(Scenario)),
    duration=st.floats(min_value=MIN_DURATION, max_value=MAX_DURATION),
)
def test_every_script_fits_its_duration_and_nobody_talks_over_themselves(
    scenario: Scenario, duration: float
) -> None:
    script = build_script(scenario, duration)
    assert script.duration == duration
    for role in Role:
        spans = sorted(
            (
                line.onset,
                line.onset + (line.cut or prepared(script.voice_of(role), line.clip.file).speech),
            )
            for line in script.lines
            if line.role is role
        )
        assert spans[0][0] >= 2.0  # the room comes first: the detector's warm-up
        assert spans[-1][1] <= duration - 1.0 + 1e-6
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end - 1e-6
    for incident in script.incidents:
        assert 2.0 <= incident.start < incident.end <= duration
    for act, following in itertools.pairwise(script.acts):
        assert act.end <= following.start + 1e-6


def test_the_same_scenario_and_duration_give_the_same_script_and_samples() -> None:
    first, second = build_script("default", 60.0), build_script("default", 60.0)
    assert first == second
    tracks = render(first)
    again = render(second)
    assert all((tracks[role] == again[role]).all() for role in Role)
    assert all(len(tracks[role]) == 60 * SAMPLE_RATE for role in Role)


@pytest.mark.parametrize("duration", [MIN_DURATION - 1, MAX_DURATION + 1, float("nan")])
def test_a_duration_out_of_range_is_refused(duration: float) -> None:
    with pytest.raises(ScriptError, match="duration"):
        build_script(Scenario.DEFAULT, duration)


def test_an_unknown_scenario_is_refused_with_the_known_ones() -> None:
    with pytest.raises(FeltsafeError, match="default, calm"):
        build_script("stormy", DEFAULT_DURATION)
