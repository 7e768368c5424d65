"""Where a session's snapshots and events go: the sink protocol and the built-in sinks.

Theory of operation: a live session produces, on each tick, one Snapshot (a flat mapping
of signal names, probes/signals.py) and the events its probes and its own bookkeeping
raised since the last tick (``FreezeStarted``, ``ParticipantJoined``, ...). It hands both
to every sink, in order, on the event loop, synchronously: a sink must be quick (append
to a buffer, update a gauge) and must not block; a sink that needs I/O queues the work
itself. A sink that raises is logged once and counted, never allowed to stop the session.

Later issues add sinks (the rules engine, the flag store, the indicator, the metrics
collector) by passing factories to :class:`monitor.sessions.SessionRegistry`; this
module has the two that exist from the start: the in-memory latest snapshot (read by
``GET /api/sessions/{id}/snapshot``) and the optional content-free JSONL trace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from probes.base import MediaKind, Role
from probes.signals import SignalValue, Snapshot


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a sink factory learns about the session it serves."""

    session_id: str
    mode: str
    started_at: float  # monotonic, the session clock's origin


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A probe's or the session's own event, with whose media it is about."""

    at: float  # monotonic seconds
    role: Role | None
    kind: MediaKind | None
    event: object  # a probe event dataclass (FreezeStarted, ...) or a session event


class SessionSink(Protocol):
    def on_snapshot(self, now: float, snapshot: Snapshot) -> None: ...

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None: ...

    def on_ended(self, now: float) -> None: ...


SinkFactory = Callable[[SessionInfo], SessionSink]


class LatestSnapshot:
    """Keeps the most recent snapshot of one session, read-only, for the REST API."""

    __slots__ = ("at", "snapshot")

    def __init__(self) -> None:
        self.snapshot: Mapping[str, SignalValue] | None = None
        self.at: float | None = None

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        self.snapshot = MappingProxyType(dict(snapshot))
        self.at = now

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        return None

    def on_ended(self, now: float) -> None:
        return None
