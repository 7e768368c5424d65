"""A real Prometheus scrapes a running `feltsafe serve`; every dashboard query and every
alert rule must work against what it stored.

Set-up (about 30 s of real time, marked slow): `feltsafe serve` runs as a subprocess on a
free loopback port, media on 127.0.0.2; the Debian package's Prometheus
(/usr/bin/prometheus, listed in .ci/debian-packages) scrapes its /metrics every second,
with the ops alert rules loaded and evaluated every second. Simulated participants take
part through the monitor's real interfaces: aiortc peers publish speech-like audio and a
moving picture over WHIP (tests/monitor/peers.py), one session in full mode (the client's
audio loses 8 % of its packets, the client's video stalls 1.5 s: a W3C freeze) and one
in metadata mode; both browsers of the first session run a beacon (round-trip times, so
MOS is known, and one malformed frame); a therapist watches the indicator; one WHIP offer
comes without a token.

Then, through Prometheus' HTTP API:

- every query of every panel of ``dashboards.catalogue.DASHBOARDS`` and of the committed
  JSON in dashboards/generated/ (what users install), with Grafana's ``$__rate_interval``
  and ``$__range`` replaced by 1m and 5m, returns a non-empty result;
- every alert rule's expression in alerts/prometheus/feltsafe.rules.yml evaluates without
  error, and each ``feltsafe_*`` selector in it (with its label matchers, without
  ``offset``, range or comparison) returns data; ``/api/v1/rules`` shows every rule of
  the file loaded with health "ok";
- the metrics are live, not only declared: sessions, participants and websocket clients
  are counted, stream histograms, MOS, RTT and tick lag have samples, freezes, flags,
  indicator changes, session-minutes and ingest errors have counted.

Why a renamed metric fails here: the dashboards are generated from the catalogue, so a
rename in monitor/metrics.py renames their queries too, but the committed JSON and the
hand-written rule file keep the old name, which Prometheus has no data for. (Talk share
and interruptions are sampled per session-minute; 20-s sessions give none, so their
quantiles are NaN: still a result, and the names are checked like any other.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from websockets.asyncio.client import ClientConnection, connect

from dashboards.catalogue import DASHBOARDS
from monitor.media_host import media_host
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.monitor.peers import Impairment, MovingPatternTrack, Published, ScriptedSpeechTrack
from tests.monitor.peers import publish as whip_publish

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
RULES_FILE = ROOT / "alerts" / "prometheus" / "feltsafe.rules.yml"
GENERATED = ROOT / "dashboards" / "generated" / "dashboards"
PROMETHEUS = "/usr/bin/prometheus"
SECRET = "p" * 40
RUN_FOR = 20.0  # seconds of live sessions before the queries
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}
SELECTOR = re.compile(r"\bfeltsafe_[a-z_]+(?:\{[^}]*\})?")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def catalogue_queries() -> list[tuple[str, str]]:
    return [
        (f"{dashboard.uid} / {panel.title}", query.expr)
        for dashboard in DASHBOARDS
        for panel in dashboard.panels
        for query in panel.queries
    ]


def committed_queries() -> list[tuple[str, str]]:
    files = sorted(GENERATED.glob("*.json"))
    assert files, f"no dashboards in {GENERATED}"
    out = []
    for path in files:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((f"{path.name} / {panel['title']}", target["expr"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


# -- the processes ----------------------------------------------------------------------


def _stop(process: subprocess.Popen[bytes], sig: int) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url} exited with {process.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready in {timeout} s:\n{log.read_text()}")


@dataclass
class Stack:
    monitor: str
    prometheus: str


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    assert Path(PROMETHEUS).exists(), "the Debian package prometheus is in .ci/debian-packages"
    monitor_port, prometheus_port = free_port(), free_port()
    feltsafe = shutil.which("feltsafe", path=str(Path(sys.executable).parent))
    command = [feltsafe] if feltsafe else [sys.executable, "-m", "monitor.cli"]
    serve_log = tmp_path / "serve.log"
    with serve_log.open("wb") as out:
        serve = subprocess.Popen(
            [
                *command,
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(monitor_port),
                "--media-host",
                "127.0.0.2",
            ],
            cwd=tmp_path,
            env={**os.environ, "FELTSAFE_SECRET": SECRET},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES_FILE)],
                "scrape_configs": [
                    {
                        "job_name": "feltsafe",
                        "static_configs": [{"targets": [f"127.0.0.1:{monitor_port}"]}],
                    }
                ],
            }
        )
    )
    prometheus_log = tmp_path / "prometheus.log"
    with prometheus_log.open("wb") as out:
        prometheus = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        monitor_url = f"http://127.0.0.1:{monitor_port}"
        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        _wait_http(f"{monitor_url}/healthz", serve, serve_log, timeout=30)
        _wait_http(f"{prometheus_url}/-/ready", prometheus, prometheus_log, timeout=30)
        yield Stack(monitor_url, prometheus_url)
    finally:
        _stop(prometheus, signal.SIGTERM)
        _stop(serve, signal.SIGINT)


# -- the participants -----------------------------------------------------------------


@dataclass
class Participants:
    peers: list[Published] = field(default_factory=list)
    sockets: list[ClientConnection] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _publisher(session: str, role: Role) -> str:
    return issue_token(SECRET, role=TokenRole.PUBLISHER, session=session, participant=role)


async def _beacon(ws_url: str, session: str, role: Role, sockets: list[ClientConnection]) -> None:
    """A browser's beacon: the token, one malformed frame, then a report every second."""
    async with connect(f"{ws_url}/ws/beacon/{session}/{role}") as websocket:
        sockets.append(websocket)
        await websocket.send(_publisher(session, role))
        assert json.loads(await websocket.recv())["type"] == "ready"
        await websocket.send("{this is not json")
        while True:
            report = {"type": "stats", "v": 1, "inbound": [], "roundTripTime": 0.09}
            await websocket.send(json.dumps(report))
            await asyncio.sleep(1.0)


async def _indicator(ws_url: str, session: str, sockets: list[ClientConnection]) -> None:
    async with connect(f"{ws_url}/ws/indicator/{session}") as websocket:
        sockets.append(websocket)
        token = issue_token(SECRET, role=TokenRole.THERAPIST, session=session)
        await websocket.send(json.dumps({"type": "auth", "token": token}))
        async for _ in websocket:  # keep reading: the server coalesces, we drain
            pass


@contextlib.asynccontextmanager
async def participants(monitor_url: str) -> AsyncIterator[Participants]:
    crowd = Participants()
    ws_url = monitor_url.replace("http://", "ws://")
    talk_a = [(0.0, 3.0), (6.0, 9.0), (12.0, 15.0), (18.0, 21.0)]
    talk_b = [(3.0, 6.0), (9.0, 12.0), (15.0, 18.0), (21.0, 24.0)]
    frozen_client = MovingPatternTrack(fps=15, seed=5)
    frozen_client.pause(at=6.0, duration=1.5)
    try:
        with media_host("127.0.0.3"):
            async with httpx.AsyncClient(base_url=monitor_url, timeout=10.0) as client:
                no_token = await client.post(
                    "/whip/fleet-c/client",
                    content="v=0\r\n",
                    headers={"Content-Type": "application/sdp"},
                )
                assert no_token.status_code == 401
                full, metadata = "", "?mode=metadata"
                therapist_a = [ScriptedSpeechTrack(talk_a, f0=120.0), MovingPatternTrack(fps=15)]
                client_a = [ScriptedSpeechTrack(talk_b, f0=210.0), frozen_client]
                therapist_b = [ScriptedSpeechTrack(talk_b), MovingPatternTrack(fps=15, seed=9)]
                client_b = [ScriptedSpeechTrack(talk_a, f0=190.0)]
                lossy = Impairment(loss=0.08, seed=11)
                plan: list[tuple[str, Role, list[Any], str, Impairment | None]] = [
                    ("fleet-a", Role.THERAPIST, therapist_a, full, None),
                    ("fleet-a", Role.CLIENT, client_a, full, lossy),
                    ("fleet-b", Role.THERAPIST, therapist_b, metadata, None),
                    ("fleet-b", Role.CLIENT, client_b, metadata, None),
                ]
                for session, role, tracks, query, impairment in plan:
                    peer = await whip_publish(
                        client,
                        session,
                        role.value,
                        _publisher(session, role),
                        tracks,
                        query=query,
                        impairment=impairment,
                    )
                    crowd.peers.append(peer)
                for role in Role:
                    crowd.tasks.append(
                        asyncio.ensure_future(_beacon(ws_url, "fleet-a", role, crowd.sockets))
                    )
                crowd.tasks.append(
                    asyncio.ensure_future(_indicator(ws_url, "fleet-a", crowd.sockets))
                )
                yield crowd
    finally:
        for task in crowd.tasks:
            task.cancel()
        await asyncio.gather(*crowd.tasks, return_exceptions=True)
        for peer in crowd.peers:
            await peer.pc.close()


# -- Prometheus' HTTP API ---------------------------------------------------------------


async def instant(api: httpx.AsyncClient, promql: str) -> list[dict[str, Any]]:
    response = await api.get("/api/v1/query", params={"query": promql})
    body = response.json()
    assert response.status_code == 200, (promql, body)
    assert body["status"] == "success", (promql, body)
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def values(api: httpx.AsyncClient, promql: str) -> dict[str, float]:
    """{label values joined by ',': value} of an instant vector (not name, job, instance)."""
    out = {}
    for sample in await instant(api, promql):
        labels = sorted(sample["metric"].items())
        key = ",".join(v for k, v in labels if k not in ("__name__", "job", "instance"))
        out[key] = float(sample["value"][1])
    return out


async def empty_queries(api: httpx.AsyncClient, queries: list[tuple[str, str]]) -> list[str]:
    empty = []
    for where, expr in queries:
        if not await instant(api, grafana_to_promql(expr)):
            empty.append(f"{where}: {expr}")
    return empty


# -- the test ---------------------------------------------------------------------------


async def test_dashboards_and_alert_rules_work_against_a_real_prometheus(stack: Stack) -> None:
    async with (
        participants(stack.monitor),
        httpx.AsyncClient(base_url=stack.prometheus, timeout=10.0) as api,
    ):
        await asyncio.sleep(RUN_FOR)

        up = await values(api, 'up{job="feltsafe"}')
        assert list(up.values()) == [1.0], "Prometheus could not scrape feltsafe serve"

        # Every panel query of the dashboards, as built and as committed, returns data.
        assert await empty_queries(api, catalogue_queries()) == []
        assert await empty_queries(api, committed_queries()) == []

        # Every alert expression evaluates; every metric selector in it has data.
        rules = alert_rules()
        assert rules
        missing = []
        for rule in rules:
            await instant(api, rule["expr"])  # no error (conditions may well be empty)
            for selector in SELECTOR.findall(rule["expr"]):
                if not await instant(api, selector):
                    missing.append(f"{rule['alert']}: {selector}")
        assert missing == []

        # Prometheus loaded every rule of the file and evaluates it without error.
        body = (await api.get("/api/v1/rules")).json()
        loaded = {
            rule["name"]: (rule["health"], rule.get("lastError", ""))
            for group in body["data"]["groups"]
            for rule in group["rules"]
        }
        assert loaded == {rule["alert"]: ("ok", "") for rule in rules}

        # The figures are live: what the participants did has been measured.
        assert await values(api, "feltsafe_sessions_active") == {"full": 1.0, "metadata": 1.0}
        assert await values(api, "feltsafe_participants_connected") == {
            "client": 2.0,
            "therapist": 2.0,
        }
        assert await values(api, "feltsafe_websocket_clients") == {
            "beacon": 2.0,
            "indicator": 1.0,
        }
        streams = await values(api, "feltsafe_stream_jitter_seconds_count > 0")
        assert set(streams) == {
            "audio,client",
            "audio,therapist",
            "video,client",
            "video,therapist",
        }
        assert min(streams.values()) >= 5  # samples once per stream-second
        losses = await values(api, "feltsafe_stream_loss_ratio_count > 0")
        assert set(losses) == set(streams)
        assert set(await values(api, "feltsafe_audio_mos_count > 0")) == {"client", "therapist"}
        assert set(await values(api, "feltsafe_path_rtt_seconds_count > 0")) == {
            "client",
            "therapist",
        }
        lossy = await values(
            api,
            'sum(feltsafe_stream_loss_ratio_sum{role="client",kind="audio"})'
            ' / sum(feltsafe_stream_loss_ratio_count{role="client",kind="audio"})',
        )
        assert 0.01 < next(iter(lossy.values())) < 0.2  # 8 % lost in one of two sessions
        assert (await values(api, "feltsafe_tick_lag_seconds_count"))[""] > 50
        assert set(await values(api, "feltsafe_session_minutes_total > 0")) == {
            "full",
            "metadata",
        }
        assert (await values(api, 'feltsafe_video_freezes_total{role="client"}'))["client"] >= 1
        assert (await values(api, "sum(feltsafe_flags_total)"))[""] >= 1
        assert (await values(api, "sum(feltsafe_indicator_level_changes_total)"))[""] >= 1
        errors = await values(api, "feltsafe_ingest_errors_total > 0")
        assert errors == {"bad_token": 1.0, "bad_beacon_message": 2.0}
        scrape = await values(api, "feltsafe_scrape_duration_seconds")
        assert 0 < scrape[""] < 0.5
