"""The content-free trace a live session writes when trace_dir is set."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor import trace_sink
from monitor.observations import BeaconReport, InboundStreamStats
from monitor.participant import Attachment
from monitor.session import SessionConfig
from monitor.sessions import SessionRegistry
from monitor.trace import TraceEvent, TraceEventKind, read_trace
from probes.base import MediaKind, Role
from probes.signals import CATALOGUE


async def test_a_session_writes_ticks_marker_events_and_its_end(tmp_path: Path) -> None:
    registry = SessionRegistry(
        session_config=SessionConfig(tick_interval=0.05),
        sink_factories=[trace_sink.factory(tmp_path, tick=0.05)],
    )
    live = registry.open("room-42")
    live.session.attach(Role.CLIENT, Attachment.BEACON, now=live.clock())
    report = BeaconReport(inbound=(InboundStreamStats(MediaKind.AUDIO, jitter=0.02),))
    live.session.on_beacon_report(Role.CLIENT, report, now=live.clock())
    await asyncio.sleep(0.12)
    live.session.set_marker(True, now=live.clock())
    await asyncio.sleep(0.12)
    await live.close()
    [path] = list(tmp_path.iterdir())
    assert path.name.startswith("room-42-")
    assert path.suffix == ".jsonl"
    trace = read_trace(path)
    assert trace.header.mode == "full"
    assert trace.header.tick_s == 0.05
    ticks = list(trace.ticks())
    assert len(ticks) >= 4
    first = ticks[0][1]
    assert set(first) == set(CATALOGUE)  # the first tick holds every signal, then changes
    assert first["therapist.audio.jitter_ms"] == 20.0
    times = [t for t, _ in ticks]
    assert times == sorted(times)
    kinds = [r.kind for r in trace.records if isinstance(r, TraceEvent)]
    assert kinds == [TraceEventKind.MARKER_ON, TraceEventKind.SESSION_ENDED]
    assert trace.ended_at is not None
    assert "room-42" not in path.read_text()  # the id names the file, never its content


async def test_an_unwritable_trace_dir_does_not_stop_the_session(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    registry = SessionRegistry(sink_factories=[trace_sink.factory(blocked / "traces")])
    live = registry.open("s1")
    await asyncio.sleep(0.3)
    assert live.latest.snapshot is not None
    await registry.aclose()
