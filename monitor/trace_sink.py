"""The optional content-free trace of a live session: one JSONL file of snapshots.

Theory of operation: with ``trace_dir`` set, every session writes
``<trace_dir>/<session id>.jsonl``: a header line, then one line per snapshot with the
session time and the signals (numbers, booleans, nulls: derived figures only, never
media). ``feltsafe replay`` reads it back through the rules engine. Writes go through a
buffered file on the event loop (a few hundred bytes four times a second); the file is
closed when the session ends. A write error disables the trace for that session and is
logged once: tracing must never stop monitoring.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from monitor.sinks import SessionEvent, SessionInfo, SessionSink, SinkFactory
from probes.signals import Snapshot

logger = logging.getLogger(__name__)

TRACE_FORMAT = "feltsafe-trace/1"


class TraceSink:
    """Appends a session's snapshots to its JSONL trace."""

    def __init__(self, path: Path, info: SessionInfo) -> None:
        self.path = path
        self._started_at = info.started_at
        self._file: IO[str] | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
            self._write({"format": TRACE_FORMAT, "session": info.session_id, "mode": info.mode})
        except OSError:
            self._fail()

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        self._write({"t": round(now - self._started_at, 3), "signals": dict(snapshot)})

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        return None

    def on_ended(self, now: float) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _write(self, record: dict[str, object]) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        except OSError:
            self._fail()

    def _fail(self) -> None:
        logger.exception("session trace disabled: cannot write under the trace directory")
        self._file = None


def factory(trace_dir: Path) -> SinkFactory:
    def make(info: SessionInfo) -> SessionSink:
        return TraceSink(trace_dir / f"{info.session_id}.jsonl", info)

    return make
