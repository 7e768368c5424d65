"""The flag writer: takes flags, timelines and session records off the event loop.

Theory of operation
-------------------
The flag store's API is synchronous and each write commits (and, on SQLite with
``synchronous=FULL``, fsyncs) before it returns: milliseconds, or seconds when the
database is locked or far away. A session tick must never wait for that. So the rules
sinks (monitor/rules_sink.py) hand their writes to one :class:`FlagWriter` per process,
which queues them and applies them, in order, on one worker thread:

* ``submit`` (and the helpers ``session_started``, ``flag``, ``timeline``,
  ``session_ended``) puts a frozen write request on a bounded ``queue.Queue`` with
  ``put_nowait``: it never blocks the loop. If the queue is full (the database has been
  unreachable for a long while) the write is dropped and counted, and the first drop of
  an outage is logged: memory stays bounded, the session goes on. Flag writes are
  idempotent and merge monotonically (monitor/store/repository.py), so a dropped
  intermediate write is repaired by the flag's next one (its clearing carries
  everything).
* One worker thread keeps the order of submission, so a session's start is written
  before its flags, and a flag's raising before its clearing.
* Transient database errors (SQLAlchemy's ``OperationalError`` - "database is locked",
  connection refused - ``InterfaceError``, a pool ``TimeoutError``, an invalidated
  connection) are retried with backoff (``retry_delays``); writes are idempotent, so a
  retry of a write that did commit before the error is harmless. Any other error is the
  caller's (a session id the store refuses, ...): logged by kind, counted, not retried.
* ``close`` (``aclose`` from asyncio) stops taking writes (a later one is dropped,
  counted and logged), drains the queue and joins the worker: at server shutdown every
  flag that was raised is written before the process exits. The drain is bounded by a
  timeout: past it, remaining retries give up.
* ``flush`` waits until everything submitted so far has been applied (tests, and the
  end of ``feltsafe demo``).

Logs name the kind of write and the error's class, never a session id, a flag key or
the error's text (SQLAlchemy's message carries the statement's parameters).

Clock: the worker sleeps between retries (``threading.Event.wait``, cut short by
``close``); nothing here reads a clock on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final, Protocol

from sqlalchemy import exc as sa_exc

from alerts.model import Flag
from monitor.store.records import SessionSummary, TimelineSample

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY: Final = 10_000
# Backoff between attempts of one write: about 19 s in all, then the write is given up.
DEFAULT_RETRY_DELAYS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class FlagStore(Protocol):
    """The writing half of :class:`monitor.store.Store`, which is what the writer needs."""

    def record_session_start(
        self,
        session_id: str,
        *,
        started_at: datetime,
        clock_at_start: float,
        mode: str,
        profile: str | None = None,
    ) -> None: ...

    def record_session_end(
        self, session_id: str, *, ended_at: datetime, summary: SessionSummary
    ) -> None: ...

    def upsert_flag(self, session_id: str, flag: Flag) -> str: ...

    def append_timeline(self, session_id: str, samples: Sequence[TimelineSample]) -> int: ...


# --- write requests (frozen; each knows how to apply itself) ------------------------------


@dataclass(frozen=True, slots=True)
class SessionStartWrite:
    session_id: str
    started_at: datetime
    clock_at_start: float
    mode: str
    profile: str | None = None

    kind: ClassVar[str] = "session start"

    def apply(self, store: FlagStore) -> None:
        store.record_session_start(
            self.session_id,
            started_at=self.started_at,
            clock_at_start=self.clock_at_start,
            mode=self.mode,
            profile=self.profile,
        )


@dataclass(frozen=True, slots=True)
class FlagWrite:
    session_id: str
    flag: Flag

    kind: ClassVar[str] = "flag"

    def apply(self, store: FlagStore) -> None:
        store.upsert_flag(self.session_id, self.flag)


@dataclass(frozen=True, slots=True)
class TimelineWrite:
    session_id: str
    samples: tuple[TimelineSample, ...]

    kind: ClassVar[str] = "timeline"

    def apply(self, store: FlagStore) -> None:
        store.append_timeline(self.session_id, self.samples)


@dataclass(frozen=True, slots=True)
class SessionEndWrite:
    session_id: str
    ended_at: datetime
    summary: SessionSummary

    kind: ClassVar[str] = "session end"

    def apply(self, store: FlagStore) -> None:
        store.record_session_end(self.session_id, ended_at=self.ended_at, summary=self.summary)


StoreWrite = SessionStartWrite | FlagWrite | TimelineWrite | SessionEndWrite

_STOP: Final = object()


def is_transient(error: BaseException) -> bool:
    """Worth retrying: the database was unreachable, locked or dropped the connection."""
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    return isinstance(error, sa_exc.DBAPIError) and bool(error.connection_invalidated)


class FlagWriter:
    """Applies store writes in order on one worker thread (see the module docstring)."""

    def __init__(
        self,
        store: FlagStore,
        *,
        capacity: int = DEFAULT_CAPACITY,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        name: str = "feltsafe-flag-writer",
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._store = store
        self._queue: queue.Queue[object] = queue.Queue(maxsize=capacity)
        self._retry_delays = tuple(retry_delays)
        self._wakeup = threading.Condition()  # close() cuts a retry wait to its deadline
        self._give_up_at: float | None = None  # set by close(): stop retrying after
        self._accepting = True
        self._progress = threading.Condition()
        self._submitted = 0
        self._settled = 0  # written, failed or given up
        self.written_count = 0
        self.retried_count = 0
        self.failed_count = 0  # permanent errors, or transient past every retry
        self.dropped_count = 0  # refused because the queue was full
        self._dropping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- the loop's side: never blocks ----------------------------------------------------

    def submit(self, write: StoreWrite) -> bool:
        """Queue ``write``; False if it was dropped (the queue is full, or closed)."""
        if not self._accepting:
            self.dropped_count += 1
            logger.error("a %s write arrived after the flag writer closed; dropped", write.kind)
            return False
        with self._progress:
            try:
                self._queue.put_nowait(write)
            except queue.Full:
                self.dropped_count += 1
                if not self._dropping:
                    self._dropping = True
                    logger.error(
                        "flag store is falling behind: writes are being dropped "
                        "(queue of %d full; counted)",
                        self._queue.maxsize,
                    )
                return False
            self._submitted += 1
            self._dropping = False
        return True

    def session_started(
        self,
        session_id: str,
        *,
        started_at: datetime,
        clock_at_start: float,
        mode: str,
        profile: str | None = None,
    ) -> bool:
        return self.submit(SessionStartWrite(session_id, started_at, clock_at_start, mode, profile))

    def flag(self, session_id: str, flag: Flag) -> bool:
        return self.submit(FlagWrite(session_id, flag))

    def timeline(self, session_id: str, samples: Sequence[TimelineSample]) -> bool:
        return self.submit(TimelineWrite(session_id, tuple(samples)))

    def session_ended(
        self, session_id: str, *, ended_at: datetime, summary: SessionSummary
    ) -> bool:
        return self.submit(SessionEndWrite(session_id, ended_at, summary))

    @property
    def pending(self) -> int:
        """Writes submitted and not yet settled."""
        with self._progress:
            return self._submitted - self._settled

    # -- waiting and shutting down (blocking: call from a thread, or use aclose) -------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write submitted so far is settled; False on timeout."""
        with self._progress:
            target = self._submitted
            return self._progress.wait_for(lambda: self._settled >= target, timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Stop taking writes, drain the queue, join the worker; True if all drained.

        Retries still failing ``timeout`` seconds from now give up (counted as failed).
        Idempotent.
        """
        if self._accepting:
            self._accepting = False
            with self._wakeup:
                self._give_up_at = time.monotonic() + timeout
                self._wakeup.notify_all()
            self._queue.put(_STOP)  # may wait for room: this side may block
        self._thread.join(timeout + 1.0)
        return not self._thread.is_alive() and self.pending == 0

    async def aclose(self, timeout: float = 30.0) -> bool:
        """:meth:`close` from the event loop, in a worker thread."""
        return await asyncio.to_thread(self.close, timeout)

    # -- the worker ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            assert isinstance(item, SessionStartWrite | FlagWrite | TimelineWrite | SessionEndWrite)
            try:
                self._apply(item)
            finally:
                with self._progress:
                    self._settled += 1
                    self._progress.notify_all()

    def _apply(self, write: StoreWrite) -> None:
        attempt = 0
        while True:
            try:
                write.apply(self._store)
            except Exception as error:
                if not is_transient(error):
                    self.failed_count += 1
                    logger.error(
                        "flag store refused a %s write (%s); not retried",
                        write.kind,
                        type(error).__name__,
                    )
                    return
                if attempt >= len(self._retry_delays) or self._past_deadline():
                    self.failed_count += 1
                    logger.error(
                        "flag store unreachable: a %s write given up after %d attempts (%s)",
                        write.kind,
                        attempt + 1,
                        type(error).__name__,
                    )
                    return
                if attempt == 0:
                    logger.warning("flag store write failed (%s); retrying", type(error).__name__)
                self.retried_count += 1
                self._wait(self._retry_delays[attempt])
                attempt += 1
            else:
                self.written_count += 1
                return

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` before the next attempt, but not past close()'s deadline."""
        end = time.monotonic() + delay
        with self._wakeup:
            while True:
                limit = end if self._give_up_at is None else min(end, self._give_up_at)
                remaining = limit - time.monotonic()
                if remaining <= 0:
                    return
                self._wakeup.wait(remaining)

    def _past_deadline(self) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at


__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_RETRY_DELAYS",
    "FlagStore",
    "FlagWrite",
    "FlagWriter",
    "SessionEndWrite",
    "SessionStartWrite",
    "StoreWrite",
    "TimelineWrite",
    "is_transient",
]
