"""The rule lifecycle: for, keep_firing_for, hysteresis, no-data, escalation, reload."""

from __future__ import annotations

import json
import textwrap

import pytest

from alerts.engine import (
    TRANSITIONS,
    Engine,
    EngineUsageError,
    FlagCleared,
    FlagRaised,
    Input,
    RuleState,
    replay,
)
from alerts.model import Severity
from alerts.pack import Pack, parse_pack
from tests.alerts.scenario import run
from tests.alerts.series import ticks

LOSS = "client.audio.loss_ratio"
FROZEN = "client.video.frozen"


def pack(rules: str, *, profiles: str = "[individual, intake]") -> Pack:
    text = f"pack: test\nversion: 1\nprofiles: {profiles}\nrules:\n" + textwrap.indent(
        textwrap.dedent(rules), "  "
    )
    return parse_pack(text, source="test.yaml")


def rule(
    rule_id: str = "r",
    when: str = f"{LOSS} > 0.1",
    extra: str = "",
) -> str:
    return textwrap.dedent(f"""\
        - id: {rule_id}
          version: 1
          title: {rule_id}
          when: "{when}"
          severity: warn
          audience: [ops]
          undermines: [trust]
          source: test
        """) + textwrap.indent(textwrap.dedent(extra), "  ")


# --- the table ---------------------------------------------------------------------------


def test_the_transition_table_is_total() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in RuleState for i in Input}


@pytest.mark.parametrize(
    ("state", "given", "expected"),
    [
        (RuleState.INACTIVE, Input.TRUE, RuleState.PENDING),
        (RuleState.INACTIVE, Input.HELD_TRUE, RuleState.FIRING),
        (RuleState.PENDING, Input.FALSE, RuleState.INACTIVE),
        (RuleState.PENDING, Input.HELD_TRUE, RuleState.FIRING),
        (RuleState.FIRING, Input.FALSE, RuleState.RECOVERING),
        (RuleState.FIRING, Input.HELD_FALSE, RuleState.INACTIVE),
        (RuleState.RECOVERING, Input.TRUE, RuleState.FIRING),
        (RuleState.RECOVERING, Input.HELD_FALSE, RuleState.INACTIVE),
        (RuleState.FIRING, Input.NO_DATA, RuleState.NO_DATA),
        (RuleState.NO_DATA, Input.TRUE, RuleState.PENDING),
        (RuleState.NO_DATA, Input.FALSE, RuleState.INACTIVE),
    ],
)
def test_the_lifecycle_moves_as_documented(
    state: RuleState, given: Input, expected: RuleState
) -> None:
    assert TRANSITIONS[(state, given)] is expected


# --- for -----------------------------------------------------------------------------------


def test_pending_fires_after_for_seconds_and_not_one_tick_before() -> None:
    engine = Engine(pack(rule(extra="for: 2s\n")))
    recording = run(engine, ticks({LOSS: "0x39 0.2x39"}))  # bad from t = 10.0
    assert recording.transitions("r") == [(10.0, RuleState.PENDING), (12.0, RuleState.FIRING)]
    assert recording.state_at("r", 11.75) is RuleState.PENDING
    ((t, flag),) = recording.raised("r")
    assert t == 12.0
    assert flag.start == 10.0  # the onset, when the fault began


def test_a_deadline_tick_fires_a_pending_rule_exactly_at_its_deadline() -> None:
    engine = Engine(pack(rule(extra="for: 1.1s\n")))
    engine.evaluate({LOSS: 0.2}, now=5.0)
    assert engine.next_deadline() == pytest.approx(6.1)
    assert engine.evaluate({LOSS: 0.2}, now=6.0) == []
    events = engine.evaluate({LOSS: 0.2}, now=6.1)
    assert [type(e) for e in events if not hasattr(e, "old")] == [FlagRaised]


def test_a_rule_without_for_fires_on_its_first_true_tick() -> None:
    recording = run(Engine(pack(rule())), ticks({LOSS: "0x3 0.2"}))
    assert recording.transitions("r") == [(1.0, RuleState.FIRING)]


def test_a_false_tick_restarts_for() -> None:
    engine = Engine(pack(rule(extra="for: 1s\n")))
    recording = run(engine, ticks({LOSS: "0.2x2 0 0.2x4"}))
    # pending at 0.0, reset at 0.75, pending again at 1.0, fires at 2.0
    assert recording.raised("r")[0][0] == 2.0


# --- keep_firing_for and hysteresis ---------------------------------------------------


def test_keep_firing_for_holds_the_flag_and_a_relapse_is_the_same_flag() -> None:
    engine = Engine(pack(rule(extra="keep_firing_for: 1s\n")))
    # bad 0.0-0.75, good 1.0-1.5 (< 1 s), bad 1.75, good from 2.0 on
    recording = run(engine, ticks({LOSS: "0.2x3 0x2 0.2 0x8"}))
    assert [t for t, _ in recording.raised("r")] == [0.0]
    ((t, flag),) = recording.cleared("r")
    assert t == 3.0  # good since 2.0, for keep_firing_for = 1 s
    assert (flag.start, flag.end) == (0.0, 3.0)
    assert recording.state_at("r", 2.75) is RuleState.RECOVERING


def test_clear_when_keeps_firing_between_the_two_thresholds() -> None:
    rules = rule(when=f"{LOSS} > 2.5%", extra=f'clear_when: "{LOSS} < 1%"\n')
    recording = run(Engine(pack(rules)), ticks({LOSS: "0.03 0.02x10 0.009 0.02x4"}))
    assert [t for t, _ in recording.raised("r")] == [0.0]
    assert [t for t, _ in recording.cleared("r")] == [3.0]  # first tick below 1 %
    assert recording.state_at("r", 2.75) is RuleState.FIRING


# --- no data ----------------------------------------------------------------------------


def test_missing_data_abandons_pending_and_ends_a_firing_flag() -> None:
    engine = Engine(pack(rule(extra="for: 1s\n")))
    recording = run(engine, ticks({LOSS: "0.2x2 _ 0.2x6 stale 0.2"}))
    assert recording.transitions("r")[:3] == [
        (0.0, RuleState.PENDING),
        (0.75, RuleState.NO_DATA),
        (1.0, RuleState.PENDING),  # a fresh onset: the gap restarted `for`
    ]
    ((raised_at, _),) = recording.raised("r")
    assert raised_at == 2.0
    ((cleared_at, flag),) = recording.cleared("r")
    assert cleared_at == 2.75
    assert flag.end == 2.75
    assert recording.state_at("r", 2.75) is RuleState.NO_DATA


def test_an_or_that_is_already_true_does_not_need_the_missing_side() -> None:
    rules = rule(when=f"{FROZEN} or {LOSS} > 0.1")
    recording = run(Engine(pack(rules)), ticks({FROZEN: "1 0", LOSS: "_ _"}))
    assert recording.state_at("r", 0.0) is RuleState.FIRING
    assert recording.state_at("r", 0.25) is RuleState.NO_DATA


# --- flags: evidence, context, escalation -----------------------------------------------


def test_evidence_is_taken_at_the_peak_and_context_at_the_onset() -> None:
    rules = rule(extra=f"peak: {LOSS}\n")
    snapshots = ticks(
        {LOSS: "0.2 0.5 0.3 0", "client.speech.active": "1 0 0 0"},
        base={"therapist.speech.active": False, "session.disclosure": False},
    )
    recording = run(Engine(pack(rules)), snapshots)
    ((_, flag),) = recording.cleared("r")
    assert flag.evidence == {LOSS: 0.5}
    assert flag.context["speaking"] == "client"
    assert flag.context["client.speech.active"] is True
    assert flag.context["session.disclosure"] is False


def test_without_a_peak_expression_evidence_is_the_last_sample_that_held() -> None:
    recording = run(Engine(pack(rule())), ticks({LOSS: "0.2 0.5 0.3 0"}))
    ((_, flag),) = recording.cleared("r")
    assert flag.evidence == {LOSS: 0.3}


def test_escalation_at_onset_and_while_firing_keeps_the_highest_severity() -> None:
    extra = """\
        escalate:
          - when: session.disclosure
            severity: alert
            message: escalated
        """
    rules = rule(extra=extra)
    snapshots = ticks({LOSS: "0.2x7 0", "session.disclosure": "0x2 1 0x4 0"})
    recording = run(Engine(pack(rules)), snapshots)
    ((_, raised),) = recording.raised("r")
    assert raised.severity is Severity.WARN
    ((t, updated),) = recording.updated("r")
    assert (t, updated.severity, updated.message) == (0.75, Severity.ALERT, "escalated")
    ((_, cleared),) = recording.cleared("r")
    assert cleared.severity is Severity.ALERT  # never lowered when disclosure ended
    assert cleared.message == "escalated"


def test_unknown_context_never_escalates() -> None:
    extra = "escalate: {when: session.disclosure, severity: alert}\n"
    recording = run(Engine(pack(rule(extra=extra))), ticks({LOSS: "0.2 0.2"}))
    assert recording.raised("r")[0][1].severity is Severity.WARN
    assert recording.updated("r") == []


def test_an_active_inhibitor_suppresses_the_general_rule() -> None:
    rules = rule("specific", when=f"{FROZEN} and session.marker") + rule(
        "general", when=FROZEN, extra="inhibited_by: [specific]\n"
    )
    snapshots = ticks({FROZEN: "1x3 1x3", "session.marker": "1x3 0x3"})
    recording = run(Engine(pack(rules)), snapshots)
    assert [t for t, _ in recording.raised("specific")] == [0.0]
    assert [t for t, _ in recording.raised("general")] == [1.0]


# --- profiles ---------------------------------------------------------------------------


def test_rules_switched_off_for_a_profile_never_run() -> None:
    rules = rule("share", extra="disabled_for: [intake]\n") + rule(
        "couples_only", extra="only_for: [couples]\n"
    )
    p = pack(rules, profiles="[individual, intake, couples]")
    assert set(Engine(p, profile="intake").states()) == set()
    assert set(Engine(p, profile="individual").states()) == {"share"}
    assert set(Engine(p, profile="couples").states()) == {"share", "couples_only"}
    assert set(Engine(p).states()) == {"share"}
    # A profile the pack does not know switches nothing (no rule can name it).
    assert set(Engine(p, profile="group").states()) == {"share"}


def test_a_disabled_rule_never_runs() -> None:
    assert Engine(pack(rule(extra="enabled: false\n"))).states() == {}


# --- misuse -------------------------------------------------------------------------------


def test_time_going_backwards_is_misuse() -> None:
    engine = Engine(pack(rule()))
    engine.evaluate({}, now=5.0)
    engine.evaluate({}, now=5.0)  # a deadline tick at the same instant is fine
    with pytest.raises(EngineUsageError, match="backwards"):
        engine.evaluate({}, now=4.9)
    with pytest.raises(EngineUsageError, match="finite"):
        engine.evaluate({}, now=float("nan"))


# --- hot reload and the end of a session ---------------------------------------------------


def test_replacing_the_pack_keeps_unchanged_rules_and_restarts_changed_ones() -> None:
    windowed = rule("windowed", when=f"count_over({LOSS} > 0.1, 5) >= 3")
    old = pack(rule("kept") + windowed + rule("changed") + rule("gone"))
    new = pack(rule("kept") + windowed + rule("changed", when=f"{LOSS} > 0.15") + rule("added"))
    engine = Engine(old)
    engine.evaluate({LOSS: 0.2}, now=0.0)
    engine.evaluate({LOSS: 0.2}, now=1.0)
    events = engine.replace_pack(new, now=1.5)
    cleared = {e.flag.rule_id: e.flag.end for e in events if isinstance(e, FlagCleared)}
    assert cleared == {"changed": 1.5, "gone": 1.5}
    assert engine.states() == {
        "kept": RuleState.FIRING,
        "windowed": RuleState.INACTIVE,
        "changed": RuleState.INACTIVE,
        "added": RuleState.INACTIVE,
    }
    # The windowed rule kept its samples (0 and 1): one more bad second makes 3 of 5.
    events = engine.evaluate({LOSS: 0.2}, now=2.0)
    assert "windowed" in {e.flag.rule_id for e in events if isinstance(e, FlagRaised)}
    assert engine.active_flags()[0].start == 0.0  # "kept" is still the same flag


def test_finish_clears_every_open_flag_at_the_end_of_the_session() -> None:
    engine = Engine(pack(rule("a") + rule("b", when=FROZEN)))
    engine.evaluate({LOSS: 0.2, FROZEN: False}, now=1.0)
    events = engine.finish(now=9.0)
    assert [(e.flag.rule_id, e.flag.end) for e in events if isinstance(e, FlagCleared)] == [
        ("a", 9.0)
    ]
    assert engine.active_flags() == []


def test_replay_is_deterministic_to_the_byte() -> None:
    p = pack(rule("a", extra="for: 1s\nkeep_firing_for: 2s\n") + rule("b", when=FROZEN))
    snapshots = ticks({LOSS: "0x3 0.2x20 0x20", FROZEN: "0 1x5 _x3 0x30"})
    first = [f.as_dict() for f in replay(p, snapshots, end=20.0)]
    second = [f.as_dict() for f in replay(p, snapshots, end=20.0)]
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [(f["rule_id"], f["start"], f["end"]) for f in first] == [
        ("b", 0.25, 1.75),  # frozen 0.25-1.5, then no data at 1.75
        ("a", 1.0, 8.25),  # bad from 1.0, fired at 2.0, good from 6.25 (+ 2 s)
    ]
