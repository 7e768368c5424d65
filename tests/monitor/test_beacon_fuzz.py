"""Fuzzing the beacon over a real socket: the monitor app on uvicorn, port 0.

Whatever a browser (or anything else) sends, the server answers or drops it, counts it,
keeps the connection open (up to the 64 KiB frame cap of monitor/serving.py, past which
it closes that one connection), and the session goes on: a well-behaved beacon connected all
along still gets its reports into the snapshot afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from monitor.app import create_app
from monitor.config import Settings
from monitor.serving import WS_MAX_FRAME_BYTES
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.monitor.uvicorn_thread import UvicornThread

SECRET = "f" * 40
SESSION = "fuzz-session"
# The snapshot is a supervisor's (or the session's therapist's) to read.
READER = {"Authorization": f"Bearer {issue_token(SECRET, role=TokenRole.SUPERVISOR)}"}


class Server(UvicornThread):
    def __init__(self) -> None:
        super().__init__(create_app(Settings(secret=SECRET)))

    @contextmanager
    def beacon(self, role: Role) -> Iterator[ClientConnection]:
        token = issue_token(SECRET, role=TokenRole.PUBLISHER, session=SESSION, participant=role)
        with connect(f"{self.ws}/ws/beacon/{SESSION}/{role}", max_size=None) as ws:
            ws.send(json.dumps({"type": "auth", "token": token}))
            assert json.loads(ws.recv(timeout=5)) == {"type": "ready"}
            yield ws

    def counters(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.http}/api/beacon/counters").json()
        return body


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture(scope="module")
def anchor(server: Server) -> Iterator[ClientConnection]:
    """A well-behaved therapist beacon that stays connected through all the fuzzing."""
    with server.beacon(Role.THERAPIST) as ws:
        yield ws


LEVEL = json.dumps({"type": "level", "v": 1, "rms": 0.001, "duration": 0.1})


def stats(rtt: float) -> str:
    return json.dumps({"type": "stats", "v": 1, "inbound": [], "roundTripTime": rtt})


utf8_text = st.text(st.characters(codec="utf-8"), max_size=300)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | utf8_text,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["type", "v", "inbound", "kind", "rms"]), children)
    ),
    max_leaves=10,
).map(json.dumps)
frames = st.one_of(
    utf8_text,
    json_like,
    st.binary(max_size=300),
    # Oversized for the beacon (4 KiB), up to the server's frame cap (64 KiB): answered.
    st.integers(4000, WS_MAX_FRAME_BYTES).map(lambda n: "[" * n),
    st.integers(4000, WS_MAX_FRAME_BYTES).map(bytes),
    st.sampled_from(
        [
            stats(0.01),
            '{"type": "level", "v": 1, "rms": 0.2, "duration": 0.1}',
            '{"type": "level", "v": 1, "rms": NaN, "duration": 0.1}',
            '{"type": "stats", "v": 1, "inbound": [{"kind": "audio", "packetsLost": 1e308}]}',
            "[" * 4000,
        ]
    ),
)


class Ledger:
    """Frames sent after a token, over the whole module (the server's counters are too)."""

    sent = 0


@pytest.fixture(scope="module")
def ledger() -> Ledger:
    return Ledger()


def handled(counters: dict[str, Any]) -> int:
    return int(counters["reports"] + counters["levels"] + sum(counters["rejected"].values()))


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frames, min_size=1, max_size=30))
def test_fuzzed_frames_are_counted_one_by_one_and_never_close_the_connection(
    server: Server, anchor: ClientConnection, ledger: Ledger, stream: list[str | bytes]
) -> None:
    with server.beacon(Role.CLIENT) as ws:
        for frame in stream:
            try:
                ws.send(frame)
            except ConnectionClosed as closed:
                pytest.fail(f"the server closed the beacon: {closed.rcvd}")
        ledger.sent += len(stream)
    # The anchor keeps talking, as a real beacon does ten times a second: a participant
    # silent for 20 s is gone, and a long fuzzing run would otherwise end the session.
    anchor.send(LEVEL)
    ledger.sent += 1
    # The client closed: the server handles every frame before it sees the close.
    deadline = time.monotonic() + 10
    while (counters := server.counters()) and handled(counters) < ledger.sent:
        assert time.monotonic() < deadline, "frames went missing"
        time.sleep(0.01)
    assert handled(counters) == ledger.sent
    assert counters["internal_errors"] == 0


def test_a_frame_over_the_servers_cap_closes_that_connection_only(
    server: Server, anchor: ClientConnection, ledger: Ledger
) -> None:
    with server.beacon(Role.CLIENT) as ws:
        ws.send("[" * 10_000)  # over the beacon's limit: an error frame, the socket stays
        assert json.loads(ws.recv(timeout=5))["type"] == "error"
        ledger.sent += 1
        # Over uvicorn's cap (monitor/serving.py): never buffered whole, never reaches the
        # app (not counted); the connection is closed as "message too big".
        ws.send("[" * (WS_MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    deadline = time.monotonic() + 5
    while handled(server.counters()) < ledger.sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handled(server.counters()) == ledger.sent


def test_the_session_keeps_working_through_the_fuzzing(
    server: Server, anchor: ClientConnection
) -> None:
    anchor.send(stats(0.123))
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        response = httpx.get(f"{server.http}/api/sessions/{SESSION}/snapshot", headers=READER)
        assert response.status_code == 200
        signals = response.json()["signals"] or {}  # None until the session's first tick
        if signals.get("therapist.network.rtt_ms") == pytest.approx(123.0):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the well-behaved beacon's report never reached the snapshot")
    counters = server.counters()
    assert counters["internal_errors"] == 0
    assert counters["open_connections"] == 1  # the anchor; every fuzzing connection is gone
    assert httpx.get(f"{server.http}/healthz").json()["status"] == "ok"


@settings(max_examples=12, deadline=None)
@given(st.one_of(utf8_text, st.binary(max_size=200), json_like))
def test_anything_but_a_token_first_is_refused_and_starts_no_session(
    server: Server, first: str | bytes
) -> None:
    with connect(f"{server.ws}/ws/beacon/never-{SESSION}/client") as ws:
        ws.send(first)
        answer = json.loads(ws.recv(timeout=5))
        assert answer["type"] == "error"
        assert answer["error"] in ("token_invalid", "token_forbidden")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert ws.close_code in (4401, 4403)
    response = httpx.get(f"{server.http}/api/sessions/never-{SESSION}/snapshot", headers=READER)
    assert response.status_code == 404
