"""Rule packs: the YAML schema, its validation with line numbers, and the compiled rules.

Theory of operation
-------------------
A pack is YAML text that a caller hands in together with a source name (a file name,
for messages); this module does no I/O. ``parse_pack(text, source=...)`` returns a
``Pack`` of compiled ``Rule`` objects or raises ``PackError``, whose ``issues`` each name
the source, the 1-based line and what is wrong (``default_pack.yaml:42: rule
'client_mos': severity: Input should be 'info', 'warn' or 'alert' (got 'critical')``).
All problems found are reported at once, in file order.

How lines are known: the text is composed into a YAML node tree (``yaml.SafeLoader``,
so no Python tags), which keeps every node's start mark; the tree is turned into plain
data while recording, for every path (``("rules", 3, "severity")``), the line of its
key. The data is validated by pydantic models (unknown fields are errors: a misspelt
``keep_firing`` must not silently mean "no keep_firing_for"); a pydantic error's
location is a path, looked up (or its nearest recorded ancestor, for a missing field)
to find the line. Duplicate keys, which YAML would silently collapse, are errors too.

A rule (the schema; DESIGN.md, issue 5)::

    - id: client_mos_low            # [a-z][a-z0-9_]*, unique in the pack
      version: 1                    # bump when the meaning changes (flags carry it)
      title: Poor sound from the client
      when: count_over(client.network.mos < 3.6, 5) >= 3
      for: 0s                       # the condition must hold this long before firing
      keep_firing_for: 0s           # firing continues this long after it stops holding
      clear_when: count_over(client.network.mos >= 3.6, 5) >= 5   # optional hysteresis
      severity: warn                # info | warn | alert
      audience: [therapist, ops]    # therapist | supervisor | ops
      undermines: [trust]           # SafetyElement values
      source: ITU-T G.107 ...       # where the threshold comes from (required)
      message: ...                  # required for therapist-facing rules (<= 100 chars)
      hint: ...                     # a repair move, required likewise (<= 160 chars)
      escalate:                     # optional; a mapping or a list; above `severity`
        - when: session.disclosure
          severity: alert
          message: ...              # optional wording for the escalated flag
      peak: client.audio.loss_ratio # optional number: evidence is taken where it peaks
      inhibited_by: [other_rule]    # optional; rules listed earlier in the pack
      enabled: true                 # optional
      disabled_for: [intake]        # optional session profiles (modalities) it is off for
      only_for: [couples]           # optional: on only for these profiles

Durations are seconds (a number) or a string with a unit: ``250ms``, ``5s``, ``2m``.
Profiles used by ``disabled_for``/``only_for`` must be declared in the pack's top-level
``profiles`` list, so a typo cannot silently leave a rule on. Conditions are compiled by
alerts/expr.py: unknown signals, unknown functions and type errors are load-time errors
reported with the line of the field and the column within the expression.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
)

from alerts.expr import ExprError, Expression, ValueType, compile_expression
from alerts.model import Audience, SafetyElement, Severity
from probes.base import ConfigError

MESSAGE_MAX_CHARS: Final = 100
HINT_MAX_CHARS: Final = 160
MAX_DURATION: Final = 86400.0
_MAX_NESTING: Final = 32


# --- errors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PackIssue:
    source: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.message}"


class PackError(ConfigError):
    """A rule pack is wrong. ``str()`` gives one ``source:line: message`` per issue."""

    def __init__(self, issues: Sequence[PackIssue]) -> None:
        self.issues = tuple(sorted(issues, key=lambda i: i.line))
        super().__init__("\n".join(str(i) for i in self.issues))


# --- the compiled pack the engine runs -----------------------------------------------


@dataclass(frozen=True, slots=True)
class Escalation:
    """While ``when`` holds during a flag's life, its severity rises to ``severity``."""

    when: Expression
    severity: Severity
    message: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. Equal rules (ignoring their line) keep their state on reload."""

    id: str
    version: int
    title: str
    when: Expression
    hold: float  # the pack's ``for``
    keep_firing_for: float
    severity: Severity
    audience: frozenset[Audience]
    undermines: frozenset[SafetyElement]
    source: str
    clear_when: Expression | None = None
    message: str | None = None
    hint: str | None = None
    escalations: tuple[Escalation, ...] = ()
    enabled: bool = True
    disabled_for: frozenset[str] = frozenset()
    only_for: frozenset[str] | None = None
    inhibited_by: tuple[str, ...] = ()
    peak: Expression | None = None
    line: int = field(default=0, compare=False)

    @property
    def expressions(self) -> tuple[Expression, ...]:
        found = [self.when]
        if self.clear_when is not None:
            found.append(self.clear_when)
        found += [e.when for e in self.escalations]
        if self.peak is not None:
            found.append(self.peak)
        return tuple(found)

    @property
    def signals(self) -> frozenset[str]:
        """Every signal the rule reads: its evidence."""
        return frozenset().union(*(e.signals for e in self.expressions))

    def applies_to(self, profile: str | None) -> bool:
        if not self.enabled:
            return False
        if profile is not None and profile in self.disabled_for:
            return False
        return self.only_for is None or (profile is not None and profile in self.only_for)


@dataclass(frozen=True, slots=True)
class Pack:
    name: str
    version: int
    rules: tuple[Rule, ...]
    profiles: frozenset[str] = frozenset()
    description: str | None = None
    source: str = field(default="<pack>", compare=False)
    digest: str = field(default="", compare=False)

    def rules_for(self, profile: str | None) -> tuple[Rule, ...]:
        """The rules that run for a session of this profile, in pack order."""
        return tuple(r for r in self.rules if r.applies_to(profile))

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


# --- the schema ------------------------------------------------------------------------

_DURATION_RE: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)\s*$")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("a duration is seconds (a number) or text like 250ms, 5s, 2m")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError("a duration is seconds (a number) or text like 250ms, 5s, 2m")
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION:
        raise ValueError(f"a duration must be between 0 and {MAX_DURATION:.0f} s")
    return seconds


def _listify(value: object) -> object:
    return [value] if isinstance(value, dict) else value


_Text = Annotated[str, StringConstraints(strict=True, strip_whitespace=True, min_length=1)]
_Slug = Annotated[str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
_Profile = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[a-z][a-z0-9_-]*$", max_length=32)
]
_Version = Annotated[int, Field(strict=True, ge=1)]
_Duration = Annotated[float, BeforeValidator(_duration)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _EscalationSpec(_Spec):
    when: _Text
    severity: Severity
    message: _Text | None = None
    hint: _Text | None = None


class _RuleSpec(_Spec):
    id: _Slug
    version: _Version
    title: _Text
    when: _Text
    hold: _Duration = Field(default=0.0, alias="for")
    keep_firing_for: _Duration = 0.0
    clear_when: _Text | None = None
    severity: Severity
    audience: Annotated[list[Audience], Field(min_length=1)]
    undermines: Annotated[list[SafetyElement], Field(min_length=1)]
    source: _Text
    message: _Text | None = None
    hint: _Text | None = None
    escalate: Annotated[list[_EscalationSpec], BeforeValidator(_listify)] = Field(
        default_factory=list
    )
    peak: _Text | None = None
    inhibited_by: list[_Slug] = Field(default_factory=list)
    enabled: StrictBool = True
    disabled_for: list[_Profile] = Field(default_factory=list)
    only_for: list[_Profile] | None = None


class _PackSpec(_Spec):
    pack: _Slug
    version: _Version
    description: _Text | None = None
    profiles: list[_Profile] = Field(default_factory=list)
    rules: Annotated[list[Any], Field(min_length=1)]  # each one validated by _RuleSpec


# --- YAML with lines -------------------------------------------------------------------

_Path = tuple[str | int, ...]


class _Located:
    """Plain data from a YAML node tree, and the line of every path in it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: dict[_Path, int] = {}
        self.issues: list[PackIssue] = []

    def line(self, path: Sequence[str | int]) -> int:
        for end in range(len(path), -1, -1):
            found = self.lines.get(tuple(path[:end]))
            if found is not None:
                return found
        return 1

    def issue(self, path: Sequence[str | int], message: str) -> None:
        self.issues.append(PackIssue(self.source, self.line(path), message))

    def convert(self, loader: yaml.SafeLoader, node: yaml.Node, path: _Path, line: int) -> Any:
        self.lines.setdefault(path, line)
        if len(path) > _MAX_NESTING:
            self.issue(path, "nesting too deep")
            return None
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key_line = key_node.start_mark.line + 1
                key = loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self.issues.append(
                        PackIssue(self.source, key_line, f"a key must be text, got {key!r}")
                    )
                    continue
                if key in result:
                    self.issues.append(PackIssue(self.source, key_line, f"duplicate key {key!r}"))
                    continue
                result[key] = self.convert(loader, value_node, (*path, key), key_line)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [
                self.convert(loader, item, (*path, index), item.start_mark.line + 1)
                for index, item in enumerate(node.value)
            ]
        return loader.construct_object(node, deep=True)


def _load_yaml(text: str, located: _Located) -> Any:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            located.issue((), "the pack is empty")
            return None
        return located.convert(loader, node, (), node.start_mark.line + 1)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        located.issues.append(PackIssue(located.source, line, f"bad YAML: {what}"))
        return None
    except yaml.YAMLError as exc:
        located.issues.append(PackIssue(located.source, 1, f"bad YAML: {exc}"))
        return None
    finally:
        loader.dispose()


# --- parse ----------------------------------------------------------------------------


def parse_pack(text: str, *, source: str) -> Pack:
    """Validate and compile a rule pack; raise PackError naming every problem found."""
    located = _Located(source)
    data = _load_yaml(text, located)
    if located.issues:
        raise PackError(located.issues)
    if not isinstance(data, dict):
        located.issue((), "a rule pack is a mapping with 'pack', 'version' and 'rules'")
        raise PackError(located.issues)
    try:
        spec = _PackSpec.model_validate(data)
    except ValidationError as exc:
        _report(exc, (), data, located)
        raise PackError(located.issues) from None
    # Each rule is validated on its own, so that one wrong rule does not hide the
    # problems of the others (or the expression errors of its own valid fields).
    rule_specs: list[tuple[int, _RuleSpec]] = []
    for index, raw in enumerate(spec.rules):
        try:
            rule_specs.append((index, _RuleSpec.model_validate(raw)))
        except ValidationError as exc:
            _report(exc, ("rules", index), data, located)
            _check_expressions(raw, ("rules", index), exc, located)
    pack = _compile(spec, rule_specs, located)
    if located.issues:
        raise PackError(located.issues)
    return Pack(
        name=pack.name,
        version=pack.version,
        rules=pack.rules,
        profiles=pack.profiles,
        description=pack.description,
        source=source,
        digest=hashlib.sha256(text.encode()).hexdigest(),
    )


def _report(
    exc: ValidationError, prefix: _Path, data: Mapping[str, Any], located: _Located
) -> None:
    for error in exc.errors():
        loc: _Path = (*prefix, *error["loc"])
        located.issue(loc, _describe_error(error, loc, data))


def _describe_error(error: Mapping[str, Any], loc: _Path, data: Mapping[str, Any]) -> str:
    prefix = ""
    field_path = loc
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rule_id = _rule_id(data, loc[1])
        prefix = f"rule {rule_id!r}: " if rule_id else f"rules[{loc[1]}]: "
        field_path = loc[2:]
    where = _dotted(field_path)
    kind = error["type"]
    if kind == "missing":
        return f"{prefix}missing required field {where!r}"
    if kind == "extra_forbidden":
        return f"{prefix}unknown field {where!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        message += f" (got {value!r})"
    return f"{prefix}{where}: {message}" if where else f"{prefix}{message}"


_EXPRESSIONS: Final = {
    "when": ValueType.BOOL,
    "clear_when": ValueType.BOOL,
    "peak": ValueType.NUMBER,
}


def _check_expressions(raw: object, path: _Path, exc: ValidationError, located: _Located) -> None:
    """Report the expression errors of a rule that failed validation for other reasons."""
    if not isinstance(raw, dict):
        return
    failed = {tuple(e["loc"])[:1] for e in exc.errors()}
    rule_id = raw.get("id")
    prefix = f"rule {rule_id!r}: " if isinstance(rule_id, str) else f"rules[{path[-1]}]: "
    for name, kind in _EXPRESSIONS.items():
        text = raw.get(name)
        if isinstance(text, str) and text.strip() and (name,) not in failed:
            try:
                compile_expression(text, expect=kind)
            except ExprError as error:
                located.issue((*path, name), f"{prefix}{name}: {error}")


def _rule_id(data: Mapping[str, Any], index: int) -> str | None:
    rules = data.get("rules")
    if isinstance(rules, list) and index < len(rules) and isinstance(rules[index], dict):
        rule_id = rules[index].get("id")
        return rule_id if isinstance(rule_id, str) else None
    return None


def _dotted(path: Sequence[str | int]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _compile(
    spec: _PackSpec, rule_specs: Sequence[tuple[int, _RuleSpec]], located: _Located
) -> Pack:
    profiles = frozenset(spec.profiles)
    # Ids as written, valid rules or not: an inhibitor that has its own error is
    # reported once, for itself, not again by every rule it inhibits.
    written = [raw.get("id") if isinstance(raw, dict) else None for raw in spec.rules]
    rules: list[Rule] = []
    seen: set[str] = set()
    for index, rule_spec in rule_specs:
        path: _Path = ("rules", index)
        earlier = {i for i in written[:index] if isinstance(i, str)}
        rule = _compile_rule(rule_spec, path, profiles, earlier, located)
        if rule_spec.id in seen:
            located.issue((*path, "id"), f"rule {rule_spec.id!r}: duplicate rule id")
        seen.add(rule_spec.id)
        if rule is not None:
            rules.append(rule)
    return Pack(
        name=spec.pack,
        version=spec.version,
        rules=tuple(rules),
        profiles=profiles,
        description=spec.description,
    )


def _compile_rule(
    spec: _RuleSpec,
    path: _Path,
    profiles: frozenset[str],
    earlier: Set[str],
    located: _Located,
) -> Rule | None:
    before = len(located.issues)
    prefix = f"rule {spec.id!r}: "

    def expression(text: str, where: _Path, label: str, kind: ValueType) -> Expression | None:
        try:
            return compile_expression(text, expect=kind)
        except ExprError as exc:
            located.issue((*path, *where), f"{prefix}{label}: {exc}")
            return None

    when = expression(spec.when, ("when",), "when", ValueType.BOOL)
    clear_when = (
        expression(spec.clear_when, ("clear_when",), "clear_when", ValueType.BOOL)
        if spec.clear_when is not None
        else None
    )
    peak = (
        expression(spec.peak, ("peak",), "peak", ValueType.NUMBER)
        if spec.peak is not None
        else None
    )
    escalations: list[Escalation] = []
    for number, esc in enumerate(spec.escalate):
        where: _Path = ("escalate", number) if len(spec.escalate) > 1 else ("escalate",)
        label = f"escalate[{number}]"
        condition = expression(esc.when, (*where, "when"), f"{label}.when", ValueType.BOOL)
        if esc.severity.rank <= spec.severity.rank:
            located.issue(
                (*path, *where, "severity"),
                f"{prefix}{label}.severity {esc.severity!s} is not above the rule's "
                f"severity {spec.severity!s}: an escalation raises it",
            )
        if condition is not None:
            escalations.append(Escalation(condition, esc.severity, esc.message, esc.hint))

    if Audience.THERAPIST in spec.audience:
        for name in ("message", "hint"):
            if getattr(spec, name) is None:
                located.issue(
                    path,
                    f"{prefix}therapist-facing rules need a plain-language {name!r}",
                )
    for owner, where, text in _wording(spec):
        limit = MESSAGE_MAX_CHARS if where[-1] == "message" else HINT_MAX_CHARS
        if len(text) > limit:
            located.issue(
                (*path, *where),
                f"{prefix}{owner}{where[-1]} is {len(text)} characters; keep it under {limit}",
            )
    for name in ("disabled_for", "only_for"):
        for number, profile in enumerate(getattr(spec, name) or ()):
            if profile not in profiles:
                known = ", ".join(sorted(profiles)) or "none declared"
                located.issue(
                    (*path, name, number),
                    f"{prefix}{name}: unknown profile {profile!r} (pack profiles: {known})",
                )
    for number, other in enumerate(spec.inhibited_by):
        if other == spec.id or other not in earlier:
            located.issue(
                (*path, "inhibited_by", number),
                f"{prefix}inhibited_by: {other!r} is not a rule listed before this one",
            )
    if len(located.issues) > before or when is None:
        return None
    return Rule(
        id=spec.id,
        version=spec.version,
        title=spec.title,
        when=when,
        hold=spec.hold,
        keep_firing_for=spec.keep_firing_for,
        severity=spec.severity,
        audience=frozenset(spec.audience),
        undermines=frozenset(spec.undermines),
        source=spec.source,
        clear_when=clear_when,
        message=spec.message,
        hint=spec.hint,
        escalations=tuple(escalations),
        enabled=spec.enabled,
        disabled_for=frozenset(spec.disabled_for),
        only_for=frozenset(spec.only_for) if spec.only_for is not None else None,
        inhibited_by=tuple(spec.inhibited_by),
        peak=peak,
        line=located.line(path),
    )


def _wording(spec: _RuleSpec) -> list[tuple[str, _Path, str]]:
    found: list[tuple[str, _Path, str]] = []
    for name in ("message", "hint"):
        text = getattr(spec, name)
        if text is not None:
            found.append(("", (name,), text))
    for number, esc in enumerate(spec.escalate):
        where: _Path = ("escalate", number) if len(spec.escalate) > 1 else ("escalate",)
        for name in ("message", "hint"):
            text = getattr(esc, name)
            if text is not None:
                found.append((f"escalate[{number}].", (*where, name), text))
    return found
