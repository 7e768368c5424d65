"""A session's figures for later review: the end-of-session summary and a sampled timeline.

Theory of operation
-------------------
Both are computed from what the session's rules sink sees (monitor/rules_sink.py): the
snapshots, each with its ``now`` (session clock, monotonic seconds), and the session's
events. Nothing here reads a clock or does I/O; the sink hands the results to the flag
writer.

Summary (:class:`SessionFigures`, into ``monitor.store.SessionSummary``), per role:

* ``talk_share``: the last known ``conversation.<role>.talk_share`` (share of the
  session's talk time; None if nobody ever spoke);
* ``interruptions_count``: successful interruptions this role made
  (``InterruptionDetected(successful=True)`` events, probes/turns.py): the snapshot only
  carries a 5-minute window, which cannot be summed into a session total. None if the
  conversation was never measured (no ``conversation.interruptions_total`` seen);
* ``freeze_count`` / ``freeze_duration``: freezes of the video this role sends, from the
  cumulative ``<role>.video.freeze_count`` / ``total_freezes_s`` (W3C freezeCount and
  totalFreezesDuration). They are counters of one stream: when one goes down, the
  stream restarted (a republish), and the new count is added, the way Prometheus'
  ``increase()`` handles a counter reset. None if never known;
* ``mos_p10/p50/p90``: percentiles (linear interpolation, numpy's default) of
  ``<role>.network.mos`` sampled once per ``mos_interval`` (1 s) of session time, at the
  first tick of each interval: a uniform sample in time, so the extra ticks a session
  makes at probe deadlines (which cluster around faults) do not weigh more.

Timeline (:class:`TimelineSampler`): one point per ``interval`` (5 s) of session time,
at the first tick of each interval, holding the latest values of ``TIMELINE_SIGNALS``
(talk share per role, interruptions in the last 5 minutes per role, MOS, audio loss
and jitter, video frozen, the disclosure window), except ``<role>.video.frozen``, which
is True when the video was frozen at *any* tick since the previous point: a 2 s freeze
must show on a 5 s timeline. ``finish`` adds a last point at the session's end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

from monitor.sinks import SessionEvent
from monitor.store.records import RoleSummary, SessionSummary, TimelineSample
from probes.base import Role
from probes.signals import SignalValue
from probes.turns import InterruptionDetected

TIMELINE_INTERVAL: Final = 5.0
MOS_INTERVAL: Final = 1.0

_TIMELINE_PER_ROLE: Final = (
    "conversation.{role}.talk_share",
    "conversation.{role}.talk_share_5m",
    "conversation.interruptions_by_{role}_5m",
    "{role}.network.mos",
    "{role}.audio.loss_ratio",
    "{role}.audio.jitter_ms",
    "{role}.video.frozen",
)
TIMELINE_SIGNALS: Final = (
    *(name.format(role=role) for role in Role for name in _TIMELINE_PER_ROLE),
    "session.disclosure",
)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class _Grid:
    """Due once per ``interval`` of session time, on a grid that starts at ``start``."""

    def __init__(self, *, start: float, interval: float, first_at_start: bool) -> None:
        self.start = start
        self.interval = interval
        self._next = start if first_at_start else start + interval

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        periods = math.floor((now - self.start) / self.interval) + 1
        self._next = self.start + periods * self.interval
        return True


class _Counter:
    """The increase of a cumulative counter across resets (a restarted stream)."""

    def __init__(self) -> None:
        self.total: float | None = None
        self._last: float | None = None

    def observe(self, value: float | None) -> None:
        if value is None:
            return
        last = self._last
        # The first value, or a restart (the counter went down): counted from zero.
        step = value if last is None or value < last else value - last
        self.total = (self.total or 0.0) + step
        self._last = value


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None for no values."""
    data = list(values)
    return float(np.percentile(data, q)) if data else None


class SessionFigures:
    """Accumulates one session's summary (see the module docstring)."""

    def __init__(self, *, start: float, mos_interval: float = MOS_INTERVAL) -> None:
        self._mos_grid = _Grid(start=start, interval=mos_interval, first_at_start=True)
        self._share: dict[Role, float | None] = dict.fromkeys(Role)
        self._mos: dict[Role, list[float]] = {role: [] for role in Role}
        self._freezes = {role: _Counter() for role in Role}
        self._frozen_time = {role: _Counter() for role in Role}
        self._interruptions: dict[Role, int] = dict.fromkeys(Role, 0)
        self._conversation_seen = False

    def observe(self, now: float, snapshot: Mapping[str, SignalValue]) -> None:
        sample_mos = self._mos_grid.due(now)
        for role in Role:
            share = _number(snapshot.get(f"conversation.{role}.talk_share"))
            if share is not None:
                self._share[role] = share
            self._freezes[role].observe(_number(snapshot.get(f"{role}.video.freeze_count")))
            self._frozen_time[role].observe(_number(snapshot.get(f"{role}.video.total_freezes_s")))
            if sample_mos:
                mos = _number(snapshot.get(f"{role}.network.mos"))
                if mos is not None:
                    self._mos[role].append(mos)
        if snapshot.get("conversation.interruptions_total") is not None:
            self._conversation_seen = True

    def on_events(self, events: Iterable[SessionEvent]) -> None:
        for item in events:
            event = item.event
            if isinstance(event, InterruptionDetected) and event.successful:
                self._interruptions[event.by] += 1

    def summary(self) -> SessionSummary:
        return SessionSummary(
            therapist=self._role_summary(Role.THERAPIST),
            client=self._role_summary(Role.CLIENT),
        )

    def _role_summary(self, role: Role) -> RoleSummary:
        count = self._freezes[role].total
        mos = self._mos[role]
        return RoleSummary(
            talk_share=self._share[role],
            interruptions_count=self._interruptions[role] if self._conversation_seen else None,
            freeze_count=None if count is None else round(count),
            freeze_duration=self._frozen_time[role].total,
            mos_p10=percentile(mos, 10),
            mos_p50=percentile(mos, 50),
            mos_p90=percentile(mos, 90),
        )


@dataclass(slots=True)
class _Frozen:
    seen_true: bool = False
    seen_false: bool = False

    def observe(self, value: object) -> None:
        if value is True:
            self.seen_true = True
        elif value is False:
            self.seen_false = True

    def value(self) -> bool | None:
        if self.seen_true:
            return True
        return False if self.seen_false else None


class TimelineSampler:
    """One timeline point per ``interval`` of session time (see the module docstring)."""

    def __init__(self, *, start: float, interval: float = TIMELINE_INTERVAL) -> None:
        self._grid = _Grid(start=start, interval=interval, first_at_start=False)
        self._frozen = {role: _Frozen() for role in Role}
        self._latest: Mapping[str, SignalValue] | None = None
        self._latest_at: float | None = None
        self._last_point_at: float | None = None

    def observe(self, now: float, snapshot: Mapping[str, SignalValue]) -> TimelineSample | None:
        """Take in one tick; the point due at this tick, if one is."""
        for role in Role:
            self._frozen[role].observe(snapshot.get(f"{role}.video.frozen"))
        self._latest, self._latest_at = snapshot, now
        return self._point() if self._grid.due(now) else None

    def finish(self) -> TimelineSample | None:
        """The last point, at the last tick, unless that tick already made one."""
        if self._latest_at is None or self._latest_at == self._last_point_at:
            return None
        return self._point()

    def _point(self) -> TimelineSample:
        assert self._latest is not None
        assert self._latest_at is not None
        figures: dict[str, SignalValue] = {}
        for name in TIMELINE_SIGNALS:
            value = self._latest.get(name)
            figures[name] = value if isinstance(value, bool) else _number(value)
        for role in Role:
            figures[f"{role}.video.frozen"] = self._frozen[role].value()
            self._frozen[role] = _Frozen()
        self._last_point_at = self._latest_at
        return TimelineSample(time=self._latest_at, figures=figures)


__all__ = [
    "MOS_INTERVAL",
    "TIMELINE_INTERVAL",
    "TIMELINE_SIGNALS",
    "SessionFigures",
    "TimelineSampler",
    "percentile",
]
