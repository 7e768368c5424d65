"""Windowed signals from a browser's cumulative ``inbound-rtp`` counters.

Theory of operation: the beacon sends, about once a second, the cumulative W3C counters
of the streams a browser receives (packetsReceived, packetsLost, concealedSamples,
totalSamplesReceived, freezeCount, totalFreezesDuration) and two instantaneous values
(jitter, framesPerSecond). A window figure is the difference between the newest report
and the oldest report no older than the window:

- loss ratio, last 5 s: d(lost) / (d(lost) + d(received)), clamped to [0, 1] (RFC 3550
  lets cumulative loss go negative with duplicates);
- concealment ratio, last 15 s: d(concealedSamples) / d(totalSamplesReceived)
  (ObserveRTC, Teams CQD).

A counter that goes *down* means the browser started a new stream (a reload, a new
peer connection): the history of that media kind restarts. Everything reported is None
once the newest report is older than ``stale_after`` (the page closed, the beacon
stopped): a stopped beacon is unknown, not perfect. Clock: ``now`` is the monotonic
time the server received the report; browser timestamps are not trusted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from monitor.observations import InboundStreamStats
from probes.base import MediaKind

LOSS_WINDOW = 5.0  # DESIGN.md: loss over the last 5 s
CONCEALMENT_WINDOW = 15.0  # DESIGN.md: concealment over 15 s (ObserveRTC, Teams CQD)
STALE_AFTER = 5.0  # five missed one-second reports


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float
    stats: InboundStreamStats


@dataclass(frozen=True, slots=True)
class BeaconInboundSignals:
    """A subject's media as its peer's browser receives it; None where unknown."""

    jitter_ms: float | None = None
    loss_ratio: float | None = None
    loss_ratio_total: float | None = None
    concealment_ratio: float | None = None
    fps: float | None = None
    freeze_count: float | None = None
    total_freezes_s: float | None = None


class BeaconInboundView:
    """One media kind of one subject, fed by the other participant's beacon."""

    __slots__ = ("_history", "_kind", "_stale_after")

    def __init__(self, kind: MediaKind, *, stale_after: float = STALE_AFTER) -> None:
        self._kind = kind
        self._stale_after = stale_after
        self._history: deque[_Sample] = deque()

    def on_stats(self, stats: InboundStreamStats, *, now: float) -> None:
        if stats.kind is not self._kind:
            return
        if self._history and (now < self._history[-1].at or _went_down(self._history[-1], stats)):
            self._history.clear()
        self._history.append(_Sample(now, stats))
        horizon = now - max(LOSS_WINDOW, CONCEALMENT_WINDOW)
        while len(self._history) > 2 and self._history[1].at <= horizon:
            self._history.popleft()

    def signals(self, *, now: float) -> BeaconInboundSignals:
        if not self._history or now - self._history[-1].at > self._stale_after:
            return BeaconInboundSignals()
        newest = self._history[-1].stats
        loss_base = self._oldest_within(now - LOSS_WINDOW)
        conceal_base = self._oldest_within(now - CONCEALMENT_WINDOW)
        return BeaconInboundSignals(
            jitter_ms=None if newest.jitter is None else newest.jitter * 1000.0,
            loss_ratio=_loss(loss_base, newest),
            loss_ratio_total=_loss(None, newest, from_start=True),
            concealment_ratio=_concealment(conceal_base, newest),
            fps=newest.frames_per_second,
            freeze_count=None if newest.freeze_count is None else float(newest.freeze_count),
            total_freezes_s=newest.total_freezes_duration,
        )

    def _oldest_within(self, horizon: float) -> InboundStreamStats | None:
        for sample in self._history:
            if sample.at >= horizon:
                return None if sample is self._history[-1] else sample.stats
        return None


def _went_down(previous: _Sample, stats: InboundStreamStats) -> bool:
    pairs = (
        (previous.stats.packets_received, stats.packets_received),
        (previous.stats.total_samples_received, stats.total_samples_received),
        (previous.stats.freeze_count, stats.freeze_count),
    )
    return any(a is not None and b is not None and b < a for a, b in pairs)


def _delta(base: int | None, newest: int | None) -> int | None:
    if newest is None:
        return None
    return newest - (base or 0)


def _loss(
    base: InboundStreamStats | None, newest: InboundStreamStats, *, from_start: bool = False
) -> float | None:
    if base is None and not from_start:
        return None
    lost = _delta(None if base is None else base.packets_lost, newest.packets_lost)
    received = _delta(None if base is None else base.packets_received, newest.packets_received)
    if lost is None or received is None:
        return None
    lost = max(0, lost)
    if lost + received <= 0:
        return None
    return min(1.0, lost / (lost + received))


def _concealment(base: InboundStreamStats | None, newest: InboundStreamStats) -> float | None:
    if base is None:
        return None
    concealed = _delta(base.concealed_samples, newest.concealed_samples)
    total = _delta(base.total_samples_received, newest.total_samples_received)
    if concealed is None or total is None or total <= 0:
        return None
    return min(1.0, max(0.0, concealed / total))
