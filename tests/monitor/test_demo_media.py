"""The demo participants' media: script-aligned audio, camera freezes, the network dip.

The tracks and the uplink read the event loop's clock; these tests place the script's
origin relative to it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import struct
from types import SimpleNamespace

import numpy as np
import pytest

from monitor.demo.media import (
    STALL,
    MovingPictureTrack,
    ScriptClock,
    ScriptedSpeechTrack,
    Uplink,
    UplinkError,
)
from probes.base import Role

AUDIO_SSRC, VIDEO_SSRC = 1111, 2222


def _rtp(ssrc: int, seq: int, timestamp: int) -> bytes:
    return struct.pack("!BBHII", 0x80, 96, seq, timestamp, ssrc) + b"payload"


def _rtcp_sender_report() -> bytes:
    return struct.pack("!BBHI", 0x80, 200, 6, AUDIO_SSRC) + bytes(20)


class _FakePeer:
    """What Uplink.install reaches of an RTCPeerConnection: the senders' ICE transport."""

    def __init__(self) -> None:
        self.delivered: list[bytes] = []

        async def send(data: bytes) -> None:
            self.delivered.append(data)

        self.ice = SimpleNamespace(_send=send)
        transport = SimpleNamespace(transport=self.ice)
        self.senders = [
            SimpleNamespace(transport=transport, track=SimpleNamespace(kind=kind), _ssrc=ssrc)
            for kind, ssrc in (("audio", AUDIO_SSRC), ("video", VIDEO_SSRC))
        ]

    def getSenders(self) -> list[SimpleNamespace]:
        return self.senders


async def test_inside_a_dip_the_uplink_drops_about_its_loss_ratio_and_outside_nothing() -> None:
    loop = asyncio.get_running_loop()
    clock = ScriptClock()
    clock.origin = loop.time() - 10.0  # script time is about 10 s now
    inside = Uplink(clock, [(5.0, 20.0)], loss_ratio=0.12, max_delay=0.0, seed=1)
    outside = Uplink(clock, [(30.0, 45.0)], loss_ratio=0.12, max_delay=0.0, seed=1)
    peers = [_FakePeer(), _FakePeer()]
    for uplink, peer in zip((inside, outside), peers, strict=True):
        uplink.install(peer)
        for seq in range(2000):
            await peer.ice._send(_rtp(AUDIO_SSRC, seq, seq * 960))
        await peer.ice._send(_rtcp_sender_report())
    for _ in range(3):
        await asyncio.sleep(0)  # the zero-delay deliveries are scheduled, not awaited
    dropped = inside.counts.rtp_dropped / inside.counts.rtp_in_dips
    assert inside.counts.rtp_in_dips == 2000
    assert 0.09 < dropped < 0.15
    assert len(peers[0].delivered) == 2000 - inside.counts.rtp_dropped + 1
    assert outside.counts.rtp_in_dips == outside.counts.rtp_dropped == 0
    assert len(peers[1].delivered) == 2001
    assert _rtcp_sender_report() in peers[0].delivered  # RTCP is never impaired


async def test_the_same_seed_drops_the_same_packets() -> None:
    loop = asyncio.get_running_loop()
    clock = ScriptClock()
    clock.origin = loop.time() - 10.0
    kept = []
    for _ in range(2):
        peer = _FakePeer()
        Uplink(clock, [(0.0, 60.0)], loss_ratio=0.3, max_delay=0.0, seed=5).install(peer)
        for seq in range(300):
            await peer.ice._send(_rtp(AUDIO_SSRC, seq, seq))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        kept.append(sorted(struct.unpack("!H", d[2:4])[0] for d in peer.delivered))
    assert kept[0] == kept[1]
    assert len(kept[0]) < 300


async def test_a_pause_in_sending_video_is_noted_at_its_script_time() -> None:
    loop = asyncio.get_running_loop()
    clock = ScriptClock()
    uplink = Uplink(clock)
    peer = _FakePeer()
    uplink.install(peer)
    clock.origin = loop.time() - 5.0
    # Three packets of one frame, then the next frame: no gap.
    for seq in range(3):
        await peer.ice._send(_rtp(VIDEO_SSRC, seq, 9000))
    await peer.ice._send(_rtp(VIDEO_SSRC, 3, 18000))
    assert uplink.video_gaps == []
    # The sender stalls: pretend the last frame left 0.4 s ago.
    uplink._last_frame = (18000, loop.time() - 0.4)
    await peer.ice._send(_rtp(AUDIO_SSRC, 1, 960))  # audio does not count
    await peer.ice._send(_rtp(VIDEO_SSRC, 4, 27000))
    [(at, length)] = uplink.video_gaps
    assert at == pytest.approx(4.6, abs=0.05)
    assert length == pytest.approx(0.4, abs=0.05)
    assert length > STALL


def test_an_aiortc_without_the_private_send_fails_loudly() -> None:
    peer = _FakePeer()
    del peer.ice._send
    with pytest.raises(UplinkError, match="aiortc"):
        Uplink(ScriptClock()).install(peer)


def test_speech_frames_carry_the_samples_of_their_script_time() -> None:
    pcm = (np.arange(16000 * 4) % 30000).astype(np.int16)
    clock = ScriptClock()
    track = ScriptedSpeechTrack(pcm, clock)
    before = track._samples(due=100.0)  # no origin yet: the room (the opening samples)
    assert len(before) == 320
    assert before[0] < 16000
    clock.origin = 100.0
    frame = track._samples(due=102.5)
    assert (frame == pcm[40000:40320]).all()
    after = track._samples(due=200.0)  # past the script's end: the room again
    assert after[0] < 16000
    track.stop()


def test_the_camera_sends_nothing_during_a_scripted_freeze_only() -> None:
    clock = ScriptClock()
    track = MovingPictureTrack(Role.THERAPIST, clock, freezes=[(20.0, 23.0)])
    assert track._frozen_until(50.0) is None  # the call has not begun
    clock.origin = 30.0
    assert track._frozen_until(30.0 + 19.9) is None
    assert track._frozen_until(30.0 + 20.0) == pytest.approx(53.0)
    assert track._frozen_until(30.0 + 22.9) == pytest.approx(53.0)
    assert track._frozen_until(30.0 + 23.0) is None
    track.stop()


def test_consecutive_pictures_differ_and_are_valid_yuv420() -> None:
    track = MovingPictureTrack(Role.CLIENT, ScriptClock())
    first, second = track._picture(0), track._picture(1)
    assert first.shape == (180 * 3 // 2, 320)
    assert first.dtype == np.uint8
    assert np.abs(first[:180].astype(int) - second[:180]).mean() > 1.0
    track.stop()
