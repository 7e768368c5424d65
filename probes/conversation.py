"""Conversation dynamics of a therapy session from two voice-activity streams.

Theory of operation
-------------------
Input: per role, voice edges (``on_voice(role, active, t=...)``) from the speech probes,
already gated against echo and smoothed, at their *true* times, emitted up to
``edge_latency`` late, in global time order across both roles. Output, websockets-style:
past-tense events from :meth:`ConversationTracker.drain_events` and a frozen
:class:`ConversationSnapshot` from :meth:`ConversationTracker.snapshot`. The definitions
(floor, turn, pause, gap, backchannel, interruption, delay guard, monologue, disclosure
window) and their sources are in :mod:`probes.turns`; the windowed arithmetic is in
:mod:`probes.talk_windows`. Parameters: :class:`ConversationConfig`, one frozen object.

Figures this module defines:

- **Talk time** of a role: the time its voice was active. Simultaneous speech counts for
  *both* roles: each did talk, and this is what a ground truth of per-role intervals
  measures. **Talk share** = a role's talk time / the sum of both roles' talk times, over
  the session or the last 5 / 10 minutes; the two shares sum to exactly 1, and both are
  None when nobody spoke in the window (never a made-up 0).
- **Overlap time**: simultaneous speech after the delay guard (each overlap stretch less
  the one-way delay known when it began, floored at 0); **overlap ratio**: overlap time
  in the last 1 / 5 minutes over the window (or the elapsed time, if shorter).
- **Interruptions in the last 5 minutes**: successful ones by each role, by onset time.

Clock: the caller's monotonic seconds. The session starts at ``start`` (default: the
first time the tracker is given). Live, decisions wait ``edge_latency`` so that a late
edge cannot contradict them: ``advance(now=...)`` decides what was due by
``now - edge_latency``, ``next_deadline()`` says when the next decision falls due, and
``snapshot(now=...)`` advances first. At the end of input, ``finish(now=...)`` closes the
open talkspurts and decides everything still pending (offline there is no latency).

Bad input is counted, never raised (``snapshot().bad_input``): a non-finite time, an edge
earlier than the previous one or than the start (out of order), an edge that repeats the
role's state (duplicate), an edge older than a decision already made (late: applied, but
decisions already made stand), a negative or non-finite one-way delay (rejected).

Cost: O(1) amortised per edge and per snapshot; memory bounded by the longest window
(one checkpoint a second) and ``duration_stats_max_count``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from probes.base import Role
from probes.signals import SignalValue
from probes.talk_windows import DurationStats, RecentDurations, TalkLedger, Totals, difference
from probes.turns import (
    EPS,
    BackchannelDetected,
    ConversationConfig,
    ConversationEvent,
    DisclosureClosed,
    DisclosureOpened,
    DisclosureReason,
    FloorMachine,
    InterruptionDetected,
    PauseMeasured,
    TurnTaken,
)

__all__ = [
    "BackchannelDetected",
    "ConversationConfig",
    "ConversationEvent",
    "ConversationSnapshot",
    "ConversationSummary",
    "ConversationTracker",
    "DisclosureClosed",
    "DisclosureOpened",
    "DisclosureReason",
    "DurationStats",
    "InputCounts",
    "InterruptionDetected",
    "PauseMeasured",
    "PerRole",
    "RoleFigures",
    "TurnTaken",
    "VoiceEdge",
    "edges_from_intervals",
    "summarize",
]

T = TypeVar("T")

VoiceEdge = tuple[float, bool]
"""``(t, active)``: the role's voice started (True) or stopped (False) at ``t``."""


@dataclass(frozen=True, slots=True)
class PerRole(Generic[T]):
    therapist: T
    client: T

    def __getitem__(self, role: Role) -> T:
        return self.therapist if role is Role.THERAPIST else self.client

    def to_dict(self) -> dict[str, T]:
        return {str(Role.THERAPIST): self.therapist, str(Role.CLIENT): self.client}


@dataclass(frozen=True, slots=True)
class RoleFigures:
    """One role's side of the conversation at a snapshot (seconds unless named)."""

    talk_time: float
    talk_share: float | None
    talk_share_5m: float | None
    talk_share_10m: float | None
    holds_floor: bool
    floor_held: float  # 0 when this role does not hold the floor
    longest_monologue: float
    interruptions_5m: int  # successful interruptions *by* this role


@dataclass(frozen=True, slots=True)
class InputCounts:
    """Bad input seen so far, by kind (counted, never raised)."""

    invalid: int = 0
    out_of_order: int = 0
    duplicate: int = 0
    late: int = 0
    rejected_delay: int = 0

    @property
    def total(self) -> int:
        return self.invalid + self.out_of_order + self.duplicate + self.late + self.rejected_delay


@dataclass(frozen=True, slots=True)
class ConversationSnapshot:
    t: float
    elapsed: float
    therapist: RoleFigures
    client: RoleFigures
    floor_holder: Role | None
    floor_held: float
    turns: int
    pauses: DurationStats  # last ``duration_stats_window`` (5 min)
    gaps: DurationStats
    overlap_total: float
    overlap_ratio_1m: float | None
    overlap_ratio_5m: float | None
    interruptions_total: int  # successful
    failed_interruptions_total: int
    backchannels_total: int
    disclosure_open: bool
    marker: bool
    one_way_delay: float | None
    bad_input: InputCounts

    def role(self, role: Role) -> RoleFigures:
        return self.therapist if role is Role.THERAPIST else self.client

    def to_signals(self) -> dict[str, SignalValue]:
        """The snapshot under its names in :data:`probes.signals.CATALOGUE`."""
        signals: dict[str, SignalValue] = {}
        for role in Role:
            figures, prefix = self.role(role), f"conversation.{role}"
            signals[f"{prefix}.floor_s"] = figures.floor_held
            signals[f"{prefix}.holds_floor"] = figures.holds_floor
            signals[f"{prefix}.talk_time_s"] = figures.talk_time
            signals[f"{prefix}.talk_share"] = figures.talk_share
            signals[f"{prefix}.talk_share_5m"] = figures.talk_share_5m
            signals[f"{prefix}.talk_share_10m"] = figures.talk_share_10m
            signals[f"{prefix}.longest_monologue_s"] = figures.longest_monologue
            signals[f"conversation.interruptions_by_{role}_5m"] = figures.interruptions_5m
        signals["conversation.interruptions_total"] = self.interruptions_total
        signals["conversation.backchannels_total"] = self.backchannels_total
        signals["conversation.overlap_ratio_1m"] = self.overlap_ratio_1m
        signals["conversation.overlap_ratio_5m"] = self.overlap_ratio_5m
        signals["conversation.turns_total"] = self.turns
        signals["conversation.gap_median_s"] = self.gaps.median
        signals["session.disclosure"] = self.disclosure_open
        signals["session.marker"] = self.marker
        return signals


def _share(mine: float, theirs: float) -> float | None:
    total = mine + theirs
    return mine / total if total > EPS else None


class ConversationTracker:
    """Turns, talk time, overlaps, interruptions and the disclosure window, live."""

    def __init__(
        self, config: ConversationConfig | None = None, *, start: float | None = None
    ) -> None:
        self._cfg = config if config is not None else ConversationConfig()
        self._machine: FloorMachine | None = None
        self._ledger: TalkLedger | None = None
        self._last_edge = -math.inf
        self._delay: float | None = None
        self._finished = False
        self._events: list[ConversationEvent] = []
        self._bad = InputCounts()
        self._turns = 0
        self._backchannels = 0
        self._interruptions = 0
        self._failed_interruptions = 0
        self._recent_interruptions: dict[Role, deque[float]] = {role: deque() for role in Role}
        stats_window, stats_max = (
            self._cfg.duration_stats_window,
            self._cfg.duration_stats_max_count,
        )
        self._pauses = RecentDurations(window=stats_window, max_count=stats_max)
        self._gaps = RecentDurations(window=stats_window, max_count=stats_max)
        if start is not None:
            self._begin(start)

    @property
    def config(self) -> ConversationConfig:
        return self._cfg

    # -- input ------------------------------------------------------------------------------

    def on_voice(self, role: Role, active: bool, *, t: float) -> None:
        """A voice edge of ``role`` at its true time ``t``."""
        if not math.isfinite(t) or self._finished:
            self._count(invalid=1)
            return
        machine, ledger = self._begin(t)
        if t < self._last_edge or t < ledger.start:
            self._count(out_of_order=1)
            return
        if active == machine.is_active(role):
            self._count(duplicate=1)
            return
        if t < machine.time - EPS:
            self._count(late=1)
        self._last_edge = t
        ledger.commit(t)
        machine.edge(role, active, t=max(t, machine.time))
        ledger.set_state(
            therapist=machine.is_active(Role.THERAPIST),
            client=machine.is_active(Role.CLIENT),
            blamed_from=machine.blamed_overlap_from(),
        )
        self._collect()

    def set_one_way_delay(self, delay: float | None) -> None:
        """The one-way delay between the participants (RTT/2 + jitter buffer), or None.

        Applies to overlaps that begin after the call. None means unknown: no guard.
        """
        if delay is not None and not (math.isfinite(delay) and delay >= 0):
            self._count(rejected_delay=1)
            return
        self._delay = delay
        if self._machine is not None:
            self._machine.set_delay(delay or 0.0)

    def mark_sensitive(self, on: bool, *, now: float) -> None:
        """The therapist's marker of a sensitive moment; on also opens the disclosure window."""
        self.advance(now=now)
        if self._machine is not None and math.isfinite(now):
            self._machine.set_marker(on, t=max(now, self._machine.time))
            self._collect()

    def advance(self, *, now: float) -> None:
        """Make the decisions due by ``now - edge_latency`` (their events are queued)."""
        if not math.isfinite(now):
            self._count(invalid=1)
            return
        machine, _ = self._begin(now)
        horizon = now - self._cfg.edge_latency
        if horizon > machine.time:
            machine.advance_to(horizon)
            self._collect()

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` has a decision to make, or None."""
        if self._machine is None:
            return None
        due = self._machine.next_deadline()
        return None if due is None else due + self._cfg.edge_latency

    def on_timer(self, *, now: float) -> None:
        self.advance(now=now)

    def finish(self, *, now: float) -> None:
        """End of input at ``now``: stop open talkspurts and decide everything pending."""
        if not math.isfinite(now) or self._finished:
            return
        machine, _ = self._begin(now)
        end = max(now, self._last_edge, machine.time)
        for role in Role:
            if machine.is_active(role):
                self.on_voice(role, False, t=end)
        machine.finish(t=end)
        self._collect()
        self._finished = True

    def drain_events(self) -> list[ConversationEvent]:
        events, self._events = self._events, []
        return events

    # -- output -----------------------------------------------------------------------------

    def snapshot(self, *, now: float) -> ConversationSnapshot:
        """The conversation at ``now`` (advances first, so due decisions are reflected)."""
        self.advance(now=now)
        cfg = self._cfg
        machine, ledger = self._begin(now if math.isfinite(now) else 0.0)
        start = ledger.start
        now = max(now if math.isfinite(now) else start, self._last_edge, start)
        elapsed = now - start
        totals = ledger.totals(now)
        windows: dict[float, Totals] = {}

        def window(length: float) -> Totals:
            if length not in windows:
                windows[length] = difference(totals, ledger.totals(now - length))
            return windows[length]

        therapist_talk, client_talk, overlap_total = totals
        short, long = window(cfg.share_window_short), window(cfg.share_window_long)
        holder = machine.holder
        floor_held = machine.floor_held(now)

        def figures(role: Role, talk: float, other: float, index: int) -> RoleFigures:
            recent = self._recent_interruptions[role]
            while recent and recent[0] < now - cfg.interruption_window:
                recent.popleft()
            return RoleFigures(
                talk_time=talk,
                talk_share=_share(talk, other),
                talk_share_5m=_share(short[index], short[1 - index]),
                talk_share_10m=_share(long[index], long[1 - index]),
                holds_floor=holder is role,
                floor_held=floor_held if holder is role else 0.0,
                longest_monologue=machine.longest_monologue(role, now),
                interruptions_5m=len(recent),
            )

        def overlap_ratio(length: float) -> float | None:
            span = min(length, elapsed)
            return None if span <= EPS else min(1.0, max(0.0, window(length)[2] / span))

        return ConversationSnapshot(
            t=now,
            elapsed=elapsed,
            therapist=figures(Role.THERAPIST, therapist_talk, client_talk, 0),
            client=figures(Role.CLIENT, client_talk, therapist_talk, 1),
            floor_holder=holder,
            floor_held=floor_held,
            turns=self._turns,
            pauses=self._pauses.stats(now),
            gaps=self._gaps.stats(now),
            overlap_total=overlap_total,
            overlap_ratio_1m=overlap_ratio(cfg.overlap_window_short),
            overlap_ratio_5m=overlap_ratio(cfg.overlap_window_long),
            interruptions_total=self._interruptions,
            failed_interruptions_total=self._failed_interruptions,
            backchannels_total=self._backchannels,
            disclosure_open=machine.disclosure_open,
            marker=machine.marker,
            one_way_delay=self._delay,
            bad_input=self._bad,
        )

    # -- internals --------------------------------------------------------------------------

    def _begin(self, t: float) -> tuple[FloorMachine, TalkLedger]:
        if self._machine is None or self._ledger is None:
            self._start = t
            self._machine = FloorMachine(self._cfg, start=t)
            self._machine.set_delay(self._delay or 0.0)
            self._ledger = TalkLedger(start=t, span=self._cfg.longest_window)
        return self._machine, self._ledger

    def _count(self, **kinds: int) -> None:
        self._bad = replace(self._bad, **{k: getattr(self._bad, k) + v for k, v in kinds.items()})

    def _collect(self) -> None:
        assert self._machine is not None
        for event in self._machine.take_events():
            if isinstance(event, TurnTaken):
                self._turns += 1
                if event.gap is not None:
                    self._gaps.add(event.t, event.gap)
            elif isinstance(event, PauseMeasured):
                self._pauses.add(event.t, event.duration)
            elif isinstance(event, BackchannelDetected):
                self._backchannels += 1
            elif isinstance(event, InterruptionDetected):
                if event.successful:
                    self._interruptions += 1
                    self._recent_interruptions[event.by].append(event.t)
                else:
                    self._failed_interruptions += 1
            self._events.append(event)


# -- offline ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """A whole recorded session; :meth:`to_json_dict` is ``feltsafe analyze --json``'s core."""

    duration: float
    talk_time: PerRole[float]
    talk_share: PerRole[float | None]
    overlap: float
    turns: int
    interruptions: tuple[InterruptionDetected, ...]
    backchannels: tuple[BackchannelDetected, ...]
    longest_monologue: PerRole[float]
    gaps: DurationStats  # the whole session
    pauses: DurationStats
    disclosure_windows: tuple[tuple[float, float], ...]
    bad_input: InputCounts

    def to_json_dict(self) -> dict[str, Any]:
        """Stable keys; seconds carry ``_s``, rounded to the millisecond."""

        def s(value: float) -> float:
            return round(float(value), 3)

        def share(value: float | None) -> float | None:
            return None if value is None else round(float(value), 4)

        def stats(d: DurationStats) -> dict[str, Any]:
            median = None if d.median is None else s(d.median)
            p90 = None if d.p90 is None else s(d.p90)
            return {"count": d.count, "median_s": median, "p90_s": p90}

        return {
            "duration_s": s(self.duration),
            "talk_time_s": {k: s(v) for k, v in self.talk_time.to_dict().items()},
            "talk_share": {k: share(v) for k, v in self.talk_share.to_dict().items()},
            "overlap_s": s(self.overlap),
            "turns": self.turns,
            "interruptions": [
                {
                    "t": s(i.t),
                    "by": str(i.by),
                    "of": str(i.of),
                    "overlap_s": s(i.overlap),
                    "successful": i.successful,
                }
                for i in self.interruptions
            ],
            "backchannels": [{"t": s(b.t), "by": str(b.by)} for b in self.backchannels],
            "longest_monologue_s": {k: s(v) for k, v in self.longest_monologue.to_dict().items()},
            "gaps": stats(self.gaps),
            "pauses": stats(self.pauses),
            "disclosure_windows": [
                {"start_s": s(a), "end_s": s(b)} for a, b in self.disclosure_windows
            ],
        }


def edges_from_intervals(intervals: Iterable[tuple[float, float]]) -> list[VoiceEdge]:
    """``[(start, end), ...]`` talkspurts as voice edges (empty intervals skipped)."""
    edges: list[VoiceEdge] = []
    for begin, end in sorted(intervals):
        if end > begin:
            edges += [(begin, True), (end, False)]
    return edges


def summarize(
    edges_by_role: Mapping[Role, Iterable[VoiceEdge]],
    duration: float,
    *,
    config: ConversationConfig | None = None,
    one_way_delay: float | None = None,
) -> ConversationSummary:
    """Conversation figures of a recorded session, its clock starting at 0.

    Edges after ``duration`` are moved to it; talkspurts still open at ``duration`` end
    there. At equal times stops go before starts, so a hand-over at one instant is
    neither an overlap nor a gap of negative length.
    """
    cfg = replace(config if config is not None else ConversationConfig(), edge_latency=0.0)
    tracker = ConversationTracker(cfg, start=0.0)
    tracker.set_one_way_delay(one_way_delay)
    merged = sorted(
        (min(t, duration), active, index, role)
        for index, role in enumerate(Role)
        for t, active in edges_by_role.get(role, ())
    )
    for t, active, _, role in merged:
        tracker.on_voice(role, active, t=t)
    tracker.finish(now=duration)
    snap = tracker.snapshot(now=duration)
    events = tracker.drain_events()
    opened: float | None = None
    windows: list[tuple[float, float]] = []
    for event in events:
        if isinstance(event, DisclosureOpened) and opened is None:
            opened = event.t
        elif isinstance(event, DisclosureClosed) and opened is not None:
            windows.append((opened, event.t))
            opened = None
    if opened is not None:
        windows.append((opened, snap.t))
    return ConversationSummary(
        duration=snap.t,
        talk_time=PerRole(snap.therapist.talk_time, snap.client.talk_time),
        talk_share=PerRole(snap.therapist.talk_share, snap.client.talk_share),
        overlap=snap.overlap_total,
        turns=snap.turns,
        interruptions=tuple(e for e in events if isinstance(e, InterruptionDetected)),
        backchannels=tuple(e for e in events if isinstance(e, BackchannelDetected)),
        longest_monologue=PerRole(snap.therapist.longest_monologue, snap.client.longest_monologue),
        gaps=DurationStats.of(
            [e.gap for e in events if isinstance(e, TurnTaken) and e.gap is not None]
        ),
        pauses=DurationStats.of([e.duration for e in events if isinstance(e, PauseMeasured)]),
        disclosure_windows=tuple(windows),
        bad_input=snap.bad_input,
    )
