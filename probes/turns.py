"""Who holds the floor: turns, pauses, gaps, backchannels and interruptions.

Theory of operation
-------------------
Input: per role, the edges of *voice activity* (a talkspurt starts, a talkspurt stops) at
their true times, already gated against echo and smoothed by the speech probes. Output:
past-tense events (:data:`ConversationEvent`) and a little live state (floor holder, floor
time, monologues, the disclosure window). Talk time and windowed figures are kept by
:mod:`probes.talk_windows`; :mod:`probes.conversation` puts the two together.

Definitions and their sources:

- **Floor** (Jaffe & Feldstein 1970, *Rhythms of Dialogue*, the definition Brady 1968,
  "A statistical analysis of on-off patterns in 16 conversations", BSTJ 47, and Heldner &
  Edlund 2010, "Pauses, gaps and overlaps in conversations", J. Phonetics 38, build on): a
  speaker takes the floor by speaking *alone*, and keeps it, through silences and
  simultaneous speech, until the other speaks alone. One refinement, so that a listener's
  "mm-hm" does not take the floor (DESIGN.md, "Conversation"): the listener must speak
  alone for ``floor_take_min`` (1 s) in total, counted over their talkspurts while the
  floor holder stays silent. The floor changes hands *retroactively*, at the moment the
  newcomer started to speak alone (the J&F instant): the claim's first onset if the holder
  was silent then, else the holder's last offset. It is *known* ``floor_take_min`` of
  solo speech later; that wait is the decision delay of everything below.
- **Claim**: what a listener says from their first onset until the floor is decided. It
  dies when the holder speaks alone again (the holder kept the floor), and succeeds when
  its solo time reaches ``floor_take_min``.
- **Turn**: one floor-holding stretch; ``TurnTaken`` opens one (the first speaker to hold
  the floor opens the first turn, so ``turns`` counts turns, not only changes).
- **Pause / gap** (Heldner & Edlund 2010; Brady 1968's "pause" vs "switching pause"):
  a *pause* is the holder's silence ended by the holder's own speech (the listener's
  backchannels may fall inside it); a *gap* is the silence between the old holder's last
  offset and the onset of the claim that took the floor. When the newcomer started before
  the holder stopped, or the holder spoke again during the claim, the transition is an
  *overlap* (a negative gap in H&E's terms), and no gap is recorded.
- **Backchannel** (DESIGN.md): a listener talkspurt of at most ``backchannel_max`` (1 s)
  inside a claim that died, i.e. the speaker kept the floor; overlapping the speaker or
  in their pause alike. Its ``t`` is the talkspurt's onset.
- **Interruption** (DESIGN.md; J&F's "interruptive simultaneous speech"): the listener
  starts while the holder is speaking (an *intrusion*), with at least
  ``interruption_min_overlap`` (0.2 s) of overlap, after the delay guard below.
  *Successful*: the claim takes the floor (the intruder holds it, >= 1 s alone) and the
  holder's last offset comes within ``yield_within`` (2 s) of the intrusion. *Failed*: the
  claim dies (the speaker keeps the floor) and the intruding talkspurt was longer than
  ``backchannel_max`` (a short one is a backchannel, whatever its overlap: the two
  definitions otherwise overlap, and content-free timing cannot tell a 0.6 s "wait" from a
  0.6 s "mm-hm"). An intrusion that takes the floor only after the holder talked on for
  more than 2 s is a turn change, not an interruption. ``t`` is the intrusion onset;
  ``overlap`` is the blamed overlap inside the claim.
- **Delay guard** (DESIGN.md): each stretch of simultaneous speech is shortened by the
  one-way delay known when it began (``max(0, observed - delay)``) before it is blamed on
  anyone, in interruption decisions and in overlap time alike: at 250 ms of lag, overlaps
  seen at the monitor are often not overlaps either person heard.
- **Monologue**: a turn, from its start to the holder's last offset in it (trailing
  silence excluded). **Floor time**: from the turn's start to now (silence included, J&F).
- **Disclosure window** (DESIGN.md): open while the client has held the floor for
  ``disclosure_floor_min`` (20 s; therapist backchannels and failed interruptions do not
  take the floor, so they do not close it), or while the therapist's marker is on. It
  closes when the therapist takes the floor (at the take's ``t``) and the marker is off.

Clock: every time is the caller's monotonic clock, in seconds, the *true* time of the
edge. Decisions due at a time are made when an edge at or after that time arrives, or when
the owner advances the machine there (:meth:`FloorMachine.advance_to`).

Edge cases: equal times are fine (both roles may change at once). The caller validates
order and duplicates. While nobody holds the floor (the session's start) there is no
backchannel, interruption, pause or gap; both roles may claim, the first to 1 s alone wins.
Only a listener can interrupt: a holder who starts again over a listener's undecided claim
(begun in the holder's pause) is not interrupting, since the listener never held the floor;
if the listener then gives up, a short attempt is a backchannel and a long one nothing.
A claim still pending at :meth:`FloorMachine.finish` is resolved as "the floor was kept".
If the holder is silent when a therapist claim could still turn out to have taken the
floor before the 20 s mark, the disclosure decision waits for that claim to be decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from probes.base import ConfigError, Role

__all__ = [
    "BackchannelDetected",
    "ConversationConfig",
    "ConversationEvent",
    "DisclosureClosed",
    "DisclosureOpened",
    "DisclosureReason",
    "FloorMachine",
    "InterruptionDetected",
    "PauseMeasured",
    "TurnTaken",
]

# Times are sums and differences of floats: compare thresholds with a nanosecond of slack
# so that a scripted 0.2 s overlap (5.2 - 5.0 = 0.19999...) is 0.2 s.
EPS = 1e-9


@dataclass(frozen=True, slots=True)
class ConversationConfig:
    """Every parameter of the conversation probe, with its source.

    Seconds throughout. Pause vs gap has no threshold: it is who speaks next.
    """

    # DESIGN.md "Conversation": backchannel = listener speaks <= 1 s, speaker keeps floor.
    backchannel_max: float = 1.0
    # DESIGN.md: successful interruption needs overlap >= 200 ms ...
    interruption_min_overlap: float = 0.2
    # ... the speaker stops within 2 s ...
    yield_within: float = 2.0
    # ... and the intruder holds the floor >= 1 s. Also the solo speech any listener needs
    # to take the floor (J&F's "speaks alone", bounded below by the backchannel length).
    floor_take_min: float = 1.0
    # DESIGN.md "Disclosure window": client floor-holding >= N s, default 20.
    disclosure_floor_min: float = 20.0
    # Issue 3 / signal catalogue: talk share last 5 and 10 minutes.
    share_window_short: float = 300.0
    share_window_long: float = 600.0
    # Signal catalogue: overlap ratio last minute and last 5 minutes.
    overlap_window_short: float = 60.0
    overlap_window_long: float = 300.0
    # Signal catalogue: interruptions by role, last 5 minutes.
    interruption_window: float = 300.0
    # Signal catalogue: gap median, last 5 minutes (pauses summarized the same way).
    duration_stats_window: float = 300.0
    duration_stats_max_count: int = 512
    # How late the speech probe may emit an edge behind its true time (its smoothing:
    # 200 ms gap fill, 30 ms frames, the crosstalk gate's window). Live decisions wait this
    # long; set it to the speech probe's documented bound. Offline analysis uses 0.
    edge_latency: float = 0.5

    def __post_init__(self) -> None:
        for name in (
            "backchannel_max",
            "interruption_min_overlap",
            "yield_within",
            "floor_take_min",
            "disclosure_floor_min",
            "edge_latency",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"conversation: {name} must be a finite number >= 0")
        for name in (
            "share_window_short",
            "share_window_long",
            "overlap_window_short",
            "overlap_window_long",
            "interruption_window",
            "duration_stats_window",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and 1.0 <= value <= 86400.0):
                raise ConfigError(f"conversation: {name} must be between 1 s and one day")
        if self.floor_take_min <= 0:
            raise ConfigError("conversation: floor_take_min must be > 0")
        if self.duration_stats_max_count < 1:
            raise ConfigError("conversation: duration_stats_max_count must be >= 1")

    @property
    def longest_window(self) -> float:
        return max(
            self.share_window_short,
            self.share_window_long,
            self.overlap_window_short,
            self.overlap_window_long,
        )


@dataclass(frozen=True, slots=True)
class TurnTaken:
    """``by`` took the floor at ``t`` (retroactive: known ``floor_take_min`` of solo later).

    ``gap`` is the silence since ``previous`` last spoke, None after an overlapped
    transition or for the first turn.
    """

    t: float
    by: Role
    previous: Role | None
    gap: float | None


@dataclass(frozen=True, slots=True)
class PauseMeasured:
    """The floor holder ``by`` was silent from ``t`` for ``duration`` and spoke on."""

    t: float
    by: Role
    duration: float


@dataclass(frozen=True, slots=True)
class BackchannelDetected:
    """``by`` spoke briefly at ``t`` (the talkspurt's onset) and the speaker kept the floor."""

    t: float
    by: Role


@dataclass(frozen=True, slots=True)
class InterruptionDetected:
    """``by`` started over ``of`` at ``t``; ``overlap`` is the blamed overlap (s)."""

    t: float
    by: Role
    of: Role
    overlap: float
    successful: bool


class DisclosureReason(StrEnum):
    FLOOR = "floor"  # the client has held the floor long enough
    MARKER = "marker"  # the therapist marked a sensitive moment


@dataclass(frozen=True, slots=True)
class DisclosureOpened:
    t: float
    reason: DisclosureReason


@dataclass(frozen=True, slots=True)
class DisclosureClosed:
    t: float


ConversationEvent = (
    TurnTaken
    | PauseMeasured
    | BackchannelDetected
    | InterruptionDetected
    | DisclosureOpened
    | DisclosureClosed
)


@dataclass(slots=True)
class _Claim:
    """What a listener has said since their first onset while the floor is undecided."""

    onset: float
    against: Role | None  # the holder when the claim began
    intrusion: bool  # the holder was speaking at the claim's onset
    spurt_onsets: list[float] = field(default_factory=list)
    spurt_durations: list[float] = field(default_factory=list)
    solo_done: float = 0.0  # solo time of finished solo stretches
    solo_since: float | None = None  # start of the current solo stretch
    overlap: float = 0.0  # blamed overlap inside the claim
    other_spoke: bool = False  # the other role spoke during the claim

    def take_deadline(self, take_min: float) -> float | None:
        if self.solo_since is None:
            return None
        return self.solo_since + (take_min - self.solo_done)


class FloorMachine:
    """The floor state machine over both roles' voice edges (times must not decrease)."""

    def __init__(self, config: ConversationConfig, *, start: float) -> None:
        self._cfg = config
        self._t = start
        self._active = dict.fromkeys(Role, False)
        self._onset = dict.fromkeys(Role, start)
        self._last_off: dict[Role, float | None] = dict.fromkeys(Role)
        self._holder: Role | None = None
        self._floor_since = start
        self._claims: dict[Role, _Claim] = {}
        self._overlap_start: float | None = None
        self._overlap_delay = 0.0
        self._delay = 0.0
        self._longest = dict.fromkeys(Role, 0.0)
        self._floor_disclosure = False
        self._marker = False
        self._events: list[ConversationEvent] = []

    # -- state the owner reads ------------------------------------------------------------

    @property
    def time(self) -> float:
        """How far decisions have been made (the latest edge or advance)."""
        return self._t

    @property
    def holder(self) -> Role | None:
        return self._holder

    @property
    def floor_since(self) -> float:
        return self._floor_since

    @property
    def disclosure_open(self) -> bool:
        return self._floor_disclosure or self._marker

    @property
    def marker(self) -> bool:
        return self._marker

    def is_active(self, role: Role) -> bool:
        return self._active[role]

    def blamed_overlap_from(self) -> float | None:
        """While both speak: the time from which their overlap is blamed on anyone."""
        if self._overlap_start is None:
            return None
        return self._overlap_start + self._overlap_delay

    def floor_held(self, now: float) -> float:
        return max(0.0, now - self._floor_since) if self._holder is not None else 0.0

    def longest_monologue(self, role: Role, now: float) -> float:
        longest = self._longest[role]
        if self._holder is role:
            longest = max(longest, self._monologue_now(now))
        return longest

    def take_events(self) -> list[ConversationEvent]:
        events, self._events = self._events, []
        return events

    # -- input ------------------------------------------------------------------------------

    def set_delay(self, delay: float) -> None:
        """One-way delay for overlaps that begin from now on (0 when unknown)."""
        self._delay = delay

    def set_marker(self, on: bool, *, t: float) -> None:
        if on == self._marker:
            return
        was_open = self.disclosure_open
        self._marker = on
        if not was_open and self.disclosure_open:
            self._events.append(DisclosureOpened(t, DisclosureReason.MARKER))
        elif was_open and not self.disclosure_open:
            self._events.append(DisclosureClosed(t))

    def edge(self, role: Role, active: bool, *, t: float) -> None:
        """One voice edge; ``t`` >= :attr:`time` and ``active`` differs from the role's state."""
        self.advance_to(t)
        if active:
            self._start(role, t)
        else:
            self._stop(role, t)

    def advance_to(self, t: float) -> None:
        """Make every decision due by ``t``, assuming no edge before ``t`` is still to come."""
        while True:
            take_at, taker = self._next_take()
            disclose_at = self._disclosure_due()
            if disclose_at is not None and disclose_at <= t + EPS and disclose_at <= take_at:
                self._open_floor_disclosure(disclose_at)
            elif taker is not None and take_at <= t + EPS:
                self._take(taker)
            else:
                break
        self._t = max(self._t, t)

    def next_deadline(self) -> float | None:
        take_at, taker = self._next_take()
        disclose_at = self._disclosure_due()
        candidates = [d for d in (disclose_at, take_at if taker else None) if d is not None]
        return min(candidates) if candidates else None

    def finish(self, *, t: float) -> None:
        """End of input at ``t`` (voices already stopped): decide what is still pending."""
        self.advance_to(t)
        for role in list(self._claims):
            if self._holder is not None and role is not self._holder:
                self._resolve_kept(role)
        self._claims.clear()

    # -- edges ------------------------------------------------------------------------------

    def _start(self, role: Role, t: float) -> None:
        other = role.other
        self._active[role] = True
        self._onset[role] = t
        other_claim = self._claims.get(other)
        if self._active[other]:
            self._overlap_start, self._overlap_delay = t, self._delay
            if other_claim is not None:
                other_claim.other_spoke = True
                self._end_solo(other_claim, t)
        elif other_claim is not None:
            other_claim.other_spoke = True
        if role is self._holder:
            last_off = self._last_off[role]
            if last_off is not None and last_off >= self._floor_since:
                self._events.append(PauseMeasured(last_off, role, t - last_off))
            if not self._active[other] and other_claim is not None:
                self._resolve_kept(other)  # the holder speaks alone again
            return
        claim = self._claims.get(role)
        if claim is None:
            holder = self._holder
            intrusion = holder is not None and self._active[holder]
            claim = _Claim(onset=t, against=holder, intrusion=intrusion)
            self._claims[role] = claim
        claim.spurt_onsets.append(t)
        if self._active[other]:
            claim.other_spoke = True
        else:
            claim.solo_since = t

    def _stop(self, role: Role, t: float) -> None:
        other = role.other
        self._active[role] = False
        self._last_off[role] = t
        claim = self._claims.get(role)
        if claim is not None:
            self._end_solo(claim, t)
            claim.spurt_durations.append(t - self._onset[role])
        if not self._active[other]:
            return
        blamed = 0.0
        if self._overlap_start is not None:
            blamed = max(0.0, t - self._overlap_start - self._overlap_delay)
        self._overlap_start = None
        for pending in self._claims.values():
            pending.overlap += blamed
        other_claim = self._claims.get(other)
        if other_claim is not None:
            other_claim.solo_since = t
        elif other is self._holder and claim is not None:
            self._resolve_kept(role)  # the holder speaks alone again

    @staticmethod
    def _end_solo(claim: _Claim, t: float) -> None:
        if claim.solo_since is not None:
            claim.solo_done += t - claim.solo_since
            claim.solo_since = None

    # -- decisions --------------------------------------------------------------------------

    def _next_take(self) -> tuple[float, Role | None]:
        best, taker = math.inf, None
        for role, claim in self._claims.items():
            deadline = claim.take_deadline(self._cfg.floor_take_min)
            if deadline is not None and deadline < best:
                best, taker = deadline, role
        return best, taker

    def _disclosure_due(self) -> float | None:
        if self._holder is not Role.CLIENT or self._floor_disclosure:
            return None
        due = self._floor_since + self._cfg.disclosure_floor_min
        claim = self._claims.get(Role.THERAPIST)
        if claim is not None and not self._active[Role.CLIENT]:
            last_off = self._last_off[Role.CLIENT]
            could_take_at = claim.onset if last_off is None else max(claim.onset, last_off)
            if could_take_at <= due:
                return None  # wait: the client may already have lost the floor
        return due

    def _open_floor_disclosure(self, t: float) -> None:
        was_open = self.disclosure_open
        self._floor_disclosure = True
        if not was_open:
            self._events.append(DisclosureOpened(t, DisclosureReason.FLOOR))

    def _take(self, role: Role) -> None:
        """``role``'s claim took the floor; the take is dated where the solo speech began."""
        claim = self._claims.pop(role)
        other = role.other
        other_off = self._last_off[other]
        since = claim.onset if other_off is None else max(claim.onset, other_off)
        previous = self._holder
        gap: float | None = None
        if previous is not None:
            if not claim.intrusion and not claim.other_spoke and other_off is not None:
                gap = claim.onset - other_off
            self._longest[previous] = max(self._longest[previous], self._monologue_now(since))
            if (
                claim.intrusion
                and since - claim.onset <= self._cfg.yield_within + EPS
                and claim.overlap >= self._cfg.interruption_min_overlap - EPS
            ):
                self._events.append(
                    InterruptionDetected(claim.onset, role, previous, claim.overlap, True)
                )
        self._claims.clear()  # only a leaderless start can leave the other's claim behind
        self._holder, self._floor_since = role, since
        self._events.append(TurnTaken(since, role, previous, gap))
        if previous is Role.CLIENT and self._floor_disclosure:
            self._floor_disclosure = False
            if not self._marker:
                self._events.append(DisclosureClosed(since))

    def _resolve_kept(self, role: Role) -> None:
        """``role``'s claim died: the holder kept the floor."""
        claim = self._claims.pop(role)
        if claim.against is None:
            return
        cfg = self._cfg
        spurts = list(zip(claim.spurt_onsets, claim.spurt_durations, strict=False))
        if claim.intrusion and spurts and spurts[0][1] > cfg.backchannel_max + EPS:
            if claim.overlap >= cfg.interruption_min_overlap - EPS:
                self._events.append(
                    InterruptionDetected(claim.onset, role, claim.against, claim.overlap, False)
                )
            spurts = spurts[1:]
        for onset, duration in spurts:
            if duration <= cfg.backchannel_max + EPS:
                self._events.append(BackchannelDetected(onset, role))

    def _monologue_now(self, now: float) -> float:
        holder = self._holder
        if holder is None:
            return 0.0
        last_off = self._last_off[holder]
        end = now if self._active[holder] or last_off is None else last_off
        return max(0.0, end - self._floor_since)
