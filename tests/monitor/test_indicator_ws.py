"""`/ws/indicator/{session}` under real uvicorn: token first, scope, Origin, limits, pushes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from alerts.indicator import IndicatorConfig
from monitor.app import create_app
from monitor.config import Mode, Settings
from monitor.indicator_feed import IndicatorHub
from monitor.indicator_ws import (
    CLOSE_FORBIDDEN,
    CLOSE_POLICY,
    CLOSE_UNAUTHORIZED,
    IndicatorEndpoint,
    IndicatorLimits,
)
from monitor.media_host import media_host
from monitor.rulefile import load_default_pack
from monitor.sessions import SessionRegistry
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.monitor.indicator_sim import SimulatedParticipant, serve

SECRET = "s" * 40
ALLOWED = "https://therapy.example"
FROZE_WHILE_SPEAKING = "Your client may not see you: your picture froze while they were speaking"
FROZE = "Your client may not see you: your picture froze"


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


def token(session: str | None = "s1", role: TokenRole = TokenRole.THERAPIST, **kw: Any) -> str:
    participant = Role.THERAPIST if role is TokenRole.PUBLISHER else None
    return issue_token(SECRET, role=role, session=session, participant=participant, **kw)


@dataclass
class Monitor:
    app: Starlette
    port: int

    @property
    def registry(self) -> SessionRegistry:
        registry: SessionRegistry = self.app.state.registry
        return registry

    def url(self, session: str = "s1", query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/indicator/{session}{query}"


@pytest.fixture
async def monitor() -> AsyncIterator[Monitor]:
    """The real app of `feltsafe serve` (create_app), on a free port."""
    app = create_app(Settings(secret=SECRET, allowed_origins=(ALLOWED,), mode=Mode.FULL))
    async with serve(app) as port:
        yield Monitor(app, port)


@pytest.fixture
async def quick() -> AsyncIterator[Monitor]:
    """The endpoint alone, with a short recovery and tight limits, to keep tests fast."""
    registry_box: list[SessionRegistry] = []
    hub = IndicatorHub(
        pack=load_default_pack(),
        config=IndicatorConfig(recovery_hold=0.5, min_change_interval=1.0),
    )
    registry = SessionRegistry(mode=Mode.FULL, sink_factories=[hub.sink_factory])
    registry_box.append(registry)
    endpoint = IndicatorEndpoint(
        hub,
        registry,
        secret=SECRET,
        allowed_origins=(ALLOWED,),
        limits=IndicatorLimits(rate=5.0, burst=5.0, max_strikes=5, auth_timeout=1.0),
    )
    app = Starlette(routes=endpoint.routes())
    app.state.registry = registry
    app.state.indicator = hub
    async with serve(app) as port:
        yield Monitor(app, port)
    await registry.aclose()


async def recv(ws: ClientConnection, timeout: float = 3.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        message = json.loads(await ws.recv())
    assert isinstance(message, dict)
    return message


async def until_state(
    ws: ClientConnection, level: str, timeout: float = 5.0
) -> tuple[dict[str, Any], float]:
    """The first state frame at ``level``, and when it arrived (monotonic)."""
    async with asyncio.timeout(timeout):
        while True:
            message = await recv(ws, timeout)
            if message["type"] == "state" and message["level"] == level:
                return message, time.monotonic()


async def drain(ws: ClientConnection, into: list[dict[str, Any]]) -> None:
    while True:
        into.append(json.loads(await ws.recv()))


async def closed_with(ws: ClientConnection, timeout: float = 3.0) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    async with asyncio.timeout(timeout):
        with pytest.raises(ConnectionClosed):
            await drain(ws, [])
    return ws.close_code, ws.close_reason or ""


async def authed(url: str, tok: str, **kw: Any) -> ClientConnection:
    ws = await connect(url, **kw)
    await ws.send(json.dumps({"type": "auth", "token": tok}))
    return ws


# --- authentication and scope -------------------------------------------------------------


async def test_after_the_token_the_current_state_arrives_at_once(monitor: Monitor) -> None:
    async with await authed(monitor.url(), token()) as ws:
        state = await recv(ws)
    assert state == {
        "type": "state",
        "level": "ok",
        "message": None,
        "hint": None,
        "since": pytest.approx(time.time(), abs=5.0),
    }


async def test_a_token_in_the_url_is_ignored_the_first_message_must_carry_it(
    monitor: Monitor,
) -> None:
    async with connect(monitor.url(query=f"?token={token()}")) as ws:
        await ws.send(json.dumps({"type": "marker", "on": True}))
        code, reason = await closed_with(ws)
    assert code == CLOSE_UNAUTHORIZED
    assert "first message" in reason


REFUSED_TOKENS: dict[str, tuple[Any, int, str]] = {
    "other-session": (lambda: token(session="other"), CLOSE_FORBIDDEN, "another session"),
    "no-session": (lambda: token(session=None), CLOSE_FORBIDDEN, "another session"),
    "publisher": (lambda: token(role=TokenRole.PUBLISHER), CLOSE_FORBIDDEN, "therapist"),
    "supervisor": (lambda: token(role=TokenRole.SUPERVISOR), CLOSE_FORBIDDEN, "therapist"),
    "ops": (lambda: token(role=TokenRole.OPS), CLOSE_FORBIDDEN, "therapist"),
    "expired": (lambda: token(ttl=10, now=time.time() - 60), CLOSE_UNAUTHORIZED, "expired"),
    "other-secret": (
        lambda: issue_token("x" * 40, role=TokenRole.THERAPIST, session="s1"),
        CLOSE_UNAUTHORIZED,
        "invalid",
    ),
    "garbage": (lambda: "not.a.jwt", CLOSE_UNAUTHORIZED, "invalid"),
    "not-a-string": (lambda: 42, CLOSE_UNAUTHORIZED, "no token"),
}


@pytest.mark.parametrize(("tok", "code", "reason"), REFUSED_TOKENS.values(), ids=REFUSED_TOKENS)
async def test_only_a_therapist_token_for_this_session_is_let_in(
    monitor: Monitor, tok: Any, code: int, reason: str
) -> None:
    value = tok()
    async with connect(monitor.url()) as ws:
        await ws.send(json.dumps({"type": "auth", "token": value}))
        got_code, got_reason = await closed_with(ws)
    assert (got_code, reason in got_reason) == (code, True)
    assert str(value) not in got_reason  # the close reason never echoes the token


@pytest.mark.slow
async def test_a_silent_client_is_closed_when_the_auth_timeout_passes(quick: Monitor) -> None:
    async with connect(quick.url()) as ws:
        code, _ = await closed_with(ws, timeout=3.0)
    assert code == CLOSE_UNAUTHORIZED


@pytest.mark.slow
async def test_the_connection_closes_when_the_token_expires(quick: Monitor) -> None:
    # Back-dated so that it expires about 1.5 s from now.
    expiring = token(ttl=100, now=time.time() - 98.5)
    async with await authed(quick.url(), expiring) as ws:
        assert (await recv(ws))["type"] == "state"
        started = time.monotonic()
        code, reason = await closed_with(ws, timeout=4.0)
    assert (code, reason) == (CLOSE_UNAUTHORIZED, "token expired")
    assert 0.3 < time.monotonic() - started < 3.0


@pytest.mark.slow
async def test_a_fresh_token_extends_the_connection(quick: Monitor) -> None:
    expiring = token(ttl=100, now=time.time() - 98.5)
    async with await authed(quick.url(), expiring) as ws:
        assert (await recv(ws))["type"] == "state"
        await ws.send(json.dumps({"type": "auth", "token": token()}))
        assert await recv(ws) == {"type": "auth", "ok": True}
        await asyncio.sleep(2.5)  # past the first token's expiry
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}


async def test_a_fresh_token_for_another_session_is_refused(quick: Monitor) -> None:
    async with await authed(quick.url(), token()) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "auth", "token": token(session="other")}))
        assert await recv(ws) == {"type": "error", "error": "token_refused"}


# --- Origin ---------------------------------------------------------------------------------


async def test_a_page_on_another_origin_is_refused_at_the_handshake(monitor: Monitor) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(monitor.url(), origin=Origin("https://evil.example"))
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", [ALLOWED, "own"])
async def test_the_configured_origin_and_the_monitors_own_origin_are_let_in(
    monitor: Monitor, origin: str
) -> None:
    page = f"http://127.0.0.1:{monitor.port}" if origin == "own" else origin
    async with await authed(monitor.url(), token(), origin=Origin(page)) as ws:
        assert (await recv(ws))["type"] == "state"


async def test_a_malformed_session_id_is_refused_at_the_handshake(monitor: Monitor) -> None:
    with pytest.raises(InvalidStatus):
        await connect(monitor.url(session="-bad"))


# --- bad messages and limits -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("x" * 5000, "too_large"),
        (json.dumps({"type": "marker", "on": True, "pad": "é" * 2100}), "too_large"),
        ("{not json", "malformed"),
        ("[1, 2]", "malformed"),
        ('{"type": "marker", "on": NaN}', "malformed"),
        (json.dumps({"type": "marker", "on": "yes"}), "malformed"),
        (json.dumps({"type": "marker"}), "malformed"),
        (json.dumps({"type": "launch"}), "unknown_type"),
        (json.dumps({"on": True}), "malformed"),
        (b"\x00\x01", "binary_not_accepted"),
    ],
)
async def test_a_bad_message_gets_an_error_frame_and_the_connection_stays(
    monitor: Monitor, frame: str | bytes, error: str
) -> None:
    async with await authed(monitor.url(), token()) as ws:
        await recv(ws)
        await ws.send(frame)
        assert await recv(ws) == {"type": "error", "error": error}
        await ws.send(json.dumps({"type": "ping"}))
        assert await recv(ws) == {"type": "pong"}


async def test_a_flood_is_rate_limited_then_closed(quick: Monitor) -> None:
    async with await authed(quick.url(), token()) as ws:
        await recv(ws)
        for _ in range(30):
            await ws.send(json.dumps({"type": "ping"}))
        replies: list[dict[str, Any]] = []
        async with asyncio.timeout(3):
            with pytest.raises(ConnectionClosed):
                await drain(ws, replies)
        code = ws.close_code
    pongs = sum(r == {"type": "pong"} for r in replies)
    limited = sum(r == {"type": "error", "error": "rate_limited"} for r in replies)
    # The burst (5, the auth message took one) is served, then refusals, then the close.
    assert 4 <= pongs <= 5
    assert limited == 4  # the fifth strike closes
    assert code == CLOSE_POLICY


# --- the marker --------------------------------------------------------------------------------


async def test_the_marker_reaches_the_sessions_conversation_tracker(monitor: Monitor) -> None:
    live = monitor.registry.open("s1")
    async with await authed(monitor.url(), token()) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "marker", "on": True}))
        assert await recv(ws) == {"type": "marker", "on": True}
        snapshot = live.session.snapshot(now=live.clock())
        assert snapshot["session.marker"] is True
        assert snapshot["session.disclosure"] is True
        await ws.send(json.dumps({"type": "marker", "on": False}))
        assert await recv(ws) == {"type": "marker", "on": False}
        assert live.session.snapshot(now=live.clock())["session.marker"] is False


async def test_a_reconnecting_client_learns_the_marker_is_on(monitor: Monitor) -> None:
    live = monitor.registry.open("s1")
    live.session.set_marker(True, now=live.clock())
    await asyncio.sleep(0.3)  # one tick puts it in the latest snapshot
    async with await authed(monitor.url(), token()) as ws:
        assert (await recv(ws))["type"] == "state"
        assert await recv(ws) == {"type": "marker", "on": True}


async def test_a_marker_without_a_live_session_is_an_error(monitor: Monitor) -> None:
    async with await authed(monitor.url(), token()) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "marker", "on": True}))
        assert await recv(ws) == {"type": "error", "error": "no_live_session"}


# --- what is pushed ------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_freeze_while_marked_sensitive_pushes_a_red_message_then_it_recovers(
    quick: Monitor,
) -> None:
    live = quick.registry.open("s1")
    therapist = SimulatedParticipant(live, Role.THERAPIST)
    therapist.start()
    try:
        async with await authed(quick.url(), token()) as ws:
            assert (await recv(ws))["level"] == "ok"
            await ws.send(json.dumps({"type": "marker", "on": True}))
            assert await recv(ws) == {"type": "marker", "on": True}
            await asyncio.sleep(0.6)  # enough frames for the W3C average, the marker ticked
            therapist.freeze()
            alert, arrived = await until_state(ws, "alert", timeout=3.0)
            assert therapist.last_frame_at is not None
            assert alert["message"] == FROZE_WHILE_SPEAKING
            assert alert["hint"].startswith("When your picture is back")
            assert arrived - therapist.last_frame_at < 1.0
            therapist.resume()
            # keep_firing_for 2 s, then this fixture's 0.5 s hold and 1 s interval.
            ok, _ = await until_state(ws, "ok", timeout=6.0)
            assert ok["message"] is None
    finally:
        await therapist.stop()


@pytest.mark.slow
async def test_without_the_marker_the_same_freeze_only_turns_amber(quick: Monitor) -> None:
    live = quick.registry.open("s1")
    therapist = SimulatedParticipant(live, Role.THERAPIST)
    therapist.start()
    try:
        async with await authed(quick.url(), token()) as ws:
            await recv(ws)
            await asyncio.sleep(0.6)
            therapist.freeze()
            warn, _ = await until_state(ws, "warn", timeout=3.0)
            assert warn["message"] == FROZE
            # Two seconds of freeze with nobody holding the floor and no marker: the
            # default pack keeps it amber (red only in context, or at the 5 s W3C pause).
            with pytest.raises(TimeoutError):
                await until_state(ws, "alert", timeout=2.0)
    finally:
        await therapist.stop()


@pytest.mark.slow
async def test_a_participant_whose_media_stops_shows_interrupted(quick: Monitor) -> None:
    live = quick.registry.open("s1")
    client = SimulatedParticipant(live, Role.CLIENT)
    client.start()
    async with await authed(quick.url(), token()) as ws:
        await recv(ws)
        await asyncio.sleep(0.3)
        await client.stop_media()
        state, _ = await until_state(ws, "interrupted", timeout=4.0)
    assert state["message"] == "Your client's connection dropped"
    await client.stop()


async def test_two_watchers_get_the_same_push_and_a_session_end_shows_ok(quick: Monitor) -> None:
    live = quick.registry.open("s1")
    therapist = SimulatedParticipant(live, Role.THERAPIST)
    therapist.start()
    async with (
        await authed(quick.url(), token()) as first,
        await authed(quick.url(), token()) as second,
    ):
        await recv(first)
        await recv(second)
        await asyncio.sleep(0.6)
        therapist.freeze()
        one, _ = await until_state(first, "warn")
        two, _ = await until_state(second, "warn")
        assert one == two
        await therapist.stop()
        await live.close()
        ended, _ = await until_state(first, "ok")
        assert ended["message"] is None
    hub = quick.app.state.indicator
    async with asyncio.timeout(2):  # the server notices the two closes
        while len(hub):
            await asyncio.sleep(0.02)
    assert len(hub) == 0  # nobody watches, no session: the channel is forgotten


# --- the served files ----------------------------------------------------------------------


async def test_the_component_and_the_demo_page_are_served(monitor: Monitor) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{monitor.port}") as http:
        script = await http.get("/static/feltsafe-indicator.js")
        page = await http.get("/static/demo-call.html")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert 'customElements.define("feltsafe-indicator"' in script.text
    assert page.status_code == 200
    assert 'src="feltsafe-indicator.js"' in page.text
