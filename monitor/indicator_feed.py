"""The live side of the therapist's indicator: a session sink, and one channel per session.

Theory of operation: the indicator's policy is pure (alerts/indicator.py). This module is
its asyncio adapter, as monitor/sessions.py is the session core's:

* :class:`IndicatorSink` is a session sink (monitor/sinks.py). On every tick it runs the
  rules engine on the snapshot (the engine's ``FlagRaised`` / ``FlagUpdated`` /
  ``FlagCleared`` events keep the set of open therapist-facing flags), reads who is
  interrupted (``<role>.media.interrupted``) and updates the :class:`Indicator` at the
  tick's ``now``. A recovery due between ticks is applied by one ``loop.call_at`` timer
  armed at :meth:`Indicator.next_deadline`. Flag events from elsewhere (a shared rules
  sink that also writes the store) can be fed through :meth:`IndicatorSink.on_flag_events`
  instead: build the hub with ``pack=None`` and the sink runs no engine of its own.
* :class:`IndicatorChannel` is what websockets subscribe to, keyed by session id. It
  exists while a session with that id is live *or* someone watches it, so a therapist
  may open the call page before the first publisher arrives (they see ``ok``). A new
  session with the same id starts a fresh indicator; a session's end shows ``ok`` at
  once (the call is over; there is nothing to repair).
* Subscribers are plain callbacks run synchronously on the event loop when the shown
  state changes; the websocket layer coalesces them (a slow client gets the latest
  state, never a backlog).

Clock: ``now`` is the event loop's monotonic time, the session clock. Content never
passes through here: flags carry rule ids, severities and the pack's fixed wording.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from alerts.engine import Engine, EngineEvent, FlagCleared, FlagRaised, FlagUpdated
from alerts.indicator import (
    Indicator,
    IndicatorConfig,
    IndicatorFlag,
    IndicatorState,
    therapist_flags,
)
from alerts.pack import Pack
from monitor.sinks import SessionEvent, SessionInfo, SessionSink
from probes.base import Role
from probes.signals import Snapshot

logger = logging.getLogger(__name__)

Subscriber = Callable[[IndicatorState], None]


class IndicatorChannel:
    """One session id's indicator, as its subscribers see it."""

    def __init__(self, session_id: str, *, now: float, config: IndicatorConfig) -> None:
        self.session_id = session_id
        self.config = config
        self.indicator = Indicator(now=now, config=config)
        self.sink: IndicatorSink | None = None
        self._subscribers: list[Subscriber] = []
        self.subscriber_errors = 0

    @property
    def state(self) -> IndicatorState:
        return self.indicator.state

    @property
    def idle(self) -> bool:
        return self.sink is None and not self._subscribers

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with every new state; returns the unsubscribe function."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def restart(self, *, now: float) -> None:
        """A fresh indicator (a session starts or ends): shows ok from ``now``."""
        before = self.indicator.state
        self.indicator = Indicator(now=now, config=self.config)
        if before.level is not self.indicator.state.level or before.message is not None:
            self.publish(self.indicator.state)

    def publish(self, state: IndicatorState) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber(state)
            except Exception:
                self.subscriber_errors += 1
                if self.subscriber_errors == 1:
                    logger.exception("an indicator subscriber failed (counted; further quiet)")


class IndicatorSink:
    """Feeds one live session's indicator (see the module docstring)."""

    def __init__(
        self,
        channel: IndicatorChannel,
        *,
        engine: Engine | None,
        on_ended: Callable[[IndicatorChannel], None] | None = None,
    ) -> None:
        self.channel = channel
        self.engine = engine
        self._on_ended = on_ended
        self._loop = asyncio.get_running_loop()
        self._flags: dict[tuple[str, float], IndicatorFlag] = {}
        self._interrupted: tuple[Role, ...] = ()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.ended = False
        # Also told every batch of flag events (the fleet metrics count raised flags).
        self.flag_listeners: list[Callable[[Sequence[EngineEvent]], None]] = []

    # -- SessionSink ------------------------------------------------------------------

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        if self.ended:
            return
        if self.engine is not None:
            self.on_flag_events(self.engine.evaluate(snapshot, now=now))
        self._interrupted = tuple(
            role for role in Role if snapshot.get(f"{role}.media.interrupted") is True
        )
        self._update(now)

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        return None  # interruptions are read from the snapshot of the same tick

    def on_ended(self, now: float) -> None:
        if self.ended:
            return
        self.ended = True
        if self.engine is not None:
            self.engine.finish(now=now)
        self._flags.clear()
        self._arm(None)
        if self.channel.sink is self:
            self.channel.sink = None
            self.channel.restart(now=now)
        if self._on_ended is not None:
            self._on_ended(self.channel)

    # -- flags from a rules engine ------------------------------------------------------

    def on_flag_events(self, events: Iterable[EngineEvent]) -> None:
        """Keep the open therapist-facing flags from the engine's flag events."""
        batch = list(events)
        for listener in self.flag_listeners:
            listener(batch)
        for event in batch:
            if isinstance(event, FlagRaised | FlagUpdated):
                flag = event.flag
                key = (flag.rule_id, flag.start)
                shown = therapist_flags([flag])
                if shown:
                    self._flags[key] = shown[0]
            elif isinstance(event, FlagCleared):
                self._flags.pop((event.flag.rule_id, event.flag.start), None)

    # -- the indicator ------------------------------------------------------------------

    def _update(self, now: float) -> None:
        indicator = self.channel.indicator
        state = indicator.update(self._flags.values(), interrupted=self._interrupted, now=now)
        if state is not None:
            self.channel.publish(state)
        self._arm(indicator.next_deadline())

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self.ended:
            return
        indicator = self.channel.indicator
        state = indicator.on_timer(now=max(self._loop.time(), indicator.now))
        if state is not None:
            self.channel.publish(state)
        self._arm(indicator.next_deadline())

    def _arm(self, at: float | None) -> None:
        if at == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = at
        if at is not None:
            self._timer = self._loop.call_at(at, self._on_timer)


class IndicatorHub:
    """The indicator channels of this process, and the sink factory that feeds them."""

    def __init__(self, *, pack: Pack | None, config: IndicatorConfig | None = None) -> None:
        self.pack = pack
        self.config = config or IndicatorConfig()
        self._channels: dict[str, IndicatorChannel] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def get(self, session_id: str) -> IndicatorChannel | None:
        return self._channels.get(session_id)

    def channel(self, session_id: str) -> IndicatorChannel:
        """The channel of ``session_id``, created (showing ok) if there is none."""
        channel = self._channels.get(session_id)
        if channel is None:
            now = asyncio.get_running_loop().time()
            channel = IndicatorChannel(session_id, now=now, config=self.config)
            self._channels[session_id] = channel
        return channel

    def release(self, channel: IndicatorChannel) -> None:
        """Forget ``channel`` once no session feeds it and nobody watches it."""
        if channel.idle and self._channels.get(channel.session_id) is channel:
            del self._channels[channel.session_id]

    def sink_factory(self, info: SessionInfo) -> SessionSink:
        """A :data:`~monitor.sinks.SinkFactory`: the indicator sink of a new session."""
        channel = self.channel(info.session_id)
        engine = Engine(self.pack) if self.pack is not None else None
        sink = IndicatorSink(channel, engine=engine, on_ended=self.release)
        if channel.sink is not None:
            channel.sink.ended = True  # a stale session's sink must stop publishing
        channel.sink = sink
        channel.restart(now=info.started_at)
        return sink
