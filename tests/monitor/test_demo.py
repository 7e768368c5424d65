"""``feltsafe demo`` end to end: a real monitor, real participants, a real store.

The slow tests run the installed command's module (``python -m monitor.cli demo``) in a
subprocess, as ``make demo`` does, with the shortest script that still has the
headline fault (30 s: the client shares, the therapist's picture freezes 22 s in):

* it plays to its end and exits 0, prints the therapist's and the supervisor's URLs
  with their tokens in the fragment, and a summary in which the freeze during
  disclosure was noticed by its rule; the store file holds the ended session and that
  flag, at alert, raised while the disclosure window was open;
* Ctrl-C (SIGINT) in the middle of the session stops it within seconds, with exit
  status 130, no traceback, the participants' process gone and the session's end
  recorded in the store.

The fast tests check the command line's refusals, which happen before anything starts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alerts.model import Severity
from monitor.cli import main
from monitor.demo.run import ReviewKind, demo_urls
from monitor.store import Store

REPO = Path(__file__).resolve().parents[2]
FREEZE_RULE = "therapist_video_frozen_while_client_speaks"
SESSION_ID = re.compile(r"#session=(demo-[0-9a-f]{6})&token=[\w.-]+")


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


@pytest.mark.slow
def test_a_short_demo_plays_to_its_end_and_the_freeze_during_disclosure_is_flagged(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    process = _demo(tmp_path, "--duration", "30")
    out, err = process.communicate(timeout=150)
    took = time.monotonic() - began
    assert process.returncode == 0, (out, err)
    assert "Traceback" not in err
    # The three faces' URLs, tokens in the fragment (never in the path or the query).
    match = SESSION_ID.search(out)
    assert match is not None, out
    session = match.group(1)
    assert f"/static/demo-call.html#session={session}&token=ey" in out
    review = re.search(
        rf"/review/session\.html\?id={session}#token=ey|/api/sessions/{session}/", out
    )
    assert review is not None, out
    assert "/metrics" in out
    # The summary, read back from the store: the headline fault was noticed by its rule.
    summary = out.split("Flags raised:", 1)[1]
    assert re.search(rf"fault at 0:2\d: the therapist's picture freezes .*: noticed at 0:2\d by "
                     rf".*{FREEZE_RULE}", summary), summary  # fmt: skip
    # The store file: the session, ended, and the flag with its context at onset.
    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        record = store.get_session(session)
        assert record is not None
        assert record.ended_at is not None
        assert record.duration is not None
        assert 28 < record.duration < 60
        flags = [f for f in store.list_flags(session) if f.flag.rule_id == FREEZE_RULE]
        assert any(
            f.flag.severity is Severity.ALERT and f.flag.context.get("session.disclosure") is True
            for f in flags
        ), [f.flag for f in flags]
        assert all(f.flag.end is not None for f in store.list_flags(session))
    print(f"30 s demo: {took:.1f} s wall time")


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
