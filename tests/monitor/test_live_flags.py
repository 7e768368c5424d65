"""Issue 5's real scenario: live two-peer sessions over WHIP, flags in an SQLite store.

Two sessions run at once in one monitor: the real app of ``feltsafe serve`` under
uvicorn with its lifespan, a flag store on an SQLite file and a trace directory. Each
session has two participants, each an aiortc peer in its own process
(tests/monitor/live_publisher.py: synthetic speech and a moving picture, encoded, sent
over UDP on loopback, decoded and analysed by the monitor as any peer's media would be):

* the "disclosing" session: the client speaks for 40 s; the therapist's video stops
  for 2 s once the client has held the floor for over 20 s (the disclosure window is
  open). Expected: exactly one "frozen video while the client speaks" flag, at alert,
  with the context at onset: the client speaking and holding the floor, disclosure open;
  and no plain freeze flag (the specific rule inhibits it). The session is ended by the
  server's shutdown, which must drain the flag writer.
* the "talking" session: the therapist talks; their video stops for 2 s. Expected: the
  plain freeze flag only, at warn. Both publishers leave by WHIP DELETE; the session
  ends 10 s later (nobody present).

Then the recorded traces are replayed with the real command line
(``feltsafe replay TRACE --json``): the flags must be exactly those the live run stored
(rule, start, end, severity). Nothing is faked or sped up: the test takes the
session's 40-odd seconds of real time.

Real media on a shared 2-core machine meets real stalls: a starved sender stops sending
frames for a few hundred milliseconds, and the monitor rightly reports a freeze. So the
scripted freeze is identified by time (its flag is up while the sender is paused) and
must give exactly the flags above; any other freeze flag must be explained by a stall
the test measured (the sender's own record of when each frame left, or the monitor's
event loop running late), and is printed; an unexplained one fails the test.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from asyncio.subprocess import Process
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from alerts.model import Severity
from monitor.app import create_app
from monitor.config import Settings
from monitor.media_host import media_host
from monitor.store import Store, StoredFlag
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.monitor.indicator_sim import serve

pytestmark = pytest.mark.slow

SECRET = "f" * 40
SPEAKS = "therapist_video_frozen_while_client_speaks"
PLAIN = "therapist_video_frozen"
FREEZE_RULES = {SPEAKS, PLAIN}
PAUSE = 2.0
STALL = 0.1  # a pause in sending video, or of the monitor's loop, longer than this
LATENCY = 1.0  # sender to monitor (encode, send, decode) on a loaded 2-core machine
DISCLOSING = "s-7f3a"  # opaque session ids, as a therapy platform would make them
TALKING = "s-91bc"
FPS = 15  # a constrained call's rate; the W3C freeze threshold is then 217 ms
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


@dataclass(frozen=True)
class Part:
    """One participant's script, played by tests/monitor/live_publisher.py."""

    session: str
    role: Role
    talk: tuple[tuple[float, float], ...] = ()
    pause_at: float | None = None
    leave_at: float | None = None
    until: float = 42.0

    def command(self, url: str) -> list[str]:
        token = issue_token(
            SECRET, role=TokenRole.PUBLISHER, session=self.session, participant=self.role
        )
        f0 = 115.0 if self.role is Role.THERAPIST else 205.0
        command = [
            sys.executable, "-m", "tests.monitor.live_publisher", "--url", url,
            "--session", self.session, "--role", self.role.value, "--token", token,
            "--until", str(self.until), "--f0", str(f0), "--fps", str(FPS),
        ]  # fmt: skip
        command += [f"--talk={a}:{b}" for a, b in self.talk]
        if self.pause_at is not None:
            command.append(f"--pause={self.pause_at}:{PAUSE}")
        if self.leave_at is not None:
            command.append(f"--leave-at={self.leave_at}")
        return command


# Times are seconds from each participant's first audio frame. The monitor's speech
# detector holds its first decisions until it has learnt the room's noise floor (a
# one-off delay at stream start, up to 5 s: probes/speech.py), so the client's floor,
# and the disclosure window 20 s into it, open a few seconds after the talk does: the
# freezes are placed well after that.
PARTS = (
    # The client speaks 1-41 s; the therapist's picture stops at 30 s for 2 s, with
    # the disclosure window open (it opens 20 s into the client's floor); the session
    # is ended by the server's shutdown.
    Part(DISCLOSING, Role.THERAPIST, pause_at=30.0),
    Part(DISCLOSING, Role.CLIENT, talk=((1.0, 41.0),)),
    # The therapist talks 1-15 s; their picture stops at 9 s for 2 s; both participants
    # leave at 16 s (WHIP DELETE), and the session ends 10 s later, nobody present.
    Part(TALKING, Role.THERAPIST, talk=((1.0, 15.0),), pause_at=9.0, leave_at=16.0, until=16.5),
    Part(TALKING, Role.CLIENT, leave_at=16.0, until=16.5),
)


async def _play(url: str, parts: Sequence[Part]) -> tuple[list[Process], list[dict[str, Any]]]:
    """Start every participant; their reports once each has played its script."""
    processes = [
        await asyncio.create_subprocess_exec(
            *part.command(url),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        for part in parts
    ]

    async def report(process: Process) -> dict[str, Any]:
        assert process.stdout is not None
        line = await process.stdout.readline()
        assert line, f"a publisher exited early with {await process.wait()}"
        parsed: dict[str, Any] = json.loads(line)
        return parsed

    async with asyncio.timeout(120):
        reports = await asyncio.gather(*(report(p) for p in processes))
    return processes, list(reports)


async def _stop(processes: Sequence[Process]) -> None:
    for process in processes:
        if process.stdin is not None:
            process.stdin.close()
    for process in processes:
        try:
            async with asyncio.timeout(10):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def _replayed(trace: Path) -> list[dict[str, object]]:
    done = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", str(trace), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    flags = json.loads(done.stdout)["flags"]
    assert isinstance(flags, list)
    return flags


def _essentials(flags: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return sorted((f["rule_id"], f["start"], f["end"], f["severity"]) for f in flags)


def _stored_essentials(flags: list[StoredFlag]) -> list[tuple[object, ...]]:
    return sorted((s.flag.rule_id, s.flag.start, s.flag.end, s.flag.severity.value) for s in flags)


def _describe(flags: list[StoredFlag]) -> str:
    return "; ".join(
        f"{s.flag.rule_id} {s.flag.severity} {s.start_elapsed:.2f}-{s.end_elapsed}" for s in flags
    )


class LoopStalls:
    """Measures the monitor's own event-loop stalls (a heartbeat every 10 ms)."""

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (start, length)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            late = loop.time() - before - 0.01
            if late > STALL:
                self.stalls.append((before, late))


@dataclass
class Freezes:
    """One session's video freeze flags, split into the scripted pause's and the rest.

    The scripted pause's flags are those up in the middle of the sender's pause (one
    that a stall just before had raised goes on as the same flag). Any other freeze
    flag must be *explained* by a measured stall: the sender process paused its video
    (a CPU-starved machine: tests/monitor/live_publisher.py reports every pause in
    sending), the monitor's own loop stalled just before the flag's onset, or both
    participants' pictures froze at the same moment (two independent senders do not
    stall together: the common cause is the monitor's process, starved of CPU, its
    decoder threads included). An unexplained freeze flag fails the test: the monitor
    saw a freeze that
    nothing caused.
    """

    scripted: list[StoredFlag]
    explained: list[StoredFlag]
    unexplained: list[StoredFlag]


def _video_role(rule_id: str) -> Role | None:
    return next((role for role in Role if rule_id.startswith(f"{role}_video_")), None)


def _freezes(
    stored: list[StoredFlag],
    pause: tuple[float, float],
    sender_stalls: dict[Role, list[tuple[float, float]]],
    loop_stalls: list[tuple[float, float]],
) -> Freezes:
    last_before, first_after = pause
    middle = (last_before + first_after) / 2
    onsets: dict[Role, list[float]] = {role: [] for role in Role}
    for item in stored:
        role = _video_role(item.flag.rule_id)
        if role is not None and not item.flag.rule_id.endswith("_freezes_repeated"):
            onsets[role].append(item.flag.start)
    split = Freezes([], [], [])
    for item in stored:
        role = _video_role(item.flag.rule_id)
        if role is None:
            continue  # not a freeze rule
        onset = item.flag.start
        if item.flag.rule_id.endswith("_freezes_repeated"):
            # Three freezes within 2 minutes: the scripted one and two stalls at least.
            scripted = 1 if role is Role.THERAPIST else 0
            if scripted + len(sender_stalls[role]) + len(loop_stalls) >= 3:
                split.explained.append(item)
            else:
                split.unexplained.append(item)
        elif role is Role.THERAPIST and onset < middle < (item.flag.end or math.inf):
            split.scripted.append(item)
        elif (
            any(a - 0.1 <= onset <= a + 1.0 for a, _ in sender_stalls[role])
            or any(a - 0.5 <= onset <= a + late + 1.0 for a, late in loop_stalls)
            or any(abs(onset - other) <= 0.5 for other in onsets[role.other])
        ):
            split.explained.append(item)
        else:
            split.unexplained.append(item)
    return split


def _gaps(report: dict[str, Any]) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in report["gaps"]]


async def test_a_freeze_during_disclosure_is_one_alert_and_while_the_therapist_talks_a_warn(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    traces = tmp_path / "traces"
    store = Store.open(f"sqlite:///{tmp_path / 'feltsafe.db'}")
    app: Starlette = create_app(Settings(secret=SECRET, trace_dir=traces), store=store)
    processes: list[Process] = []
    loop_stalls = LoopStalls()
    try:
        async with serve(app) as port:  # uvicorn with the app's lifespan, as `feltsafe serve`
            loop_stalls.start()
            processes, reports = await _play(f"http://127.0.0.1:{port}", PARTS)
            loop_stalls.stop()
            assert app.state.registry.get(TALKING) is None  # ended: nobody present
            # Leaving `serve` shuts the server down: it ends the disclosing session and
            # drains the flag writer.
        writer = app.state.flag_writer
        assert writer.pending == 0
        assert writer.failed_count == writer.dropped_count == 0
        sessions = {}
        for session_id, first in ((DISCLOSING, 0), (TALKING, 2)):
            therapist_gaps, client_gaps = _gaps(reports[first]), _gaps(reports[first + 1])
            pause = max(therapist_gaps, key=lambda gap: gap[1] - gap[0])  # the scripted one
            therapist_stalls = [gap for gap in therapist_gaps if gap is not pause]
            client_stalls = client_gaps  # the client's picture was never paused
            assert pause[1] - pause[0] == pytest.approx(PAUSE, abs=0.3)
            stored = store.list_flags(session_id)
            stalls = {Role.THERAPIST: therapist_stalls, Role.CLIENT: client_stalls}
            split = _freezes(stored, pause, stalls, loop_stalls.stalls)
            assert not split.unexplained, _describe(stored)
            if split.explained:
                print(f"{session_id}: freezes from stalls of this machine: "
                      f"{_describe(split.explained)}")  # fmt: skip
            sessions[session_id] = (pause, stored, split)

        # -- the disclosing session: exactly one alert, in context --------------------
        (last_before, first_after), stored, split = sessions[DISCLOSING]
        assert [s.flag.rule_id for s in split.scripted] == [SPEAKS], _describe(stored)
        [flag] = split.scripted
        assert flag.flag.severity is Severity.ALERT
        assert flag.flag.context["speaking"] == "client"
        assert flag.flag.context["session.disclosure"] is True
        assert flag.flag.context["conversation.client.holds_floor"] is True
        # Onset: within a second of the last frame sent before the stop (the W3C
        # threshold, 217 ms at 15 fps, plus encoding, sending and decoding, which take
        # longer on a loaded machine); end: 2 s (keep_firing_for) after the picture is
        # back, plus the same delays.
        assert flag.flag.start - last_before < LATENCY
        assert flag.flag.end is not None
        assert 2.0 - 0.1 < flag.flag.end - first_after < 2.0 + LATENCY
        peak = flag.flag.evidence["therapist.video.freeze_s"]
        assert isinstance(peak, float)
        assert 1.0 < peak < first_after - last_before + LATENCY

        # -- the therapist-talking session: the plain warn only -------------------------
        (last_before, _), stored_talking, split = sessions[TALKING]
        assert [s.flag.rule_id for s in split.scripted] == [PLAIN], _describe(stored_talking)
        [flag] = split.scripted
        assert flag.flag.severity is Severity.WARN
        assert flag.flag.context["speaking"] == "therapist"
        assert flag.flag.context["session.disclosure"] is False
        assert flag.flag.start - last_before < LATENCY
        # The client never held the floor: nothing about them speaking, whatever froze.
        assert not [s for s in stored_talking if s.flag.rule_id == SPEAKS]

        # -- session records ---------------------------------------------------------
        for session_id, talker in ((DISCLOSING, Role.CLIENT), (TALKING, Role.THERAPIST)):
            record = store.get_session(session_id)
            assert record is not None
            assert record.ended_at is not None
            assert record.summary is not None
            summary = record.summary
            assert summary.therapist.freeze_count is not None
            assert summary.therapist.freeze_count >= 1
            share = summary.of(talker).talk_share
            assert share is not None
            assert share > 0.9, (session_id, summary)
            points = store.timeline(session_id)
            assert len(points) >= 2
            assert any(p.figures["therapist.video.frozen"] for p in points)
        record = store.get_session(DISCLOSING)
        assert record is not None
        assert record.duration is not None
        assert record.duration > 40.0

        # -- replay: the same flags from the traces ----------------------------------------
        for session_id, (_, stored_flags, _) in sessions.items():
            [trace] = traces.glob(f"{session_id}-*.jsonl")
            assert session_id not in trace.read_text()
            assert _essentials(_replayed(trace)) == _stored_essentials(stored_flags)
    finally:
        loop_stalls.stop()
        await _stop(processes)
        store.close()
    cpu = ", ".join(f"{r['cpu_s']:.1f}" for r in reports) if processes else "-"
    print(
        f"live flags test: {time.monotonic() - began:.1f} s wall time; monitor loop stalls "
        f"> {STALL * 1000:.0f} ms: {len(loop_stalls.stalls)}; publisher CPU s: {cpu}"
    )
