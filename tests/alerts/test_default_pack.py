"""Each rule of the default pack, in compact series notation, as promtool tests rules.

Every case runs the whole default pack over a calm session in which one signal goes
bad: healthy for 10 s (40 ticks of 250 ms), bad from t = 10.0, healthy again from
``t_good``. Each rule must fire at exactly ``t = 10 + raise_after`` (so not one tick
before its ``for`` or its 3-of-5 window), clear at exactly ``t_good + clear_after``,
never fire while the signal sits on its boundary value, and go to NO_DATA (ending its
flag) when the signal goes missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from alerts.engine import Engine, RuleState
from alerts.model import Severity
from probes.signals import SignalValue
from tests.alerts.scenario import HEALTHY, Recording, default_pack, run
from tests.alerts.series import ticks

TICK = 0.25
GOOD_TICKS = 40  # t = 0.0 .. 9.75
T_BAD = GOOD_TICKS * TICK

FLOOR: dict[str, SignalValue] = {
    "conversation.client.holds_floor": True,
    "conversation.client.floor_s": 8.0,
}


@dataclass(frozen=True)
class Case:
    rule: str
    trigger: str
    good: str
    bad: str
    boundary: str | None  # None: a boolean, no boundary value to test
    raise_after: float
    clear_after: float
    severity: Severity
    context: dict[str, SignalValue] = field(default_factory=dict)
    bad_ticks: int = 80
    extra: dict[str, str] = field(default_factory=dict)  # name -> series over the run

    @property
    def t_good(self) -> float:
        return T_BAD + self.bad_ticks * TICK


def _rising_overlap(bad_ticks: int) -> dict[str, str]:
    # Overlap climbs while the lag is high: "0.02x39 0.02+0.001x79 0.1x79".
    top = round(0.02 + 0.001 * (bad_ticks - 1), 6)
    return {
        "conversation.overlap_ratio_1m": (
            f"0.02x{GOOD_TICKS - 1} 0.02+0.001x{bad_ticks - 1} {top}x79"
        )
    }


def _both(rule: str, metric: str, **kwargs: object) -> list[Case]:
    return [
        Case(rule.format(role=role), f"{role}.{metric}", **kwargs)  # type: ignore[arg-type]
        for role in ("client", "therapist")
    ]


CASES: list[Case] = [
    *_both(
        "{role}_media_interrupted",
        "media.interrupted",
        good="0",
        bad="1",
        boundary=None,
        raise_after=0.0,
        clear_after=2.0,
        severity=Severity.ALERT,
    ),
    Case(
        "client_video_frozen_while_sharing",
        "client.video.frozen",
        good="0",
        bad="1",
        boundary=None,
        raise_after=0.0,
        clear_after=2.0,
        severity=Severity.WARN,
        context=FLOOR,
    ),
    Case(
        "therapist_video_frozen_while_client_speaks",
        "therapist.video.frozen",
        good="0",
        bad="1",
        boundary=None,
        raise_after=0.0,
        clear_after=2.0,
        severity=Severity.WARN,
        context=FLOOR,
    ),
    *_both(
        "{role}_video_frozen",
        "video.frozen",
        good="0",
        bad="1",
        boundary=None,
        raise_after=0.0,
        clear_after=2.0,
        severity=Severity.WARN,
    ),
    *_both(
        "{role}_video_freezes_repeated",
        "video.freezes_2m_count",
        good="0",
        bad="3",
        boundary="2",
        raise_after=0.0,
        clear_after=0.0,
        severity=Severity.WARN,
    ),
    Case(
        "client_audio_dropping_while_speaking",
        "client.audio.loss_ratio",
        good="0",
        bad="0.1",
        boundary="0.075",
        raise_after=1.0,
        clear_after=3.0,
        severity=Severity.WARN,
        context={"client.speech.active": True},
    ),
    *_both(
        "{role}_sound_poor",
        "network.mos",
        good="4.3",
        bad="3.3",
        boundary="3.6",
        raise_after=2.0,  # samples at 10, 11, 12: 3 of the last 5
        clear_after=5.0,
        severity=Severity.WARN,
    ),
    *_both(
        "{role}_audio_loss",
        "audio.loss_ratio",
        good="0",
        bad="0.05",
        boundary="0.025",
        raise_after=2.0,
        clear_after=5.0,
        severity=Severity.WARN,
    ),
    *_both(
        "{role}_audio_jitter",
        "audio.jitter_ms",
        good="5",
        bad="40",
        boundary="30",
        raise_after=2.0,
        clear_after=5.0,
        severity=Severity.WARN,
    ),
    *_both(
        "{role}_rtt_high",
        "network.rtt_ms",
        good="80",
        bad="400",
        boundary="300",
        raise_after=2.0,
        clear_after=5.0,
        severity=Severity.WARN,
    ),
    *_both(
        "{role}_audio_concealment",
        "audio.concealment_ratio",
        good="0",
        bad="0.05",
        boundary="0.03",
        raise_after=2.0,
        clear_after=5.0,
        severity=Severity.WARN,
    ),
    Case(
        "lag_talking_over_each_other",
        "client.network.rtt_ms",
        good="80",
        bad="450",
        boundary="400",
        raise_after=2.0,
        # 3 of 5 stops at t_good + 2 (samples 28, 29 left), then keep_firing_for 10 s
        clear_after=12.0,
        severity=Severity.WARN,
        extra=_rising_overlap(80),
    ),
    Case(
        "therapist_interrupting_client",
        "conversation.interruptions_by_therapist_5m",
        good="0",
        bad="3",
        boundary="2",
        raise_after=0.0,
        clear_after=0.0,
        severity=Severity.WARN,
    ),
    Case(
        "therapist_talk_share_high",
        "conversation.therapist.talk_share_10m",
        good="0.5",
        bad="0.65",
        boundary="0.6",
        raise_after=30.0,
        clear_after=0.0,
        severity=Severity.INFO,
        bad_ticks=200,
    ),
    *_both(
        "{role}_echo",
        "audio.echo_leak_db",
        good="40",
        bad="15",
        boundary="20",
        raise_after=10.0,
        clear_after=10.0,
        severity=Severity.WARN,
    ),
]


def _run(case: Case, trigger: str, *, profile: str = "individual") -> Recording:
    series = {case.trigger: trigger, **case.extra}
    base = {**HEALTHY, **case.context}
    return run(Engine(default_pack(), profile=profile), ticks(series, base=base))


def _episode(case: Case, middle: str) -> str:
    return f"{case.good}x{GOOD_TICKS - 1} {middle} {case.good}x159"


def test_every_rule_of_the_default_pack_has_a_case() -> None:
    assert sorted(c.rule for c in CASES) == sorted(r.id for r in default_pack().rules)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_fires_on_time_and_clears_after_keep_firing_for(case: Case) -> None:
    recording = _run(case, _episode(case, f"{case.bad}x{case.bad_ticks - 1}"))
    raised_at = T_BAD + case.raise_after
    ((t, flag),) = recording.raised(case.rule)
    assert t == raised_at
    assert flag.severity is case.severity
    if raised_at > T_BAD:
        assert recording.state_at(case.rule, raised_at - TICK) is not RuleState.FIRING
    ((t, cleared),) = recording.cleared(case.rule)
    assert t == case.t_good + case.clear_after
    assert cleared.end == t
    assert recording.state_at(case.rule, t - TICK) in (RuleState.FIRING, RuleState.RECOVERING)
    assert case.trigger in cleared.evidence


@pytest.mark.parametrize("case", [c for c in CASES if c.boundary is not None], ids=lambda c: c.rule)
def test_does_not_fire_at_the_boundary_value(case: Case) -> None:
    assert case.boundary is not None
    recording = _run(case, _episode(case, f"{case.boundary}x{case.bad_ticks - 1}"))
    assert recording.raised(case.rule) == []


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_goes_to_no_data_when_its_signal_goes_missing(case: Case) -> None:
    bad = int((case.raise_after + 2.0) / TICK)
    missing = case.bad_ticks - bad
    recording = _run(case, _episode(case, f"{case.bad}x{bad - 1} _x{missing}"))
    t_missing = T_BAD + bad * TICK
    assert [t for t, _ in recording.raised(case.rule)] == [T_BAD + case.raise_after]
    # At once for a plain condition; by the next whole second for a windowed one.
    states = [t for t, s in recording.states if s[case.rule] is RuleState.NO_DATA]
    assert states[0] <= t_missing + 1.0
    assert states == [t for t, _ in recording.states if states[0] <= t < case.t_good]
    ((t, flag),) = recording.cleared(case.rule)
    assert t == states[0]
    assert flag.evidence[case.trigger] is not None  # the peak, not the gap


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.rule)
def test_is_no_data_not_inactive_when_its_signal_was_never_there(case: Case) -> None:
    recording = _run(case, "_x20")
    assert recording.states[-1][1][case.rule] is RuleState.NO_DATA
    assert recording.raised(case.rule) == []


# --- escalation, context and profiles ----------------------------------------------------


def test_a_freeze_while_the_client_discloses_is_one_alert_flag_with_its_context() -> None:
    # The client has spoken for 40 s (disclosure opens at 20 s); the therapist's video
    # freezes for 2 s in the middle.
    snapshots = ticks(
        {
            "therapist.video.frozen": "0x79 1x7 0x79",
            "therapist.video.freeze_s": "0x79 0+0.25x7 0x79",
            "session.disclosure": "0x39 1x127",
        },
        base={
            **HEALTHY,
            "client.speech.active": True,
            "conversation.client.holds_floor": True,
            "conversation.client.floor_s": 25.0,
        },
    )
    recording = run(Engine(default_pack(), profile="individual"), snapshots)
    assert recording.raised_rules() == {"therapist_video_frozen_while_client_speaks"}
    ((t, flag),) = recording.raised("therapist_video_frozen_while_client_speaks")
    assert t == 20.0
    assert flag.severity is Severity.ALERT
    assert (
        flag.message == "Your client may not see you: your picture froze while they were speaking"
    )
    assert flag.context["speaking"] == "client"
    assert flag.context["session.disclosure"] is True
    ((_, cleared),) = recording.cleared("therapist_video_frozen_while_client_speaks")
    assert (cleared.start, cleared.end) == (20.0, 24.0)  # unfrozen at 22.0, + 2 s
    assert cleared.evidence["therapist.video.freeze_s"] == 1.75


def test_the_same_freeze_while_the_therapist_talks_is_only_the_plain_freeze_flag() -> None:
    snapshots = ticks(
        {
            "therapist.video.frozen": "0x79 1x7 0x79",
            "therapist.video.freeze_s": "0x79 0+0.25x7 0x79",
        },
        base={
            **HEALTHY,
            "therapist.speech.active": True,
            "conversation.therapist.holds_floor": True,
        },
    )
    recording = run(Engine(default_pack(), profile="individual"), snapshots)
    assert recording.raised_rules() == {"therapist_video_frozen"}
    ((_, flag),) = recording.raised("therapist_video_frozen")
    assert flag.severity is Severity.WARN
    assert flag.context["speaking"] == "therapist"
    # Issue 5: only the lower-severity flag; a plain freeze escalates at 5 s (a pause).
    assert recording.updated("therapist_video_frozen") == []
    assert recording.cleared("therapist_video_frozen")[0][1].severity is Severity.WARN


def test_a_plain_freeze_that_reaches_five_seconds_becomes_an_alert() -> None:
    snapshots = ticks(
        {
            "client.video.frozen": "0x3 1x24 0x20",
            "client.video.freeze_s": "0x3 0+0.25x23 0x20",
        },
        base=HEALTHY,
    )
    recording = run(Engine(default_pack()), snapshots)
    ((t, updated),) = recording.updated("client_video_frozen")
    assert updated.severity is Severity.ALERT
    assert t == pytest.approx(4 * 0.25 + 5.0)  # "0x3" is four samples: the freeze starts at 1 s


def test_a_plain_freeze_just_under_five_seconds_stays_a_warning() -> None:
    snapshots = ticks(
        {
            "client.video.frozen": "0x3 1x3 0x20",
            "client.video.freeze_s": "0x3 0 2.5 4.99 4.99 0x20",
        },
        base=HEALTHY,
    )
    recording = run(Engine(default_pack()), snapshots)
    assert recording.updated("client_video_frozen") == []
    assert recording.cleared("client_video_frozen")[0][1].severity is Severity.WARN


@pytest.mark.parametrize("context", ["session.disclosure", "session.marker"])
def test_a_freeze_in_a_marked_or_disclosure_moment_is_an_alert_even_off_the_floor(
    context: str,
) -> None:
    snapshots = ticks({"client.video.frozen": "0 1 1"}, base={**HEALTHY, context: True})
    recording = run(Engine(default_pack()), snapshots)
    assert recording.raised_rules() == {"client_video_frozen_while_sharing"}
    assert recording.raised("client_video_frozen_while_sharing")[0][1].severity is Severity.ALERT


@pytest.mark.parametrize(
    ("rule", "signal", "value", "severity"),
    [
        ("client_sound_poor", "client.network.mos", "3.0", Severity.ALERT),
        ("client_sound_poor", "client.network.mos", "3.1", Severity.WARN),
        ("client_audio_loss", "client.audio.loss_ratio", "0.08", Severity.ALERT),
        ("client_audio_loss", "client.audio.loss_ratio", "0.075", Severity.WARN),
        ("therapist_rtt_high", "therapist.network.rtt_ms", "501", Severity.ALERT),
        ("therapist_rtt_high", "therapist.network.rtt_ms", "500", Severity.WARN),
        ("client_audio_concealment", "client.audio.concealment_ratio", "0.08", Severity.ALERT),
    ],
)
def test_network_rules_escalate_past_their_alert_threshold_and_not_at_it(
    rule: str, signal: str, value: str, severity: Severity
) -> None:
    recording = run(Engine(default_pack()), ticks({signal: f"{value}x20"}, base=HEALTHY))
    ((t, flag),) = recording.raised(rule)
    assert (t, flag.severity) == (2.0, severity)


def test_audio_dropping_while_the_client_discloses_is_an_alert() -> None:
    base = {**HEALTHY, "client.speech.active": True, "session.disclosure": True}
    recording = run(Engine(default_pack()), ticks({"client.audio.loss_ratio": "0.1x8"}, base=base))
    ((t, flag),) = recording.raised("client_audio_dropping_while_speaking")
    assert (t, flag.severity) == (1.0, Severity.ALERT)


def test_a_healthy_session_raises_nothing_and_no_rule_lacks_data() -> None:
    snapshots = ticks({"session.disclosure": "0x200 1x200 0x79"}, base=HEALTHY)
    recording = run(Engine(default_pack(), profile="individual"), snapshots)
    assert recording.events == []
    assert set(recording.states[-1][1].values()) == {RuleState.INACTIVE}


def test_the_disclosure_window_and_the_marker_alone_are_never_a_flag() -> None:
    base = {**HEALTHY, "session.disclosure": True, "session.marker": True}
    recording = run(Engine(default_pack()), ticks({"client.speech.active": "1x120"}, base=base))
    assert recording.raised_rules() == set()


def test_the_talk_share_rule_is_off_for_intake_sessions() -> None:
    case = next(c for c in CASES if c.rule == "therapist_talk_share_high")
    middle = f"{case.bad}x{case.bad_ticks - 1}"
    assert _run(case, _episode(case, middle), profile="intake").raised_rules() == set()
    assert "therapist_talk_share_high" in _run(case, _episode(case, middle)).raised_rules()


def test_the_talk_share_rule_waits_for_a_full_ten_minute_window() -> None:
    base = {**HEALTHY, "session.elapsed_s": 300.0}
    snapshots = ticks({"conversation.therapist.talk_share_10m": "0.9x200"}, base=base)
    assert run(Engine(default_pack()), snapshots).raised_rules() == set()


def test_a_dropped_connection_is_one_flag_not_a_cascade_of_freezes() -> None:
    snapshots = ticks(
        {"client.media.interrupted": "0x3 1x20 0x20", "client.video.frozen": "0x3 1x20 0x20"},
        base={**HEALTHY, **FLOOR},
    )
    recording = run(Engine(default_pack()), snapshots)
    assert recording.raised_rules() == {"client_media_interrupted"}
