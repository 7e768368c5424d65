"""The demo's two simulated participants, in a process of their own.

    python -m monitor.demo.participants      (started by ``feltsafe demo``)

Theory of operation
-------------------
On a real call each participant's browser encodes and sends its own media; here one
process plays both, so that their encoders do not share the monitor's interpreter (and
its GIL): the monitor measures its own work, and a busy monitor does not make the
participants' pictures stall (which it would then rightly report as freezes).

Protocol with the parent (``feltsafe demo``, monitor/demo/run.py), JSON lines:

- stdin, first line: ``{"url", "session", "tokens": {"therapist", "client"},
  "scenario", "duration"}``; then the parent keeps stdin open, and closing it (or
  SIGTERM) means "hang up now", whether or not the script has finished;
- stdout, events: ``{"event": "started", "origin": T}`` once both peers are connected
  (``T``: script time 0 on CLOCK_MONOTONIC, the clock of the parent's event loop too),
  ``{"event": "played"}`` at the script's end, ``{"event": "stopped", ...}`` after
  hanging up (packets dropped in dips; ``video_gaps``: per role, every pause in
  sending video over 150 ms as ``[script time, seconds]``), or
  ``{"event": "error", "message": ...}`` (then exit status 1).

Each participant is an aiortc peer (no ICE servers: loopback only; host candidates on
``MEDIA_HOST``, a loopback alias, since aioice never offers 127.0.0.1) publishing one
audio and one video track over WHIP (RFC 9725: POST the offer with the publisher token,
201 with the answer and a Location; DELETE that Location to hang up). The client's
uplink carries the script's network dips (monitor/demo/media.py ``Uplink``), the
therapist's camera its freezes; both uplinks note every pause in sending video, so the
demo can tell a scripted freeze from a stall of this machine. The parent starts this
process in a session of its own (Ctrl-C in the terminal reaches only the parent, which
decides the order of the shutdown), and SIGINT is ignored here all the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Final

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from monitor.demo.media import MovingPictureTrack, ScriptClock, ScriptedSpeechTrack, Uplink
from monitor.demo.script import (
    DIP_LOSS_RATIO,
    DIP_MAX_DELAY,
    DemoScript,
    IncidentKind,
    build_script,
    render,
)
from monitor.media_host import apply_media_host
from probes.base import FeltsafeError, Role

MEDIA_HOST: Final = "127.0.0.3"
CONNECT_TIMEOUT: Final = 30.0
LEAD_IN: Final = 0.5  # seconds of room after both peers connected, before script time 0
HTTP_TIMEOUT: Final = 10.0
HANG_UP_TIMEOUT: Final = 3.0

# urllib follows http_proxy and friends; the monitor is on loopback: never via a proxy.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ParticipantError(FeltsafeError):
    """A participant could not join the call (the monitor refused, ICE failed, ...)."""


@dataclass
class Participant:
    role: Role
    pc: RTCPeerConnection
    uplink: Uplink
    location: str | None = None


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _request(method: str, url: str, token: str, body: str | None = None) -> tuple[int, str, str]:
    """(status, Location, body) of one WHIP request, in a worker thread."""
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/sdp"
    request = urllib.request.Request(
        url, data=None if body is None else body.encode(), method=method, headers=headers
    )
    try:
        with _HTTP.open(request, timeout=HTTP_TIMEOUT) as response:
            return response.status, response.headers.get("Location", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        reason = exc.read().decode(errors="replace").strip().splitlines()
        return exc.code, "", reason[0] if reason else ""


async def _publish(
    base: str, session: str, role: Role, token: str, participant: Participant
) -> None:
    pc = participant.pc
    await pc.setLocalDescription(await pc.createOffer())
    status, location, body = await asyncio.to_thread(
        _request, "POST", f"{base}/whip/{session}/{role}", token, pc.localDescription.sdp
    )
    if status != 201:
        raise ParticipantError(f"the monitor refused the {role}'s WHIP offer: {status} {body}")
    participant.location = location
    await pc.setRemoteDescription(RTCSessionDescription(body, "answer"))


async def _connected(participants: list[Participant]) -> None:
    async with asyncio.timeout(CONNECT_TIMEOUT):
        while True:
            states = [p.pc.connectionState for p in participants]
            if "failed" in states or "closed" in states:
                raise ParticipantError("a participant's connection to the monitor failed")
            if all(state == "connected" for state in states):
                return
            await asyncio.sleep(0.05)


def _participants(script: DemoScript, clock: ScriptClock) -> list[Participant]:
    tracks = render(script)
    participants = []
    for index, role in enumerate(Role):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        mine = [i for i in script.incidents if i.role is role]
        freezes = [(i.start, i.end) for i in mine if i.kind is IncidentKind.VIDEO_FREEZE]
        dips = [(i.start, i.end) for i in mine if i.kind is IncidentKind.NETWORK_DIP]
        pc.addTransceiver(ScriptedSpeechTrack(tracks[role], clock), direction="sendonly")
        video = MovingPictureTrack(role, clock, freezes=freezes, seed=3 + index)
        pc.addTransceiver(video, direction="sendonly")
        uplink = Uplink(
            clock, dips, loss_ratio=DIP_LOSS_RATIO, max_delay=DIP_MAX_DELAY, seed=11 + index
        )
        uplink.install(pc)
        participants.append(Participant(role, pc, uplink))
    return participants


async def _hang_up(participants: list[Participant], tokens: dict[str, str], base: str) -> None:
    async def one(participant: Participant) -> None:
        if participant.location:
            url = participant.location
            if url.startswith("/"):
                url = base + url
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(HANG_UP_TIMEOUT):
                    await asyncio.to_thread(_request, "DELETE", url, tokens[participant.role.value])
        await participant.pc.close()

    await asyncio.gather(*(one(p) for p in participants), return_exceptions=True)


async def _call(
    spec: dict[str, Any], script: DemoScript, clock: ScriptClock, participants: list[Participant]
) -> None:
    """Join the call, play the script to its end."""
    loop = asyncio.get_running_loop()
    base, session, tokens = spec["url"].rstrip("/"), spec["session"], spec["tokens"]
    await asyncio.gather(
        *(_publish(base, session, p.role, tokens[p.role.value], p) for p in participants)
    )
    await _connected(participants)
    clock.origin = loop.time() + LEAD_IN
    _emit("started", origin=clock.origin)
    await asyncio.sleep(clock.origin + script.duration - loop.time())
    _emit("played")


async def play(spec: dict[str, Any], reader: asyncio.StreamReader) -> None:
    """Play the call until the parent says stop (stdin closed) or SIGTERM; then hang up."""
    loop = asyncio.get_running_loop()
    script = build_script(spec["scenario"], float(spec["duration"]))
    clock = ScriptClock()
    participants = _participants(script, clock)
    stop = asyncio.ensure_future(reader.readline())
    loop.add_signal_handler(signal.SIGTERM, stop.cancel)
    call = asyncio.ensure_future(_call(spec, script, clock, participants))
    try:
        await asyncio.wait({call, stop}, return_when=asyncio.FIRST_COMPLETED)
        if call.done():
            call.result()  # a failure to join is raised here
            with contextlib.suppress(asyncio.CancelledError):
                await stop
    finally:
        call.cancel()
        stop.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await call
        for participant in participants:
            participant.uplink.cancel()
        await _hang_up(participants, spec["tokens"], spec["url"].rstrip("/"))
        _emit(
            "stopped",
            rtp_in_dips=sum(p.uplink.counts.rtp_in_dips for p in participants),
            rtp_dropped=sum(p.uplink.counts.rtp_dropped for p in participants),
            video_gaps={p.role.value: p.uplink.video_gaps for p in participants},
        )


async def _main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    line = await reader.readline()
    if not line:
        return 0  # the parent went away before it said anything
    try:
        await play(json.loads(line), reader)
    except TimeoutError:
        _emit("error", message="the participants could not connect to the monitor in time")
        return 1
    except (FeltsafeError, OSError) as exc:
        _emit("error", message=str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:  # anything else: one line for the parent, not a traceback
        _emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.ERROR, format="participants: %(levelname)s %(message)s")
    apply_media_host(MEDIA_HOST)
    sys.exit(asyncio.run(_main()))


if __name__ == "__main__":
    main()
