"""The asyncio driver: one timer per session, sinks, the end of a session, the registry."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from monitor.config import Mode
from monitor.observations import MediaSpec
from monitor.participant import Attachment, LeftReason
from monitor.session import SessionConfig, SessionEnded
from monitor.sessions import SessionConflictError, SessionRegistry
from monitor.sinks import SessionEvent, SessionInfo
from probes.base import MediaKind, Role
from probes.rtp import RtpHeader
from probes.signals import Snapshot

FAST = SessionConfig(tick_interval=0.05, interrupted_after=0.2, gone_after=0.3, end_after=0.2)


class Recorder:
    def __init__(self, info: SessionInfo) -> None:
        self.info = info
        self.snapshots: list[tuple[float, dict[str, object]]] = []
        self.events: list[SessionEvent] = []
        self.ended_at: float | None = None

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        self.snapshots.append((now, dict(snapshot)))

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        self.events.extend(events)

    def on_ended(self, now: float) -> None:
        self.ended_at = now


class Broken:
    def __init__(self, info: SessionInfo) -> None:
        pass

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        raise RuntimeError("sink bug")

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        raise RuntimeError("sink bug")

    def on_ended(self, now: float) -> None:
        raise RuntimeError("sink bug")


def registry_with(*factories: object, config: SessionConfig = FAST) -> SessionRegistry:
    return SessionRegistry(session_config=config, sink_factories=factories)  # type: ignore[arg-type]


async def test_a_session_ticks_on_its_own_and_the_latest_snapshot_is_kept() -> None:
    recorders: list[Recorder] = []
    registry = registry_with(lambda info: recorders.append(Recorder(info)) or recorders[-1])
    live = registry.open("s1")
    live.session.attach(Role.CLIENT, Attachment.BEACON, now=live.clock())
    for _ in range(100):  # real time: allow for a loaded machine
        await asyncio.sleep(0.05)
        if len(recorders[0].snapshots) >= 4:
            break
    times = [t for t, _ in recorders[0].snapshots]
    elapsed = live.clock() - live.session.started_at
    assert len(times) >= 4
    assert len(times) <= elapsed / 0.05 + 1  # one per grid point at most: no runaway timer
    assert times == sorted(times)
    assert live.latest.snapshot is not None
    assert live.latest.at == times[-1]
    assert recorders[0].info.session_id == "s1"
    await registry.aclose()


async def test_an_empty_session_ends_by_itself_and_leaves_the_registry() -> None:
    recorders: list[Recorder] = []
    registry = registry_with(lambda info: recorders.append(Recorder(info)) or recorders[-1])
    live = registry.open("s1")
    start = live.clock()
    for _ in range(40):
        await asyncio.sleep(0.05)
        if registry.get("s1") is None:
            break
    assert registry.get("s1") is None
    recorder = recorders[0]
    assert recorder.ended_at is not None
    assert recorder.ended_at - start == pytest.approx(FAST.end_after, abs=0.05)
    assert any(isinstance(e.event, SessionEnded) for e in recorder.events)
    assert registry.sessions_ended == 1


async def test_an_earlier_probe_deadline_rearms_the_timer() -> None:
    recorders: list[Recorder] = []
    config = SessionConfig(tick_interval=1.0, gone_after=30.0, end_after=30.0)
    registry = registry_with(
        lambda info: recorders.append(Recorder(info)) or recorders[-1], config=config
    )
    live = registry.open("s1", mode=Mode.METADATA)
    session = live.session
    session.attach(Role.CLIENT, Attachment.WHIP, now=live.clock())
    session.configure_media(Role.CLIENT, MediaSpec(MediaKind.VIDEO, {96: 90000}, {}, {}, {}))
    for i in range(10):  # 30 fps, then the frames stop
        header = RtpHeader(1, i, i * 3000, 96, True, 1000)
        session.on_rtp(Role.CLIENT, MediaKind.VIDEO, header, now=live.clock())
        await asyncio.sleep(1 / 30)
    last_frame = live.clock()
    await asyncio.sleep(0.4)
    frozen = [t for t, s in recorders[0].snapshots if s["client.video.frozen"]]
    assert frozen, "no snapshot at the freeze deadline (the regular tick is 1 s away)"
    assert frozen[0] - last_frame < 0.3  # the 30 fps threshold is about 183 ms
    await registry.aclose()


async def test_a_failing_sink_is_counted_and_the_session_goes_on() -> None:
    recorders: list[Recorder] = []
    registry = registry_with(Broken, lambda info: recorders.append(Recorder(info)) or recorders[-1])
    live = registry.open("s1")
    live.session.attach(Role.CLIENT, Attachment.BEACON, now=live.clock())
    await asyncio.sleep(0.2)
    assert live.sink_errors >= 2
    assert len(recorders[0].snapshots) >= 2  # later sinks still get every snapshot
    await registry.aclose()


async def test_close_is_idempotent_and_tells_the_sinks_once() -> None:
    recorders: list[Recorder] = []
    registry = registry_with(lambda info: recorders.append(Recorder(info)) or recorders[-1])
    live = registry.open("s1")
    await asyncio.gather(live.close(), live.close())
    await live.close()
    assert recorders[0].ended_at is not None
    ended = [e for e in recorders[0].events if isinstance(e.event, SessionEnded)]
    assert len(ended) == 1
    assert registry.get("s1") is None


async def test_the_last_snapshot_reaches_the_sinks_before_any_later_callback() -> None:
    # A sink with a clock of its own (the indicator's timer) must never be handed a time
    # earlier than one it has already seen: the final snapshot goes out inside close().
    order: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()

    class Clocked(Recorder):
        def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
            order.append(("snapshot", now))

    registry = registry_with(Clocked)
    live = registry.open("s1")
    live.session.attach(Role.CLIENT, Attachment.BEACON, now=live.clock())
    closing = asyncio.ensure_future(live.close())
    loop.call_soon(lambda: order.append(("another callback", loop.time())))
    await closing
    assert [what for what, _ in order] == ["snapshot", "another callback"]
    assert order[0][1] <= order[1][1]
    assert live.session.drain_events() == []  # every event went out with the last snapshot
    assert registry.get("s1") is None


async def test_a_session_keeps_its_mode_and_refuses_another() -> None:
    registry = registry_with()
    live = registry.open("s1", mode=Mode.METADATA)
    assert registry.open("s1") is live
    with pytest.raises(SessionConflictError):
        registry.open("s1", mode=Mode.FULL)
    await registry.aclose()


@pytest.mark.parametrize("bad", ["", "a/b", "x" * 129, "../etc", "sp ace"])
async def test_session_ids_are_url_safe(bad: str) -> None:
    with pytest.raises(ValueError, match="session id"):
        registry_with().open(bad)


async def test_a_participant_gone_silent_is_detached_by_the_driver() -> None:
    recorders: list[Recorder] = []
    registry = registry_with(lambda info: recorders.append(Recorder(info)) or recorders[-1])
    live = registry.open("s1")
    live.session.attach(Role.CLIENT, Attachment.WHIP, now=live.clock())
    await asyncio.sleep(0.25)
    interrupted = [t for t, s in recorders[0].snapshots if s["client.media.interrupted"]]
    assert interrupted  # 0.2 s without packets
    await asyncio.sleep(0.5)
    reasons = [e.event.reason for e in recorders[0].events if hasattr(e.event, "reason")]
    assert LeftReason.NO_MEDIA in reasons
    assert registry.get("s1") is None  # then nobody was left: ended
