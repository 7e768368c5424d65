"""A simulated participant and a uvicorn server on port 0, for the indicator's live tests.

``SimulatedParticipant`` feeds a live session what a WHIP publisher in full mode feeds it
(monitor/publisher.py): the RTP header of every 20 ms audio packet and every decoded
video frame (30 fps), in real time on the session's event loop. ``freeze()`` stops the
video frames while the audio goes on: the session's own W3C freeze deadline then finds
the freeze, exactly as when a real camera or encoder stops. It is used by the websocket
tests, the browser test and bench/bench_indicator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.types import ASGIApp

from monitor.observations import MediaSpec
from monitor.participant import Attachment, LeftReason
from monitor.sessions import LiveSession
from probes.base import MediaKind, Role
from probes.rtp import RtpHeader

AUDIO = MediaSpec(MediaKind.AUDIO, {111: 48000}, {}, {}, {111: "opus"})
VIDEO = MediaSpec(MediaKind.VIDEO, {96: 90000}, {97: 96}, {}, {96: "VP8"})
AUDIO_PTIME = 0.02
VIDEO_FPS = 30.0


class SimulatedParticipant:
    """One participant's steady audio and video, fed into a live session (see above)."""

    def __init__(self, live: LiveSession, role: Role) -> None:
        self.live = live
        self.role = role
        self.video_on = True
        self.frames = 0
        self.last_frame_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0

    def start(self) -> None:
        session, now = self.live.session, self.live.clock()
        session.attach(self.role, Attachment.WHIP, now=now)
        session.configure_media(self.role, AUDIO)
        session.configure_media(self.role, VIDEO)
        self._task = asyncio.ensure_future(self._run())

    def freeze(self) -> None:
        self.video_on = False

    def resume(self) -> None:
        self.video_on = True

    async def stop_media(self) -> None:
        """Every packet stops (the network went), the publisher stays attached."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def stop(self) -> None:
        """The publisher hangs up."""
        await self.stop_media()
        if not self.live.closed:
            self.live.session.detach(
                self.role, Attachment.WHIP, now=self.live.clock(), reason=LeftReason.DELETED
            )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_audio = next_video = loop.time()
        while True:
            now = loop.time()
            if now >= next_audio:
                self._audio(now)
                next_audio += AUDIO_PTIME
                next_audio = max(next_audio, now - AUDIO_PTIME)  # no catch-up burst
            if now >= next_video:
                if self.video_on:
                    self.live.session.on_video_frame(self.role, None, now=now)
                    self.frames += 1
                    self.last_frame_at = now
                next_video += 1.0 / VIDEO_FPS
                next_video = max(next_video, now - 1.0 / VIDEO_FPS)
            await asyncio.sleep(max(0.0, min(next_audio, next_video) - loop.time()))

    def _audio(self, now: float) -> None:
        header = RtpHeader(
            ssrc=1,
            sequence_number=self._seq & 0xFFFF,
            timestamp=(self._seq * 960) & 0xFFFFFFFF,
            payload_type=111,
            marker=False,
            size_bytes=120,
            audio_level_dbov=90,
        )
        self._seq += 1
        self.live.session.on_rtp(self.role, MediaKind.AUDIO, header, now=now)


@contextlib.asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[int]:
    """Run ``app`` under uvicorn (websockets sans-I/O, as `feltsafe serve`) on a free port."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        ws="websockets-sansio",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raise the start-up error
            await asyncio.sleep(0.01)
        port: int = server.servers[0].sockets[0].getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        await task
