"""The beacon websocket: handshake, token, origin, frames into the session, limits, lifecycle.

Runs the endpoint in Starlette's TestClient (one event loop for the whole test, reached
through ``client.portal``); the real-server fuzzing is in test_beacon_fuzz.py.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from monitor import beacon_ws
from monitor.app import create_app
from monitor.beacon import BeaconLimits
from monitor.beacon_ws import BeaconEndpoint, origin_allowed
from monitor.config import Settings
from monitor.participant import Attachment
from monitor.sessions import LiveSession, SessionRegistry
from monitor.tokens import TokenRole, issue_token
from probes.base import Role

SECRET = "b" * 40
APP_ORIGIN = "https://therapy.example"
URL = "/ws/beacon/s1/client"


def token(
    session: str = "s1",
    participant: Role | None = Role.CLIENT,
    role: TokenRole = TokenRole.PUBLISHER,
    **kwargs: Any,
) -> str:
    return issue_token(SECRET, role=role, session=session, participant=participant, **kwargs)


def stats(
    received: int = 1000, lost: int = 0, jitter: float = 0.012, rtt: float | None = None
) -> str:
    message: dict[str, Any] = {
        "type": "stats",
        "v": 1,
        "inbound": [
            {"kind": "audio", "jitter": jitter, "packetsReceived": received, "packetsLost": lost}
        ],
    }
    if rtt is not None:
        message["roundTripTime"] = rtt
    return json.dumps(message)


class Monitor:
    """A registry and a beacon endpoint in a TestClient, with access to the loop."""

    def __init__(self, client: TestClient, registry: SessionRegistry, endpoint: BeaconEndpoint):
        self.client = client
        self.registry = registry
        self.endpoint = endpoint

    def in_loop(self, call: Callable[[], Any]) -> Any:
        assert self.client.portal is not None
        return self.client.portal.call(call)

    def live(self, session: str = "s1") -> LiveSession:
        live = self.registry.get(session)
        assert live is not None
        return live

    def snapshot(self, session: str = "s1") -> dict[str, Any]:
        live = self.live(session)
        return dict(self.in_loop(lambda: live.session.snapshot(now=live.clock())))

    def connect(self, url: str = URL, origin: str | None = APP_ORIGIN) -> Any:
        headers = {} if origin is None else {"origin": origin}
        return self.client.websocket_connect(url, headers=headers)


def make_monitor(**endpoint_options: Any) -> Iterator[Monitor]:
    registry = SessionRegistry()
    endpoint = BeaconEndpoint(
        registry, secret=SECRET, allowed_origins=(APP_ORIGIN,), **endpoint_options
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await registry.aclose()

    app = Starlette(routes=endpoint.routes(), lifespan=lifespan)
    with TestClient(app) as client:
        yield Monitor(client, registry, endpoint)


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    yield from make_monitor()


def ready(ws: Any, credential: str | None = None) -> None:
    ws.send_text(credential or token())
    assert ws.receive_json() == {"type": "ready"}


def settle(ws: Any) -> None:
    """Frames are handled in order: once a bad frame is answered, earlier ones are in."""
    ws.send_text("not json")
    assert ws.receive_json() == {"type": "error", "error": "malformed_json"}


# --- into the session ---------------------------------------------------------------------


def test_a_clients_reports_become_the_therapists_media_and_the_clients_rtt(
    monitor: Monitor,
) -> None:
    with monitor.connect() as ws:
        ready(ws)
        ws.send_text(stats(received=1000, lost=0))
        ws.send_text(stats(received=1190, lost=10, jitter=0.012, rtt=0.08))
        settle(ws)
        snapshot = monitor.snapshot()
        assert monitor.live().session.is_present(Role.CLIENT)
    assert snapshot["therapist.audio.jitter_ms"] == pytest.approx(12.0)
    assert snapshot["therapist.audio.loss_ratio"] == pytest.approx(10 / 200)
    assert snapshot["client.network.rtt_ms"] == pytest.approx(80.0)
    assert snapshot["client.audio.jitter_ms"] is None  # nobody reported on the client's media
    assert monitor.endpoint.counters.reports == 2


def test_microphone_levels_go_to_the_session_in_dbov_with_their_duration(
    monitor: Monitor,
) -> None:
    calls: list[tuple[Role, float, float]] = []
    with monitor.connect() as ws:
        ready(ws)
        session = monitor.live().session

        def spy(role: Role, level_db: float, *, now: float, duration: float = 0.1) -> None:
            calls.append((role, level_db, duration))

        session.on_audio_level = spy  # type: ignore[method-assign]
        for rms in (0.3, 0.0):
            ws.send_text(json.dumps({"type": "level", "v": 1, "rms": rms, "duration": 0.1}))
        settle(ws)
    assert calls == [
        (Role.CLIENT, pytest.approx(20 * math.log10(0.3)), pytest.approx(0.1)),
        (Role.CLIENT, -127.0, pytest.approx(0.1)),
    ]
    assert monitor.endpoint.counters.levels == 2


def test_an_error_inside_the_session_is_counted_and_the_connection_goes_on(
    monitor: Monitor,
) -> None:
    with monitor.connect() as ws:
        ready(ws)

        def broken(*args: Any, **kwargs: Any) -> None:
            raise RuntimeError("bug")

        monitor.live().session.on_beacon_report = broken  # type: ignore[method-assign]
        ws.send_text(stats())
        settle(ws)
    assert monitor.endpoint.internal_errors == 1
    assert not monitor.live().closed


# --- the handshake ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credential", "reason", "code"),
    [
        ("not-a-token", "token_invalid", 4401),
        (issue_token("x" * 40, role=TokenRole.PUBLISHER, session="s1", participant=Role.CLIENT),
         "token_invalid", 4401),  # signed with another secret
        (token(now=time.time() - 7200), "token_invalid", 4401),  # expired an hour ago
        ("x" * 5000, "token_invalid", 4401),
        ('{"type": "auth"}', "token_invalid", 4401),
        (json.dumps({"type": "hello", "token": token()}), "token_invalid", 4401),
        (stats(), "token_invalid", 4401),
        (token(session="s2"), "token_forbidden", 4403),
        (token(participant=Role.THERAPIST), "token_forbidden", 4403),
        (token(role=TokenRole.SUPERVISOR, participant=None), "token_forbidden", 4403),
    ],
)  # fmt: skip
def test_the_first_message_must_be_a_publisher_token_for_this_session_and_participant(
    monitor: Monitor, credential: str, reason: str, code: int
) -> None:
    with monitor.connect() as ws:
        ws.send_text(credential)
        assert ws.receive_json() == {"type": "error", "error": reason}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == code
    assert monitor.endpoint.counters.refused[reason] == 1
    assert monitor.registry.get("s1") is None  # a refused beacon starts no session


@pytest.mark.parametrize("form", ["bare", "auth message"])
def test_the_token_comes_bare_or_in_an_auth_message_like_the_indicators(
    monitor: Monitor, form: str
) -> None:
    credential = token() if form == "bare" else json.dumps({"type": "auth", "token": token()})
    with monitor.connect() as ws:
        ready(ws, credential)


def test_a_binary_first_message_is_not_a_token(monitor: Monitor) -> None:
    with monitor.connect() as ws:
        ws.send_bytes(token().encode())
        assert ws.receive_json() == {"type": "error", "error": "token_invalid"}
        with pytest.raises(WebSocketDisconnect):
            ws.receive_text()


def test_a_connection_that_sends_no_token_in_time_is_closed() -> None:
    for monitor in make_monitor(auth_timeout=0.05):
        with monitor.connect() as ws:
            assert ws.receive_json() == {"type": "error", "error": "auth_timeout"}
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_text()
        assert closed.value.code == 4401


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://therapy.example", "https://testserver.evil"]
)
def test_a_page_from_an_origin_not_allowed_is_refused_at_the_handshake(
    monitor: Monitor, origin: str
) -> None:
    with pytest.raises(WebSocketDisconnect) as refused, monitor.connect(origin=origin):
        pass
    assert refused.value.code == 1008
    assert monitor.endpoint.counters.refused["origin_not_allowed"] == 1


@pytest.mark.parametrize("origin", [APP_ORIGIN, "http://testserver", "https://testserver", None])
def test_allowed_same_host_and_non_browser_clients_may_connect(
    monitor: Monitor, origin: str | None
) -> None:
    with monitor.connect(origin=origin) as ws:
        ready(ws)


def test_origin_rules() -> None:
    allowed = ("https://a.example",)
    assert origin_allowed("https://a.example", host="monitor:8750", allowed=allowed)
    assert origin_allowed("http://monitor:8750", host="monitor:8750", allowed=allowed)
    assert not origin_allowed("http://monitor:9999", host="monitor:8750", allowed=allowed)
    assert not origin_allowed("https://b.example", host="monitor:8750", allowed=allowed)
    assert not origin_allowed("null", host="monitor:8750", allowed=allowed)
    assert not origin_allowed("https://a.example", host=None, allowed=())
    assert origin_allowed("https://b.example", host=None, allowed=("*",))
    assert origin_allowed(None, host=None, allowed=())


@pytest.mark.parametrize("url", ["/ws/beacon/s1/supervisor", "/ws/beacon/-s1/client"])
def test_a_path_that_names_no_participant_is_refused(monitor: Monitor, url: str) -> None:
    with pytest.raises(WebSocketDisconnect), monitor.connect(url):
        pass
    assert monitor.endpoint.counters.refused["bad_target"] == 1


# --- bad frames -----------------------------------------------------------------------------


def test_bad_frames_are_answered_with_their_kind_and_the_connection_stays_open(
    monitor: Monitor,
) -> None:
    answers = []
    with monitor.connect() as ws:
        ready(ws)
        for frame in ("{", '{"type": "stats", "v": 1, "audio": "hello"}', "x" * 5000):
            ws.send_text(frame)
            answers.append(ws.receive_json())
        ws.send_bytes(b"\x00\xff")
        answers.append(ws.receive_json())
        ws.send_text(stats(rtt=0.05))
        settle(ws)
        snapshot = monitor.snapshot()
    assert [a["error"] for a in answers] == [
        "malformed_json",
        "schema",
        "oversized",
        "binary_frame",
    ]
    assert all(set(a) == {"type", "error"} and a["type"] == "error" for a in answers)
    assert snapshot["client.network.rtt_ms"] == pytest.approx(50.0)
    rejected = monitor.endpoint.counters.as_dict()["rejected"]
    assert rejected == {
        "binary_frame": 1,
        "oversized": 1,
        "malformed_json": 2,
        "schema": 1,
        "rate_limited": 0,
    }


def test_a_flood_is_dropped_and_answered_once() -> None:
    for monitor in make_monitor(limits=BeaconLimits(rate_per_s=0.01, burst=3)):
        with monitor.connect() as ws:
            ready(ws)
            for _ in range(50):
                ws.send_text(stats())
            ws.send_text(stats())
            assert ws.receive_json() == {"type": "error", "error": "rate_limited"}
            monitor.in_loop(lambda: None)
        counters = monitor.endpoint.counters
        assert counters.reports == 3
        assert counters.rejected["rate_limited"] == 48


# --- lifecycle ------------------------------------------------------------------------------


def test_a_newer_connection_for_the_same_participant_supersedes_the_older(
    monitor: Monitor,
) -> None:
    with monitor.connect() as old:
        ready(old)
        with monitor.connect() as new:
            ready(new)
            with pytest.raises(WebSocketDisconnect) as closed:
                old.receive_text()
            assert closed.value.code == 4001
            settle(new)
            assert monitor.live().session.is_present(Role.CLIENT)
            assert monitor.endpoint.connection_count == 1
        monitor.in_loop(lambda: None)
    participant = monitor.live().session.participants[Role.CLIENT]
    assert Attachment.BEACON not in participant.attachments


def test_closing_the_beacon_detaches_its_participant(monitor: Monitor) -> None:
    with monitor.connect() as ws:
        ready(ws)
        assert monitor.live().session.is_present(Role.CLIENT)
    with monitor.connect("/ws/beacon/s1/therapist") as other:  # a round trip after the close
        ready(other, token(participant=Role.THERAPIST))
    assert not monitor.live().session.is_present(Role.CLIENT)
    assert monitor.endpoint.connection_count == 0


def test_a_beacon_of_an_ended_session_is_told_to_go_away(monitor: Monitor) -> None:
    with monitor.connect() as ws:
        ready(ws)
        live = monitor.live()
        monitor.in_loop(live.close)
        ws.send_text(stats())
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1001
    assert live.closed


def test_a_token_that_expires_during_the_connection_closes_it(monitor: Monitor) -> None:
    # Expired 2 s ago: still inside verification's 5 s clock-skew leeway, so accepted...
    with monitor.connect() as ws:
        ready(ws, token(now=time.time() - 3602, ttl=3600))
        ws.send_text(stats())  # ...but the connection may not outlive it
        assert ws.receive_json() == {"type": "error", "error": "token_expired"}
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 4401
    assert monitor.endpoint.counters.reports == 0


# --- HTTP -------------------------------------------------------------------------------------


def test_the_beacon_script_is_served_as_javascript(monitor: Monitor) -> None:
    response = monitor.client.get("/static/feltsafe-beacon.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "FeltsafeBeacon" in response.text


def test_the_counters_carry_no_session_or_participant_ids(monitor: Monitor) -> None:
    with monitor.connect("/ws/beacon/secret-room-42/client") as ws:
        ready(ws, token(session="secret-room-42"))
        ws.send_text(stats())
        settle(ws)
    body = monitor.client.get("/api/beacon/counters").json()
    assert "secret-room-42" not in json.dumps(body)
    assert body["connections"] == 1
    assert body["reports"] == 1
    assert body["rejected"]["malformed_json"] == 1


def test_the_app_feltsafe_serve_runs_has_the_beacon_endpoint() -> None:
    app = create_app(Settings(secret=SECRET))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert beacon_ws.BEACON_PATH in paths
    assert isinstance(app.state.beacon, BeaconEndpoint)
