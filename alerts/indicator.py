"""The therapist's live indicator: which level to show, with which words, and when.

Theory of operation
-------------------
The rules engine says what is wrong *now*; the indicator decides what a therapist in the
middle of a session should *see*. A live indicator that blinks with every tick is worse
than none: it pulls attention away from the client. So, as DESIGN.md ("Indicator
behaviour") asks, after Jitsi Meet's connection indicator:

* **Levels**, a closed set ordered by how bad they are: ``ok`` < ``warn`` < ``alert`` <
  ``interrupted``. ``interrupted`` is a participant's media stopped (2 s without
  packets, the session's ``<role>.media.interrupted``); otherwise the level is the
  highest severity among the therapist-facing flags up now (``warn`` or ``alert``).
  ``info`` flags (e.g. talk share) never move the live indicator: they are for review
  after the session, not for interrupting it.
* **Falls fast**: a worse level is shown at the ``now`` it is seen, never delayed, even
  if the previous change was a moment ago. A therapist must learn at once that the
  client could not see them; the rules (``for:``, 3-of-5 s windows) already decide
  whether a fault is real, so the indicator adds no delay of its own.
* **Recovers slowly**: a better level is shown only once the input has been at or below
  it for ``recovery_hold`` seconds (5 s: "clear after >= 5 s good"), *and* at least
  ``min_change_interval`` seconds (10 s) after the previous level change. The level it
  recovers to is the worst the input has been during the hold, so a fault that comes and
  goes within the hold keeps the indicator where it is. Hence: while the input is steady
  or only improving, there is never more than one level change per 10 s; a worsening
  may follow an improvement at once (it is never delayed), and every improvement comes
  10 s or more after the change before it.
* **Words**: the message and hint are the flag's own (the rule pack's plain-language
  ``message`` and ``hint``, in absolute terms, never a score). Among several flags at
  the shown level, the one already shown stays while it is up (no message churn);
  otherwise the most recent onset wins, ties going to the first listed (the pack lists
  specific rules before general ones). A message may change within a level (another
  fault took over); that is not a level change and is not rate limited. While a
  recovery is held back, the words of the worse level stay (the fault just passed is
  what the therapist needs to repair). A flag without wording, and an interruption, get
  the texts of :class:`IndicatorConfig`.

Clock: every call takes ``now``, monotonic seconds of the session clock; nothing here
reads a clock or does I/O. A recovery is due at a time when no input arrives:
:meth:`Indicator.next_deadline` says when, and the driver calls
:meth:`Indicator.on_timer` then (the aioquic ``get_timer``/``handle_timer`` pattern).
Calling with a ``now`` earlier than a previous one is misuse and raises.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from alerts.model import Audience, Flag, Severity
from probes.base import FeltsafeError, Role

# Two times closer than this are the same instant (float sums of tick intervals).
EPSILON: Final = 1e-9


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    ALERT = "alert"
    INTERRUPTED = "interrupted"

    @property
    def rank(self) -> int:
        return _LEVEL_RANK[self]


_LEVEL_RANK: Final = {Level.OK: 0, Level.WARN: 1, Level.ALERT: 2, Level.INTERRUPTED: 3}
_LEVEL_OF_SEVERITY: Final = {Severity.WARN: Level.WARN, Severity.ALERT: Level.ALERT}


class IndicatorUsageError(FeltsafeError):
    """The caller broke the indicator's contract (time went backwards, bad config)."""


@dataclass(frozen=True, slots=True)
class IndicatorFlag:
    """What the indicator needs of one therapist-facing flag that is up now."""

    rule_id: str
    severity: Severity
    message: str | None
    hint: str | None
    since: float  # the flag's onset, session clock

    @classmethod
    def from_flag(cls, flag: Flag) -> IndicatorFlag:
        return cls(flag.rule_id, flag.severity, flag.message, flag.hint, flag.start)


def therapist_flags(flags: Iterable[Flag]) -> tuple[IndicatorFlag, ...]:
    """The open flags meant for the therapist, in the order given."""
    return tuple(
        IndicatorFlag.from_flag(f)
        for f in flags
        if Audience.THERAPIST in f.audience and f.end is None
    )


@dataclass(frozen=True, slots=True)
class IndicatorConfig:
    recovery_hold: float = 5.0  # DESIGN.md: clear after >= 5 s good
    min_change_interval: float = 10.0  # DESIGN.md: at most one level change per 10 s
    # Words for what has no rule wording: absolute, plain, never a score.
    warn_message: str = "Your connection with your client is not at its best"
    warn_hint: str = "Check in with your client that they can see and hear you well"
    alert_message: str = "Your client may not see or hear you well right now"
    alert_hint: str = "Pause, and check what your client could follow"
    interrupted_messages: Mapping[Role | None, tuple[str, str]] = field(
        default_factory=lambda: {
            Role.CLIENT: (
                "Your client's connection dropped",
                "When they are back, say what you last heard and invite them to pick up from there",
            ),
            Role.THERAPIST: (
                "Your client may have lost you: your connection dropped",
                "When you are back, tell your client what you last heard and ask what they missed",
            ),
            None: (  # both at once
                "The call dropped on both sides",
                "When the call is back, say what you last heard and ask what your client missed",
            ),
        }
    )

    def __post_init__(self) -> None:
        for name in ("recovery_hold", "min_change_interval"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise IndicatorUsageError(f"{name} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class IndicatorState:
    """What the therapist sees. ``since``: when this level began (session clock)."""

    level: Level
    message: str | None
    hint: str | None
    since: float


@dataclass(frozen=True, slots=True)
class Reading:
    """The input at one instant, reduced to a level and its words."""

    level: Level
    message: str | None = None
    hint: str | None = None
    rule_id: str | None = None  # the flag the words come from, if any

    @property
    def words(self) -> tuple[str | None, str | None]:
        return self.message, self.hint


OK_READING: Final = Reading(Level.OK)


def assess(
    flags: Iterable[IndicatorFlag],
    *,
    interrupted: Iterable[Role] = (),
    keep: str | None = None,
    config: IndicatorConfig | None = None,
) -> Reading:
    """The level the input calls for, and the words to show with it.

    ``keep`` is the rule whose words are shown now: it stays chosen while it is up at
    the level called for (no message churn between equally bad flags).
    """
    config = config or _DEFAULT_CONFIG
    roles = frozenset(interrupted)
    if roles:
        who = next(iter(roles)) if len(roles) == 1 else None
        message, hint = config.interrupted_messages[who]
        return Reading(Level.INTERRUPTED, message, hint)
    chosen: IndicatorFlag | None = None
    chosen_level = Level.OK
    for flag in flags:
        level = _LEVEL_OF_SEVERITY.get(flag.severity, Level.OK)
        if level is Level.OK:
            continue
        if level.rank > chosen_level.rank:
            chosen, chosen_level = flag, level
        elif (
            level is chosen_level
            and chosen is not None
            and chosen.rule_id != keep
            and (flag.rule_id == keep or flag.since > chosen.since)
        ):
            chosen = flag
    if chosen is None:
        return OK_READING
    if chosen.message is not None:
        return Reading(chosen_level, chosen.message, chosen.hint, chosen.rule_id)
    if chosen_level is Level.ALERT:
        return Reading(chosen_level, config.alert_message, chosen.hint or config.alert_hint)
    return Reading(chosen_level, config.warn_message, chosen.hint or config.warn_hint)


_DEFAULT_CONFIG: Final = IndicatorConfig()


class Indicator:
    """The shown state of one session's indicator (see the module docstring)."""

    def __init__(self, *, now: float, config: IndicatorConfig | None = None) -> None:
        self.config = config or IndicatorConfig()
        self._now = _finite(now)
        self._state = IndicatorState(Level.OK, None, None, now)
        self._shown = OK_READING
        self._last_change = -math.inf  # the first worsening is never held back anyway
        # The input's history, as (from, reading) steps, oldest first; a step lasts until
        # the next one starts. Only what the recovery hold can still look at is kept.
        self._history: list[tuple[float, Reading]] = [(now, OK_READING)]
        self.changes = 0

    @property
    def state(self) -> IndicatorState:
        return self._state

    @property
    def now(self) -> float:
        """The latest ``now`` this indicator was given."""
        return self._now

    @property
    def reading(self) -> Reading:
        """The input as of the last update (what would show without the recovery rules)."""
        return self._history[-1][1]

    def update(
        self,
        flags: Iterable[IndicatorFlag],
        *,
        interrupted: Iterable[Role] = (),
        now: float,
    ) -> IndicatorState | None:
        """Take the input at ``now``; the new state if what is shown changed, else None."""
        self._advance(now)
        reading = assess(
            flags, interrupted=interrupted, keep=self._shown.rule_id, config=self.config
        )
        if reading != self._history[-1][1]:
            self._history.append((now, reading))
        return self._decide(now)

    def on_timer(self, *, now: float) -> IndicatorState | None:
        """Apply a recovery that has come due; the new state if it changed, else None."""
        self._advance(now)
        return self._decide(now)

    def next_deadline(self) -> float | None:
        """When a recovery comes due if the input stays as it is; None if none can."""
        shown = self._state.level
        if self.reading.level.rank >= shown.rank:
            return None
        # The input went below the shown level at the start of the step after the last
        # step at or above it; it must stay below for the hold, and the shown level must
        # have stood for the minimum interval.
        below_since = self._history[0][0]
        for index in range(len(self._history) - 1, -1, -1):
            if self._history[index][1].level.rank >= shown.rank:
                below_since = self._history[index + 1][0]
                break
        return max(
            below_since + self.config.recovery_hold,
            self._last_change + self.config.min_change_interval,
        )

    # --- internals ------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        _finite(now)
        if now < self._now:
            raise IndicatorUsageError(f"time went backwards: {now} after {self._now}")
        self._now = now

    def _decide(self, now: float) -> IndicatorState | None:
        self._forget(now)
        reading = self.reading
        shown = self._state.level
        if reading.level.rank > shown.rank:
            return self._show(reading, now, level_changed=True)
        if reading.level is shown:
            if reading.words != self._shown.words:
                return self._show(reading, now, level_changed=False)
            self._shown = reading  # same words, perhaps from another rule
            return None
        if now < self._last_change + self.config.min_change_interval - EPSILON:
            return None
        worst = max(self._window(now), key=lambda r: r.level.rank)
        if worst.level.rank >= shown.rank:
            return None
        # The words of the most recent step at the level recovered to.
        target = next(r for r in reversed(self._window(now)) if r.level is worst.level)
        return self._show(target, now, level_changed=True)

    def _show(self, reading: Reading, now: float, *, level_changed: bool) -> IndicatorState:
        since = now if level_changed else self._state.since
        self._state = IndicatorState(reading.level, reading.message, reading.hint, since)
        self._shown = reading
        if level_changed:
            self._last_change = now
            self.changes += 1
        return self._state

    def _window(self, now: float) -> list[Reading]:
        """The readings in force at some time in ``[now - recovery_hold, now]``."""
        start = now - self.config.recovery_hold
        history = self._history
        return [
            reading
            for index, (_, reading) in enumerate(history)
            if index + 1 == len(history) or history[index + 1][0] > start + EPSILON
        ]

    def _forget(self, now: float) -> None:
        start = now - self.config.recovery_hold
        history = self._history
        drop = 0
        while drop + 1 < len(history) and history[drop + 1][0] <= start + EPSILON:
            drop += 1
        if drop:
            del history[:drop]


def _finite(now: float) -> float:
    if not math.isfinite(now):
        raise IndicatorUsageError(f"now must be a finite number of seconds, got {now!r}")
    return now


__all__ = [
    "IndicatorConfig",
    "IndicatorFlag",
    "IndicatorState",
    "IndicatorUsageError",
    "Level",
    "Reading",
    "assess",
    "therapist_flags",
]
