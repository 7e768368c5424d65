"""Test publishers: aiortc peers with synthetic media, a WHIP client and a seeded impairment.

- :class:`ScriptedSpeechTrack`: 48 kHz audio following a talk script (speech-like
  harmonic complex with syllable-rate modulation inside talk intervals, quiet noise
  outside), paced in real time like aiortc's own AudioStreamTrack.
- :class:`MovingPatternTrack`: a moving grey pattern with sensor noise; ``pause(at, for_)``
  stops frames for a while (a sender-side freeze, as ``replaceTrack(null)`` in a browser).
- :class:`Impairment`: wraps the publisher's ICE transport ``_send`` (the pattern of
  aiortc's tests/utils.py, after SRTP so headers stay readable) and drops or delays RTP
  packets from a seeded RNG, recording the ground truth per SSRC.
- :func:`publish`: a WHIP POST with httpx, returning the peer and its Location.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import random
import time
from collections import defaultdict
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

AUDIO_RATE = 48000
AUDIO_PTIME = 0.020
VIDEO_CLOCK = 90000


class ScriptedSpeechTrack(MediaStreamTrack):
    """Mono 48 kHz s16: speech-like sound inside ``talk`` intervals (seconds from start)."""

    kind = "audio"

    def __init__(
        self, talk: Sequence[tuple[float, float]], *, f0: float = 140.0, seed: int = 1
    ) -> None:
        super().__init__()
        self.talk = list(talk)
        self.f0 = f0
        self._rng = np.random.default_rng(seed)
        self._samples = 0
        self._start: float | None = None
        self.started_at: float | None = None  # the loop time of the first frame

    def _speaking(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.talk)

    def _chunk(self, t0: float, n: int) -> np.ndarray:
        t = t0 + np.arange(n) / AUDIO_RATE
        noise = self._rng.normal(0.0, 30.0, n)
        if not self._speaking(t0):
            return noise
        # A glottal-like harmonic complex (1/k roll-off) with a slow pitch glide, and
        # syllables: a 4 Hz envelope that dips about 30 dB for ~90 ms between them, as
        # real speech's syllable modulation does (a steady tone is noise to a floor
        # tracker, not speech).
        f0 = self.f0 * (1.0 + 0.08 * np.sin(2 * np.pi * 0.7 * t))
        phase = 2 * np.pi * np.cumsum(f0) / AUDIO_RATE + 2 * np.pi * self.f0 * t0
        voice = sum(np.sin(k * phase) / k for k in range(1, 16))
        envelope = 0.03 + 0.97 * np.sin(2 * np.pi * 2.0 * t) ** 2
        return noise + 5000.0 * envelope * voice

    async def recv(self) -> AudioFrame:
        n = int(AUDIO_RATE * AUDIO_PTIME)
        if self._start is None:
            self._start = time.time()
            self.started_at = asyncio.get_running_loop().time()
        else:
            self._samples += n
            wait = self._start + self._samples / AUDIO_RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        pcm = np.clip(self._chunk(self._samples / AUDIO_RATE, n), -32768, 32767)
        frame = AudioFrame.from_ndarray(pcm.astype(np.int16).reshape(1, -1), layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class MovingPatternTrack(MediaStreamTrack):
    """A moving diagonal pattern with noise, ``fps`` frames a second; pausable."""

    kind = "video"

    def __init__(self, *, width: int = 320, height: int = 180, fps: int = 30, seed: int = 2):
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._rng = np.random.default_rng(seed)
        self._index = 0
        self._start: float | None = None
        self._pauses: list[tuple[float, float]] = []
        self.frame_times: list[float] = []  # loop time each frame was handed to aiortc
        self._resumed_after: float | None = None
        self.paused_spans: list[tuple[float, float]] = []
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = (xx + yy).astype(np.float64)

    def pause(self, at: float, duration: float) -> None:
        """Send no frame between ``at`` and ``at + duration`` seconds after the start."""
        self._pauses.append((at, at + duration))

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.time()
        wait = self._start + self._index / self.fps - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elapsed = time.time() - self._start
        for a, b in self._pauses:
            if a <= elapsed < b:  # a pause in wall time, whatever the pacing lag
                before = self.frame_times[-1] if self.frame_times else None
                await asyncio.sleep(b - elapsed)
                self._index = math.ceil(b * self.fps)
                self._resumed_after = before
                break
        self._index += 1
        shift = 4.0 * self._index
        luma = 128 + 100 * np.sin((self._base + shift) / 12.0)
        luma += self._rng.normal(0, 2.0, luma.shape)
        y = np.clip(luma, 0, 255).astype(np.uint8)
        yuv = np.concatenate([y, np.full((self.height // 2, self.width), 128, np.uint8)], axis=0)
        frame = VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = int((self._index - 1) * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        now = asyncio.get_running_loop().time()
        if self._resumed_after is not None:
            self.paused_spans.append((self._resumed_after, now))
            self._resumed_after = None
        self.frame_times.append(now)
        return frame

    def longest_gap(self) -> tuple[float, float]:
        """(last frame before, first frame after) the longest pause in sending."""
        pairs = zip(self.frame_times, self.frame_times[1:], strict=False)
        return max(pairs, key=lambda pair: pair[1] - pair[0])


@dataclass
class StreamTruth:
    """What the impairment did to one SSRC's RTP packets."""

    sent: int = 0
    dropped: int = 0
    delays: list[float] = field(default_factory=list)  # of delivered packets, seconds
    # (send time, delay, rtp timestamp) of delivered packets, for a reference jitter
    deliveries: list[tuple[float, float, int]] = field(default_factory=list)
    # The same, with the delay the event loop actually gave (its timer fires late, and
    # late timers bunch up, on a loaded machine): what reached the monitor's socket.
    releases: list[tuple[float, float, int]] = field(default_factory=list)


class Impairment:
    """Seeded loss and delay on one peer's outgoing RTP (RTCP passes untouched)."""

    def __init__(self, *, loss: float = 0.0, max_delay: float = 0.0, seed: int = 7) -> None:
        self.loss = loss
        self.max_delay = max_delay
        self._rng = random.Random(seed)
        self.truth: dict[int, StreamTruth] = defaultdict(StreamTruth)
        self._pending: set[asyncio.TimerHandle] = set()
        self._sending: set[asyncio.Future[None]] = set()
        self.active = True

    def install(self, pc: RTCPeerConnection) -> None:
        ice = pc.getSenders()[0].transport.transport
        send = ice._send

        async def impaired_send(data: bytes) -> None:
            is_rtp = len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223
            if not (self.active and is_rtp):
                if is_rtp:  # impairment off: still part of what the receiver's jitter saw
                    truth = self.truth[int.from_bytes(data[8:12], "big")]
                    now = asyncio.get_running_loop().time()
                    truth.releases.append((now, 0.0, int.from_bytes(data[4:8], "big")))
                await send(data)  # DTLS, RTCP (packet types 192-223), or impairment off
                return
            ssrc = int.from_bytes(data[8:12], "big")
            truth = self.truth[ssrc]
            truth.sent += 1
            if self._rng.random() < self.loss:
                truth.dropped += 1
                return
            delay = self._rng.uniform(0.0, self.max_delay) if self.max_delay else 0.0
            loop = asyncio.get_running_loop()
            sent, timestamp = loop.time(), int.from_bytes(data[4:8], "big")
            truth.delays.append(delay)
            truth.deliveries.append((sent, delay, timestamp))
            if delay <= 0:
                truth.releases.append((sent, 0.0, timestamp))
                await send(data)
                return

            def release() -> None:
                truth.releases.append((sent, loop.time() - sent, timestamp))
                sending = asyncio.ensure_future(_quiet(send(data)))
                self._sending.add(sending)
                sending.add_done_callback(self._sending.discard)

            self._pending.add(loop.call_later(delay, release))

        ice._send = impaired_send


async def _quiet(coro: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(ConnectionError):
        await coro


def reference_jitter_ms(deliveries: Sequence[tuple[float, float, int]], clock_rate: int) -> float:
    """RFC 3550 A.8 jitter of arrival = send time + injected delay, in ms."""
    jitter = 0.0
    previous: tuple[float, int] | None = None
    for sent, delay, timestamp in sorted(deliveries, key=lambda d: d[0] + d[1]):
        arrival = sent + delay
        if previous is not None:
            step = ((timestamp - previous[1] + 2**31) & 0xFFFFFFFF) - 2**31
            d = (arrival - previous[0]) * clock_rate - step
            jitter += (abs(d) - jitter) / 16.0
        previous = (arrival, timestamp)
    return jitter / clock_rate * 1000.0


@dataclass
class Published:
    pc: RTCPeerConnection
    location: str
    answer: str


async def publish(
    client: httpx.AsyncClient,
    session: str,
    role: str,
    token: str,
    tracks: Sequence[MediaStreamTrack],
    *,
    query: str = "",
    impairment: Impairment | None = None,
) -> Published:
    """Publish ``tracks`` over WHIP (non-trickle: the offer carries every candidate)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    if impairment is not None:
        impairment.install(pc)
    await pc.setLocalDescription(await pc.createOffer())
    response = await client.post(
        f"/whip/{session}/{role}{query}",
        content=pc.localDescription.sdp,
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
    )
    if response.status_code != 201:
        await pc.close()
        raise AssertionError(f"WHIP POST answered {response.status_code}: {response.text}")
    await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    return Published(pc, response.headers["location"], response.text)


def speech_fraction(intervals: Sequence[tuple[float, float]], a: float, b: float) -> float:
    total = sum(max(0.0, min(e, b) - max(s, a)) for s, e in intervals)
    return total / (b - a) if b > a else math.nan
