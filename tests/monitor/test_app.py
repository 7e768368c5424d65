"""The app factory, /healthz, the snapshot API, lifespan shutdown and `feltsafe serve`."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from monitor.app import create_app
from monitor.cli import build_parser
from monitor.commands.serve import settings_from_args
from monitor.config import Mode, Settings
from monitor.media_host import media_host
from monitor.observations import BeaconReport, InboundStreamStats
from monitor.tokens import TokenRole, issue_token
from probes.base import ConfigError, MediaKind, Role
from probes.signals import CATALOGUE

SECRET = "a" * 40


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


@pytest.fixture
async def app() -> AsyncIterator[Starlette]:
    application = create_app(Settings(secret=SECRET))
    yield application
    await application.state.registry.aclose()


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    # The snapshot is a supervisor's (or the session's therapist's) to read.
    headers = {"Authorization": f"Bearer {issue_token(SECRET, role=TokenRole.SUPERVISOR)}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://monitor", headers=headers
    ) as http:
        yield http


def test_the_app_needs_a_secret() -> None:
    with pytest.raises(ConfigError, match="secret"):
        create_app(Settings())


async def test_healthz_is_ok_and_counts_sessions_without_naming_them(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "sessions": 0}
    app.state.registry.open("secret-session-id")
    body = (await client.get("/healthz")).text
    assert '"sessions":1' in body
    assert "secret-session-id" not in body


async def test_snapshot_of_an_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/sessions/nope/snapshot")).status_code == 404


async def test_snapshot_serves_the_latest_tick_with_every_signal(
    client: httpx.AsyncClient, app: Starlette
) -> None:
    live = app.state.registry.open("s1")
    report = BeaconReport(
        inbound=(
            InboundStreamStats(MediaKind.AUDIO, jitter=0.012, packets_received=100, packets_lost=0),
        ),
        round_trip_time=0.08,
    )
    live.session.on_beacon_report(Role.CLIENT, report, now=live.clock())
    await asyncio.sleep(0.3)  # one tick
    body = (await client.get("/api/sessions/s1/snapshot")).json()
    assert body["session"] == "s1"
    assert body["mode"] == "full"
    assert set(body["signals"]) == set(CATALOGUE)
    assert body["signals"]["therapist.audio.jitter_ms"] == pytest.approx(12.0)
    assert body["signals"]["client.network.rtt_ms"] == pytest.approx(80.0)
    assert body["signals"]["client.audio.jitter_ms"] is None  # nobody reported it: unknown
    assert body["elapsed_s"] >= 0.25


async def test_lifespan_shutdown_ends_every_session(app: Starlette) -> None:
    async with app.router.lifespan_context(app):
        app.state.registry.open("s1")
        app.state.registry.open("s2")
        assert len(app.state.registry) == 2
    assert len(app.state.registry) == 0


def test_serve_flags_beat_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FELTSAFE_PORT", "9999")
    monkeypatch.setenv("FELTSAFE_MODE", "metadata")
    args = build_parser().parse_args(
        ["serve", "--port", "8123", "--media-host", "127.0.0.2", "--trace-dir", "/tmp/t"]
    )
    settings = settings_from_args(args)
    assert settings.port == 8123
    assert settings.mode is Mode.METADATA
    assert settings.media_host == "127.0.0.2"
    assert settings.trace_dir == Path("/tmp/t")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_feltsafe_serve_answers_healthz_and_stops_on_sigint(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "FELTSAFE_SECRET": SECRET}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "monitor.cli",
            "serve",
            "--port",
            str(port),
            "--media-host",
            "127.0.0.2",
            "--db",
            f"sqlite:///{tmp_path}/f.db",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "feltsafe serve did not start"
                time.sleep(0.2)
        assert response.json()["status"] == "ok"
    finally:
        process.send_signal(2)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 130, output  # Ctrl-C, after a clean shutdown
    assert "Application shutdown complete" in output
    assert "Warning" not in output
    assert "/healthz" not in output  # no access log: paths carry session ids


@pytest.mark.slow
def test_serve_without_a_secret_fails_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FELTSAFE_")}
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "FELTSAFE_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
