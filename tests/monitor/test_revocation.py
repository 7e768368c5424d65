"""Token revocation: the file every worker follows, the CLI that writes it, the gate.

Unit tests step the list's clock by hand; the end-to-end test runs the real server with
``revocation_list`` set and revokes through ``feltsafe token revoke``, as an operator
would, from another "process" (the CLI entry point writing the file).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.sync.client import connect

from monitor.app import create_app
from monitor.cli import main
from monitor.config import Settings
from monitor.revocation import (
    RevocationList,
    parse_revocations,
    revoke_in_file,
    token_id_of,
    websocket_token,
)
from monitor.store import Store
from monitor.tokens import TokenRevokedError, TokenRole, revocable_id, verify_token
from tests.monitor import review_data
from tests.monitor.review_data import SECRET, SESSION_A, bearer, token
from tests.monitor.test_access import Server, _closed_within


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_file_names_tokens_by_id_and_expiry_and_skips_what_it_cannot_read() -> None:
    text = "# header\nabc_DEF-1 1767225600\nforever\n\nbad id here\nx 12abc\n  j2 5 # note\n"
    revoked, malformed = parse_revocations(text)
    assert revoked == {"abc_DEF-1": 1767225600.0, "forever": float("inf"), "j2": 5.0}
    assert malformed == 2


def test_revoking_into_a_file_keeps_live_entries_and_drops_expired_ones(tmp_path: Path) -> None:
    path = tmp_path / "revoked"
    assert revoke_in_file(path, "old", expires_at=1000.0, now=900.0) == 1
    assert revoke_in_file(path, "new", expires_at=5000.0, now=2000.0) == 1  # "old" expired
    revoked, malformed = parse_revocations(path.read_text())
    assert (revoked, malformed) == ({"new": 5000.0}, 0)
    assert path.read_text().startswith("# feltsafe revocation list")


def test_a_token_id_with_spaces_or_newlines_cannot_be_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token id"):
        revoke_in_file(tmp_path / "r", "a b\nc", expires_at=1.0, now=0.0)


def test_the_list_follows_its_file_at_most_once_per_poll(tmp_path: Path) -> None:
    path, clock = tmp_path / "revoked", Clock()
    revocations = RevocationList(path, poll=1.0, clock=clock)
    assert "j1" not in revocations
    revoke_in_file(path, "j1", expires_at=time.time() + 60, now=time.time())
    clock.now += 0.5
    assert "j1" not in revocations  # not looked at again yet
    clock.now += 0.5
    assert "j1" in revocations
    path.unlink()
    clock.now += 1.0
    assert "j1" not in revocations  # a removed file is an empty list


def test_an_unreadable_file_keeps_the_last_list(tmp_path: Path) -> None:
    path, clock = tmp_path / "revoked", Clock()
    revoke_in_file(path, "j1", expires_at=time.time() + 60, now=time.time())
    revocations = RevocationList(path, poll=1.0, clock=clock)
    assert "j1" in revocations
    path.unlink()
    path.mkdir()  # now reading it fails
    clock.now += 1.0
    assert "j1" in revocations
    assert revocations.read_errors == 1


def test_in_process_revocation_works_without_a_file() -> None:
    revocations = RevocationList()
    value = token(TokenRole.SUPERVISOR)
    verify_token(SECRET, value, revoked=revocations)
    revocations.revoke(verify_token(SECRET, value).token_id)
    with pytest.raises(TokenRevokedError, match="revoked"):
        verify_token(SECRET, value, revoked=revocations)


async def test_a_waiter_wakes_as_soon_as_a_token_is_revoked_from_another_thread() -> None:
    revocations = RevocationList(poll=30.0)
    ids = {"j1"}
    waiter = asyncio.ensure_future(revocations.wait_revoked(ids))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    started = time.monotonic()
    await asyncio.to_thread(revocations.revoke, "j1")
    await asyncio.wait_for(waiter, timeout=2.0)
    assert time.monotonic() - started < 1.0  # not the 30 s poll


async def test_a_waiter_watches_tokens_added_later() -> None:
    revocations = RevocationList(poll=30.0)
    ids = {"j1"}
    waiter = asyncio.ensure_future(revocations.wait_revoked(ids))
    await asyncio.sleep(0.01)
    ids.add("j2")
    revocations.revoke("j2")
    await asyncio.wait_for(waiter, timeout=2.0)


@pytest.mark.parametrize(
    ("text", "first", "expected"),
    [
        ('{"type": "auth", "token": "T"}', True, "T"),
        ('{"type": "auth", "token": "T"}', False, "T"),
        ("  T  ", True, "T"),
        ("T", False, None),  # later bare text is a frame, not a token
        ('{"type": "report", "auth": "T"}', True, None),
        ('{"type": "auth"}', True, None),
        ("{broken", True, None),
        ("x" * 9000, True, None),
    ],
)
def test_the_gate_reads_tokens_where_the_websockets_take_them(
    text: str, first: bool, expected: str | None
) -> None:
    assert websocket_token(text, first=first) == expected


@given(st.text(max_size=200))
def test_reading_a_token_id_never_raises(text: str) -> None:
    token_id_of(text)
    websocket_token(text, first=True)


def test_a_revoked_tokens_id_comes_from_the_token_even_when_expired() -> None:
    old = review_data.expired(TokenRole.THERAPIST, session=SESSION_A)
    token_id, expires_at = revocable_id(SECRET, old)
    assert token_id == token_id_of(old)
    assert expires_at < time.time()


def test_an_id_starting_with_a_dash_is_revoked_with_the_equals_form(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Tokens issued before ids were hex could have one (urlsafe base64).
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    monkeypatch.setenv("FELTSAFE_REVOCATION_LIST", str(tmp_path / "revoked"))
    assert main(["token", "revoke", "--jti=-Xy_z0"]) == 0
    assert "1 token(s) on the list" in capsys.readouterr().out
    assert "-Xy_z0" in (tmp_path / "revoked").read_text()


def test_the_cli_needs_a_configured_revocation_list(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    monkeypatch.delenv("FELTSAFE_REVOCATION_LIST", raising=False)
    monkeypatch.delenv("FELTSAFE_CONFIG", raising=False)
    assert main(["token", "revoke", token(TokenRole.OPS)]) == 2
    assert "FELTSAFE_REVOCATION_LIST" in capsys.readouterr().err


def test_the_cli_refuses_a_token_it_did_not_sign(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    monkeypatch.setenv("FELTSAFE_REVOCATION_LIST", str(tmp_path / "revoked"))
    forged = token(TokenRole.OPS, secret="q" * 40)
    assert main(["token", "revoke", forged]) == 2
    err = capsys.readouterr().err
    assert "token invalid" in err
    assert forged not in err
    assert not (tmp_path / "revoked").exists()


def test_revoking_with_the_cli_refuses_requests_and_closes_websockets_within_a_second(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = tmp_path / "revoked"
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    monkeypatch.setenv("FELTSAFE_REVOCATION_LIST", str(listed))
    supervisor, therapist = (
        token(TokenRole.SUPERVISOR),
        token(TokenRole.THERAPIST, session=SESSION_A),
    )
    with (
        Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store,
        Server(Settings(secret=SECRET, revocation_list=listed), store) as server,
        httpx.Client(base_url=server.http) as http,
        connect(f"{server.ws}/ws/indicator/{SESSION_A}") as ws,
    ):
        review_data.fill(store)
        ws.send(json.dumps({"type": "auth", "token": therapist}))
        assert json.loads(ws.recv(timeout=5))["type"] == "state"
        assert http.get("/api/sessions", headers=bearer(supervisor)).status_code == 200

        assert main(["token", "revoke", supervisor]) == 0
        assert main(["token", "revoke", "--jti", verify_token(SECRET, therapist).token_id]) == 0
        assert "2 token(s) on the list" in capsys.readouterr().out
        revoked_at = time.monotonic()

        assert _closed_within(ws, 3.0) == (4401, "token revoked")
        closed_after = time.monotonic() - revoked_at
        assert closed_after < 2.0  # the file is looked at once a second
        response = http.get("/api/sessions", headers=bearer(supervisor))
        assert response.status_code == 401
        assert response.json() == {"error": "token revoked"}
        fresh = token(TokenRole.SUPERVISOR)
        assert http.get("/api/sessions", headers=bearer(fresh)).status_code == 200
    assert os.stat(listed).st_size > 0


async def test_a_browser_on_an_allowed_origin_can_read_the_gates_401(tmp_path: Path) -> None:
    """The gate sits inside CORS: the page learns its token was revoked (not a CORS error)."""
    origin = "https://therapy.example"
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        app = create_app(Settings(secret=SECRET, allowed_origins=(origin,)), store=store)
        revoked = token(TokenRole.SUPERVISOR)
        app.state.revocations.revoke(verify_token(SECRET, revoked).token_id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
            headers = {**bearer(revoked), "Origin": origin}
            response = await http.get("/api/sessions", headers=headers)
            whip = await http.post(
                f"/whip/{SESSION_A}/client",
                headers={**bearer(revoked), "Origin": origin, "Content-Type": "application/sdp"},
                content=b"v=0\r\n",
            )
        await app.state.registry.aclose()
    for answer in (response, whip):
        assert answer.status_code == 401
        assert answer.headers["access-control-allow-origin"] == origin
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
