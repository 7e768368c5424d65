"""Tokens for every role: the supervisor's session allow-list, the CLI, RFC 6750 answers.

(Publisher tokens and the claim set they have always had: test_tokens.py.)
"""

from __future__ import annotations

import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor import access
from monitor.access import Action, Resource
from monitor.cli import main
from monitor.tokens import (
    MAX_LISTED_SESSIONS,
    TokenError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenMissingError,
    TokenRole,
    bearer_token,
    issue_token,
    verify_token,
)
from probes.base import Role

SECRET = "t" * 40


def _raw(claims: dict[str, object]) -> str:
    now = int(time.time())
    base: dict[str, object] = {"sub": "a", "iat": now, "exp": now + 60, "jti": "j"}
    return jwt.encode({**base, **claims}, SECRET, "HS256")


def test_a_supervisor_token_carries_its_sessions_sorted_and_once() -> None:
    value = issue_token(SECRET, role=TokenRole.SUPERVISOR, sessions=["s2", "s1", "s2"])
    assert jwt.decode(value, SECRET, algorithms=["HS256"])["sessions"] == ["s1", "s2"]
    assert verify_token(SECRET, value).sessions == frozenset({"s1", "s2"})


def test_a_token_without_a_list_has_no_sessions_claim() -> None:
    value = issue_token(SECRET, role=TokenRole.SUPERVISOR)
    assert "sessions" not in jwt.decode(value, SECRET, algorithms=["HS256"])
    assert verify_token(SECRET, value).sessions is None


@pytest.mark.parametrize("role", [TokenRole.PUBLISHER, TokenRole.THERAPIST, TokenRole.OPS])
def test_only_a_supervisor_token_may_list_sessions(role: TokenRole) -> None:
    participant = Role.CLIENT if role is TokenRole.PUBLISHER else None
    with pytest.raises(TokenError, match="only a supervisor"):
        issue_token(SECRET, role=role, session="s1", participant=participant, sessions=["s1"])


@pytest.mark.parametrize(
    "sessions",
    [
        "s1",  # a string, not a list
        ["bad id"],
        [""],
        ["x" * 129],
        [f"s{i}" for i in range(MAX_LISTED_SESSIONS + 1)],
    ],
)
def test_a_bad_session_list_cannot_be_issued(sessions: object) -> None:
    with pytest.raises(TokenError):
        issue_token(SECRET, role=TokenRole.SUPERVISOR, sessions=sessions)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "therapist", "session": "s1", "sessions": ["s2"]},  # widening a therapist
        {"role": "supervisor", "sessions": "s1"},
        {"role": "supervisor", "sessions": ["ok", 5]},
        {"role": "supervisor", "sessions": {"s1": True}},
    ],
)
def test_a_signed_token_with_a_bad_sessions_claim_is_invalid(claims: dict[str, object]) -> None:
    with pytest.raises(TokenInvalidError, match="claims malformed"):
        verify_token(SECRET, _raw(claims))


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,20}", fullmatch=True), max_size=8))
def test_any_list_of_session_ids_round_trips(sessions: list[str]) -> None:
    value = issue_token(SECRET, role=TokenRole.SUPERVISOR, sessions=sessions)
    assert verify_token(SECRET, value).sessions == frozenset(sessions)


def test_what_each_role_reaches() -> None:
    def reach(**kw: object) -> frozenset[str] | None:
        return access.allowed_sessions(verify_token(SECRET, issue_token(SECRET, **kw)))  # type: ignore[arg-type]

    assert reach(role=TokenRole.SUPERVISOR) is None
    assert reach(role=TokenRole.SUPERVISOR, sessions=["a"]) == {"a"}
    assert reach(role=TokenRole.SUPERVISOR, session="b", sessions=["a"]) == {"a", "b"}
    assert reach(role=TokenRole.SUPERVISOR, sessions=[]) == frozenset()
    assert reach(role=TokenRole.THERAPIST, session="b") == {"b"}
    assert reach(role=TokenRole.THERAPIST) == frozenset()
    assert reach(role=TokenRole.OPS, session="b") == frozenset()


def test_an_empty_list_reaches_no_session_but_may_still_list_nothing() -> None:
    claims = verify_token(SECRET, issue_token(SECRET, role=TokenRole.SUPERVISOR, sessions=[]))
    grant = access.authorize(claims, Resource.SESSIONS, Action.READ)
    assert grant.sessions == frozenset()
    with pytest.raises(TokenForbiddenError):
        access.authorize(claims, Resource.SESSION, Action.READ, session="s1")


def test_a_grant_names_the_tokens_subject_and_role_as_the_actor() -> None:
    claims = verify_token(SECRET, issue_token(SECRET, role=TokenRole.SUPERVISOR, subject="acct-9"))
    actor = access.authorize(claims, Resource.FLAGS, Action.ACKNOWLEDGE, session="s").actor
    assert (actor.subject, actor.role) == ("acct-9", "supervisor")


def test_a_missing_header_is_its_own_kind_of_invalid() -> None:
    with pytest.raises(TokenMissingError):
        bearer_token(None)
    assert issubclass(TokenMissingError, TokenInvalidError)


@pytest.mark.parametrize(
    ("error", "status", "challenge"),
    [
        (TokenMissingError("missing bearer token"), 401, "Bearer"),
        (TokenInvalidError("token expired"), 401, 'Bearer error="invalid_token"'),
        (TokenForbiddenError("not yours"), 403, 'Bearer error="insufficient_scope"'),
    ],
)
def test_refusals_follow_rfc_6750(error: TokenError, status: int, challenge: str) -> None:
    response = access.denial(error)
    assert response.status_code == status
    assert response.headers["www-authenticate"] == challenge
    assert response.headers["cache-control"] == "no-store"


def test_cli_issues_a_listed_supervisor_token_for_a_named_account(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    argv = ["token", "issue", "--role", "supervisor", "--sessions", "s1, s2", "--subject", "acct-1"]
    assert main(argv) == 0
    claims = verify_token(SECRET, capsys.readouterr().out.strip())
    assert (claims.role, claims.subject, claims.sessions) == (
        TokenRole.SUPERVISOR,
        "acct-1",
        frozenset({"s1", "s2"}),
    )


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--role", "therapist", "--session", "s1", "--sessions", "s2"], "only a supervisor"),
        (["--role", "supervisor", "--sessions", " , "], "at least one session"),
        (["--role", "supervisor", "--sessions", "a b"], "listed session id"),
    ],
)
def test_cli_refuses_a_bad_session_list_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    complaint: str,
) -> None:
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    assert main(["token", "issue", *argv]) == 2
    err = capsys.readouterr().err
    assert complaint in err
    assert "Traceback" not in err
