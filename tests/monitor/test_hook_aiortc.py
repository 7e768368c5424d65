"""The RTP hook on aiortc's private RTCRtpReceiver._handle_rtp_packet (pinned ~=1.16.0).

If one of these fails after an aiortc upgrade, the monitor is blind: read
monitor/rtp_hook.py, find where aiortc now hands packets to its receivers, and move the
hook there before changing the pin.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from monitor.media_host import media_host
from monitor.rtp_hook import (
    HookUnavailableError,
    audio_level_dbov,
    check_aiortc_internals,
    disable_decoding,
    install_rtp_hook,
    tap_decoding,
    wire_size,
)
from tests.monitor.peers import MovingPatternTrack, ScriptedSpeechTrack

ONE_SECOND_OF_AUDIO = 50  # Opus, 20 ms packets


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


class Pair:
    def __init__(self) -> None:
        self.sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    async def connect(self, *tracks: object, before_connect: object = None) -> None:
        for track in tracks:
            self.sender.addTransceiver(track, direction="sendonly")
        await self.sender.setLocalDescription(await self.sender.createOffer())
        await self.receiver.setRemoteDescription(self.sender.localDescription)
        if callable(before_connect):
            before_connect()
        await self.receiver.setLocalDescription(await self.receiver.createAnswer())
        await self.sender.setRemoteDescription(self.receiver.localDescription)

    def receivers(self) -> list[RTCRtpReceiver]:
        return [t.receiver for t in self.receiver.getTransceivers()]

    async def close(self) -> None:
        await self.sender.close()
        await self.receiver.close()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    peers = Pair()
    yield peers
    await peers.close()


async def _until(condition: object, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition() and asyncio.get_running_loop().time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.02)


def test_aiortc_is_the_pinned_minor_version() -> None:
    assert version("aiortc").startswith("1.16."), (
        "aiortc moved off 1.16: re-check monitor/rtp_hook.py before changing the pin"
    )


def test_the_private_members_the_hook_uses_are_where_it_expects() -> None:
    check_aiortc_internals()


@pytest.mark.slow
async def test_hook_sees_every_rtp_packet_with_its_audio_level(pair: Pair) -> None:
    seen: list[tuple[RtpPacket, float]] = []
    hooks = []

    def hook_receivers() -> None:
        loop = asyncio.get_running_loop()
        for receiver in pair.receivers():
            hooks.append(
                install_rtp_hook(receiver, lambda p, t: seen.append((p, t)), clock=loop.time)
            )

    await pair.connect(ScriptedSpeechTrack([(0.0, 5.0)]), before_connect=hook_receivers)
    await _until(lambda: len(seen) >= ONE_SECOND_OF_AUDIO, timeout=8.0)
    assert len(seen) >= ONE_SECOND_OF_AUDIO, (
        f"the RTP hook saw {len(seen)} packets: aiortc no longer routes RTP through "
        "RTCRtpReceiver._handle_rtp_packet on the instance (see monitor/rtp_hook.py)"
    )
    # The hook runs before aiortc's own handling, which therefore still counts them.
    stats = await pair.receivers()[0].getStats()
    inbound = next(s for s in stats.values() if s.type == "inbound-rtp")
    assert inbound.packetsReceived >= len(seen) - 5
    sequence = [p.sequence_number for p, _ in seen]
    assert all((b - a) % 65536 == 1 for a, b in itertools.pairwise(sequence))
    levels = [audio_level_dbov(p) for p, _ in seen]
    assert all(level is not None and 0 <= level <= 127 for level in levels)
    assert min(level for level in levels if level is not None) < 40  # speech, not silence
    times = [t for _, t in seen]
    assert times == sorted(times)
    assert all(wire_size(p) > 12 for p, _ in seen)
    assert hooks[0].packets_seen == len(seen)


@pytest.mark.slow
async def test_hook_is_per_receiver_and_leaves_the_class_alone(pair: Pair) -> None:
    original = RTCRtpReceiver._handle_rtp_packet
    seen: list[int] = []

    def hook_audio_only() -> None:
        loop = asyncio.get_running_loop()
        audio = next(r for r in pair.receivers() if r.track.kind == "audio")
        install_rtp_hook(audio, lambda p, t: seen.append(p.payload_type), clock=loop.time)

    await pair.connect(
        ScriptedSpeechTrack([(0.0, 5.0)]), MovingPatternTrack(), before_connect=hook_audio_only
    )
    await _until(lambda: len(seen) >= 25, timeout=8.0)
    assert RTCRtpReceiver._handle_rtp_packet is original
    video = next(r for r in pair.receivers() if r.track.kind == "video")
    assert "_handle_rtp_packet" not in vars(video)
    assert len(set(seen)) == 1  # only the audio payload type reached this hook


@pytest.mark.slow
async def test_a_failing_callback_is_counted_and_media_keeps_flowing(pair: Pair) -> None:
    hooks = []

    def boom(packet: RtpPacket, now: float) -> None:
        raise RuntimeError("probe bug")

    def hook_receivers() -> None:
        loop = asyncio.get_running_loop()
        hooks.extend(install_rtp_hook(r, boom, clock=loop.time) for r in pair.receivers())

    await pair.connect(ScriptedSpeechTrack([(0.0, 5.0)]), before_connect=hook_receivers)
    track = pair.receivers()[0].track
    frame = await asyncio.wait_for(track.recv(), timeout=8.0)
    assert frame.sample_rate == 48000  # aiortc still decoded after our callback raised
    await _until(lambda: hooks[0].callback_errors >= 10, timeout=5.0)
    assert hooks[0].callback_errors >= 10


@pytest.mark.slow
async def test_disabled_decoding_yields_no_frames_but_packets_still_reach_the_hook(
    pair: Pair,
) -> None:
    seen: list[int] = []

    def metadata_mode() -> None:
        loop = asyncio.get_running_loop()
        for receiver in pair.receivers():
            disable_decoding(receiver)
            install_rtp_hook(receiver, lambda p, t: seen.append(1), clock=loop.time)

    await pair.connect(MovingPatternTrack(), before_connect=metadata_mode)
    track = pair.receivers()[0].track
    await _until(lambda: len(seen) >= 60, timeout=8.0)
    assert len(seen) >= 60
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.recv(), timeout=0.3)
    assert track._queue.qsize() == 0  # nothing decoded, nothing queued
    with pytest.raises(HookUnavailableError, match="already started"):
        disable_decoding(pair.receivers()[0])
    await pair.receiver.close()
    # The stop sentinel still reaches the idle decoder thread, which ends the track.
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(track.recv(), timeout=2.0)


@pytest.mark.slow
async def test_tapped_decoding_hands_encoded_frames_over_and_decodes_nothing(
    pair: Pair,
) -> None:
    frames: list[tuple[str, int, bytes]] = []
    taps = []

    def full_mode_audio() -> None:
        [receiver] = pair.receivers()

        def take(codec: object, frame: object) -> None:
            frames.append((codec.name, frame.timestamp, frame.data))  # type: ignore[attr-defined]
            if len(frames) == 3:
                raise RuntimeError("probe bug")  # counted, never reaches aiortc

        taps.append(tap_decoding(receiver, take))

    await pair.connect(ScriptedSpeechTrack([(0.0, 5.0)]), before_connect=full_mode_audio)
    await _until(lambda: len(frames) >= ONE_SECOND_OF_AUDIO, timeout=8.0)
    assert len(frames) >= ONE_SECOND_OF_AUDIO
    assert {name for name, _, _ in frames} == {"opus"}
    # Timestamps are aiortc's unwrapped RTP timestamps: 20 ms of 48 kHz apart, from 0.
    stamps = [t for _, t, _ in frames]
    assert stamps[0] == 0
    assert all(b - a == 960 for a, b in itertools.pairwise(stamps))
    assert all(len(data) > 0 for _, _, data in frames)
    assert taps[0].frames_seen >= len(frames)
    assert taps[0].callback_errors == 1
    track = pair.receivers()[0].track
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(track.recv(), timeout=0.3)
    assert track._queue.qsize() == 0  # aiortc decoded nothing
    with pytest.raises(HookUnavailableError, match="already started"):
        tap_decoding(pair.receivers()[0], lambda c, f: None)
    await pair.receiver.close()
    with pytest.raises(MediaStreamError):  # the stop sentinel still ends the track
        await asyncio.wait_for(track.recv(), timeout=2.0)
