"""Two in-process aiortc peers publish over WHIP to the real app; media over real UDP.

Each peer sends synthetic speech (a scripted talk pattern) and, where needed, a moving
picture; a seeded impairment on the publisher's side drops and delays RTP packets. The
monitor's figures are compared with the ground truth the impairment and the scripts
recorded. Every test here takes a few seconds of real time (marked slow).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
import pytest
from aiortc import RTCPeerConnection
from aiortc.rtcrtpreceiver import RemoteStreamTrack, RTCRtpReceiver
from starlette.applications import Starlette

from monitor.app import create_app
from monitor.config import Mode, Settings
from monitor.media_host import media_host
from monitor.publisher import Publisher
from monitor.session import MediaInterrupted
from monitor.sinks import SessionEvent, SessionInfo
from monitor.tokens import TokenRole, issue_token
from probes.base import MediaKind, Role
from probes.freeze import FreezeEnded, FreezeStarted
from probes.signals import Snapshot
from probes.speech import VoiceStarted, VoiceStopped
from tests.monitor.peers import (
    Impairment,
    MovingPatternTrack,
    Published,
    ScriptedSpeechTrack,
    publish,
    reference_jitter_ms,
)

pytestmark = pytest.mark.slow

SECRET = "e" * 40


@dataclass
class Recorder:
    snapshots: list[tuple[float, dict[str, object]]] = field(default_factory=list)
    events: list[SessionEvent] = field(default_factory=list)

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        self.snapshots.append((now, dict(snapshot)))

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        self.events.extend(events)

    def on_ended(self, now: float) -> None:
        return None

    def of(self, kind: type, role: Role) -> list[object]:
        return [e.event for e in self.events if isinstance(e.event, kind) and e.role is role]


@dataclass
class Monitor:
    app: Starlette
    client: httpx.AsyncClient
    recorder: Recorder
    peers: list[Published] = field(default_factory=list)

    async def publish(
        self,
        role: Role,
        tracks: Sequence[object],
        *,
        impairment: Impairment | None = None,
        query: str = "",
    ) -> Published:
        token = issue_token(SECRET, role=TokenRole.PUBLISHER, session="s1", participant=role)
        peer = await publish(
            self.client,
            "s1",
            role.value,
            token,
            tracks,  # type: ignore[arg-type]
            query=query,
            impairment=impairment,
        )
        self.peers.append(peer)
        return peer

    def live(self):  # type: ignore[no-untyped-def]
        return self.app.state.registry.get("s1")


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    recorder = Recorder()

    def sink(info: SessionInfo) -> Recorder:
        return recorder

    app = create_app(Settings(secret=SECRET), sink_factories=[sink])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
        handle = Monitor(app, client, recorder)
        yield handle
        for peer in handle.peers:
            await peer.pc.close()
        await app.state.registry.aclose()


def rtp_streams(monitor: Monitor, role: Role, kind: MediaKind):  # type: ignore[no-untyped-def]
    live = monitor.live()
    return live.session.participants[role].rtp[kind].snapshot(now=live.clock()).streams


async def test_loss_and_jitter_match_the_injected_pattern(monitor: Monitor) -> None:
    clean = Impairment()
    impaired = Impairment(loss=0.05, max_delay=0.040, seed=11)
    await monitor.publish(Role.THERAPIST, [ScriptedSpeechTrack([(0, 9)])], impairment=clean)
    await monitor.publish(Role.CLIENT, [ScriptedSpeechTrack([(0, 9)])], impairment=impaired)
    await asyncio.sleep(4.5)
    impaired.active = clean.active = False  # stop counting; in-flight packets land
    await asyncio.sleep(0.1)
    [client_stream] = rtp_streams(monitor, Role.CLIENT, MediaKind.AUDIO)
    truth = impaired.truth[client_stream.ssrc]
    assert truth.sent >= 150
    assert truth.dropped >= 4
    # Loss: every dropped packet and nothing else (the newest few may still be in flight).
    lost = client_stream.packets_lost
    assert truth.dropped - 1 <= lost <= truth.dropped + 1, (lost, truth.dropped)
    # Jitter: the injected 0-40 ms uniform delay gives E|D_i - D_i-1| = 40/3 = 13.3 ms
    # (the RFC 3550 estimate fluctuates around it by a few ms: a 1/16 running mean).
    intended = reference_jitter_ms(truth.deliveries, 48000)
    assert 8.0 < intended < 20.0
    # The probe's figure is RFC 3550 over the arrivals the monitor really had: the
    # injected delays as the event loop delivered them (late timers bunch on a loaded
    # machine, which moves the figure by a few ms either way).
    delivered = reference_jitter_ms(truth.releases, 48000)
    assert 8.0 < delivered < 20.0
    assert client_stream.jitter_ms == pytest.approx(delivered, abs=max(2.0, 0.2 * delivered))
    [therapist_stream] = rtp_streams(monitor, Role.THERAPIST, MediaKind.AUDIO)
    assert therapist_stream.packets_lost == 0
    assert therapist_stream.jitter_ms < client_stream.jitter_ms  # only scheduling noise
    # The snapshot carries the same figures under the catalogue's names.
    _, snapshot = monitor.recorder.snapshots[-1]
    assert snapshot["client.audio.loss_ratio_total"] == pytest.approx(
        truth.dropped / truth.sent, abs=0.02
    )
    assert snapshot["therapist.audio.loss_ratio"] == 0.0


async def _conversation_with_a_freeze(monitor: Monitor, mode: Mode) -> dict[Role, object]:
    # Talk begins after 2 s of room noise: the speech detectors spend their one-off
    # warm-up learning the room (probes/speech.py), as a real session's first seconds do.
    scripts = {Role.THERAPIST: [(2.2, 4.0)], Role.CLIENT: [(4.6, 6.8)]}
    tracks: dict[Role, ScriptedSpeechTrack] = {}
    videos: dict[Role, MovingPatternTrack] = {}
    for role, f0 in ((Role.THERAPIST, 115.0), (Role.CLIENT, 205.0)):
        tracks[role] = ScriptedSpeechTrack(scripts[role], f0=f0, seed=int(f0))
        videos[role] = MovingPatternTrack(width=160, height=90, fps=30)
        await monitor.publish(role, [tracks[role], videos[role]], query=f"?mode={mode}")
    videos[Role.CLIENT].pause(at=3.0, duration=1.2)
    loop = asyncio.get_running_loop()
    while any(track.started_at is None for track in tracks.values()):
        await asyncio.sleep(0.05)
    # The last talk spurt ends at 6.8 s; its stop is decided within about a second.
    first = min(track.started_at or 0.0 for track in tracks.values())
    await asyncio.sleep(first + 8.0 - loop.time())
    [paused] = videos[Role.CLIENT].paused_spans
    return {"scripts": scripts, "tracks": tracks, "paused": paused}


@pytest.mark.parametrize(
    ("mode", "audio_decoder"),
    [(Mode.FULL, "monitor"), (Mode.FULL, "aiortc"), (Mode.METADATA, None)],
    ids=["full", "full-aiortc-audio", "metadata"],
)
async def test_a_paused_sender_freezes_and_talk_follows_the_script(
    monitor: Monitor, mode: Mode, audio_decoder: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Full mode decodes audio itself with libopus (monitor/audio_decode.py); without
    # libopus it leaves decoding to aiortc. Both paths must give the same speech.
    if audio_decoder == "aiortc":
        monkeypatch.setattr("monitor.publisher.opus_available", lambda: False)
    setup = await _conversation_with_a_freeze(monitor, mode)
    recorder = monitor.recorder
    assert monitor.live().session.mode is mode
    publishers = monitor.live().publishers.values()
    tapped = [p.encoded_frames_seen > 0 for p in publishers]
    assert tapped == [audio_decoder == "monitor"] * 2
    # The freeze: reported while it lasts, once, as long as the sender's pause. (On a
    # loaded machine a decoder stall can add a short freeze of its own: those are real
    # frame gaps at the monitor, so only their length is bounded.)
    last_before, first_after = setup["paused"]  # type: ignore[misc]
    paused = first_after - last_before
    assert 0.6 <= paused <= 1.3  # 1.2 s, less when the sender was running late
    started = recorder.of(FreezeStarted, Role.CLIENT)
    ended = recorder.of(FreezeEnded, Role.CLIENT)
    assert len(started) == len(ended)
    [freeze] = [e for e in ended if e.start < first_after and e.end > last_before]
    # Encode, send and decode take tens of ms here, more on a loaded machine.
    assert 0.0 <= freeze.start - last_before <= 0.5
    assert freeze.duration == pytest.approx(first_after - last_before, abs=0.3)
    others = [e.duration for e in ended if e is not freeze]
    assert len(others) <= 3
    assert all(d < freeze.duration / 2 for d in others)
    during = [
        s["client.video.frozen"]
        for t, s in recorder.snapshots
        if last_before + 0.3 < t < first_after - 0.05
    ]
    assert during
    assert all(during)  # the ongoing freeze is in every snapshot while it lasts
    final = recorder.snapshots[-1][1]
    assert final["client.video.freeze_count"] == float(len(ended))
    assert final["client.video.frozen"] is False
    assert final["client.video.fps"] == pytest.approx(30, abs=6)
    # Talk activity: one talk spurt each, edges within 0.25 s of the script.
    scripts, tracks = setup["scripts"], setup["tracks"]
    for role in Role:
        origin = tracks[role].started_at  # type: ignore[index]
        starts = [e.t - origin for e in recorder.of(VoiceStarted, role)]
        stops = [e.t - origin for e in recorder.of(VoiceStopped, role)]
        [(a, b)] = scripts[role]  # type: ignore[index]
        assert len(starts) == 1, (role, starts)
        assert len(stops) == 1, (role, stops)
        assert starts[0] == pytest.approx(a, abs=0.25)
        assert stops[0] == pytest.approx(b, abs=0.25)
    assert final["conversation.therapist.talk_time_s"] == pytest.approx(1.8, abs=0.3)
    assert final["conversation.client.talk_time_s"] == pytest.approx(2.2, abs=0.3)
    assert final["conversation.turns_total"] == 2
    assert final["therapist.media.interrupted"] is False
    # No beacons here: each publisher's RTT, and so its MOS, comes from the ICE consent
    # checks of its WHIP connection (every 4-6 s; loopback, so a few milliseconds).
    for role in Role:
        rtt = final[f"{role}.network.rtt_ms"]
        assert isinstance(rtt, float)
        assert 0.0 <= rtt < 100.0
        assert final[f"{role}.network.mos"] is not None


def _threads() -> list[str]:
    """Live threads, less the event loop's own executor pool (the test peers' encoders
    run there, and it lives as long as the loop, not a session)."""
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def _aiortc_objects() -> int:
    gc.collect()
    kinds = (RTCPeerConnection, RTCRtpReceiver, RemoteStreamTrack, Publisher)
    return sum(isinstance(o, kinds) for o in gc.get_objects())


async def test_stopped_packets_interrupt_within_2_s_and_nothing_outlives_the_session() -> None:
    tasks_before = len(asyncio.all_tasks())
    threads_before = _threads()
    objects_before = _aiortc_objects()
    recorder = Recorder()
    app = create_app(Settings(secret=SECRET), sink_factories=[lambda info: recorder])
    registry = app.state.registry
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://monitor") as client:
        monitor = Monitor(app, client, recorder)
        cut = Impairment()
        small = {"width": 160, "height": 90}
        await monitor.publish(
            Role.THERAPIST, [ScriptedSpeechTrack([]), MovingPatternTrack(**small)]
        )
        await monitor.publish(
            Role.CLIENT, [ScriptedSpeechTrack([]), MovingPatternTrack(**small)], impairment=cut
        )
        await asyncio.sleep(1.5)
        decoders = [name for name in _threads() if name.endswith("-decoder")]
        assert len(decoders) >= 4  # one per receiver of the monitor (and of the peers)
        cut.loss = 1.0  # every packet of the client's is lost from now on
        cut_at = asyncio.get_running_loop().time()
        await asyncio.sleep(2.6)
        interrupted = recorder.of(MediaInterrupted, Role.CLIENT)
        assert len(interrupted) == 1
        detected = next(e.at for e in recorder.events if e.event is interrupted[0])
        last_packet = interrupted[0].last_packet
        assert -0.1 <= last_packet - cut_at < 0.5  # packets already on their way
        assert 2.0 <= detected - last_packet <= 2.1  # a deadline tick, not the next grid point
        assert recorder.snapshots[-1][1]["client.media.interrupted"] is True
        assert recorder.snapshots[-1][1]["therapist.media.interrupted"] is False
        # Server shutdown with the peers still sending: the monitor frees its side alone.
        await registry.aclose()
        assert len(registry) == 0
        assert [name for name in _threads() if name.endswith("-decoder")] == []
        gc.collect()
        assert sum(isinstance(o, Publisher) for o in gc.get_objects()) == 0
        for peer in monitor.peers:
            await peer.pc.close()
        monitor.peers.clear()
    del monitor, app, registry, transport, client, cut, peer
    await asyncio.sleep(0.2)
    assert len(asyncio.all_tasks()) == tasks_before
    assert _threads() == threads_before
    assert _aiortc_objects() == objects_before
