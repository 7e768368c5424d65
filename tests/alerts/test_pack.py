"""Rule packs: every error names the file, the line and what is wrong."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from alerts.model import Audience, SafetyElement, Severity
from alerts.pack import PackError, PackIssue, parse_pack
from probes.base import ConfigError
from tests.alerts.scenario import default_pack

VALID = """\
pack: test_pack
version: 3
profiles: [individual, intake]
rules:
  - id: loss_high
    version: 2
    title: Loss is high
    when: count_over(client.audio.loss_ratio > 2.5%, 5) >= 3
    clear_when: client.audio.loss_ratio < 1%
    for: 250ms
    keep_firing_for: 2m
    severity: warn
    audience: [ops]
    undermines: [trust]
    source: LiveKit Opus scorer
  - id: frozen
    version: 1
    title: Frozen
    when: client.video.frozen
    severity: warn
    escalate:
      when: session.disclosure
      severity: alert
      message: "Froze during disclosure"
    audience: [therapist, supervisor]
    undermines: [emotional_safety]
    source: W3C webrtc-stats
    message: "Your client's picture froze"
    hint: "Tell your client what you missed"
    disabled_for: [intake]
    inhibited_by: [loss_high]
"""


def errors(text: str, source: str = "pack.yaml") -> list[PackIssue]:
    with pytest.raises(PackError) as caught:
        parse_pack(textwrap.dedent(text), source=source)
    return list(caught.value.issues)


def only_error(text: str) -> PackIssue:
    found = errors(text)
    assert len(found) == 1, found
    return found[0]


def test_a_valid_pack_compiles_every_field() -> None:
    pack = parse_pack(VALID, source="pack.yaml")
    assert (pack.name, pack.version, pack.profiles) == (
        "test_pack",
        3,
        frozenset({"individual", "intake"}),
    )
    loss, frozen = pack.rules
    assert loss.hold == 0.25
    assert loss.keep_firing_for == 120.0
    assert loss.clear_when is not None
    assert loss.clear_when.text == "client.audio.loss_ratio < 1%"
    assert loss.audience == {Audience.OPS}
    assert loss.line == 5
    assert frozen.hold == 0.0
    assert frozen.undermines == {SafetyElement.EMOTIONAL_SAFETY}
    assert [(e.severity, e.message) for e in frozen.escalations] == [
        (Severity.ALERT, "Froze during disclosure")
    ]
    assert frozen.inhibited_by == ("loss_high",)
    assert frozen.signals == {"client.video.frozen", "session.disclosure"}
    assert [r.id for r in pack.rules_for("intake")] == ["loss_high"]
    assert [r.id for r in pack.rules_for("individual")] == ["loss_high", "frozen"]
    assert pack.digest == hashlib.sha256(VALID.encode()).hexdigest()
    assert pack.source == "pack.yaml"


def test_a_pack_error_is_a_config_error_and_prints_file_colon_line() -> None:
    issue = only_error(
        VALID.replace(
            "severity: warn\n    audience: [ops]", "severity: critical\n    audience: [ops]"
        )
    )
    assert str(issue) == (
        "pack.yaml:12: rule 'loss_high': severity: Input should be 'info', 'warn' or "
        "'alert' (got 'critical')"
    )
    assert issubclass(PackError, ConfigError)


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        (
            "version: 2",
            "version: two",
            6,
            "rule 'loss_high': version: Input should be a valid integer",
        ),
        ("version: 2", "version: 0", 6, "greater than or equal to 1"),
        ("for: 250ms", "for: 5 sec", 10, "for: a duration is seconds"),
        ("for: 250ms", "for: true", 10, "for: a duration is seconds"),
        ("keep_firing_for: 2m", "keep_firing_for: -1", 11, "between 0 and"),
        ("audience: [ops]", "audience: [operators]", 13, "audience[0]: Input should be"),
        ("audience: [ops]", "audience: []", 13, "at least 1 item"),
        (
            "undermines: [trust]",
            "undermines: trust",
            14,
            "undermines: Input should be a valid list",
        ),
        ("id: loss_high", "id: Loss-High", 5, "id: String should match pattern"),
        ("title: Loss is high", "title: 42", 7, "title: Input should be a valid string"),
        (
            "source: LiveKit Opus scorer",
            "source: '  '",
            15,
            "source: String should have at least 1 character",
        ),
    ],
)
def test_a_wrong_type_or_value_names_its_line(old: str, new: str, line: int, fragment: str) -> None:
    assert old in VALID
    issue = errors(VALID.replace(old, new, 1))[0]
    assert issue.source == "pack.yaml"
    assert issue.line == line, issue
    assert fragment in issue.message, issue


def test_a_missing_field_names_the_rule_and_its_line() -> None:
    issue = only_error(VALID.replace("    source: LiveKit Opus scorer\n", ""))
    assert (issue.line, issue.message) == (5, "rule 'loss_high': missing required field 'source'")


def test_an_unknown_field_is_an_error_not_silently_ignored() -> None:
    issue = only_error(VALID.replace("keep_firing_for: 2m", "keep_firing: 2m"))
    assert (issue.line, issue.message) == (11, "rule 'loss_high': unknown field 'keep_firing'")


def test_an_unknown_signal_names_the_line_and_column() -> None:
    issue = only_error(VALID.replace("when: client.video.frozen", "when: client.video.frozn"))
    assert issue.line == 19
    assert issue.message == "rule 'frozen': when: column 1: unknown signal 'client.video.frozn'"


def test_an_unknown_signal_in_clear_when_or_an_escalation_is_caught_too() -> None:
    text = VALID.replace("clear_when: client.audio.loss_ratio", "clear_when: client.audio.loss")
    text = text.replace("when: session.disclosure", "when: session.disclosures")
    found = errors(text)
    assert [(i.line, i.message.split(":")[1].strip()) for i in found] == [
        (9, "clear_when"),
        (22, "escalate[0].when"),
    ]
    assert all("unknown signal" in i.message for i in found)


def test_bad_yaml_names_its_line() -> None:
    issue = only_error(VALID.replace("    title: Frozen\n", "    title: Frozen\n  bad: [\n"))
    assert issue.line in (19, 20)
    assert issue.message.startswith("bad YAML:")


def test_a_message_with_an_unquoted_colon_is_bad_yaml_at_its_line() -> None:
    text = VALID.replace('message: "Your client\'s picture froze"', "message: Note: it froze")
    issue = only_error(text)
    assert issue.line == 28
    assert "bad YAML" in issue.message


def test_duplicate_keys_and_rule_ids_are_errors() -> None:
    text = VALID.replace(
        "    severity: warn\n    audience: [ops]",
        "    severity: warn\n    severity: info\n    audience: [ops]",
    )
    issue = only_error(text)
    assert (issue.line, issue.message) == (13, "duplicate key 'severity'")
    issue = only_error(
        VALID.replace("id: frozen", "id: loss_high").replace(
            "inhibited_by: [loss_high]", "inhibited_by: []"
        )
    )
    assert (issue.line, issue.message) == (16, "rule 'loss_high': duplicate rule id")


def test_therapist_facing_rules_need_a_message_and_a_hint() -> None:
    found = errors(
        VALID.replace('    message: "Your client\'s picture froze"\n', "").replace(
            '    hint: "Tell your client what you missed"\n', ""
        )
    )
    assert [(i.line, i.message) for i in found] == [
        (16, "rule 'frozen': therapist-facing rules need a plain-language 'message'"),
        (16, "rule 'frozen': therapist-facing rules need a plain-language 'hint'"),
    ]


def test_a_long_message_is_refused() -> None:
    issue = only_error(VALID.replace("Your client's picture froze", "x" * 120))
    assert issue.line == 28
    assert "120 characters" in issue.message


def test_profiles_inhibitors_and_escalations_are_checked() -> None:
    assert (
        "unknown profile 'intak'"
        in only_error(VALID.replace("disabled_for: [intake]", "disabled_for: [intak]")).message
    )
    later = VALID.replace("inhibited_by: [loss_high]", "inhibited_by: [frozen]")
    assert "'frozen' is not a rule listed before this one" in only_error(later).message
    for level in ("info", "warn"):
        lower = VALID.replace("      severity: alert", f"      severity: {level}")
        assert "is not above the rule's severity warn" in only_error(lower).message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "the pack is empty"),
        ("- a\n- b\n", "a rule pack is a mapping"),
        ("pack: x\nversion: 1\nrules: []\n", "rules: List should have at least 1 item"),
        ("pack: x\n---\npack: y\n", "bad YAML"),
        ("pack: !!python/object:os.system x\n", "bad YAML"),
    ],
)
def test_documents_that_are_not_a_pack_are_refused(text: str, fragment: str) -> None:
    found = errors(text)
    assert any(fragment in i.message for i in found), found


def test_all_problems_are_reported_at_once_in_line_order() -> None:
    text = VALID.replace(
        "severity: warn\n    audience: [ops]", "severity: bad\n    audience: [ops]"
    )
    text = text.replace("when: client.video.frozen", "when: client.video.frozn")
    found = errors(text)
    assert [i.line for i in found] == [12, 19]


def test_the_default_pack_loads_and_every_rule_cites_a_source() -> None:
    pack = default_pack()
    assert len(pack.rules) >= 20
    for rule in pack.rules:
        assert len(rule.source) > 20, rule.id
        if Audience.THERAPIST in rule.audience:
            assert rule.message, rule.id
            assert rule.hint, rule.id
    assert {r.id for r in pack.rules} >= {
        "client_video_frozen_while_sharing",
        "therapist_video_frozen_while_client_speaks",
        "client_video_frozen",
        "therapist_video_frozen",
        "client_audio_dropping_while_speaking",
        "client_media_interrupted",
        "therapist_media_interrupted",
        "client_sound_poor",
        "client_audio_loss",
        "client_audio_jitter",
        "client_rtt_high",
        "lag_talking_over_each_other",
        "therapist_interrupting_client",
        "therapist_talk_share_high",
        "client_echo",
        "client_video_freezes_repeated",
    }


def test_the_disclosure_window_is_never_a_rule_of_its_own() -> None:
    for rule in default_pack().rules:
        assert rule.when.signals - {"session.disclosure", "session.marker"}, rule.id
