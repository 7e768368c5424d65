"""Role x resource x action: each role reaches exactly what it may, and nothing else.

One real server (the app of ``feltsafe serve`` on uvicorn, port 0, a filled SQLite
store) answers every cell of the tables below: every REST route, WHIP, the beacon and
indicator websockets, ``/metrics`` and the open pages, for every role, and for no token,
a malformed one, one signed with another secret, an expired one and a revoked one (each
of those the token that would otherwise have been let in, so the refusal is the flaw's
doing, not the role's). A last test checks that the policy table of monitor/access.py
says the same as the endpoints, cell by cell.

Decisions the tables pin down: ``/metrics`` is open (Prometheus scrapes it on an
internal network; it carries no session id, checked here); a supervisor token with a
``sessions`` list gets 403 for any other session (before the store is asked) and "no
such flag" (404) for another session's flag; a revoked token is refused on every route,
open ones included.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from monitor import access
from monitor.access import Action, Resource
from monitor.app import create_app
from monitor.config import Settings
from monitor.media_host import media_host
from monitor.revocation import RevocationList
from monitor.store import Store
from monitor.tokens import TokenError, TokenRole, revocable_id, verify_token
from probes.base import Role
from tests.monitor import review_data
from tests.monitor.review_data import SECRET, SESSION_A, SESSION_B, bearer, expired, token
from tests.monitor.uvicorn_thread import UvicornThread

P, T, S, OPS = TokenRole.PUBLISHER, TokenRole.THERAPIST, TokenRole.SUPERVISOR, TokenRole.OPS


class Server(UvicornThread):
    """The monitor app on uvicorn in a thread (its own event loop), port 0."""

    def __init__(self, settings: Settings, store: Store) -> None:
        with media_host("127.0.0.2"):
            super().__init__(create_app(settings, store=store))

    @property
    def revocations(self) -> RevocationList:
        revocations: RevocationList = self.app.state.revocations
        return revocations


@dataclass
class World:
    server: Server
    store: Store
    filled: review_data.Filled
    callers: dict[str, str | None]
    http: httpx.Client  # one client: a new one costs ~60 ms (its TLS context)


def _revoked(server: Server, value: str) -> str:
    token_id, expires_at = revocable_id(SECRET, value)
    server.revocations.revoke(token_id, expires_at=expires_at)
    return value


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    path = tmp_path_factory.mktemp("access") / "store.db"
    with Store.open(f"sqlite:///{path}") as store:
        filled = review_data.fill(store)
        with Server(Settings(secret=SECRET), store) as server:
            callers: dict[str, str | None] = {
                "none": None,
                "malformed": "not.a.token",
                "publisher": token(P),
                "publisher_as_client": token(P, participant=Role.CLIENT),
                "publisher_other_session": token(P, session=SESSION_B),
                "therapist": token(T, session=SESSION_A),
                "therapist_other_session": token(T, session=SESSION_B),
                "supervisor": token(S, subject="acct-sup"),
                "supervisor_listed": token(S, sessions=[SESSION_B], subject="acct-listed"),
                "ops": token(OPS),
            }
            for role, name in ((S, "supervisor"), (P, "publisher"), (T, "therapist")):
                scope: dict[str, Any] = {"session": SESSION_A} if role is T else {}
                callers[f"wrong_secret_{name}"] = token(role, secret="w" * 40, **scope)
                callers[f"expired_{name}"] = expired(role, **scope)
                callers[f"revoked_{name}"] = _revoked(server, token(role, **scope))
            # A live SESSION_A (the snapshot needs one): the client's beacon, held open.
            with connect(f"{server.ws}/ws/beacon/{SESSION_A}/client") as anchor:
                anchor.send(
                    json.dumps({"type": "auth", "token": token(P, participant=Role.CLIENT)})
                )
                assert json.loads(anchor.recv(timeout=5)) == {"type": "ready"}
                with httpx.Client(base_url=server.http) as http:
                    yield World(server, store, filled, callers, http)


# -- REST ---------------------------------------------------------------------------------

REST_COLUMNS = ("list", "session", "flags", "timeline", "ack", "csv", "json", "snapshot", "aggr")
# Bad tokens are the supervisor's own (which would otherwise reach every route) except
# for the snapshot, where the refused tokens are as bad for the therapist.
REST_TABLE = """
caller                    list session flags timeline ack csv json snapshot aggr
none                      401  401     401   401      401 401 401  401      401
malformed                 401  401     401   401      401 401 401  401      401
wrong_secret_supervisor   401  401     401   401      401 401 401  401      401
expired_supervisor        401  401     401   401      401 401 401  401      401
revoked_supervisor        401  401     401   401      401 401 401  401      401
publisher                 403  403     403   403      403 403 403  403      403
therapist                 403  403     403   403      403 403 403  200      403
therapist_other_session   403  403     403   403      403 403 403  403      403
supervisor                200  200     200   200      200 200 200  200      200
supervisor_listed         200  403     403   403      404 403 403  403      200
ops                       403  403     403   403      403 403 403  403      200
"""


def _table(text: str) -> list[tuple[str, str, int]]:
    lines = [line.split() for line in text.strip().splitlines()]
    header, rows = lines[0][1:], lines[1:]
    return [
        (row[0], column, int(cell))
        for row in rows
        for column, cell in zip(header, row[1:], strict=True)
    ]


def _rest_request(world: World, column: str) -> tuple[str, str, dict[str, Any]]:
    a = f"/api/sessions/{SESSION_A}"
    paths = {
        "list": ("GET", "/api/sessions", {}),
        "session": ("GET", a, {}),
        "flags": ("GET", f"{a}/flags", {}),
        "timeline": ("GET", f"{a}/timeline", {}),
        "ack": ("POST", f"/api/flags/{world.filled.loss_warn}/ack", {"json": {"note": "ok"}}),
        "csv": ("GET", f"{a}/export.csv", {}),
        "json": ("GET", f"{a}/export.json", {}),
        "snapshot": ("GET", f"{a}/snapshot", {}),
        "aggr": ("GET", "/api/aggregates", {}),
    }
    return paths[column]


@pytest.mark.parametrize(("caller", "column", "expected"), _table(REST_TABLE))
def test_rest_route_answers_each_caller_as_the_table_says(
    world: World, caller: str, column: str, expected: int
) -> None:
    method, path, extra = _rest_request(world, column)
    response = world.http.request(method, path, headers=bearer(world.callers[caller]), **extra)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if expected in (401, 403):
        assert SESSION_A not in response.text  # a refusal tells nothing about the session
        body = response.json()
        assert set(body) == {"error"}


def test_a_listed_supervisor_sees_only_its_sessions_in_lists_and_counts(world: World) -> None:
    headers = bearer(world.callers["supervisor_listed"])
    listed = world.http.get("/api/sessions", headers=headers).json()
    assert [s["id"] for s in listed["sessions"]] == [SESSION_B]
    assert listed["total"] == 1
    counts = world.http.get("/api/aggregates", headers=headers).json()
    everything = world.http.get(
        "/api/aggregates", headers=bearer(world.callers["supervisor"])
    ).json()
    assert counts["sessions"] == 1
    assert everything["sessions"] >= 3


def test_ops_aggregates_are_counts_without_a_single_session_id(world: World) -> None:
    response = world.http.get("/api/aggregates", headers=bearer(world.callers["ops"]))
    body = response.json()
    assert body["sessions"] == 3
    assert body["sessions_with_alerts"] == 1
    assert body["live_sessions"] == 1  # SESSION_A's beacon
    assert all(isinstance(v, int) for v in body.values())
    for session in (SESSION_A, review_data.SESSION_B, review_data.SESSION_C):
        assert session not in response.text


def test_every_api_route_needs_a_token_except_the_documented_open_ones(world: World) -> None:
    open_routes = {"/api/openapi.json", "/api/docs", "/api/beacon/counters"}
    checked = 0
    for route in world.server.app.routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        path = route.path.replace("{session}", SESSION_A).replace(
            "{key}", world.filled.freeze_alert
        )
        method = "GET" if "GET" in (route.methods or ()) else "POST"
        status = world.http.request(method, path).status_code
        assert (status == 200) if route.path in open_routes else (status == 401), route.path
        checked += 1
    assert checked >= 11


# -- WHIP ---------------------------------------------------------------------------------

WHIP_TABLE = """
caller                    post delete
none                      401  401
malformed                 401  401
wrong_secret_publisher    401  401
expired_publisher         401  401
revoked_publisher         401  401
publisher                 400  404
publisher_as_client       403  403
publisher_other_session   403  403
therapist                 403  403
supervisor                403  403
ops                       403  403
"""


@pytest.mark.parametrize(("caller", "column", "expected"), _table(WHIP_TABLE))
def test_whip_answers_each_caller_as_the_table_says(
    world: World, caller: str, column: str, expected: int
) -> None:
    """Past the token, a garbage offer is a 400 and an unknown resource a 404."""
    headers = bearer(world.callers[caller])
    if column == "post":
        headers["Content-Type"] = "application/sdp"
        response = world.http.post(
            f"/whip/{SESSION_A}/therapist", headers=headers, content=b"v=0\r\n"
        )
    else:
        response = world.http.delete(
            f"/whip/{SESSION_A}/therapist/no-such-resource", headers=headers
        )
    assert response.status_code == expected, response.text


# -- websockets ---------------------------------------------------------------------------

BEACON_TABLE = """
caller                    beacon
none                      4401
malformed                 4401
wrong_secret_publisher    4401
expired_publisher         4401
revoked_publisher         4401
publisher                 ready
publisher_as_client       4403
publisher_other_session   4403
therapist                 4403
supervisor                4403
ops                       4403
"""

INDICATOR_TABLE = """
caller                    indicator
none                      4401
malformed                 4401
wrong_secret_therapist    4401
expired_therapist         4401
revoked_therapist         4401
therapist                 state
therapist_other_session   4403
publisher                 4403
supervisor                4403
ops                       4403
"""


def _ws_table(text: str) -> list[tuple[str, str]]:
    rows = [line.split() for line in text.strip().splitlines()[1:]]
    return [(row[0], row[1]) for row in rows]


def _first_answer(ws: ClientConnection) -> str:
    """The type of the first useful message, or the close code."""
    try:
        while True:
            message = json.loads(ws.recv(timeout=5))
            if message["type"] != "error":
                return str(message["type"])
    except ConnectionClosed:
        assert ws.close_code is not None
        return str(ws.close_code)


def _auth(value: str | None) -> str:
    return json.dumps({"type": "auth"} if value is None else {"type": "auth", "token": value})


@pytest.mark.parametrize(("caller", "expected"), _ws_table(BEACON_TABLE))
def test_the_beacon_answers_each_caller_as_the_table_says(
    world: World, caller: str, expected: str
) -> None:
    with connect(f"{world.server.ws}/ws/beacon/{SESSION_A}/therapist") as ws:
        ws.send(_auth(world.callers[caller]))
        assert _first_answer(ws) == expected


@pytest.mark.parametrize(("caller", "expected"), _ws_table(INDICATOR_TABLE))
def test_the_indicator_answers_each_caller_as_the_table_says(
    world: World, caller: str, expected: str
) -> None:
    with connect(f"{world.server.ws}/ws/indicator/{SESSION_A}") as ws:
        ws.send(_auth(world.callers[caller]))
        assert _first_answer(ws) == expected


def _closed_within(ws: ClientConnection, seconds: float) -> tuple[int | None, str | None]:
    """The server's close code and reason; TimeoutError if it stays open ``seconds``."""
    deadline = time.monotonic() + seconds
    try:
        while True:
            ws.recv(timeout=max(0.01, deadline - time.monotonic()))
    except ConnectionClosed:
        return ws.close_code, ws.close_reason


def test_revoking_a_therapists_token_closes_their_open_indicator(world: World) -> None:
    fresh = token(T, session=SESSION_A)
    with connect(f"{world.server.ws}/ws/indicator/{SESSION_A}") as ws:
        ws.send(_auth(fresh))
        assert _first_answer(ws) == "state"
        started = time.monotonic()
        _revoked(world.server, fresh)
        assert _closed_within(ws, 3.0) == (4401, "token revoked")
        assert time.monotonic() - started < 1.0  # in-process: at once, not at the next poll


def test_revoking_a_publishers_token_closes_their_open_beacon(world: World) -> None:
    fresh = token(P)
    with connect(f"{world.server.ws}/ws/beacon/{SESSION_A}/therapist") as ws:
        ws.send(_auth(fresh))
        assert _first_answer(ws) == "ready"
        _revoked(world.server, fresh)
        assert _closed_within(ws, 3.0) == (4401, "token revoked")


def test_a_revoked_token_offered_to_extend_a_connection_closes_it(world: World) -> None:
    with connect(f"{world.server.ws}/ws/indicator/{SESSION_A}") as ws:
        ws.send(_auth(token(T, session=SESSION_A)))
        assert _first_answer(ws) == "state"
        ws.send(_auth(world.callers["revoked_therapist"]))
        assert _closed_within(ws, 3.0) == (4401, "token revoked")


# -- /metrics and the open pages ----------------------------------------------------------

OPEN_PATHS = ("/metrics", "/healthz", "/review/", "/api/openapi.json", "/api/docs")


@pytest.mark.parametrize("caller", ["none", "publisher", "therapist", "supervisor", "ops"])
@pytest.mark.parametrize("path", OPEN_PATHS)
def test_open_routes_answer_anyone(world: World, path: str, caller: str) -> None:
    response = world.http.get(path, headers=bearer(world.callers[caller]))
    assert response.status_code == 200


@pytest.mark.parametrize("path", OPEN_PATHS)
def test_a_revoked_token_is_refused_even_on_open_routes(world: World, path: str) -> None:
    response = world.http.get(path, headers=bearer(world.callers["revoked_supervisor"]))
    assert response.status_code == 401


def test_metrics_are_open_but_carry_no_session_id(world: World) -> None:
    text = world.http.get("/metrics").text
    assert "feltsafe_sessions_active" in text  # the live session is counted...
    for session in (SESSION_A, review_data.SESSION_B, review_data.SESSION_C):
        assert session not in text  # ...never named


# -- the policy table and the endpoints agree ----------------------------------------------

_CELLS: dict[str, tuple[Resource, Action, dict[str, Any]]] = {
    "list": (Resource.SESSIONS, Action.READ, {}),
    "session": (Resource.SESSION, Action.READ, {"session": SESSION_A}),
    "flags": (Resource.FLAGS, Action.READ, {"session": SESSION_A}),
    "timeline": (Resource.TIMELINE, Action.READ, {"session": SESSION_A}),
    "ack": (Resource.FLAGS, Action.ACKNOWLEDGE, {"session": SESSION_A}),
    "csv": (Resource.FLAGS, Action.EXPORT, {"session": SESSION_A}),
    "json": (Resource.FLAGS, Action.EXPORT, {"session": SESSION_A}),
    "snapshot": (Resource.SNAPSHOT, Action.READ, {"session": SESSION_A}),
    "aggr": (Resource.AGGREGATES, Action.READ, {}),
    "post": (Resource.WHIP, Action.PUBLISH, {"session": SESSION_A, "participant": Role.THERAPIST}),
    "delete": (
        Resource.WHIP,
        Action.PUBLISH,
        {"session": SESSION_A, "participant": Role.THERAPIST},
    ),
    "beacon": (
        Resource.BEACON,
        Action.PUBLISH,
        {"session": SESSION_A, "participant": Role.THERAPIST},
    ),
    "indicator": (Resource.INDICATOR, Action.SUBSCRIBE, {"session": SESSION_A}),
}


def test_the_policy_table_says_what_every_endpoint_does(world: World) -> None:
    cells = [
        *_table(REST_TABLE),
        *_table(WHIP_TABLE),
        *((c, "beacon", e) for c, e in _ws_table(BEACON_TABLE)),
        *((c, "indicator", e) for c, e in _ws_table(INDICATOR_TABLE)),
    ]
    compared = 0
    for caller, column, expected in cells:
        value = world.callers[caller]
        try:
            claims = verify_token(SECRET, value or "", revoked=world.server.revocations)
        except TokenError:
            assert str(expected) in ("401", "4401"), (caller, column)
            continue
        resource, action, scope = _CELLS[column]
        try:
            access.authorize(claims, resource, action, **scope)
            allowed = True
        except TokenError:
            allowed = False
        # The listed supervisor's ack of another session's flag: "no such flag" (404).
        let_in = str(expected) not in ("401", "403", "4401", "4403")
        if (caller, column) == ("supervisor_listed", "ack"):
            let_in = False
        assert allowed == let_in, (caller, column, expected)
        compared += 1
    assert compared >= 60


def test_the_policy_is_deny_by_default_for_every_unlisted_combination() -> None:
    granted = {(role, resource, action) for role, resource, action in access.POLICY}
    claims = {
        role: verify_token(SECRET, token(role, **({"session": SESSION_A} if role is T else {})))
        for role in TokenRole
    }
    for role in TokenRole:
        for resource in Resource:
            for action in Action:
                if (role, resource, action) in granted:
                    continue
                with pytest.raises(TokenError):
                    access.authorize(
                        claims[role],
                        resource,
                        action,
                        session=SESSION_A,
                        participant=Role.THERAPIST,
                    )
