"""Live sessions: the asyncio driver of each Session, and the registry of all of them.

Theory of operation: :class:`LiveSession` is the adapter around the pure core
(monitor/session.py, the aioquic ``handle_timer`` / ``get_timer`` pattern): it owns one
``loop.call_at`` timer armed at ``session.next_deadline()``, re-armed earlier when the
core asks (its ``wake`` callback), and on each firing runs ``on_timer(now=loop.time())``,
hands the events and the snapshot to the sinks, and reacts to what the core decided (a
participant gone: close their publisher; the session ended: close everything).

What a live session owns, and frees when it ends: its timer, its publishers (each an
RTCPeerConnection with its receivers, decoder threads, RTP hooks and drain tasks) and
its sinks. Nothing it starts outlives it: :meth:`LiveSession.close` closes the peer
connections (which join aiortc's decoder threads and end its tasks), cancels and awaits
the drain tasks, and tells the sinks; tests count tasks and aiortc objects around it.

:class:`SessionRegistry` maps session ids to live sessions. A session is created by its
first publisher (WHIP) or beacon, in the server's mode unless the first publisher asked
for another one (``?mode=``); a later request for a different mode is a conflict. Ended
sessions leave the registry (a later request with the same id starts a new session).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

from monitor.config import IceServer, Mode
from monitor.participant import Attachment, LeftReason
from monitor.publisher import ParsedOffer, Publisher
from monitor.session import ParticipantLeft, Session, SessionConfig, Snapshot
from monitor.sinks import LatestSnapshot, SessionEvent, SessionInfo, SessionSink, SinkFactory
from probes.base import FeltsafeError, Role

logger = logging.getLogger(__name__)

SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


# Called with (scheduled, ran) on the loop clock each time a session's timer fires: how
# late the loop ran the session (the tick lag metric, monitor/metrics_sink.py).
TickObserver = Callable[[float, float], None]


class SessionConflictError(FeltsafeError):
    """The request contradicts the live session (a second publisher, another mode)."""


class LiveSession:
    """One running session: the core, its timer, its publishers and its sinks."""

    def __init__(
        self,
        session: Session,
        *,
        sinks: Sequence[SessionSink],
        ice_servers: Sequence[IceServer],
        on_closed: Callable[[LiveSession], None],
        tick_observers: Sequence[TickObserver] = (),
    ) -> None:
        self.session = session
        self._tick_observers = tick_observers
        self.latest = LatestSnapshot()
        self._sinks: list[SessionSink] = [self.latest, *sinks]
        self._ice_servers = tuple(ice_servers)
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = float("inf")
        self.publishers: dict[Role, Publisher] = {}
        self._background: set[asyncio.Task[object]] = set()
        self._closing: asyncio.Task[None] | None = None
        self.sink_errors = 0
        session.set_wake(self._request_wake)
        self._arm(session.next_deadline())

    @property
    def id(self) -> str:
        return self.session.id

    def clock(self) -> float:
        """The session clock (the event loop's monotonic time) for inputs from adapters."""
        return self._loop.time()

    @property
    def closed(self) -> bool:
        return self._closing is not None

    # -- publishers ---------------------------------------------------------------------

    async def publish(self, role: Role, offer: ParsedOffer) -> tuple[Publisher, str]:
        """Accept ``role``'s WHIP offer: (publisher, answer SDP). One publisher per role."""
        if self.closed:
            raise SessionConflictError("the session has ended")
        if role in self.publishers:
            raise SessionConflictError(f"the {role} is already publishing in this session")
        publisher = Publisher(
            self.session,
            role,
            ice_servers=self._ice_servers,
            clock=self.clock,
            on_failed=self._publisher_failed,
        )
        self.publishers[role] = publisher  # reserved before the first await
        self.session.attach(role, Attachment.WHIP, now=self.clock())
        try:
            answer = await publisher.start(offer)
        except BaseException:
            await self.unpublish(role, publisher.resource_id, reason=LeftReason.CONNECTION_FAILED)
            raise
        return publisher, answer

    def publisher_by_resource(self, resource_id: str) -> Publisher | None:
        return next((p for p in self.publishers.values() if p.resource_id == resource_id), None)

    async def unpublish(self, role: Role, resource_id: str, *, reason: LeftReason) -> bool:
        """End ``role``'s publisher if it is ``resource_id``; False if it was not there."""
        publisher = self.publishers.get(role)
        if publisher is None or publisher.resource_id != resource_id:
            return False
        del self.publishers[role]
        self.session.detach(role, Attachment.WHIP, now=self.clock(), reason=reason)
        await publisher.close()
        return True

    def _publisher_failed(self, publisher: Publisher) -> None:
        if self.closed:
            return  # the teardown closes every publisher itself
        self._background_task(
            self.unpublish(
                publisher.role, publisher.resource_id, reason=LeftReason.CONNECTION_FAILED
            )
        )

    # -- the timer ----------------------------------------------------------------------

    def _request_wake(self, at: float) -> None:
        if at < self._armed_at and not self.closed:
            self._arm(at)

    def _arm(self, at: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed_at = float("inf")
        if at is not None and not self.closed:
            self._timer = self._loop.call_at(at, self._on_timer)
            self._armed_at = at

    def _on_timer(self) -> None:
        scheduled = self._armed_at
        self._timer = None
        self._armed_at = float("inf")
        now = self.clock()
        for observe in self._tick_observers:
            try:
                observe(scheduled, now)
            except Exception:
                self.sink_errors += 1
        snapshot = self.session.on_timer(now=now)
        self._deliver(now, snapshot)
        if self.session.ended:
            self._arm(None)
            self._closing = asyncio.ensure_future(self._teardown(now))
        else:
            self._arm(self.session.next_deadline())

    def _deliver(self, now: float, snapshot: Snapshot | None) -> None:
        events = self.session.drain_events()
        if events:
            self._to_sinks(lambda sink: sink.on_events(now, events))
            self._react(events)
        if snapshot is not None:
            self._to_sinks(lambda sink: sink.on_snapshot(now, snapshot))

    def _react(self, events: Sequence[SessionEvent]) -> None:
        if self.closed:
            return  # the teardown closes every publisher itself
        for item in events:
            event = item.event
            if isinstance(event, ParticipantLeft) and event.via is None and item.role:
                publisher = self.publishers.get(item.role)
                if publisher is not None:
                    self._background_task(
                        self.unpublish(item.role, publisher.resource_id, reason=event.reason)
                    )

    def _to_sinks(self, call: Callable[[SessionSink], None]) -> None:
        for sink in self._sinks:
            try:
                call(sink)
            except Exception:
                self.sink_errors += 1
                if self.sink_errors == 1:
                    logger.exception("a session sink failed (counted; further failures quiet)")

    def _background_task(self, coroutine: Coroutine[Any, Any, object]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the end ------------------------------------------------------------------------

    async def close(self, reason: str = "server shutdown") -> None:
        """End the session now and free everything it owns; idempotent."""
        if self._closing is None:
            now = self.clock()
            self.session.close(now=now, reason=reason)
            self._arm(None)
            self._closing = asyncio.ensure_future(self._teardown(now))  # starts after this
            # The last snapshot and the end events go out now, in this callback (closing,
            # so nothing reacts to them): from the task they would reach the sinks after
            # other callbacks had run at later times, and a sink's clock (the
            # indicator's) must never go backwards.
            self._deliver(now, self.session.snapshot(now=now))
        await asyncio.shield(self._closing)

    async def _teardown(self, now: float) -> None:
        """Free what the session owns; its last snapshot and events were delivered."""
        publishers = list(self.publishers.values())
        self.publishers.clear()
        await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
        while background := [t for t in self._background if t is not asyncio.current_task()]:
            await asyncio.gather(*background, return_exceptions=True)
        self._to_sinks(lambda sink: sink.on_ended(now))
        self._on_closed(self)


class SessionRegistry:
    """All live sessions of this process."""

    def __init__(
        self,
        *,
        mode: Mode = Mode.FULL,
        ice_servers: Sequence[IceServer] = (),
        session_config: SessionConfig | None = None,
        sink_factories: Sequence[SinkFactory] = (),
    ) -> None:
        self.mode = mode
        self._ice_servers = tuple(ice_servers)
        self._config = session_config or SessionConfig()
        self._sink_factories = tuple(sink_factories)
        self._sessions: dict[str, LiveSession] = {}
        self.tick_observers: list[TickObserver] = []  # shared with every live session
        self.sessions_started = 0
        self.sessions_ended = 0

    def __iter__(self) -> Iterator[LiveSession]:
        return iter(list(self._sessions.values()))

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> LiveSession | None:
        return self._sessions.get(session_id)

    def add_sink_factory(self, factory: SinkFactory) -> None:
        """Give every session started from now on one more sink (metrics, ...)."""
        self._sink_factories = (*self._sink_factories, factory)

    def open(self, session_id: str, *, mode: Mode | None = None) -> LiveSession:
        """The live session ``session_id``, started now if there is none.

        Raises SessionConflictError if it runs in another mode than ``mode``, and
        ValueError for an id that is not 1-128 URL-safe characters.
        """
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            raise ValueError("a session id is 1-128 characters of A-Z a-z 0-9 . _ ~ -")
        live = self._sessions.get(session_id)
        if live is not None and not live.closed:
            if mode is not None and mode is not live.session.mode:
                raise SessionConflictError(f"the session runs in {live.session.mode} mode")
            return live
        loop = asyncio.get_running_loop()
        session = Session(session_id, mode=mode or self.mode, now=loop.time(), config=self._config)
        info = SessionInfo(session_id, session.mode.value, session.started_at)
        live = LiveSession(
            session,
            sinks=[factory(info) for factory in self._sink_factories],
            ice_servers=self._ice_servers,
            on_closed=self._forget,
            tick_observers=self.tick_observers,
        )
        self._sessions[session_id] = live
        self.sessions_started += 1
        return live

    def _forget(self, live: LiveSession) -> None:
        if self._sessions.get(live.id) is live:
            del self._sessions[live.id]
        self.sessions_ended += 1

    async def aclose(self) -> None:
        """End every live session (server shutdown)."""
        await asyncio.gather(*(live.close() for live in list(self._sessions.values())))
