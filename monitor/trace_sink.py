"""The optional content-free trace of each live session, written by monitor/trace.py.

Theory of operation: with ``trace_dir`` set, every session writes one JSONL trace
(format and guarantees in monitor/trace.py: catalogue names only, numbers, booleans and
nulls, only what changed per tick), at ``<trace_dir>/<session id>-<UTC start>.jsonl``
(the id names the file, never its content; a trace is never overwritten). Each snapshot
is one tick at the session's ``now``; the therapist's marker turning on or off is a
marker event; the end of the session is ``session_ended``. ``feltsafe replay`` reads it
back through the rules engine.

With the rules engine running (monitor/rules_sink.py), the rules sink drives this sink
itself, so the trace holds exactly the ``(now, snapshot)`` sequence the engine evaluated
and ``session_ended`` at the ``now`` of ``Engine.finish``; the header then names the
session profile and the pack (name, version, digest), and a hot reload is a
``pack_reloaded`` event with the new pack's digest.

Writes are a few hundred bytes, four times a second, on the event loop. A write error
disables the trace for that session and is logged once: tracing must never stop
monitoring.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
from collections.abc import Sequence
from pathlib import Path

from alerts.pack import Pack
from monitor.sinks import SessionEvent, SessionInfo, SessionSink, SinkFactory
from monitor.trace import TraceEventKind, TraceHeader, TraceWriter
from probes.signals import Snapshot

logger = logging.getLogger(__name__)


class TraceSink:
    """Writes one session's trace."""

    def __init__(
        self,
        trace_dir: Path,
        info: SessionInfo,
        *,
        tick: float,
        profile: str | None = None,
        pack: Pack | None = None,
    ) -> None:
        self._writer: TraceWriter | None = None
        self._marker: object = None
        self.path: Path | None = None
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        try:
            trace_dir.mkdir(parents=True, exist_ok=True)
            for attempt in range(100):
                suffix = f"-{attempt}" if attempt else ""
                path = trace_dir / f"{info.session_id}-{stamp}{suffix}.jsonl"
                try:
                    self._writer = TraceWriter.create(path, _header(info, tick, profile, pack))
                except FileExistsError:
                    continue
                self.path = path
                break
        except OSError as exc:
            self._fail(exc)

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        if self._writer is None:
            return
        marker = snapshot.get("session.marker")
        try:
            if marker is not None and self._marker is not None and marker != self._marker:
                kind = TraceEventKind.MARKER_ON if marker else TraceEventKind.MARKER_OFF
                self._writer.event(kind, now=now)
            self._writer.tick(snapshot, now=now)
        except OSError as exc:
            self._fail(exc)
        self._marker = marker

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        return None

    def pack_reloaded(self, now: float, pack: Pack) -> None:
        if self._writer is None:
            return
        try:
            self._writer.event(TraceEventKind.PACK_RELOADED, now=now, pack_digest=pack.digest)
        except OSError as exc:
            self._fail(exc)

    def on_ended(self, now: float) -> None:
        if self._writer is None:
            return
        try:
            self._writer.event(TraceEventKind.SESSION_ENDED, now=now)
            self._writer.close()
        except OSError as exc:
            self._fail(exc)
        self._writer = None

    def _fail(self, exc: OSError) -> None:
        # The error's text holds the file name, which holds the session id: only its kind.
        logger.error(
            "session trace disabled: cannot write under the trace directory (%s)",
            exc.strerror or type(exc).__name__,
        )
        if self._writer is not None:
            with contextlib.suppress(OSError):
                self._writer.close()
        self._writer = None


def _header(info: SessionInfo, tick: float, profile: str | None, pack: Pack | None) -> TraceHeader:
    return TraceHeader(
        profile=profile,
        mode=info.mode,
        tick_s=tick,
        pack_name=None if pack is None else pack.name,
        pack_version=None if pack is None else pack.version,
        pack_digest=None if pack is None else pack.digest,
    )


def factory(trace_dir: Path, *, tick: float = 0.25) -> SinkFactory:
    def make(info: SessionInfo) -> SessionSink:
        return TraceSink(trace_dir, info, tick=tick)

    return make
