"""The simulated participants' media: scripted speech, a moving picture, a network dip.

Theory of operation
-------------------
Each participant of the demo is an aiortc peer that *sends* (monitor/demo/participants.py).
What it sends comes from the script (monitor/demo/script.py), in *script time*: seconds
since :attr:`ScriptClock.origin`, a reading of the event loop's clock (monotonic) taken
once both peers are connected. Before the origin, and after the script's end, the
tracks carry the quiet room of the script's first samples.

- :class:`ScriptedSpeechTrack`: the role's rendered 16 kHz mono track, cut into 20 ms
  frames paced by the loop clock from the track's first frame (as aiortc's own
  ``AudioStreamTrack`` paces, without catching up in a burst after a stall: a late frame
  is sent late, as a real microphone's would be). Which samples a frame carries is
  decided by the script time of its due time, so both participants' tracks stay aligned
  to the script (an interruption's overlap is the script's, to a frame) whatever moment
  each peer connected. aiortc's Opus encoder resamples to 48 kHz itself.
- :class:`MovingPictureTrack`: a soft moving pattern with a drifting bright disc and
  sensor noise (every frame differs, so the monitor's identical-content check sees a
  live camera), tinted per role, 10 frames a second (a W3C freeze then needs a gap of
  300 ms, max(3 x 100 ms, 100 + 150 ms), so the scheduling hiccups of a busy machine
  rarely pass for freezes, yet a 3 s stop is unmistakable). During a scripted freeze it
  sends nothing (as a stuck camera or ``replaceTrack(null)`` in a browser), then resumes
  at the frame due then: the monitor sees a W3C freeze, a frame gap of the freeze's
  length.
- :class:`Uplink`: one peer's way out. It wraps the ICE transport's ``_send`` (after
  SRTP, so RTP headers stay readable; the pattern of aiortc's own tests/utils.py and of
  feltsafe's WHIP tests). Inside the scripted dip windows it drops RTP packets with
  probability ``loss_ratio`` (seeded) and delays the others by a uniform 0..``max_delay``
  (reordering them, as a congested Wi-Fi link does); RTCP and DTLS pass untouched. It
  also notes every pause in sending video longer than ``STALL``, measured where the
  packets leave (after capture, encoding and packetizing): the scripted freezes, and
  any stall of the participants' process. A busy machine is a real cause of freezes,
  and the demo's summary tells them apart from the scripted ones.

Nothing here is captured from a device or written anywhere: the audio is synthetic
(monitor/voices) and lives in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import random
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from av import AudioFrame, VideoFrame

from probes.base import FeltsafeError, Role

AUDIO_RATE: Final = 16000
AUDIO_PTIME: Final = 0.020
VIDEO_CLOCK: Final = 90000
ROOM: Final = 1.0  # seconds of the track's opening room noise, looped outside the script
STALL: Final = 0.15  # a pause in sending video longer than this is reported (15 fps: 67 ms)


class ScriptClock:
    """When script time 0 is, on the event loop's clock (None until the call starts)."""

    def __init__(self) -> None:
        self.origin: float | None = None

    def script_time(self, loop_time: float) -> float | None:
        return None if self.origin is None else loop_time - self.origin


class ScriptedSpeechTrack(MediaStreamTrack):
    """One role's rendered track, sent as 20 ms frames aligned to script time."""

    kind = "audio"

    def __init__(self, pcm: npt.NDArray[np.int16], clock: ScriptClock) -> None:
        super().__init__()
        self._pcm = pcm
        self._clock = clock
        self._room = pcm[: round(ROOM * AUDIO_RATE)]
        self._frame = round(AUDIO_PTIME * AUDIO_RATE)
        self._count = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._count * AUDIO_PTIME
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -AUDIO_PTIME:  # stalled: carry on from now, no burst of old frames
            self._start -= wait
            due = loop.time()
        frame = AudioFrame.from_ndarray(self._samples(due).reshape(1, -1), layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._count * self._frame
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self._count += 1
        return frame

    def _samples(self, due: float) -> npt.NDArray[np.int16]:
        at = self._clock.script_time(due)
        n = self._frame
        if at is not None and at >= 0:
            first = round(at * AUDIO_RATE)
            if first + n <= len(self._pcm):
                return np.ascontiguousarray(self._pcm[first : first + n])
        offset = (self._count * n) % (len(self._room) - n)
        return np.ascontiguousarray(self._room[offset : offset + n])


_TINT: Final = {Role.THERAPIST: (150, 110), Role.CLIENT: (100, 150)}  # (U, V) per role


class MovingPictureTrack(MediaStreamTrack):
    """A moving picture that stops during the scripted freezes (script-time windows)."""

    kind = "video"

    def __init__(
        self,
        role: Role,
        clock: ScriptClock,
        *,
        freezes: Sequence[tuple[float, float]] = (),
        width: int = 320,
        height: int = 180,
        fps: int = 10,
        seed: int = 3,
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self._clock = clock
        self._freezes = tuple(freezes)
        self._rng = np.random.default_rng(seed)
        self._index = 0
        self._start: float | None = None
        yy, xx = np.mgrid[0:height, 0:width]
        self._base = (60.0 + 40.0 * np.sin((xx + 2 * yy) / 37.0)).astype(np.int16)
        # Sensor noise: a few fields drawn once and cycled (drawing per frame costs more
        # than everything else here), so consecutive frames still differ.
        self._noise = self._rng.normal(0.0, 2.0, (7, height, width)).astype(np.int16)
        self._radius = round(height * 0.22)
        span = np.arange(-self._radius - 8, self._radius + 9)
        distance = np.hypot(*np.meshgrid(span, span))
        self._disc = (np.clip(self._radius - distance, 0.0, 8.0) * 16.0).astype(np.int16)
        u, v = _TINT[role]
        chroma = np.empty((height // 2, width), np.uint8)
        chroma[: height // 4] = u
        chroma[height // 4 :] = v
        self._chroma = chroma
        self.frozen_for = 0.0  # seconds not sent because of the script's freezes

    async def recv(self) -> VideoFrame:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        due = self._start + self._index / self.fps
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        resume = self._frozen_until(loop.time())
        if resume is not None:  # the camera is stuck: send nothing until the freeze ends
            self.frozen_for += resume - loop.time()
            await asyncio.sleep(resume - loop.time())
            self._index = math.ceil((resume - self._start) * self.fps)
        elif wait < -1.0 / self.fps:  # stalled: carry on from now
            self._index = math.ceil((loop.time() - self._start) * self.fps)
        frame = VideoFrame.from_ndarray(self._picture(self._index), format="yuv420p")
        frame.pts = round(self._index * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._index += 1
        return frame

    def _frozen_until(self, now: float) -> float | None:
        at = self._clock.script_time(now)
        if at is None or self._clock.origin is None:
            return None
        for start, end in self._freezes:
            if start <= at < end:
                return self._clock.origin + end
        return None

    def _picture(self, index: int) -> npt.NDArray[np.uint8]:
        """Drifting light and a bright disc gliding across a soft pattern, with noise."""
        t = index / self.fps
        luma = self._base + self._noise[index % len(self._noise)]
        luma += np.int16(20.0 * math.sin(0.5 * t))
        half = self._disc.shape[0] // 2
        cx = round(self.width * (0.5 + 0.3 * math.sin(0.7 * t)))
        cy = round(self.height * (0.5 + 0.2 * math.sin(1.1 * t + 1.0)))
        top, left = cy - half, cx - half
        y0, x0 = max(0, top), max(0, left)
        y1 = min(self.height, top + self._disc.shape[0])
        x1 = min(self.width, left + self._disc.shape[1])
        luma[y0:y1, x0:x1] += self._disc[y0 - top : y1 - top, x0 - left : x1 - left]
        y = np.clip(luma, 0, 255).astype(np.uint8)
        return np.concatenate([y, self._chroma], axis=0)


class UplinkError(FeltsafeError):
    """aiortc's internals moved: the uplink cannot wrap the ICE transport."""


@dataclass
class UplinkCounts:
    rtp_in_dips: int = 0  # RTP packets offered inside a dip window
    rtp_dropped: int = 0
    rtp_delayed: int = 0


class Uplink:
    """One peer's outgoing packets: seeded loss and delay inside script-time windows,
    and the gaps in sending video (a stalled sender), measured where packets leave."""

    def __init__(
        self,
        clock: ScriptClock,
        dips: Sequence[tuple[float, float]] = (),
        *,
        loss_ratio: float = 0.0,
        max_delay: float = 0.0,
        seed: int = 11,
    ) -> None:
        self._clock = clock
        self._dips = tuple(dips)
        self.loss_ratio = loss_ratio
        self.max_delay = max_delay
        self._rng = random.Random(seed)
        self.counts = UplinkCounts()
        # (script time of the last frame before, seconds without a frame) for every
        # pause in sending video longer than STALL: scripted freezes and stalls alike.
        self.video_gaps: list[tuple[float, float]] = []
        self._video_ssrc: int | None = None
        self._last_frame: tuple[int, float] | None = None  # (RTP timestamp, loop time)
        self._pending: set[asyncio.TimerHandle] = set()
        self._sending: set[asyncio.Task[None]] = set()

    def in_dip(self, now: float) -> bool:
        at = self._clock.script_time(now)
        return at is not None and any(a <= at < b for a, b in self._dips)

    def install(self, pc: RTCPeerConnection) -> None:
        """Wrap ``pc``'s ICE transport (bundled: one for every track); call it after the
        tracks are added, before the offer. UplinkError if aiortc's internals moved."""
        try:
            senders = pc.getSenders()
            ice = senders[0].transport.transport
            send = ice._send
            video = [s._ssrc for s in senders if s.track is not None and s.track.kind == "video"]
        except (AttributeError, IndexError):
            raise UplinkError("cannot wrap this aiortc version's ICE transport") from None
        self._video_ssrc = video[0] if video else None

        async def uplink_send(data: bytes) -> None:
            is_rtp = len(data) >= 12 and 128 <= data[0] <= 191 and not 192 <= data[1] <= 223
            if not is_rtp:
                await send(data)  # DTLS, RTCP (packet types 192-223)
                return
            loop = asyncio.get_running_loop()
            now = loop.time()
            if int.from_bytes(data[8:12], "big") == self._video_ssrc:
                self._departed(int.from_bytes(data[4:8], "big"), now)
            if not self.in_dip(now):
                await send(data)
                return
            self.counts.rtp_in_dips += 1
            if self._rng.random() < self.loss_ratio:
                self.counts.rtp_dropped += 1
                return
            delay = self._rng.uniform(0.0, self.max_delay)
            self.counts.rtp_delayed += 1

            def deliver() -> None:
                self._pending.discard(handle)
                task = asyncio.ensure_future(_quiet(send(data)))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)

            handle = loop.call_later(delay, deliver)
            self._pending.add(handle)

        ice._send = uplink_send

    def _departed(self, timestamp: int, now: float) -> None:
        """The first packet of each video frame (packets of a frame share a timestamp)."""
        last = self._last_frame
        if last is not None and last[0] == timestamp:
            return
        if last is not None and now - last[1] > STALL:
            at = self._clock.script_time(last[1])
            if at is not None:
                self.video_gaps.append((round(at, 3), round(now - last[1], 3)))
        self._last_frame = (timestamp, now)

    def cancel(self) -> None:
        """Drop the packets still held back (the call is over)."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()


async def _quiet(coroutine: Coroutine[Any, Any, None]) -> None:
    with contextlib.suppress(ConnectionError):
        await coroutine


__all__ = [
    "STALL",
    "MovingPictureTrack",
    "ScriptClock",
    "ScriptedSpeechTrack",
    "Uplink",
    "UplinkCounts",
    "UplinkError",
]
