"""A participant in its own process: real media over WHIP to a running monitor.

    python -m tests.monitor.live_publisher --url URL --session S --role R --token T
        [--talk A:B ...] [--pause AT:SECONDS] [--leave-at T] --until T

It publishes synthetic speech (talk intervals ``A:B`` in seconds from its first audio
frame) and a moving picture (stopped for ``SECONDS`` at ``AT``: a sender-side freeze),
as tests/monitor/peers.py's tracks do, from an aiortc peer with ICE on 127.0.0.3. A
participant lives in its own process, as on a real call: its encoders do not share the
monitor's interpreter (and GIL), so the monitor measures its own work, not the test's.

At ``--leave-at`` it ends its stream with a WHIP DELETE. At ``--until`` it prints one
JSON line and keeps sending until its stdin closes (so that the monitor, not a vanished
peer, decides when the session ends)::

    {"started_at": T, "gaps": [[before, after], ...], "cpu_s": S}

``gaps`` are the pauses in sending video longer than 100 ms, measured where the
packets leave (after capture, encoding and packetizing: the first RTP packet of each
frame, seen by a pass-through :class:`~tests.monitor.peers.Impairment`): the scripted
pause, and any stall of this process (a CPU-starved machine is a real cause of freezes,
and the test must tell them apart). Times are CLOCK_MONOTONIC seconds, the clock of the
monitor's event loop on the same machine. ``cpu_s`` is this process's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time

import httpx

from monitor.media_host import media_host
from tests.monitor.peers import Impairment, MovingPatternTrack, ScriptedSpeechTrack, publish

STALL = 0.1  # a pause in sending video longer than this is reported (30 fps: 33 ms)


def _frame_send_times(deliveries: list[tuple[float, float, int]]) -> list[float]:
    """When each video frame's first RTP packet left (packets of a frame share a timestamp)."""
    firsts: dict[int, float] = {}
    for sent, _delay, timestamp in deliveries:
        firsts.setdefault(timestamp, sent)
    return sorted(firsts.values())


def _interval(text: str) -> tuple[float, float]:
    a, b = text.split(":")
    return float(a), float(b)


async def run(args: argparse.Namespace) -> None:
    speech = ScriptedSpeechTrack([_interval(t) for t in args.talk], f0=args.f0, seed=int(args.f0))
    video = MovingPatternTrack(width=160, height=90, fps=args.fps, seed=int(args.f0) + 1)
    if args.pause:
        at, seconds = _interval(args.pause)
        video.pause(at=at, duration=seconds)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=args.url, timeout=30.0) as client:
        sent = Impairment()  # no loss, no delay: it only records what leaves
        peer = await publish(
            client, args.session, args.role, args.token, [speech, video], impairment=sent
        )
        video_ssrc = next(s._ssrc for s in peer.pc.getSenders() if s.track is video)
        while speech.started_at is None:
            await asyncio.sleep(0.02)
        origin = speech.started_at
        if args.leave_at is not None:
            await asyncio.sleep(origin + args.leave_at - loop.time())
            auth = {"Authorization": f"Bearer {args.token}"}
            response = await client.delete(peer.location, headers=auth)
            response.raise_for_status()
            await peer.pc.close()
        await asyncio.sleep(origin + args.until - loop.time())
        times = _frame_send_times(sent.truth[video_ssrc].deliveries)
        gaps = [[a, b] for a, b in itertools.pairwise(times) if b - a > STALL]
        report = {"started_at": origin, "gaps": gaps, "cpu_s": time.process_time()}
        print(json.dumps(report), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await peer.pc.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--role", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--talk", action="append", default=[])
    parser.add_argument("--pause")
    parser.add_argument("--leave-at", type=float)
    parser.add_argument("--until", type=float, required=True)
    parser.add_argument("--f0", type=float, default=140.0)
    parser.add_argument("--fps", type=int, default=30)
    args = parser.parse_args()
    with media_host("127.0.0.3"):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
