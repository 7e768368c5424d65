"""The rules engine: snapshots in, rule state changes and flags out. Pure: no clock, no I/O.

Theory of operation
-------------------
The session runtime calls ``Engine.evaluate(snapshot, now=...)`` on every tick (every
250 ms, and at once on a probe deadline or at ``Engine.next_deadline()``). ``now`` is
monotonic seconds on the session's clock; the engine never reads a clock, so a replay of
the same ``(now, snapshot)`` sequence (a trace) gives exactly the same events, byte for
byte, which is how packs are tested and tuned on past sessions.

Each rule of the pack has a state (as Prometheus' ``AlertingRule.Eval``, plus NO_DATA)::

    INACTIVE    the condition is false
    PENDING     the condition holds, but not yet for ``for`` seconds
    FIRING      it held for ``for`` seconds: a flag is raised
    RECOVERING  firing, but the condition stopped holding (or ``clear_when`` holds) less
                than ``keep_firing_for`` seconds ago: the flag stays up
    NO_DATA     a signal the condition needs is missing: no flag, and no made-up zero

On every tick the rule's condition is reduced to one input (``Input``), and the
transition table ``TRANSITIONS`` (data, below) gives the next state, as h11's
``_state.py`` does for HTTP:

* In INACTIVE, PENDING and NO_DATA the condition is ``when``. If it holds, the input is
  HELD_TRUE when it has held for at least ``for`` seconds of session time counted from
  the tick that entered PENDING (so a rule with ``for: 2s`` that first holds at t = 10.0
  fires on the first tick at t >= 12.0, never one tick before), else TRUE.
* In FIRING and RECOVERING the question is "is it still bad?": ``not clear_when`` if the
  rule has value hysteresis (raise at loss > 2.5 %, stay until loss < 1 %), else
  ``when``. If it is no longer bad, the input is HELD_FALSE once it has been so for
  ``keep_firing_for`` seconds, counted from the tick that entered RECOVERING, else FALSE.
* A condition that is NO_DATA (Kleene logic, alerts/expr.py) is the input NO_DATA in
  every state: pending is abandoned (a gap in the data restarts ``for``) and a firing
  flag ends at that tick. Rule inhibition (``inhibited_by``: a more specific rule listed
  earlier is PENDING, FIRING or RECOVERING this tick) makes the input FALSE.

Flags. A rule's flag is raised on entering FIRING (``FlagRaised``), and ends on leaving
FIRING/RECOVERING for INACTIVE or NO_DATA (``FlagCleared``, with ``end`` set to that
tick). Going FIRING -> RECOVERING -> FIRING is one flag. The flag's:

* ``start`` is the onset: the tick that entered PENDING (or FIRING directly with
  ``for: 0``), when the fault began, as Prometheus' ``ActiveAt``;
* ``context`` is taken at the onset: who was speaking and whether the disclosure window
  or a therapist marker was open (``CONTEXT_SIGNALS``, plus ``speaking``: client,
  therapist, both, neither, or None when unknown). Content-free numbers and booleans;
* ``severity`` is the highest reached: on every tick in PENDING or FIRING each
  ``escalate`` condition that holds (NO_DATA does not) lifts it to its severity; it
  never goes down. Message and hint are those of the first listed escalation at the
  highest severity reached (the rule's own when that is its base severity), taken when
  that severity was first reached. A severity rise on a raised flag is ``FlagUpdated``;
* ``evidence`` is every signal the rule reads, with its snapshot value at the **peak**.
  With a ``peak`` expression, the peak is the tick in PENDING or FIRING where it was
  largest (the first such tick on a tie; write ``-client.network.mos`` to take the
  lowest MOS); without one, the peak is the last tick in PENDING or FIRING. Evidence and
  context values are finite floats, booleans or None (NaN and infinities become None).

Windowed functions (``count_over(x, 5)``, ...) read 1-second samples kept per distinct
operand expression (alerts/window.py), shared by every rule that uses it.

Profiles: ``Engine(pack, profile="intake")`` runs the rules that apply to that session
profile (modality): ``enabled``, not in ``disabled_for``, and in ``only_for`` when a rule
has one. A profile the pack does not declare is accepted and switches nothing except
``only_for`` rules off (no rule can name it), so a pack without an "intake" profile
never stops a session from starting; ``Pack.profiles`` tells a caller that wants to warn.

Hot reload: ``replace_pack`` keeps the state, flag and samples of every rule that is
unchanged (equal compiled rule), starts changed and new rules INACTIVE, and clears the
flags of rules that changed or went away at ``now``. ``finish`` ends every open flag
when the session ends. Calls that go back in time are misuse and raise.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from alerts.expr import (
    NO_DATA,
    Call,
    Expr,
    SnapshotLike,
    Value,
    compile_tree,
    read_bool,
    walk,
)
from alerts.model import ContextValue, Flag, Severity
from alerts.pack import Pack, Rule
from alerts.window import EPSILON, Sampler, WindowValues
from probes.base import FeltsafeError
from probes.signals import SignalValue


class RuleState(StrEnum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"
    RECOVERING = "recovering"
    NO_DATA = "no_data"


class Input(StrEnum):
    """A rule's condition on one tick, with the timers of its current state applied."""

    TRUE = "true"  # holds (in FIRING/RECOVERING: still bad)
    HELD_TRUE = "held_true"  # has held for ``for`` seconds
    FALSE = "false"  # does not hold (in FIRING/RECOVERING: good again)
    HELD_FALSE = "held_false"  # good again for ``keep_firing_for`` seconds
    NO_DATA = "no_data"


_I, _P, _F, _R, _N = (
    RuleState.INACTIVE,
    RuleState.PENDING,
    RuleState.FIRING,
    RuleState.RECOVERING,
    RuleState.NO_DATA,
)

# The lifecycle. Total over (state, input): tests/alerts/test_engine.py checks that.
TRANSITIONS: Final[Mapping[tuple[RuleState, Input], RuleState]] = {
    (_I, Input.FALSE): _I,
    (_I, Input.HELD_FALSE): _I,
    (_I, Input.TRUE): _P,
    (_I, Input.HELD_TRUE): _F,  # for: 0
    (_I, Input.NO_DATA): _N,
    (_P, Input.FALSE): _I,
    (_P, Input.HELD_FALSE): _I,
    (_P, Input.TRUE): _P,
    (_P, Input.HELD_TRUE): _F,
    (_P, Input.NO_DATA): _N,
    (_F, Input.TRUE): _F,
    (_F, Input.HELD_TRUE): _F,
    (_F, Input.FALSE): _R,
    (_F, Input.HELD_FALSE): _I,  # keep_firing_for: 0
    (_F, Input.NO_DATA): _N,
    (_R, Input.TRUE): _F,
    (_R, Input.HELD_TRUE): _F,
    (_R, Input.FALSE): _R,
    (_R, Input.HELD_FALSE): _I,
    (_R, Input.NO_DATA): _N,
    (_N, Input.FALSE): _I,
    (_N, Input.HELD_FALSE): _I,
    (_N, Input.TRUE): _P,
    (_N, Input.HELD_TRUE): _F,
    (_N, Input.NO_DATA): _N,
}

# States in which the rule's flag is up, and in which it counts as "active" (inhibits).
FLAGGED: Final = frozenset({_F, _R})
ACTIVE: Final = frozenset({_P, _F, _R})

# Where a flag's onset is taken: entering PENDING, or FIRING straight away (for: 0).
_ONSET_FROM: Final = frozenset({_I, _N})

CONTEXT_SIGNALS: Final = (
    "client.speech.active",
    "therapist.speech.active",
    "conversation.client.holds_floor",
    "conversation.therapist.holds_floor",
    "conversation.client.floor_s",
    "session.disclosure",
    "session.marker",
)


class EngineUsageError(FeltsafeError):
    """The caller broke the engine's contract (time went backwards, or is not finite)."""


# --- events --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleStateChanged:
    rule_id: str
    old: RuleState
    new: RuleState
    at: float


@dataclass(frozen=True, slots=True)
class FlagRaised:
    flag: Flag


@dataclass(frozen=True, slots=True)
class FlagUpdated:
    """A raised flag's severity went up (an escalation held)."""

    flag: Flag


@dataclass(frozen=True, slots=True)
class FlagCleared:
    """A flag ended; ``flag.end`` is set."""

    flag: Flag


FlagEvent = FlagRaised | FlagUpdated | FlagCleared
EngineEvent = RuleStateChanged | FlagRaised | FlagUpdated | FlagCleared


# --- per-rule run state ------------------------------------------------------------------


@dataclass(slots=True)
class _Run:
    rule: Rule
    state: RuleState = RuleState.INACTIVE
    since: float = 0.0  # when the current state was entered
    onset: float = 0.0  # when the current episode began (flag start)
    severity: Severity = Severity.INFO
    message: str | None = None
    hint: str | None = None
    peak: float | None = None
    evidence: dict[str, SignalValue] = field(default_factory=dict)
    context: dict[str, ContextValue] = field(default_factory=dict)

    def flag(self, *, end: float | None = None) -> Flag:
        rule = self.rule
        return Flag(
            rule_id=rule.id,
            rule_version=rule.version,
            start=self.onset,
            end=end,
            severity=self.severity,
            audience=rule.audience,
            undermines=rule.undermines,
            title=rule.title,
            message=self.message,
            hint=self.hint,
            evidence=dict(self.evidence),
            context=dict(self.context),
        )


class Engine:
    """Runs one pack for one session. See the module docstring for the semantics."""

    def __init__(self, pack: Pack, *, profile: str | None = None) -> None:
        self.profile = profile
        self.pack = pack
        self._now: float | None = None
        self._runs: list[_Run] = [_Run(rule) for rule in pack.rules_for(profile)]
        self._samplers: dict[Expr, Sampler] = {}
        self._routes: dict[int, Sampler] = {}
        self._index: dict[str, _Run] = {}
        self._rewire()

    # --- queries --------------------------------------------------------------------

    def states(self) -> dict[str, RuleState]:
        return {run.rule.id: run.state for run in self._runs}

    def active_flags(self) -> list[Flag]:
        """The flags up now (FIRING or RECOVERING), in pack order."""
        return [run.flag() for run in self._runs if run.state in FLAGGED]

    def next_deadline(self) -> float | None:
        """When a pending rule would fire or a recovering one clear, if nothing changes."""
        deadlines = [
            run.onset + run.rule.hold for run in self._runs if run.state is RuleState.PENDING
        ] + [
            run.since + run.rule.keep_firing_for
            for run in self._runs
            if run.state is RuleState.RECOVERING
        ]
        return min(deadlines, default=None)

    # --- the tick ------------------------------------------------------------------

    def evaluate(self, snapshot: SnapshotLike, *, now: float) -> list[EngineEvent]:
        now = self._advance(now)
        for sampler in self._samplers.values():
            sampler.observe(snapshot, now=now)
        windows = WindowValues(self._routes, now=now)
        events: list[EngineEvent] = []
        for run in self._runs:
            self._step(run, snapshot, windows, now, events)
        return events

    def replace_pack(self, pack: Pack, *, now: float) -> list[EngineEvent]:
        """Swap in a new (already validated) pack; unchanged rules keep their state."""
        now = self._advance(now)
        old = {run.rule.id: run for run in self._runs}
        events: list[EngineEvent] = []
        runs: list[_Run] = []
        for rule in pack.rules_for(self.profile):
            kept = old.get(rule.id)
            if kept is not None and kept.rule == rule:
                kept.rule = rule  # the new line number, for messages
                runs.append(kept)
                del old[rule.id]
            else:
                runs.append(_Run(rule))
        for run in old.values():  # changed or gone
            self._stop(run, now, events)
        self._runs = runs
        self.pack = pack
        self._rewire()
        return events

    def finish(self, *, now: float) -> list[EngineEvent]:
        """The session ended: clear every open flag at ``now`` and reset every rule."""
        now = self._advance(now)
        events: list[EngineEvent] = []
        for run in self._runs:
            self._stop(run, now, events)
        return events

    # --- internals ----------------------------------------------------------------------

    def _advance(self, now: float) -> float:
        """Check and keep ``now``; as a float, so flag times print alike live and replayed."""
        now = float(now)
        if not math.isfinite(now):
            raise EngineUsageError(f"now must be a finite number of seconds, got {now!r}")
        if self._now is not None and now < self._now:
            raise EngineUsageError(f"time went backwards: {now} after {self._now}")
        self._now = now
        return now

    def _rewire(self) -> None:
        """Index the runs, and keep one sampler per distinct windowed operand."""
        self._index = {run.rule.id: run for run in self._runs}
        needed: dict[Expr, tuple[Call, int]] = {}
        for run in self._runs:
            for expression in run.rule.expressions:
                for call in expression.windows:
                    assert call.window is not None
                    capacity = math.ceil(call.window)
                    previous = needed.get(call.operand)
                    if previous is None or previous[1] < capacity:
                        needed[call.operand] = (call, capacity)
        samplers: dict[Expr, Sampler] = {}
        for operand, (_call, capacity) in needed.items():
            existing = self._samplers.get(operand)
            if existing is None:
                samplers[operand] = Sampler(compile_tree(operand), capacity=capacity)
            elif existing.capacity != capacity:
                samplers[operand] = existing.resized(capacity)
            else:
                samplers[operand] = existing
        self._samplers = samplers
        self._routes = {
            id(node): samplers[node.operand]
            for run in self._runs
            for expression in run.rule.expressions
            for node in walk(expression.tree)
            if isinstance(node, Call) and node.window is not None
        }

    def _input(self, run: _Run, snapshot: SnapshotLike, windows: WindowValues, now: float) -> Input:
        rule = run.rule
        inhibited = bool(rule.inhibited_by) and any(
            self._index[i].state in ACTIVE for i in rule.inhibited_by if i in self._index
        )
        if run.state in FLAGGED:
            if inhibited:
                bad: Value = False
            elif rule.clear_when is not None:
                cleared = rule.clear_when.evaluate(snapshot, windows)
                bad = NO_DATA if cleared is NO_DATA else not cleared
            else:
                bad = rule.when.evaluate(snapshot, windows)
            if bad is NO_DATA:
                return Input.NO_DATA
            if bad:
                return Input.TRUE
            good_since = run.since if run.state is RuleState.RECOVERING else now
            held = now - good_since >= rule.keep_firing_for - EPSILON
            return Input.HELD_FALSE if held else Input.FALSE
        holds = False if inhibited else rule.when.evaluate(snapshot, windows)
        if holds is NO_DATA:
            return Input.NO_DATA
        if not holds:
            return Input.FALSE
        onset = run.onset if run.state is RuleState.PENDING else now
        return Input.HELD_TRUE if now - onset >= rule.hold - EPSILON else Input.TRUE

    def _step(
        self,
        run: _Run,
        snapshot: SnapshotLike,
        windows: WindowValues,
        now: float,
        events: list[EngineEvent],
    ) -> None:
        old = run.state
        new = TRANSITIONS[(old, self._input(run, snapshot, windows, now))]
        if new is not old:
            run.state = new
            run.since = now
            events.append(RuleStateChanged(run.rule.id, old, new, now))
            if old in _ONSET_FROM and new in ACTIVE:
                self._begin(run, snapshot, now)
        raised = False
        if new in (RuleState.PENDING, RuleState.FIRING):
            raised = self._escalate(run, snapshot, windows)
            self._track_peak(run, snapshot, windows)
        if new is RuleState.FIRING and old not in FLAGGED:
            events.append(FlagRaised(run.flag()))
        elif new in FLAGGED and raised:
            events.append(FlagUpdated(run.flag()))
        elif old in FLAGGED and new not in FLAGGED:
            events.append(FlagCleared(run.flag(end=now)))

    def _begin(self, run: _Run, snapshot: SnapshotLike, now: float) -> None:
        rule = run.rule
        run.onset = now
        run.severity = rule.severity
        run.message = rule.message
        run.hint = rule.hint
        run.peak = None
        run.evidence = {}
        run.context = capture_context(snapshot)

    def _escalate(self, run: _Run, snapshot: SnapshotLike, windows: WindowValues) -> bool:
        """Lift the severity to the highest escalation holding now; True if it rose."""
        best: Severity | None = None
        wording: tuple[str | None, str | None] | None = None
        for escalation in run.rule.escalations:
            if escalation.when.evaluate(snapshot, windows) is not True:
                continue
            if best is None or escalation.severity.rank > best.rank:
                best = escalation.severity
                wording = None
            if wording is None and escalation.severity is best and escalation.message is not None:
                wording = (escalation.message, escalation.hint or run.rule.hint)
        if best is None or best.rank <= run.severity.rank:
            return False
        run.severity = best
        if wording is not None:
            run.message, run.hint = wording
        return True

    def _track_peak(self, run: _Run, snapshot: SnapshotLike, windows: WindowValues) -> None:
        rule = run.rule
        if rule.peak is None:
            run.evidence = capture_evidence(rule, snapshot)
            return
        value = rule.peak.evaluate(snapshot, windows)
        if value is NO_DATA:
            if not run.evidence:
                run.evidence = capture_evidence(rule, snapshot)
            return
        number = float(value)
        if run.peak is None or number > run.peak:
            run.peak = number
            run.evidence = capture_evidence(rule, snapshot)

    def _stop(self, run: _Run, now: float, events: list[EngineEvent]) -> None:
        if run.state in FLAGGED:
            events.append(FlagCleared(run.flag(end=now)))
        if run.state is not RuleState.INACTIVE:
            events.append(RuleStateChanged(run.rule.id, run.state, RuleState.INACTIVE, now))
            run.state = RuleState.INACTIVE
            run.since = now


def clean_value(raw: object) -> SignalValue:
    """A snapshot value as evidence: bool, finite float, or None."""
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float) and math.isfinite(raw):
        return float(raw)
    return None


def capture_evidence(rule: Rule, snapshot: SnapshotLike) -> dict[str, SignalValue]:
    return {name: clean_value(snapshot.get(name)) for name in sorted(rule.signals)}


def capture_context(snapshot: SnapshotLike) -> dict[str, ContextValue]:
    context: dict[str, ContextValue] = {
        name: clean_value(snapshot.get(name)) for name in CONTEXT_SIGNALS
    }
    context["speaking"] = _speaking(snapshot)
    return context


def _speaking(snapshot: SnapshotLike) -> str | None:
    client = read_bool(snapshot.get("client.speech.active"))
    therapist = read_bool(snapshot.get("therapist.speech.active"))
    if client is NO_DATA or therapist is NO_DATA:
        return None
    if client and therapist:
        return "both"
    if client:
        return "client"
    return "therapist" if therapist else "neither"


# --- replay ---------------------------------------------------------------------------


def replay(
    pack: Pack,
    ticks: Iterable[tuple[float, SnapshotLike]],
    *,
    profile: str | None = None,
    end: float | None = None,
) -> list[Flag]:
    """Run a pack over ``(now, snapshot)`` ticks; the final form of every flag raised.

    With ``end`` (the session's end), flags still up then are cleared at ``end``;
    without it they stay open (``end`` None), as in a session cut short.
    Flags are ordered by start, then by rule order in the pack.
    """
    engine = Engine(pack, profile=profile)
    flags: dict[tuple[str, float], Flag] = {}
    for now, snapshot in ticks:
        collect_flags(engine.evaluate(snapshot, now=now), flags)
    if end is not None:
        collect_flags(engine.finish(now=end), flags)
    order = {rule.id: number for number, rule in enumerate(pack.rules)}
    return sorted(flags.values(), key=lambda f: (f.start, order.get(f.rule_id, 0)))


def collect_flags(events: Sequence[EngineEvent], into: dict[tuple[str, float], Flag]) -> None:
    """Fold flag events into the latest version of each flag, keyed by (rule, start)."""
    for event in events:
        if isinstance(event, FlagRaised | FlagUpdated | FlagCleared):
            into[(event.flag.rule_id, event.flag.start)] = event.flag


__all__ = [
    "ACTIVE",
    "CONTEXT_SIGNALS",
    "FLAGGED",
    "TRANSITIONS",
    "Engine",
    "EngineEvent",
    "EngineUsageError",
    "FlagCleared",
    "FlagEvent",
    "FlagRaised",
    "FlagUpdated",
    "Input",
    "RuleState",
    "RuleStateChanged",
    "capture_context",
    "capture_evidence",
    "clean_value",
    "collect_flags",
    "replay",
]
