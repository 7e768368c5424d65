"""The rules sink: one engine per session, its flags to the indicator, the store and the
trace. Synthetic snapshots on an explicit clock; no sleeps."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.engine import FlagCleared, FlagRaised, replay
from alerts.model import Severity
from monitor.config import load_settings
from monitor.flag_writer import FlagWriter
from monitor.indicator_feed import IndicatorHub
from monitor.rulefile import PackFile, default_pack_text, load_default_pack
from monitor.rules_sink import PackSource, RulesSink, RulesSinkFactory
from monitor.sinks import SessionEvent, SessionInfo
from monitor.store import Store
from monitor.trace import TraceEvent, TraceEventKind, read_trace
from monitor.trace_sink import TraceSink
from probes.base import ConfigError, Role
from probes.signals import Snapshot
from probes.turns import InterruptionDetected
from tests.alerts.scenario import HEALTHY
from tests.monitor.flag_fakes import (
    START,
    RecordingIndicator,
    RecordingStore,
    disclosure_freeze,
    therapist_talk_freeze,
)

WALL_START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
INFO = SessionInfo(session_id="room-7", mode="full", started_at=START)
SPEAKS = "therapist_video_frozen_while_client_speaks"
PLAIN = "therapist_video_frozen"


def run(sink: RulesSink, script: Sequence[tuple[float, Snapshot]]) -> float:
    for now, snapshot in script:
        sink.on_snapshot(now, snapshot)
    end = script[-1][0]
    sink.on_ended(end)
    return end


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'flags.db'}")
    yield opened
    opened.close()


def make_sink(**kw: object) -> RulesSink:
    options: dict[str, object] = {
        "packs": PackSource(load_default_pack()),
        "started_at": WALL_START,
    }
    options.update(kw)
    return RulesSink(INFO, **options)  # type: ignore[arg-type]


# --- flags in the store --------------------------------------------------------------------


def test_a_freeze_during_disclosure_is_one_alert_flag_with_its_context_in_the_store(
    store: Store,
) -> None:
    writer = FlagWriter(store)
    run(make_sink(writer=writer), disclosure_freeze())
    assert writer.close(timeout=10)
    flags = store.list_flags("room-7")
    assert [s.flag.rule_id for s in flags] == [SPEAKS]
    [stored] = flags
    flag = stored.flag
    assert flag.severity is Severity.ALERT
    assert flag.start == START + 25.0
    assert flag.end == START + 27.0 + 2.0  # keep_firing_for 2 s after the picture is back
    assert flag.context["speaking"] == "client"
    assert flag.context["session.disclosure"] is True
    assert flag.evidence["therapist.video.freeze_s"] == pytest.approx(1.75)  # the peak
    assert stored.start_elapsed == pytest.approx(25.0)
    assert stored.start_at == WALL_START + timedelta(seconds=25.0)


def test_a_freeze_while_the_therapist_talks_is_only_the_plain_warn_flag(store: Store) -> None:
    writer = FlagWriter(store)
    run(make_sink(writer=writer), therapist_talk_freeze())
    assert writer.close(timeout=10)
    [stored] = store.list_flags("room-7")
    assert stored.flag.rule_id == PLAIN
    assert stored.flag.severity is Severity.WARN
    assert stored.flag.context["speaking"] == "therapist"
    assert stored.flag.context["session.disclosure"] is False


def test_flags_reach_the_store_exactly_once_even_when_written_twice(store: Store) -> None:
    writer = FlagWriter(store)
    first = make_sink(writer=writer)
    run(first, disclosure_freeze())
    # The same session evaluated again (a restarted worker re-reading its input), and
    # every flag version re-sent: the store holds one row per flag, in its final form.
    run(make_sink(writer=writer), disclosure_freeze())
    for flag in first.flags.values():
        writer.flag("room-7", flag)
        writer.flag("room-7", flag)
    assert writer.close(timeout=10)
    assert writer.written_count >= 3 * 2 + 2  # raised, cleared, twice each, and more
    stored = store.list_flags("room-7")
    assert len(stored) == 1
    assert stored[0].flag == next(iter(first.flags.values()))
    [session] = store.list_sessions().sessions
    assert session.flag_counts[Severity.ALERT] == 1


def test_the_session_is_recorded_with_its_mode_profile_and_end(store: Store) -> None:
    writer = FlagWriter(store)
    sink = make_sink(writer=writer, profile="intake")
    # The profile reaches the engine: the talk-share rule is off for intake sessions.
    assert "therapist_talk_share_high" not in sink.engine.states()
    assert "therapist_talk_share_high" in make_sink().engine.states()
    end = run(sink, disclosure_freeze())
    assert writer.close(timeout=10)
    record = store.get_session("room-7")
    assert record is not None
    assert record.mode.value == "full"
    assert record.profile == "intake"
    assert record.clock_at_start == START
    assert record.started_at == WALL_START
    assert record.ended_at == WALL_START + timedelta(seconds=end - START)
    assert record.duration == pytest.approx(40.0)


# --- the indicator -----------------------------------------------------------------------


def test_the_indicator_gets_the_same_flag_events_as_the_store_before_its_tick() -> None:
    fake = RecordingStore()
    writer = FlagWriter(fake)
    indicator = RecordingIndicator()
    script = disclosure_freeze()
    run(make_sink(writer=writer, indicator=indicator), script)
    assert writer.close(timeout=10)
    told = [e.flag for e in indicator.flag_events if isinstance(e, FlagRaised | FlagCleared)]
    assert [type(e) for e in indicator.flag_events] == [FlagRaised, FlagCleared]
    assert told == fake.of("flag")  # the same flags, in the same order
    # The indicator hears the flags of a tick before it takes that tick, so the
    # therapist sees a freeze in the tick that evaluated it.
    freeze_tick = next(now for now, s in script if s["therapist.video.frozen"])
    raised_at = indicator.calls.index(("flags", None))
    assert indicator.calls[raised_at + 1] == ("snapshot", freeze_tick)
    assert indicator.calls[-1] == ("ended", script[-1][0])


async def test_one_engine_per_session_feeds_the_real_indicator() -> None:
    hub = IndicatorHub(pack=None)
    loop = asyncio.get_running_loop()
    # A session clock far ahead of the loop's: the indicator's timers never fire here.
    base = loop.time() + 10_000.0
    info = SessionInfo(session_id="room-8", mode="full", started_at=base)
    factory = RulesSinkFactory(packs=PackSource(load_default_pack()), indicator=hub)
    sink = factory(info)
    channel = hub.get("room-8")
    assert channel is not None
    assert channel.sink is not None
    assert channel.sink is sink.indicator
    assert channel.sink.engine is None  # the rules sink's engine is the only one
    levels = []
    for now, snapshot in disclosure_freeze():
        sink.on_snapshot(now - START + base, snapshot)
        levels.append(channel.state.level.value)
        if snapshot["therapist.video.frozen"]:
            break
    assert levels[-1] == "alert"  # in the very tick the freeze was first seen
    assert set(levels[:-1]) == {"ok"}
    assert channel.state.message == (
        "Your client may not see you: your picture froze while they were speaking"
    )
    sink.on_ended(base + 30.0)


async def test_a_hub_with_its_own_engine_is_refused() -> None:
    factory = RulesSinkFactory(
        packs=PackSource(load_default_pack()), indicator=IndicatorHub(pack=load_default_pack())
    )
    with pytest.raises(ValueError, match="pack=None"):
        factory(SessionInfo("room-9", "full", asyncio.get_running_loop().time()))


# --- never blocking the loop ---------------------------------------------------------------


def test_a_slow_store_does_not_delay_on_snapshot() -> None:
    gate = threading.Event()
    slow = RecordingStore(gate=gate, gate_timeout=20.0)  # every write waits for the gate
    writer = FlagWriter(slow)
    sink = make_sink(writer=writer)  # the session start is already waiting in the store
    script = disclosure_freeze()
    durations = []
    for now, snapshot in script:
        began = time.perf_counter()
        sink.on_snapshot(now, snapshot)
        durations.append(time.perf_counter() - began)
    sink.on_ended(script[-1][0])
    # A synchronous write would have waited for the gate (20 s) on the first tick that
    # raised a flag.
    assert max(durations) < 0.5, max(durations)
    assert writer.pending >= 4  # start, raised, cleared, timeline points, end: queued
    assert slow.writes == []  # nothing got through the gate yet
    gate.set()
    assert writer.close(timeout=10)
    kinds = [what for what, _ in slow.writes]
    assert (kinds[0], kinds[-1]) == ("start", "end")  # in the order submitted
    assert len(slow.of("flag")) == 2
    assert slow.thread_names == {"feltsafe-flag-writer"}  # never the caller's thread


# --- hot reload -----------------------------------------------------------------------


def _write(path: Path, text: str, *, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_broken_rule_file_at_hot_reload_keeps_the_old_pack(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rules.yaml"
    text = default_pack_text()
    _write(path, text, mtime_ns=1_000_000_000)
    packs = PackSource(pack_file=PackFile(path), poll_interval=1.0)
    original = packs.pack
    trace = TraceSink(tmp_path / "traces", INFO, tick=0.25, pack=original)
    fake = RecordingStore()
    writer = FlagWriter(fake)
    sink = make_sink(packs=packs, writer=writer, trace=trace)
    script = disclosure_freeze()
    for now, snapshot in script[:40]:  # 10 s
        sink.on_snapshot(now, snapshot)
    broken = text.replace("severity: warn", "severity: loud", 1)
    _write(path, broken, mtime_ns=2_000_000_000)
    with caplog.at_level(logging.WARNING, logger="feltsafe.rules"):
        for now, snapshot in script[40:]:
            sink.on_snapshot(now, snapshot)
    assert sink.engine.pack is original  # still running the old pack...
    assert f"rule pack {path} is not valid" in caplog.text
    assert f"{path}:" in caplog.text  # ...and the log says where the file is wrong
    assert len(caplog.records) == 1  # once, not on every poll
    # The old pack kept working: the freeze during disclosure was flagged.
    assert [f.rule_id for f in sink.flags.values()] == [SPEAKS]
    # A fixed file is picked up at the next poll, and the trace says so.
    fixed = text.replace("pack: feltsafe_default", "pack: feltsafe_tuned", 1)
    _write(path, fixed, mtime_ns=3_000_000_000)
    later = script[-1][0] + 1.0
    sink.on_snapshot(later, script[-1][1])
    assert sink.engine.pack.name == "feltsafe_tuned"
    sink.on_ended(later)
    assert writer.close(timeout=10)
    assert trace.path is not None
    reloads = [
        r
        for r in read_trace(trace.path).records
        if isinstance(r, TraceEvent) and r.kind is TraceEventKind.PACK_RELOADED
    ]
    assert [(r.t, r.pack_digest) for r in reloads] == [(later, sink.engine.pack.digest)]


def test_a_broken_rule_file_at_start_up_fails_fast(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(default_pack_text().replace("severity: warn", "severity: loud", 1))
    with pytest.raises(Exception, match=rf"{path}:\d+"):
        PackSource.from_path(path)


# --- the trace -----------------------------------------------------------------------------


def test_the_trace_holds_the_exact_nows_the_engine_saw_and_replays_to_the_same_flags(
    tmp_path: Path,
) -> None:
    pack = load_default_pack()
    trace = TraceSink(tmp_path, INFO, tick=0.25, profile="individual", pack=pack)
    sink = make_sink(trace=trace, profile="individual")
    # Times with every bit used: nothing may round them on the way to the file.
    script = [(now + 1e-9 * i, s) for i, (now, s) in enumerate(disclosure_freeze())]
    end = run(sink, script)
    assert trace.path is not None
    text = trace.path.read_text()
    assert "room-7" not in text  # no session id in the content
    recorded = read_trace(trace.path)
    assert [t for t, _ in recorded.ticks()] == [now for now, _ in script]
    assert recorded.ended_at == end
    assert recorded.header.profile == "individual"
    assert (recorded.header.pack_name, recorded.header.pack_digest) == (pack.name, pack.digest)
    replayed = replay(pack, recorded.ticks(), profile="individual", end=recorded.ended_at)
    assert replayed == list(sink.flags.values())
    assert json.loads(json.dumps([f.as_dict() for f in replayed]))  # JSON-ready


# --- summary and timeline ------------------------------------------------------------------


def _interruption(t: float, by: Role, *, successful: bool = True) -> SessionEvent:
    event = InterruptionDetected(START + t, by, by.other, 0.3, successful)
    return SessionEvent(START + t, None, None, event)


def test_session_summary_figures_come_from_the_snapshots_and_events(store: Store) -> None:
    writer = FlagWriter(store)
    sink = make_sink(writer=writer)
    script = []
    for now, snapshot in disclosure_freeze():
        t = snapshot["session.elapsed_s"]
        assert isinstance(t, float)
        snapshot["client.network.mos"] = 1.0 + 0.1 * int(t)  # 1.0 at 0 s ... 5.0 at 40 s
        snapshot["therapist.network.mos"] = None  # never known
        snapshot["conversation.client.talk_share"] = 0.5 if t < 30 else 0.8
        snapshot["conversation.therapist.talk_share"] = 0.5 if t < 30 else 0.2
        # The client's video restarts at 30 s (a republish): its counters start again.
        snapshot["client.video.freeze_count"] = 2.0 if t < 30 else 1.0
        snapshot["client.video.total_freezes_s"] = 1.5 if t < 30 else 0.5
        script.append((now, snapshot))
        if t == 25.0:  # extra ticks at the freeze's deadlines, with a terrible MOS
            for k in range(1, 21):
                script.append((now + 0.01 * k, {**snapshot, "client.network.mos": 1.0}))
    script[-1][1]["conversation.client.talk_share"] = None  # unknown at the end
    for now, snapshot in script:
        sink.on_snapshot(now, snapshot)
    sink.on_events(
        START + 15,
        [
            _interruption(10, Role.THERAPIST),
            _interruption(12, Role.THERAPIST, successful=False),
            _interruption(14, Role.CLIENT),
            _interruption(15, Role.THERAPIST),
        ],
    )
    sink.on_ended(script[-1][0])
    assert writer.close(timeout=10)
    record = store.get_session("room-7")
    assert record is not None
    assert record.summary is not None
    client, therapist = record.summary.client, record.summary.therapist
    assert (client.talk_share, therapist.talk_share) == (0.8, 0.2)  # the last known
    assert (therapist.interruptions_count, client.interruptions_count) == (2, 1)
    assert therapist.freeze_count == 1  # the one 2 s freeze of the script
    assert therapist.freeze_duration == pytest.approx(2.0)
    assert client.freeze_count == 3  # 2 before the restart, 1 after
    assert client.freeze_duration == pytest.approx(2.0)
    # One MOS sample per second of session time (0, 1, ..., 40 s: 1.0, 1.1, ..., 5.0),
    # whatever extra ticks the session made: p10, p50, p90 by linear interpolation.
    assert client.mos_p10 == pytest.approx(1.4)
    assert client.mos_p50 == pytest.approx(3.0)
    assert client.mos_p90 == pytest.approx(4.6)
    assert therapist.mos_p50 is None  # never measured, never a made-up number


def test_the_timeline_has_a_point_every_5_s_and_shows_a_2_s_freeze(store: Store) -> None:
    writer = FlagWriter(store)
    run(make_sink(writer=writer), disclosure_freeze())
    assert writer.close(timeout=10)
    points = store.timeline("room-7")
    assert [p.elapsed for p in points] == pytest.approx([5.0 * k for k in range(1, 9)])
    frozen = [p.elapsed for p in points if p.figures["therapist.video.frozen"]]
    # The freeze (25-27 s) is in the tick of the 25 s point, and in the ticks after it.
    assert frozen == pytest.approx([25.0, 30.0])
    assert all(p.figures["client.video.frozen"] is False for p in points)
    # Disclosure opens at 20 s of client floor; the client stops at 40 s.
    assert [p.figures["session.disclosure"] for p in points] == [False] * 3 + [True] * 4 + [False]
    assert points[-1].figures["client.network.mos"] == HEALTHY["client.network.mos"]
    assert points[0].at == WALL_START + timedelta(seconds=5.0)


# --- settings ------------------------------------------------------------------------------


def test_the_rule_file_and_profile_come_from_the_environment_or_the_config_file(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(default_pack_text())
    settings = load_settings(env={"FELTSAFE_RULES": str(rules), "FELTSAFE_PROFILE": "intake"})
    assert (settings.rules, settings.profile) == (rules, "intake")
    config = tmp_path / "feltsafe.toml"
    config.write_text(f'rules = "{rules}"\nprofile = "couples"\n')
    assert load_settings(env={}, config_file=config).profile == "couples"
    assert PackSource.from_path(settings.rules).pack.name == "feltsafe_default"
    assert load_settings(env={}).rules is None  # the bundled pack
    with pytest.raises(ConfigError, match="FELTSAFE_PROFILE"):
        load_settings(env={"FELTSAFE_PROFILE": "Intake Sessions"})
