"""Talk time and overlap, cumulative and over sliding windows; recent duration summaries.

Theory of operation
-------------------
:class:`TalkLedger` integrates three piecewise-constant rates over time: the therapist
speaks (0 or 1), the client speaks, and their overlap is blamed on someone (0 or 1, after
the delay guard of :mod:`probes.turns`). It keeps the running totals and, in a ring, their
values at every whole second since ``start`` for the last ``span`` seconds. Any window
``[now - W, now]`` is then ``total(now) - total(now - W)``: O(1) per query, amortised O(1)
per second of session, whatever the number of edges, and bounded memory.

Resolution: between two whole seconds the total is interpolated linearly, which is exact
unless a rate changed inside that second; a window's old edge may be off by under one
second of talk (a 5-minute share by under 0.35 percentage points). ``total(now)`` itself
and the cumulative figures are exact.

Clock: ``commit(to)`` with times that never decrease (the owner's edge times). Values
after the last commit are extrapolated with the current rates, so a snapshot between
edges needs no commit. Values before ``start`` are 0; values older than ``span`` before
the last commit are clamped to that age (a caller bug, not a reachable state).

:class:`RecentDurations` keeps ``(t, duration)`` samples for the last ``window`` seconds
(at most ``max_count``; the oldest go first) and their count, median and 90th percentile,
re-sorted only when the sample set changes. Percentiles interpolate linearly between
order statistics (Hyndman & Fan 1996, definition 7, numpy's default).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from probes.base import Role

__all__ = ["DurationStats", "RecentDurations", "TalkLedger", "Totals", "difference", "quantile"]

_THERAPIST, _CLIENT, _OVERLAP = 0, 1, 2
_INDEX = {Role.THERAPIST: _THERAPIST, Role.CLIENT: _CLIENT}
Totals = tuple[float, float, float]
_ZERO: Totals = (0.0, 0.0, 0.0)


def difference(end: Totals, begin: Totals) -> Totals:
    return (end[0] - begin[0], end[1] - begin[1], end[2] - begin[2])


class TalkLedger:
    """Cumulative talk per role and blamed overlap, with per-second checkpoints."""

    __slots__ = ("_active", "_blamed_from", "_ring", "_size", "_start", "_t", "_totals")

    def __init__(self, *, start: float, span: float) -> None:
        self._start = start
        self._size = math.ceil(span) + 4
        self._ring: list[tuple[int, float, float, float] | None] = [None] * self._size
        self._ring[0] = (0, 0.0, 0.0, 0.0)
        self._t = start
        self._totals: Totals = _ZERO
        self._active = [False, False]
        self._blamed_from: float | None = None

    @property
    def start(self) -> float:
        return self._start

    @property
    def committed(self) -> float:
        return self._t

    def set_state(self, *, therapist: bool, client: bool, blamed_from: float | None) -> None:
        """The rates from the last commit on; ``blamed_from`` None unless both speak."""
        self._active[_THERAPIST] = therapist
        self._active[_CLIENT] = client
        self._blamed_from = blamed_from

    def commit(self, to: float) -> None:
        """Integrate the current rates up to ``to`` (ignored unless after the last commit)."""
        if to <= self._t:
            return
        blamed_from = self._blamed_from
        if blamed_from is None:
            self._segment(to, 0.0)
        elif blamed_from <= self._t:
            self._segment(to, 1.0)
        elif blamed_from >= to:
            self._segment(to, 0.0)
        else:
            self._segment(blamed_from, 0.0)
            self._segment(to, 1.0)

    def totals(self, at: float) -> Totals:
        """(therapist talk, client talk, blamed overlap) from ``start`` to ``at``."""
        return self._at(at)

    def total(self, role: Role, at: float) -> float:
        return self._at(at)[_INDEX[role]]

    def window(self, now: float, length: float) -> Totals:
        """(therapist talk, client talk, blamed overlap) within ``[now - length, now]``."""
        return difference(self._at(now), self._at(now - length))

    def _segment(self, to: float, overlap_rate: float) -> None:
        t, start, size = self._t, self._start, self._size
        rate_t = 1.0 if self._active[_THERAPIST] else 0.0
        rate_c = 1.0 if self._active[_CLIENT] else 0.0
        total_t, total_c, total_o = self._totals
        first = math.floor(t - start) + 1
        last = math.floor(to - start)
        if last >= first:
            first = max(first, last - size + 1)
            ring = self._ring
            for k in range(first, last + 1):
                dt = start + k - t
                ring[k % size] = (
                    k,
                    total_t + rate_t * dt,
                    total_c + rate_c * dt,
                    total_o + overlap_rate * dt,
                )
        dt = to - t
        self._totals = (total_t + rate_t * dt, total_c + rate_c * dt, total_o + overlap_rate * dt)
        self._t = to

    def _extrapolate(self, x: float) -> Totals:
        dt = x - self._t
        total_t, total_c, total_o = self._totals
        if self._active[_THERAPIST]:
            total_t += dt
        if self._active[_CLIENT]:
            total_c += dt
        if self._blamed_from is not None:
            total_o += max(0.0, x - max(self._t, self._blamed_from))
        return (total_t, total_c, total_o)

    def _at(self, x: float) -> Totals:
        start = self._start
        if x <= start:
            return _ZERO
        if x >= self._t:
            return self._extrapolate(x)
        x = max(x, self._t - (self._size - 3))
        k = math.floor(x - start)
        low = self._ring[k % self._size]
        if low is None or low[0] != k:  # unreachable while the clamp above holds
            return _ZERO
        low_t = start + k
        if low_t + 1.0 >= self._t:
            high_t, high = self._t, self._totals
        else:
            entry = self._ring[(k + 1) % self._size]
            if entry is None or entry[0] != k + 1:
                return (low[1], low[2], low[3])
            high_t, high = low_t + 1.0, (entry[1], entry[2], entry[3])
        span = high_t - low_t
        frac = (x - low_t) / span if span > 0 else 0.0
        return (
            low[1] + (high[0] - low[1]) * frac,
            low[2] + (high[1] - low[2]) * frac,
            low[3] + (high[2] - low[3]) * frac,
        )


@dataclass(frozen=True, slots=True)
class DurationStats:
    """Durations (pauses or gaps): ``count``/``median``/``p90`` over the recent window,
    ``total_count`` since the start. ``median`` and ``p90`` are None when ``count`` is 0."""

    count: int
    median: float | None
    p90: float | None
    total_count: int

    @classmethod
    def of(cls, durations: list[float], *, total_count: int | None = None) -> DurationStats:
        ordered = sorted(durations)
        return cls(
            count=len(ordered),
            median=quantile(ordered, 0.5),
            p90=quantile(ordered, 0.9),
            total_count=len(ordered) if total_count is None else total_count,
        )


def quantile(ordered: list[float], q: float) -> float | None:
    """The ``q`` quantile of sorted ``ordered``, linear between order statistics."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class RecentDurations:
    """Samples of one kind of duration over the last ``window`` seconds (bounded)."""

    __slots__ = ("_cached", "_samples", "_total", "_window")

    def __init__(self, *, window: float, max_count: int) -> None:
        self._window = window
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_count)
        self._total = 0
        self._cached: DurationStats | None = None

    def add(self, t: float, duration: float) -> None:
        self._samples.append((t, duration))
        self._total += 1
        self._cached = None

    def stats(self, now: float) -> DurationStats:
        samples, cutoff = self._samples, now - self._window
        while samples and samples[0][0] < cutoff:
            samples.popleft()
            self._cached = None
        if self._cached is None:
            self._cached = DurationStats.of([d for _, d in samples], total_count=self._total)
        return self._cached
