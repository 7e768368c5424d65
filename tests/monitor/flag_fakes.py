"""Test doubles for the rules sink and the flag writer: scripted sessions and fake stores.

- :func:`disclosure_freeze` and :func:`therapist_talk_freeze`: issue 5's two scenarios as
  synthetic snapshots on an explicit clock (every 0.25 s, as the live tick), built on
  the healthy session of tests/alerts/scenario.py.
- :class:`RecordingStore`: a fake store that records every write, can hold writes at a
  gate (a slow database) and can fail the first few with a given error.
- :class:`RecordingIndicator`: a fake indicator sink that records what it is told, in
  order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from alerts.engine import EngineEvent
from alerts.model import Flag
from monitor.sinks import SessionEvent
from monitor.store.records import SessionSummary, TimelineSample
from probes.signals import SignalValue, Snapshot
from tests.alerts.scenario import HEALTHY

TICK = 0.25
START = 7321.123456789  # the session clock's origin: an arbitrary monotonic reading


def _at(
    t: float,
    *,
    client_talks: tuple[float, float] | None,
    therapist_talks: tuple[float, float] | None,
    freeze: tuple[float, float],
) -> dict[str, SignalValue]:
    snapshot: dict[str, SignalValue] = dict(HEALTHY)
    snapshot["session.elapsed_s"] = t
    for role, talks in (("client", client_talks), ("therapist", therapist_talks)):
        speaking = talks is not None and talks[0] <= t < talks[1]
        snapshot[f"{role}.speech.active"] = speaking
        snapshot[f"conversation.{role}.holds_floor"] = speaking
        snapshot[f"conversation.{role}.floor_s"] = t - talks[0] if speaking and talks else 0.0
    floor = snapshot["conversation.client.floor_s"]
    snapshot["session.disclosure"] = isinstance(floor, float) and floor >= 20.0
    frozen = freeze[0] <= t < freeze[1]
    snapshot["therapist.video.frozen"] = frozen
    snapshot["therapist.video.freeze_s"] = t - freeze[0] if frozen else 0.0
    snapshot["therapist.video.freeze_count"] = 1.0 if t >= freeze[1] else 0.0
    snapshot["therapist.video.total_freezes_s"] = freeze[1] - freeze[0] if t >= freeze[1] else 0.0
    return snapshot


Script = list[tuple[float, dict[str, SignalValue]]]


def ticks(duration: float, **script: object) -> Iterator[tuple[float, dict[str, SignalValue]]]:
    """``(now, snapshot)`` every TICK from START + TICK to START + duration."""
    count = round(duration / TICK)
    for index in range(1, count + 1):
        t = index * TICK
        yield START + t, _at(t, **script)  # type: ignore[arg-type]


def disclosure_freeze() -> Script:
    """The client speaks for 40 s; the therapist's video freezes 25-27 s (disclosure open)."""
    return list(ticks(40.0, client_talks=(0.0, 40.0), therapist_talks=None, freeze=(25.0, 27.0)))


def therapist_talk_freeze() -> Script:
    """The therapist talks for 10 s; their video freezes 4-6 s."""
    return list(ticks(10.0, client_talks=None, therapist_talks=(0.0, 10.0), freeze=(4.0, 6.0)))


@dataclass
class RecordingIndicator:
    """Records the calls a rules sink makes on its indicator, in order."""

    calls: list[tuple[str, float | None]] = field(default_factory=list)
    flag_events: list[EngineEvent] = field(default_factory=list)

    def on_flag_events(self, events: Iterable[EngineEvent]) -> None:
        batch = list(events)
        self.flag_events.extend(batch)
        self.calls.append(("flags", None))

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        self.calls.append(("snapshot", now))

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        self.calls.append(("events", now))

    def on_ended(self, now: float) -> None:
        self.calls.append(("ended", now))


class RecordingStore:
    """A fake FlagStore: records writes; optionally slow (a gate) or failing at first."""

    def __init__(
        self,
        *,
        gate: threading.Event | None = None,
        gate_timeout: float = 10.0,
        failures: Sequence[BaseException] = (),
    ) -> None:
        self.gate = gate
        self.gate_timeout = gate_timeout
        self._failures = list(failures)
        self.writes: list[tuple[str, object]] = []
        self.attempts = 0
        self.thread_names: set[str] = set()

    def _enter(self) -> None:
        self.attempts += 1
        self.thread_names.add(threading.current_thread().name)
        if self.gate is not None:
            self.gate.wait(self.gate_timeout)
        if self._failures:
            raise self._failures.pop(0)

    def record_session_start(
        self,
        session_id: str,
        *,
        started_at: datetime,
        clock_at_start: float,
        mode: str,
        profile: str | None = None,
    ) -> None:
        self._enter()
        self.writes.append(("start", (session_id, started_at, clock_at_start, mode, profile)))

    def record_session_end(
        self, session_id: str, *, ended_at: datetime, summary: SessionSummary
    ) -> None:
        self._enter()
        self.writes.append(("end", (session_id, ended_at, summary)))

    def upsert_flag(self, session_id: str, flag: Flag) -> str:
        self._enter()
        self.writes.append(("flag", flag))
        return flag.key(session_id)

    def append_timeline(self, session_id: str, samples: Sequence[TimelineSample]) -> int:
        self._enter()
        self.writes.append(("timeline", tuple(samples)))
        return len(samples)

    def of(self, kind: str) -> list[object]:
        return [payload for what, payload in self.writes if what == kind]
