"""``feltsafe demo``'s orchestration: the monitor, the store, the participants, the end.

Theory of operation
-------------------
One asyncio process runs the real monitor: the app of ``feltsafe serve``
(:func:`monitor.app.create_app`, its rules engine per session, indicator, flag writer,
REST API and review page) under uvicorn on 127.0.0.1, with a flag store on an SQLite
file and a token secret generated for this run. A second process plays the two
participants (monitor/demo/participants.py), who publish over WHIP like any browser:
tokens, SDP offers, ICE on loopback (the monitor offers ``MEDIA_HOST``, 127.0.0.2: aioice
never offers 127.0.0.1), DTLS-SRTP, Opus and VP8. Nothing is faked on the monitor's side:
flags come from what it receives.

Order of events:

1. build the script (a bad ``--duration``/``--scenario`` is a one-line error, exit 2);
   open the store, build the app, bind the HTTP socket (``--port``; by default 8750 if
   free, else any free port), start uvicorn and wait until it listens;
2. issue tokens (publishers for the participants; a therapist token for the indicator
   page and a supervisor token for the review page, both put in the URL *fragment*,
   which browsers never send to a server), print the plan and the URLs, and open them in
   a browser when a display is available (never an error if none);
3. start the participants' process and give it its part; when it reports the call's
   script time 0, show progress (monitor/demo/progress.py) until the script has played;
4. hang up: the participants DELETE their WHIP resources and close their peers; the
   session is ended at once (the monitor would otherwise wait 10 s for nobody to come
   back), which clears its open flags and records its end; the flag writer is flushed;
5. print every flag of the session read back from the store, and for each scripted
   fault whether a rule noticed it;
6. on a terminal (or with ``--keep-serving``), keep the monitor up for the review page
   until Ctrl-C; then stop uvicorn (its lifespan ends every session and drains the
   writer) and close the store.

Signals: SIGINT (Ctrl-C) and SIGTERM are handled on the loop, never as a traceback. The
first one stops the demo through the same steps 4, 5 and the shutdown, with what was
recorded so far; a second one kills the participants' process at once. Uvicorn's own
signal capture is turned off (the demo owns the process). Exit status: 0 when the
script played to its end (Ctrl-C while the review page stays up included), 130 when
interrupted by SIGINT, 143 by SIGTERM, 1 when the participants could not join or
failed, 2 for bad options.

The store: ``--db PATH`` (default ``./feltsafe-demo.db``, SQLite; a URL such as
``sqlite:///x.db`` is taken as it is). It keeps every demo session, so the review page
lists earlier runs too; each run's session id is new (``demo-`` and 6 hex digits).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TextIO

import uvicorn
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette

from monitor.app import create_app
from monitor.config import Settings
from monitor.demo.media import STALL
from monitor.demo.progress import Progress, Stall, clock, plan_lines, summary_lines
from monitor.demo.script import DemoScript, IncidentKind, build_script
from monitor.media_host import media_host
from monitor.serving import uvicorn_config
from monitor.store import SessionNotFoundError, Store, StoredFlag, StoreError
from monitor.store.engine import parse_url
from monitor.tokens import TokenRole, issue_token
from probes.base import ConfigError, FeltsafeError, Role

HOST: Final = "127.0.0.1"
MEDIA_HOST: Final = "127.0.0.2"
DEFAULT_PORT: Final = 8750
DEFAULT_DB: Final = "./feltsafe-demo.db"
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED: Final = 143  # 128 + SIGTERM
JOIN_TIMEOUT: Final = 60.0  # participants' process start, WHIP, ICE, DTLS
HANG_UP_TIMEOUT: Final = 10.0
SETTLE: Final = 1.0  # after the script: the last media reaches the monitor
TICK: Final = 0.5  # progress refresh
FLAG_POLL: Final = 1.0
FLUSH_TIMEOUT: Final = 15.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    duration: float
    scenario: str = "default"
    browser: bool | None = None  # None: when a display is available
    port: int | None = None  # None: DEFAULT_PORT if free, else any
    db: str = DEFAULT_DB
    keep_serving: bool | None = None  # None: when stdout is a terminal
    trace_dir: Path | None = None  # content-free JSONL trace of the session (feltsafe replay)


class DemoFailedError(FeltsafeError):
    """The simulated participants could not join or play the call."""


def database_url(db: str) -> str:
    """``--db``: a SQLAlchemy URL as given, else a path to an SQLite file."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


def bind_http(port: int | None) -> socket.socket:
    """A bound socket on HOST: ``port`` (0: any), or DEFAULT_PORT falling back to any."""
    wanted = DEFAULT_PORT if port is None else port
    for candidate in (wanted, 0) if port is None else (wanted,):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, candidate))
        except OSError:
            sock.close()
            continue
        return sock
    raise ConfigError(f"port {wanted} on {HOST} is in use: pick another with --port (0: any)")


def display_available() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class _Server(uvicorn.Server):
    """Uvicorn without its signal capture: the demo handles SIGINT and SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ReviewKind(StrEnum):
    PAGE = "page"  # the review web page (monitor/review/)
    REST = "rest"  # the REST API only (monitor/api.py)
    NONE = "none"  # neither is served by this build: the flags are in the store


@dataclass(frozen=True, slots=True)
class Urls:
    indicator: str
    review: str | None
    review_kind: ReviewKind
    metrics: str


def demo_urls(base: str, app: Starlette, session: str, therapist: str, supervisor: str) -> Urls:
    """The three faces; tokens in the fragment (never sent to a server, never logged).

    What the supervisor gets depends on what the app serves (the review page and the
    REST API are separate modules): the page, else the session's flags over REST (the
    token then goes in an ``Authorization: Bearer`` header), else nothing.
    """
    paths = {getattr(route, "path", "") for route in app.router.routes}
    if "/review" in paths:
        kind = ReviewKind.PAGE
        review: str | None = f"{base}/review/session.html?id={session}#token={supervisor}"
    elif "/api/sessions/{session}/flags" in paths:
        kind = ReviewKind.REST
        review = f"{base}/api/sessions/{session}/flags  (Authorization: Bearer {supervisor})"
    else:
        kind, review = ReviewKind.NONE, None
    return Urls(
        indicator=f"{base}/static/demo-call.html#session={session}&token={therapist}",
        review=review,
        review_kind=kind,
        metrics=f"{base}/metrics",
    )


def run_demo(options: DemoOptions, *, out: TextIO | None = None) -> int:
    """Run the demo (see the module doc); returns the exit status."""
    script = build_script(options.scenario, options.duration)
    stream = out or sys.stdout
    return asyncio.run(_Demo(options, script, stream).run())


class _Demo:
    def __init__(self, options: DemoOptions, script: DemoScript, out: TextIO) -> None:
        self.options = options
        self.script = script
        self.tty = out.isatty()
        self.progress = Progress(out, tty=self.tty)
        self.stop = asyncio.Event()
        self.signal: int | None = None
        self.child: asyncio.subprocess.Process | None = None
        self.origin: float | None = None
        self.played = asyncio.Event()
        self.child_error: str | None = None
        self.flags: list[StoredFlag] = []
        self._seen: dict[str, str] = {}
        self.serving_only = False  # the session is over; the monitor stays for review
        self.video_gaps: dict[str, list[tuple[float, float]]] = {}
        self.loop_stalls: list[tuple[float, float]] = []  # (loop time, seconds late)

    # -- signals ----------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        if self.signal is None:
            self.signal = signum
            self.stop.set()
            self.progress.line(
                "stopping the monitor..."
                if self.serving_only
                else "stopping: hanging up, ending the session, saving the flags..."
            )
            return
        if self.child is not None and self.child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.child.kill()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal, signum)
        try:
            with media_host(MEDIA_HOST):
                return await self._serve()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    # -- the monitor --------------------------------------------------------------------

    async def _serve(self) -> int:
        sock = bind_http(self.options.port)
        url = database_url(self.options.db)
        try:
            store = await asyncio.to_thread(Store.open, url)
        except (OperationalError, StoreError) as exc:
            sock.close()
            shown = parse_url(url).render_as_string(hide_password=True)
            orig = getattr(exc, "orig", None)
            reason = str(orig or exc).strip().splitlines()[0]
            raise StoreError(f"cannot open the store at {shown}: {reason}") from None
        try:
            settings = Settings(
                host=HOST,
                port=sock.getsockname()[1],
                media_host=MEDIA_HOST,
                db=url,
                secret=secrets.token_urlsafe(32),
                trace_dir=self.options.trace_dir,
            )
            app = create_app(settings, store=store)
            config = uvicorn_config(app, log_level="warning")
            server = _Server(config)
            serving = asyncio.ensure_future(server.serve(sockets=[sock]))
            try:
                while not server.started:
                    if serving.done():
                        raise DemoFailedError("the monitor failed to start (see above)")
                    await asyncio.sleep(0.02)
                return await self._demo(app, settings, f"http://{HOST}:{settings.port}", store)
            finally:
                server.should_exit = True
                try:
                    async with asyncio.timeout(30):
                        await serving
                except TimeoutError:
                    server.force_exit = True
                    await serving
                except (Exception, SystemExit):
                    pass  # a server that failed to start said so; nothing more to stop
        finally:
            await asyncio.to_thread(store.close)
            sock.close()

    # -- the session --------------------------------------------------------------------

    async def _demo(self, app: Starlette, settings: Settings, base: str, store: Store) -> int:
        secret = settings.require_secret()
        script = self.script
        session = f"demo-{secrets.token_hex(3)}"
        ttl = script.duration + 8 * 3600.0
        publishers = {
            role.value: issue_token(
                secret, role=TokenRole.PUBLISHER, session=session, participant=role, ttl=ttl
            )
            for role in Role
        }
        therapist = issue_token(secret, role=TokenRole.THERAPIST, session=session, ttl=ttl)
        supervisor = issue_token(secret, role=TokenRole.SUPERVISOR, ttl=ttl)
        urls = demo_urls(base, app, session, therapist, supervisor)
        self._header(urls, settings)
        if self.options.browser or (self.options.browser is None and display_available()):
            await self._open_browser(urls)

        self.child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "monitor.demo.participants",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # Its own process group: Ctrl-C in the terminal reaches only this process,
            # which hangs the participants up in order (and they end if it dies: stdin).
            start_new_session=True,
        )
        events = asyncio.ensure_future(self._read_events(self.child))
        heartbeat = asyncio.ensure_future(self._heartbeat())
        played = 0.0
        try:
            spec = {
                "url": base,
                "session": session,
                "tokens": publishers,
                "scenario": script.scenario.value,
                "duration": script.duration,
            }
            assert self.child.stdin is not None
            self.child.stdin.write((json.dumps(spec) + "\n").encode())
            await self.child.stdin.drain()
            self.progress.line("Connecting the two participants over WHIP...")
            if await self._joined(events):
                played = await self._watch(app, store, session)
        finally:
            heartbeat.cancel()
            await self._hang_up(events)
            live = app.state.registry.get(session)
            if live is not None:
                await live.close("demo over")
            writer = app.state.flag_writer
            if writer is not None:
                await asyncio.to_thread(writer.flush, FLUSH_TIMEOUT)
        self.progress.end_status()
        await self._summary(store, session, played)
        if self.child_error is not None and self.signal is None:
            raise DemoFailedError(self.child_error)
        if self.signal is not None:
            return EXIT_INTERRUPTED if self.signal == signal.SIGINT else EXIT_TERMINATED
        keep = self.options.keep_serving
        if keep or (keep is None and self.tty):
            where = (urls.review or "").split()[0] if urls.review else urls.indicator
            self.progress.line(f"The monitor stays up for review: {where}")
            self.progress.line("Press Ctrl-C to exit.")
            self.serving_only = True
            await self.stop.wait()
        return 0

    def _header(self, urls: Urls, settings: Settings) -> None:
        script, line = self.script, self.progress.line
        line(
            f"feltsafe demo: a scripted {clock(script.duration)} therapy session "
            f'(scenario "{script.scenario}"): two simulated participants publish over WHIP '
            "to the monitor on this machine."
        )
        line()
        for text in plan_lines(script):
            line(text)
        line()
        line("Open:")
        faces = [("the therapist's live indicator", urls.indicator)]
        if urls.review_kind is ReviewKind.PAGE:
            faces.append(("the supervisor's review page", urls.review or ""))
        elif urls.review_kind is ReviewKind.REST:
            faces.append(("the supervisor's flags (REST)", urls.review or ""))
        faces.append(("the ops metrics (Prometheus)", urls.metrics))
        for label, url in faces:
            line(f"  {label:<31} {url}")
        if urls.review_kind is ReviewKind.NONE:
            line("  (this build serves no supervisor review: the summary below reads the store)")
        where = self.options.db if "://" in self.options.db else f"{self.options.db} (SQLite)"
        line(f"Flags are stored in {where}. Ctrl-C stops the demo.")
        line()

    async def _open_browser(self, urls: Urls) -> None:
        targets = [urls.indicator]
        if urls.review_kind is ReviewKind.PAGE and urls.review is not None:
            targets.append(urls.review)
        for target in targets:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(webbrowser.open, target, 2)

    async def _read_events(self, child: asyncio.subprocess.Process) -> None:
        assert child.stdout is not None
        while line := await child.stdout.readline():
            try:
                event: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "started":
                self.origin = float(event["origin"])
            elif kind == "played":
                self.played.set()
            elif kind == "error":
                self.child_error = str(event.get("message", "unknown error"))
            elif kind == "stopped":
                gaps = event.get("video_gaps", {})
                self.video_gaps = {
                    str(role): [(float(a), float(b)) for a, b in pairs]
                    for role, pairs in gaps.items()
                }

    async def _heartbeat(self) -> None:
        """Notes when this process's event loop (the monitor's) runs late."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.02)
            late = loop.time() - before - 0.02
            if late > STALL:
                self.loop_stalls.append((before, late))

    def _stalls(self) -> list[Stall]:
        """Every pause of this machine, in script time, but the scripted freezes."""
        origin = self.origin if self.origin is not None else 0.0
        scripted = {
            role: [
                (i.start, i.end)
                for i in self.script.incidents_of(IncidentKind.VIDEO_FREEZE)
                if i.role.value == role
            ]
            for role in self.video_gaps
        }
        stalls = [
            Stall(at, length, f"the {role}'s video left late")
            for role, gaps in self.video_gaps.items()
            for at, length in gaps
            if not any(a - 0.5 <= at <= b for a, b in scripted[role])
        ]
        stalls += [
            Stall(at - origin, late, "the monitor's event loop ran late")
            for at, late in self.loop_stalls
        ]
        return sorted(stalls, key=lambda stall: stall.at)

    async def _joined(self, events: asyncio.Future[None]) -> bool:
        """Wait for the call's script time 0; False if stopped or the participants failed."""
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                while self.origin is None:
                    if self.stop.is_set():
                        return False
                    if events.done():
                        self.child_error = self.child_error or (
                            "the participants' process ended before the call began"
                        )
                        return False
                    await asyncio.sleep(0.05)
        except TimeoutError:
            self.child_error = f"the participants did not join within {JOIN_TIMEOUT:.0f} s"
            return False
        return True

    async def _watch(self, app: Starlette, store: Store, session: str) -> float:
        """Progress until the script has played (or a stop); returns script time reached."""
        loop = asyncio.get_running_loop()
        assert self.origin is not None
        origin, duration = self.origin, self.script.duration
        done_at: float | None = None
        polled_at = float("-inf")
        polling: asyncio.Future[list[StoredFlag]] | None = None
        while not self.stop.is_set():
            now = loop.time()
            if self.played.is_set() and done_at is None:
                done_at = now + SETTLE
            if done_at is not None and now >= done_at:
                break
            if self.child is not None and self.child.returncode is not None:
                self.child_error = self.child_error or "the participants' process ended early"
                break
            if polling is not None and polling.done():
                self._new_flags(polling.result(), origin)
                polling = None
            if polling is None and now - polled_at >= FLAG_POLL:
                polled_at = now
                polling = asyncio.ensure_future(asyncio.to_thread(_flags_of, store, session))
            elapsed = min(now - origin, duration)
            act = self.script.act_at(elapsed)
            if act is None:
                first = self.script.acts[0].start if self.script.acts else duration
                scene = "the call begins: a quiet room" if elapsed < first else "goodbyes"
            else:
                scene = act.description
            channel = app.state.indicator.get(session)
            state = channel.state if channel is not None else None
            self.progress.update(
                elapsed=elapsed,
                duration=duration,
                act=scene,
                level=None if state is None else str(state.level),
                message=None if state is None else state.message,
                flags=self.flags,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self.stop.wait()
        if polling is not None:
            with contextlib.suppress(Exception):
                await polling
        return min(loop.time() - origin, duration)

    def _new_flags(self, flags: list[StoredFlag], origin: float) -> None:
        self.flags = flags
        for stored in sorted(flags, key=lambda f: f.flag.start):
            severity = str(stored.flag.severity)
            before = self._seen.get(stored.key)
            if before == severity:
                continue
            self._seen[stored.key] = severity
            flag = stored.flag
            at = clock(flag.start - origin)
            if before is None:
                self.progress.line(f"[{at}] flag ({severity}): {flag.rule_id}: {flag.title}")
            else:
                self.progress.line(f"[{at}] flag now {severity}: {flag.rule_id}")

    async def _hang_up(self, events: asyncio.Future[None]) -> None:
        child = self.child
        if child is None:
            return
        if child.stdin is not None and not child.stdin.is_closing():
            child.stdin.close()  # "hang up now"
        try:
            async with asyncio.timeout(HANG_UP_TIMEOUT):
                await child.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await events

    async def _summary(self, store: Store, session: str, played: float) -> None:
        flags = await asyncio.to_thread(_flags_of, store, session)
        origin = self.origin if self.origin is not None else 0.0
        line = self.progress.line
        line()
        if self.origin is None:
            line("The call never began: no flags.")
            return
        line(f"Session {session} ended after {clock(played)} of {clock(self.script.duration)}.")
        stalls = self._stalls()
        for text in summary_lines(self.script, flags, origin, played=played, stalls=stalls):
            line(text)
        record = await asyncio.to_thread(store.get_session, session)
        if record is not None and record.summary is not None:
            therapist, client = record.summary.therapist, record.summary.client
            share = therapist.talk_share
            line(
                "Session figures: therapist talk share "
                + ("-" if share is None else f"{share:.0%}")
                + f", successful interruptions by the therapist {therapist.interruptions_count}, "
                + f"by the client {client.interruptions_count}, "
                + f"therapist picture freezes {therapist.freeze_count}."
            )


def _flags_of(store: Store, session: str) -> list[StoredFlag]:
    try:
        return store.list_flags(session)
    except SessionNotFoundError:
        return []


__all__ = [
    "DEFAULT_DB",
    "DEFAULT_PORT",
    "EXIT_INTERRUPTED",
    "EXIT_TERMINATED",
    "DemoFailedError",
    "DemoOptions",
    "ReviewKind",
    "Urls",
    "bind_http",
    "database_url",
    "demo_urls",
    "display_available",
    "run_demo",
]
