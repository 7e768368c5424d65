"""``feltsafe demo`` end to end: a real monitor, real participants, a real store.

The slow tests run the installed command's module (``python -m monitor.cli demo``) in a
subprocess, as ``make demo`` does, with the shortest script that still has the
headline fault (30 s: the client shares, the therapist's picture freezes 22 s in):

* it plays to its end and prints the therapist's and the supervisor's URLs with their
  tokens in the fragment, and a summary in which the freeze during disclosure was
  noticed by its rule. Each face works with what was printed: the indicator websocket
  (the therapist's token) turned red with the words for it; the review page and the
  REST API (the supervisor's token) show the flag; ``/metrics`` counts it. Ctrl-C
  while the monitor stays up for review is a normal end (exit 0); the store file holds
  the ended session and the flag, at alert, raised while the disclosure window was open;
* Ctrl-C (SIGINT) in the middle of the session stops it within seconds, with exit
  status 130, no traceback, the participants' process gone and the session's end
  recorded in the store.

The fast tests check the command line's refusals, which happen before anything starts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from websockets.sync.client import connect

from alerts.model import Severity
from monitor.cli import main
from monitor.demo.run import (
    DEFAULT_PORT,
    ReviewKind,
    bind_http,
    database_url,
    demo_urls,
    display_available,
)
from monitor.store import Store

REPO = Path(__file__).resolve().parents[2]
FREEZE_RULE = "therapist_video_frozen_while_client_speaks"
SESSION_ID = re.compile(r"#session=(demo-[0-9a-f]{6})&token=([\w.-]+)")


def _demo(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "monitor.cli", "demo", "--no-browser", "--port", "0",
        "--db", str(tmp_path / "demo.db"), *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("FELTSAFE_")}
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class IndicatorWatcher:
    """The therapist's side: the indicator websocket, with the token the demo printed."""

    def __init__(self, url: str, token: str) -> None:
        self.states: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, token), daemon=True)
        self._thread.start()

    def _run(self, url: str, token: str) -> None:
        with connect(url, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": token}))
            while not self._stop.is_set():
                try:
                    message = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if message.get("type") == "state":
                    self.states.append(message)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _get(url: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def _read_until(process: subprocess.Popen[str], marker: str, seen: list[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"the demo ended before {marker!r}:\n{''.join(seen)}")


@pytest.mark.slow
def test_a_short_demo_plays_to_its_end_and_each_face_works_with_the_printed_tokens(
    tmp_path: Path,
) -> None:
    """A 30 s demo; the monitor stays up for review (--keep-serving) until Ctrl-C."""
    began = time.monotonic()
    process = _demo(tmp_path, "--duration", "30", "--keep-serving")
    seen: list[str] = []
    rest = err = ""
    watcher: IndicatorWatcher | None = None
    try:
        # The therapist: the indicator page's URL carries the session and the token.
        line = _read_until(process, "the therapist's live indicator", seen)
        match = SESSION_ID.search(line)
        assert match is not None, line
        session, therapist_token = match.group(1), match.group(2)
        base = re.search(r"(http://127\.0\.0\.1:\d+)/static/demo-call\.html#", line)
        assert base is not None
        http = base.group(1)
        status, kind, page = _get(line.split()[-1].split("#")[0])
        assert status == 200
        assert "feltsafe-indicator" in page
        watcher = IndicatorWatcher(f"ws{http[4:]}/ws/indicator/{session}", therapist_token)
        supervisor = _read_until(process, "the supervisor's", seen)
        _read_until(process, "Press Ctrl-C to exit.", seen)
        watcher.stop()
        out = "".join(seen)
        # The summary, read back from the store: the headline fault was noticed by its rule.
        summary = out.split("Flags raised:", 1)[1]
        verdict = r"fault at 0:2\d: the therapist's picture freezes .*: noticed at 0:2\d by "
        assert re.search(verdict + rf".*{FREEZE_RULE}", summary), summary
        # The therapist's token was taken (a state at once) and the indicator turned red
        # with the words for it.
        assert watcher.states, "the indicator sent nothing: token refused?"
        alerts = [s for s in watcher.states if s["level"] == "alert"]
        assert alerts, watcher.states
        assert "your picture froze while they were speaking" in alerts[0]["message"]
        # The supervisor: the review page and the API, with the printed token.
        token = re.search(r"(?:#token=|Bearer )([\w.-]+)", supervisor)
        assert token is not None, supervisor
        supervisor_token = token.group(1)
        if "/review/session.html" in supervisor:
            status, kind, _ = _get(supervisor.split()[-1].split("#")[0])
            assert status == 200
            assert kind.startswith("text/html")
        if "/review/" in supervisor or "/api/" in supervisor:
            status, _, body = _get(f"{http}/api/sessions/{session}/flags", supervisor_token)
            flags = json.loads(body)["flags"]
            assert any(f["rule_id"] == FREEZE_RULE and f["severity"] == "alert" for f in flags)
        # Ops: the fleet metrics count the flag by rule (no session id in them).
        _, _, metrics = _get(f"{http}/metrics")
        assert f'feltsafe_flags_total{{rule="{FREEZE_RULE}"' in metrics
        assert session not in metrics
        process.send_signal(signal.SIGINT)  # leave the review: a normal end, exit 0
        rest, err = process.communicate(timeout=30)
    finally:
        if watcher is not None:
            watcher.stop()
        if process.poll() is None:
            process.kill()
            process.communicate()
    took = time.monotonic() - began
    assert process.returncode == 0, ("".join(seen) + rest, err)
    assert "Traceback" not in err
    # The store file: the session, ended, and the flag with its context at onset.
    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        record = store.get_session(session)
        assert record is not None
        assert record.ended_at is not None
        assert record.duration is not None
        assert 28 < record.duration < 60
        stored = store.list_flags(session)
        frozen = [f for f in stored if f.flag.rule_id == FREEZE_RULE]
        assert any(
            f.flag.severity is Severity.ALERT and f.flag.context.get("session.disclosure") is True
            for f in frozen
        ), [f.flag for f in frozen]
        assert all(f.flag.end is not None for f in stored)
    print(f"30 s demo with its three faces: {took:.1f} s wall time")


@pytest.mark.slow
def test_ctrl_c_mid_session_stops_the_demo_promptly_and_cleanly(tmp_path: Path) -> None:
    process = _demo(tmp_path, "--duration", "60")
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + 90
    for line in process.stdout:  # until the call has begun and something was played
        seen.append(line)
        if "] ordinary conversation" in line or "] the client shares" in line:
            break
        assert time.monotonic() < deadline, "".join(seen)
    participants = _children(process.pid)
    assert participants, "the participants' process is not running"
    time.sleep(2.0)
    began = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    took = time.monotonic() - began
    out = "".join(seen) + out
    assert process.returncode == 130, (out, err)
    assert took < 10.0
    assert "Traceback" not in err
    assert "Traceback" not in out
    assert "stopping: hanging up" in out
    assert "Flags raised:" in out
    assert "not reached (stopped before it)" in out  # the freeze was 30 s ahead
    assert not any(_alive(pid) for pid in participants)
    match = SESSION_ID.search(out)
    assert match is not None
    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        record = store.get_session(match.group(1))
        assert record is not None
        assert record.ended_at is not None  # ended and recorded, not left "live"
    print(f"Ctrl-C: the demo exited {took:.2f} s after SIGINT")


def test_a_duration_out_of_range_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--duration", "5", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("feltsafe demo: the duration must be between 30 and 600 seconds")
    assert len(err.strip().splitlines()) == 1


def test_an_unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--scenario", "stormy"])
    assert exc.value.code == 2


def test_a_port_in_use_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["demo", "--port", str(port), "--no-browser", "--db", str(tmp_path / "d.db")])
    assert code == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is in use" in err
    assert not (tmp_path / "d.db").exists()  # nothing was started


def _app(*paths: str) -> Starlette:
    async def nothing(request: Request) -> Response:
        return Response()

    return Starlette(routes=[Route(path, nothing) for path in paths])


def test_the_supervisor_gets_the_review_page_else_the_rest_api_else_the_store() -> None:
    base, token = "http://127.0.0.1:9", "ey.t.s"
    page = demo_urls(base, _app("/review", "/api/sessions/{session}/flags"), "s1", "th", token)
    assert page.review_kind is ReviewKind.PAGE
    assert page.review == f"{base}/review/session.html?id=s1#token={token}"
    assert page.indicator == f"{base}/static/demo-call.html#session=s1&token=th"
    rest = demo_urls(base, _app("/api/sessions/{session}/flags"), "s1", "th", token)
    assert rest.review_kind is ReviewKind.REST
    assert rest.review is not None
    assert rest.review.startswith(f"{base}/api/sessions/s1/flags")
    assert f"Bearer {token}" in rest.review
    neither = demo_urls(base, _app("/healthz"), "s1", "th", token)
    assert neither.review_kind is ReviewKind.NONE
    assert neither.review is None


def test_a_store_that_cannot_be_opened_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "missing" / "dir" / "demo.db"
    assert main(["demo", "--port", "0", "--no-browser", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"feltsafe demo: cannot open the store at sqlite:///{db}: unable to open database file\n"
    )


def test_db_is_a_path_to_an_sqlite_file_unless_it_is_a_url(tmp_path: Path) -> None:
    assert database_url(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path / 'x.db'}"
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_the_default_port_falls_back_to_a_free_one_when_taken() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", DEFAULT_PORT))
            taken.listen()
        except OSError:
            pass  # someone else holds it: taken all the same
        sock = bind_http(None)
        try:
            port = sock.getsockname()[1]
            assert port != DEFAULT_PORT
            assert port > 0
        finally:
            sock.close()


def test_a_browser_is_tried_only_when_a_display_is_available(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not display_available()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert display_available()
    monkeypatch.delenv("WAYLAND_DISPLAY")
    monkeypatch.setenv("DISPLAY", ":0")
    assert display_available()


def test_participants_who_cannot_reach_the_monitor_report_one_error_line() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    spec = {
        "url": f"http://127.0.0.1:{port}",
        "session": "demo-000000",
        "tokens": {"therapist": "t", "client": "c"},
        "scenario": "default",
        "duration": 30,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor.demo.participants"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(spec) + "\n")
    process.stdin.flush()  # and kept open: closing it would mean "hang up"
    try:
        code = process.wait(timeout=60)
    finally:
        process.stdin.close()
    assert process.stdout is not None
    assert process.stderr is not None
    out, err = process.stdout.read(), process.stderr.read()
    assert code == 1
    events = [json.loads(line) for line in out.splitlines()]
    assert events[-1]["event"] == "error"
    assert "Connection refused" in events[-1]["message"]
    assert "Traceback" not in err
