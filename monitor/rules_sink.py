"""The rules engine in the live session: one engine per session, its flags to everyone.

Theory of operation
-------------------
DESIGN.md's data flow has one rules engine between the snapshots and the two places
flags go (the therapist's indicator, the flag store), with the trace beside it so a
replay gives the same flags. :class:`RulesSink` is that junction for one session, a
session sink (monitor/sinks.py) that on every tick, synchronously on the event loop:

1. asks the :class:`PackSource` for the current pack; if it changed (hot reload), swaps
   it into the engine (``Engine.replace_pack``: unchanged rules keep their state) and
   writes a ``pack_reloaded`` event to the trace;
2. writes the snapshot to the trace (monitor/trace_sink.py) at the same ``now``, before
   evaluating it, so the trace is exactly the ``(now, snapshot)`` sequence the engine
   saw - no rounding, no second clock reading;
3. runs ``Engine.evaluate(snapshot, now=now)``;
4. hands the engine's flag events (``FlagRaised``, ``FlagUpdated``, ``FlagCleared``) to
   the indicator sink (``IndicatorSink.on_flag_events``; the hub runs with ``pack=None``,
   so there is one engine per session, not two), then lets the indicator take the tick,
   so a freeze reaches the therapist in the same tick it is evaluated;
5. queues every flag event's flag on the :class:`~monitor.flag_writer.FlagWriter`
   (non-blocking; the store merges the versions of one flag by its key), and feeds the
   session figures (monitor/session_figures.py): a timeline point every 5 s, and at the
   end the summary.

At the session's end (``on_ended(now)``): ``Engine.finish(now=now)`` clears every open
flag at ``now``, the trace gets ``session_ended`` at that same ``now``, and the writer
gets the cleared flags, the last timeline point and the session's end with its summary.

Each step is guarded: a failure in one (a trace write, the indicator) is logged once and
counted and does not stop the others, and never the session.

Hot reload (:class:`PackSource`): with a rule file configured, one source per process
follows it (monitor/rulefile.py ``PackFile``: validated before use; a broken file keeps
the old pack and is logged). It is polled from the ticks themselves, at most once per
``poll_interval`` of loop time whichever session ticks, so there is no timer of its own.
Every session picks the new pack up at its next tick; a session started later starts
with it.

Clock: ``now`` is the session clock (the loop's monotonic time) the runtime hands every
sink. The wall-clock start of the session (for the store) is read once, by the factory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Protocol, TypeVar

from alerts.engine import (
    Engine,
    EngineEvent,
    FlagCleared,
    FlagEvent,
    FlagRaised,
    FlagUpdated,
    collect_flags,
)
from alerts.model import Flag
from alerts.pack import Pack
from monitor.flag_writer import FlagWriter
from monitor.indicator_feed import IndicatorHub, IndicatorSink
from monitor.rulefile import PackFile, load_default_pack
from monitor.session_figures import SessionFigures, TimelineSampler
from monitor.sinks import SessionEvent, SessionInfo, SessionSink
from monitor.trace_sink import TraceSink
from probes.signals import Snapshot

logger = logging.getLogger(__name__)

POLL_INTERVAL: Final = 2.0  # seconds between two looks at the rule file

_T = TypeVar("_T")


class PackSource:
    """The rule pack sessions run: a fixed pack, or a file followed by hot reload."""

    def __init__(
        self,
        pack: Pack | None = None,
        *,
        pack_file: PackFile | None = None,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        if (pack is None) == (pack_file is None):
            raise ValueError("give either a pack or a pack file")
        self._pack = pack
        self._file = pack_file
        self.poll_interval = poll_interval
        self._next_poll: float | None = None

    @classmethod
    def from_path(cls, path: Path | None, *, poll_interval: float = POLL_INTERVAL) -> PackSource:
        """The bundled default pack (``path`` None) or a rule file, validated now.

        A broken file raises here (PackError with ``file:line`` errors): at start-up
        there is no old pack to keep.
        """
        if path is None:
            return cls(load_default_pack())
        return cls(pack_file=PackFile(path), poll_interval=poll_interval)

    @property
    def path(self) -> Path | None:
        return None if self._file is None else self._file.path

    @property
    def pack(self) -> Pack:
        """The current pack, without polling."""
        if self._file is not None:
            return self._file.pack
        assert self._pack is not None
        return self._pack

    def pack_at(self, *, now: float) -> Pack:
        """The current pack, looking at the file first if ``poll_interval`` has passed."""
        if self._file is not None and (self._next_poll is None or now >= self._next_poll):
            self._next_poll = now + self.poll_interval
            self._file.poll()  # a broken or missing file keeps the old pack (and logs)
        return self.pack


class FlagEventsSink(SessionSink, Protocol):
    """A session sink that is also told the rules engine's flag events (the indicator)."""

    def on_flag_events(self, events: Iterable[EngineEvent]) -> None: ...


_FLAG_EVENTS = (FlagRaised, FlagUpdated, FlagCleared)


class RulesSink:
    """Runs one session's rules engine and hands its flags on (see the module docstring)."""

    def __init__(
        self,
        info: SessionInfo,
        *,
        packs: PackSource,
        started_at: datetime,
        profile: str | None = None,
        indicator: FlagEventsSink | None = None,
        writer: FlagWriter | None = None,
        trace: TraceSink | None = None,
        figures: SessionFigures | None = None,
        timeline: TimelineSampler | None = None,
    ) -> None:
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        self.info = info
        self.session_id = info.session_id
        self.started_at = started_at
        self.profile = profile
        self._packs = packs
        self.engine = Engine(packs.pack, profile=profile)
        self.indicator = indicator
        self.writer = writer
        self.trace = trace
        self.figures = figures or SessionFigures(start=info.started_at)
        self.timeline = timeline or TimelineSampler(start=info.started_at)
        self.flags: dict[tuple[str, float], Flag] = {}  # the latest version of each flag
        self.errors = 0
        self.ended = False
        if writer is not None:
            writer.session_started(
                self.session_id,
                started_at=started_at,
                clock_at_start=info.started_at,
                mode=info.mode,
                profile=profile,
            )

    # -- SessionSink --------------------------------------------------------------------

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        if self.ended:
            return
        events: list[EngineEvent] = []
        pack = self._guard("rule pack", lambda: self._packs.pack_at(now=now))
        if pack is not None and pack is not self.engine.pack:
            events += self._guard("pack reload", lambda: self._reload(pack, now)) or []
        if self.trace is not None:
            trace = self.trace
            self._guard("trace", lambda: trace.on_snapshot(now, snapshot))
        events += self._guard("rules engine", lambda: self.engine.evaluate(snapshot, now=now)) or []
        self._hand_on(events)
        self._guard("session figures", lambda: self._observe(now, snapshot))
        if self.indicator is not None:
            indicator = self.indicator
            self._guard("indicator", lambda: indicator.on_snapshot(now, snapshot))

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        if self.ended:
            return
        self._guard("session figures", lambda: self.figures.on_events(events))
        if self.indicator is not None:
            indicator = self.indicator
            self._guard("indicator", lambda: indicator.on_events(now, events))

    def on_ended(self, now: float) -> None:
        if self.ended:
            return
        self.ended = True
        self._hand_on(self._guard("rules engine", lambda: self.engine.finish(now=now)) or [])
        if self.trace is not None:
            trace = self.trace
            self._guard("trace", lambda: trace.on_ended(now))
        if self.writer is not None:
            last = self.timeline.finish()
            if last is not None:
                self.writer.timeline(self.session_id, [last])
            self.writer.session_ended(
                self.session_id,
                ended_at=self.wall_time(now),
                summary=self.figures.summary(),
            )
        if self.indicator is not None:
            indicator = self.indicator
            self._guard("indicator", lambda: indicator.on_ended(now))

    # -- helpers ----------------------------------------------------------------------------

    def wall_time(self, now: float) -> datetime:
        """The UTC time of session-clock ``now``."""
        return self.started_at + timedelta(seconds=now - self.info.started_at)

    def _reload(self, pack: Pack, now: float) -> list[EngineEvent]:
        if self.trace is not None:
            self.trace.pack_reloaded(now, pack)
        return self.engine.replace_pack(pack, now=now)

    def _hand_on(self, events: Sequence[EngineEvent]) -> None:
        flag_events: list[FlagEvent] = [e for e in events if isinstance(e, _FLAG_EVENTS)]
        if not flag_events:
            return
        collect_flags(flag_events, self.flags)
        if self.indicator is not None:
            indicator = self.indicator
            self._guard("indicator", lambda: indicator.on_flag_events(flag_events))
        if self.writer is not None:
            for event in flag_events:
                self.writer.flag(self.session_id, event.flag)

    def _observe(self, now: float, snapshot: Snapshot) -> None:
        self.figures.observe(now, snapshot)
        point = self.timeline.observe(now, snapshot)
        if point is not None and self.writer is not None:
            self.writer.timeline(self.session_id, [point])

    def _guard(self, what: str, call: Callable[[], _T]) -> _T | None:
        try:
            return call()
        except Exception:
            self.errors += 1
            if self.errors == 1:
                # No session id: the log says which stage failed, and how (traceback).
                logger.exception("rules sink: the %s step failed (counted; further quiet)", what)
            return None


@dataclass(frozen=True, slots=True)
class RulesSinkFactory:
    """The :data:`~monitor.sinks.SinkFactory` of every session's rules sink.

    It builds, per session: the indicator sink (from ``indicator``, a hub with
    ``pack=None``), the trace (when ``trace_dir`` is set) and the rules sink joining
    them to one engine and to the process's ``writer``.
    """

    packs: PackSource
    indicator: IndicatorHub | None = None
    writer: FlagWriter | None = None
    trace_dir: Path | None = None
    tick: float = 0.25
    profile: str | None = None
    wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __call__(self, info: SessionInfo) -> RulesSink:
        loop = asyncio.get_running_loop()
        started_at = self.wall_clock() - timedelta(seconds=loop.time() - info.started_at)
        indicator: IndicatorSink | None = None
        if self.indicator is not None:
            made = self.indicator.sink_factory(info)
            assert isinstance(made, IndicatorSink)
            indicator = made
            if indicator.engine is not None:
                raise ValueError("the indicator hub must run without a pack (pack=None)")
        pack = self.packs.pack
        trace = None
        if self.trace_dir is not None:
            trace = TraceSink(self.trace_dir, info, tick=self.tick, profile=self.profile, pack=pack)
        return RulesSink(
            info,
            packs=self.packs,
            started_at=started_at,
            profile=self.profile,
            indicator=indicator,
            writer=self.writer,
            trace=trace,
        )


__all__ = ["POLL_INTERVAL", "FlagEventsSink", "PackSource", "RulesSink", "RulesSinkFactory"]
