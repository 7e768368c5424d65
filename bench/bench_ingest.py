"""Ingest cost: CPU per monitored session, full vs metadata mode vs a bare aiortc receiver.

What is measured: one receiving process (this one) runs the monitor app under uvicorn
on 127.0.0.1 with media on 127.0.0.2. A separate sender process publishes N sessions,
each two participants sending Opus (20 ms, encoded live, with RFC 6464 levels) and VP8
640x360 at 30 fps (pre-encoded once and re-packetised, so the sender stays cheap and
the receiver's decoder sees real VP8). Four receivers, one after the other, same run:

- bare: an RTCPeerConnection per participant that only drains its tracks (aiortc
  decodes audio and video): the floor any aiortc-based monitor pays;
- full: the monitor (``POST /whip/...``): RTP hook, RTP statistics, VAD on decoded
  audio, Y-plane freeze checks on decoded video, conversation, ticks and snapshots;
- metadata: the monitor with ``?mode=metadata``: nothing decoded; headers, RFC 6464
  levels and RTP frame timing only;
- full, aiortc audio: full mode with aiortc decoding the audio (48 kHz stereo, in its
  decoder thread) as it does where libopus is missing: full mode normally decodes audio
  itself, straight to 16 kHz mono (monitor/audio_decode.py), which costs less than
  aiortc's decode. This row shows what the monitoring work costs with the floor's own
  decoding, so that saving cannot hide it.

CPU is this process's CPU time (all threads: decoders included) over a steady window,
divided by the wall time and by N; per-session figures are reported at the same N for
all three, with their ratios (targets: full <= 1.10 x bare, metadata <= 0.5 x full).
"Sustains N" means: every participant's video arrives at >= 27 fps at the monitor, audio
loss < 1 %, and the event loop's p95 lag stays under 50 ms; the sweep stops at the
first N that fails. The sender shares this machine's cores: on a 2-core machine it is
the machine, not only the receiving process, that runs out first.

Run: ``make bench`` (or ``python -m bench ingest [--quick]``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import av
import httpx
import numpy as np
import uvicorn
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor import publisher as publisher_module
from monitor.app import create_app
from monitor.config import Settings
from monitor.media_host import apply_media_host
from monitor.tokens import TokenRole, issue_token
from probes.base import Role

SECRET = "bench-secret-" + "x" * 32
MEDIA_HOST = "127.0.0.2"
WIDTH, HEIGHT, FPS = 640, 360, 30
VIDEO_CLIP_SECONDS = 4
TARGET_FPS = 27.0
MAX_LAG = 0.050


# -- the sender process -------------------------------------------------------------------


def _encode_clip() -> list[tuple[bytes, bool]]:
    """A few seconds of VP8 640x360@30 (one keyframe at the start), as packet payloads."""

    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = WIDTH, HEIGHT
    codec.pix_fmt = "yuv420p"
    codec.bit_rate = 1_000_000
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.time_base = fractions.Fraction(1, FPS)
    codec.gop_size = VIDEO_CLIP_SECONDS * FPS
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = (xx + yy).astype(np.float64)
    packets: list[tuple[bytes, bool]] = []
    for index in range(VIDEO_CLIP_SECONDS * FPS):
        luma = 128 + 100 * np.sin((base + 4.0 * index) / 12.0) + rng.normal(0, 2.0, base.shape)
        y = np.clip(luma, 0, 255).astype(np.uint8)
        yuv = np.concatenate([y, np.full((HEIGHT // 2, WIDTH), 128, np.uint8)], axis=0)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = index
        for packet in codec.encode(frame):
            packets.append((bytes(packet), bool(packet.is_keyframe)))
    for packet in codec.encode(None):
        packets.append((bytes(packet), bool(packet.is_keyframe)))
    return packets


def _tracks(clip: list[tuple[bytes, bool]], seed: int) -> tuple[Any, Any]:

    class PreEncodedVideo(MediaStreamTrack):
        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self._index = 0
            self._start: float | None = None

        async def recv(self) -> Any:
            if self._start is None:
                self._start = time.time()
            wait = self._start + self._index / FPS - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
            payload, _ = clip[self._index % len(clip)]
            packet = av.Packet(payload)
            packet.pts = self._index * (90000 // FPS)
            packet.time_base = fractions.Fraction(1, 90000)
            self._index += 1
            return packet

    class Speech(MediaStreamTrack):
        """Syllables of a harmonic complex, 2 s on, 1 s off (so VAD has work to do)."""

        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._samples = 0
            self._start: float | None = None
            self._rng = np.random.default_rng(seed)

        async def recv(self) -> Any:
            n = 960
            if self._start is None:
                self._start = time.time()
            else:
                self._samples += n
                wait = self._start + self._samples / 48000 - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
            t = (self._samples + np.arange(n)) / 48000
            talking = (t[0] + seed * 0.7) % 3.0 < 2.0
            voice = sum(np.sin(2 * np.pi * 130 * k * t) / k for k in range(1, 10))
            envelope = 0.03 + 0.97 * np.sin(2 * np.pi * 2.0 * t) ** 2
            pcm = self._rng.normal(0, 30, n) + (5000 * envelope * voice if talking else 0)
            frame = av.AudioFrame.from_ndarray(
                np.clip(pcm, -32768, 32767).astype(np.int16).reshape(1, -1), layout="mono"
            )
            frame.sample_rate = 48000
            frame.pts = self._samples
            frame.time_base = fractions.Fraction(1, 48000)
            return frame

    return Speech(), PreEncodedVideo()


async def _send(base_url: str, paths: list[tuple[str, str, str]]) -> None:

    apply_media_host(MEDIA_HOST)
    clip = _encode_clip()
    peers = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for index, (path, session, role) in enumerate(paths):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            for track in _tracks(clip, seed=index):
                pc.addTransceiver(track, direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            token = issue_token(
                SECRET, role=TokenRole.PUBLISHER, session=session, participant=Role(role)
            )
            response = await client.post(
                path,
                content=pc.localDescription.sdp,
                headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"},
            )
            response.raise_for_status()
            await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
            peers.append(pc)
    print("ready", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for pc in peers:
        await pc.close()


def sender_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_url")
    parser.add_argument("paths", help="JSON list of [path, session, role]")
    args = parser.parse_args(argv)
    asyncio.run(_send(args.base_url, [tuple(p) for p in json.loads(args.paths)]))


# -- the receiving process ----------------------------------------------------------------


AIORTC_AUDIO = "full, aiortc audio"


@contextlib.contextmanager
def _aiortc_audio(receiver: str) -> Iterator[None]:
    """For the ``full, aiortc audio`` receiver: publishers started inside leave audio
    decoding to aiortc, as they do without libopus (monitor/publisher.py)."""
    if receiver != AIORTC_AUDIO:
        yield
        return
    saved = publisher_module.opus_available
    publisher_module.opus_available = lambda: False
    try:
        yield
    finally:
        publisher_module.opus_available = saved


@dataclass(frozen=True)
class Phase:
    receiver: str  # bare | full | metadata | full, aiortc audio
    sessions: int
    cpu_per_session_pct: float
    loop_cpu_per_session_pct: float  # the event-loop thread only (decoders excluded)
    cpu_total_pct: float
    min_fps: float
    max_audio_loss: float
    lag_p95_ms: float

    @property
    def sustained(self) -> bool:
        return (
            self.min_fps >= TARGET_FPS
            and self.max_audio_loss < 0.01
            and self.lag_p95_ms < MAX_LAG * 1000
        )


class BareReceivers:
    """The floor: aiortc peer connections that only drain what they receive."""

    def __init__(self) -> None:
        self.pcs: list[Any] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.frames: dict[int, int] = {}  # id(track) -> video frames drained

    def route(self) -> Any:

        async def drain(track: Any) -> None:
            while True:
                try:
                    await track.recv()
                except MediaStreamError:
                    return
                if track.kind == "video":
                    self.frames[id(track)] = self.frames.get(id(track), 0) + 1

        async def offer(request: Request) -> Response:
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.pcs.append(pc)
            await pc.setRemoteDescription(
                RTCSessionDescription((await request.body()).decode(), "offer")
            )
            for transceiver in pc.getTransceivers():
                task = asyncio.ensure_future(drain(transceiver.receiver.track))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            await pc.setLocalDescription(await pc.createAnswer())
            return Response(pc.localDescription.sdp, 201, media_type="application/sdp")

        return Route("/bare/{session}/{role}", offer, methods=["POST"])

    async def close(self) -> None:
        for pc in self.pcs:
            await pc.close()
        self.pcs.clear()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.frames.clear()


@contextlib.contextmanager
def _sender(base_url: str, paths: list[tuple[str, str, str]]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bench_ingest", "--sender", base_url, json.dumps(paths)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _wait_ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    line = await asyncio.get_running_loop().run_in_executor(None, process.stdout.readline)
    if line.strip() != "ready":
        raise RuntimeError("the sender process failed to publish")


async def _lag_probe(samples: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(0.02)
        samples.append(loop.time() - before - 0.02)


async def _phase(
    receiver: str,
    sessions: int,
    *,
    app: Any,
    bare: BareReceivers,
    base_url: str,
    warmup: float,
    window: float,
) -> Phase:
    prefix = "/bare" if receiver == "bare" else "/whip"
    query = "?mode=metadata" if receiver == "metadata" else ""
    tag = receiver.replace(",", "").replace(" ", "-")
    paths = [
        (f"{prefix}/b{tag}{n}/{role}{query}", f"b{tag}{n}", role)
        for n in range(sessions)
        for role in ("therapist", "client")
    ]
    registry = app.state.registry
    with _aiortc_audio(receiver), _sender(base_url, paths) as process:
        await _wait_ready(process)
        await asyncio.sleep(warmup)
        frames_before = dict(bare.frames)
        lags: list[float] = []
        stop = asyncio.Event()
        lag_task = asyncio.ensure_future(_lag_probe(lags, stop))
        cpu_before, wall_before = time.process_time(), time.monotonic()
        loop_cpu_before = time.thread_time()
        await asyncio.sleep(window)
        cpu = time.process_time() - cpu_before
        loop_cpu = time.thread_time() - loop_cpu_before
        wall = time.monotonic() - wall_before
        stop.set()
        await lag_task
        if receiver == "bare":
            fps = [(bare.frames.get(k, 0) - frames_before.get(k, 0)) / wall for k in bare.frames]
            losses = [0.0]
        else:
            fps, losses = [], []
            for live in registry:
                snapshot = live.latest.snapshot or {}
                for role in ("therapist", "client"):
                    fps.append(snapshot.get(f"{role}.video.fps") or 0.0)
                    losses.append(snapshot.get(f"{role}.audio.loss_ratio") or 0.0)
    await bare.close()
    await registry.aclose()
    await asyncio.sleep(1.0)
    expected_streams = 2 * sessions
    fps += [0.0] * max(0, expected_streams - len(fps))  # a stream that never arrived
    return Phase(
        receiver=receiver,
        sessions=sessions,
        cpu_per_session_pct=100.0 * cpu / wall / sessions,
        loop_cpu_per_session_pct=100.0 * loop_cpu / wall / sessions,
        cpu_total_pct=100.0 * cpu / wall,
        min_fps=min(fps),
        max_audio_loss=max(losses),
        lag_p95_ms=1000.0 * statistics.quantiles(lags, n=20)[-1] if len(lags) > 20 else 0.0,
    )


async def _bench(quick: bool) -> list[str]:
    apply_media_host(MEDIA_HOST)
    bare = BareReceivers()
    app = create_app(Settings(secret=SECRET), routes=[bare.route()])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error", lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    warmup, window = (3.0, 4.0) if quick else (4.0, 8.0)
    rounds = 1 if quick else 3
    compare_at = 1 if quick else 2

    async def measure(receiver: str, sessions: int) -> Phase:
        return await _phase(
            receiver,
            sessions,
            app=app,
            bare=bare,
            base_url=base_url,
            warmup=warmup,
            window=window,
        )

    lines = [
        f"Opus + VP8 {WIDTH}x{HEIGHT}@{FPS} per participant, two participants a session; "
        f"CPU of the receiving process over {window:.0f} s after {warmup:.0f} s of warm-up; "
        f"the four receivers alternate, {rounds} round(s), medians below the table.",
        "",
        "| receiver | sessions | CPU per session | of which event loop | process CPU | "
        "min video fps | p95 loop lag | sustained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results: dict[str, list[Phase]] = {"bare": [], "full": [], "metadata": [], AIORTC_AUDIO: []}
    sweeps: dict[str, int] = {}
    try:
        for _ in range(rounds):
            for receiver, phases in results.items():
                phase = await measure(receiver, compare_at)
                phases.append(phase)
                lines.append(_row(phase))
        if not quick:
            for receiver in ("full", "metadata"):
                best = compare_at if all(p.sustained for p in results[receiver]) else 0
                for sessions in (4, 6, 8, 10, 12):
                    phase = await measure(receiver, sessions)
                    lines.append(_row(phase))
                    if not phase.sustained:
                        break
                    best = sessions
                sweeps[receiver] = best
    finally:
        server.should_exit = True
        await serving

    def median(receiver: str, loop_only: bool = False) -> float:
        return statistics.median(
            p.loop_cpu_per_session_pct if loop_only else p.cpu_per_session_pct
            for p in results[receiver]
        )

    bare_cost, full_cost, meta_cost = median("bare"), median("full"), median("metadata")
    aiortc_audio_cost = median(AIORTC_AUDIO)
    lines += [
        "",
        f"- CPU per session (median): bare {bare_cost:.1f} %, full {full_cost:.1f} %, "
        f"metadata {meta_cost:.1f} %, full with aiortc's audio decoding "
        f"{aiortc_audio_cost:.1f} % of a core; on the event loop alone: bare "
        f"{median('bare', True):.1f} %, full {median('full', True):.1f} %, metadata "
        f"{median('metadata', True):.1f} %, full with aiortc's audio decoding "
        f"{median(AIORTC_AUDIO, True):.1f} %",
        f"- full mode over the bare receiver: {full_cost / bare_cost:.2f}x "
        f"(target <= 1.10): monitoring adds {full_cost - bare_cost:+.1f} points of a core "
        "per session",
        f"- full mode with aiortc decoding its audio over the bare receiver: "
        f"{aiortc_audio_cost / bare_cost:.2f}x ({aiortc_audio_cost - bare_cost:+.1f} points: "
        "the monitoring work alone, with the floor's own decoding)",
        f"- metadata mode over full mode: {meta_cost / full_cost:.2f}x (target <= 0.50)",
        f"- metadata mode over the bare receiver: {meta_cost / bare_cost:.2f}x",
    ]
    for receiver, best in sweeps.items():
        lines.append(f"- {receiver} mode sustained {best} sessions in one process on this machine")
    return lines


def _row(phase: Phase) -> str:
    return (
        f"| {phase.receiver} | {phase.sessions} | {phase.cpu_per_session_pct:.1f} % | "
        f"{phase.loop_cpu_per_session_pct:.1f} % | {phase.cpu_total_pct:.0f} % | "
        f"{phase.min_fps:.1f} | {phase.lag_p95_ms:.0f} ms | "
        f"{'yes' if phase.sustained else 'no'} |"
    )


def run(*, quick: bool = False) -> list[str]:
    return asyncio.run(_bench(quick))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        sender_main(sys.argv[2:])
    else:
        print("\n".join(run(quick="--quick" in sys.argv)))
