"""Publisher tokens: signed, expiring, scoped to one session and one participant."""

from __future__ import annotations

import time

import jwt
import pytest

from monitor.cli import main
from monitor.tokens import (
    TokenClaims,
    TokenError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenRole,
    bearer_token,
    issue_token,
    require_publisher,
    verify_token,
)
from probes.base import Role

SECRET = "k" * 40


def _publisher(session: str = "s1", participant: Role = Role.CLIENT, **kw: object) -> str:
    return issue_token(
        SECRET, role=TokenRole.PUBLISHER, session=session, participant=participant, **kw
    )  # type: ignore[arg-type]


def test_a_publisher_token_round_trips_its_claims() -> None:
    before = time.time()
    claims = verify_token(SECRET, _publisher(ttl=120))
    assert isinstance(claims, TokenClaims)
    assert claims.role is TokenRole.PUBLISHER
    assert (claims.session, claims.participant) == ("s1", Role.CLIENT)
    assert claims.expires_at - claims.issued_at == 120
    assert claims.issued_at >= int(before)
    assert claims.subject
    assert claims.token_id


def test_token_carries_the_documented_claim_names() -> None:
    raw = jwt.decode(_publisher(), SECRET, algorithms=["HS256"])
    assert set(raw) == {"sub", "role", "session", "as", "exp", "iat", "jti"}
    assert raw["as"] == "client"


def test_each_token_has_its_own_id() -> None:
    assert (
        verify_token(SECRET, _publisher()).token_id != verify_token(SECRET, _publisher()).token_id
    )


def test_token_ids_never_read_as_a_command_line_option() -> None:
    # `feltsafe token revoke --jti ID`: an id starting with "-" would be taken for an option
    # (it happened: urlsafe base64 ids start with "-" one time in 64).
    ids = [verify_token(SECRET, _publisher()).token_id for _ in range(500)]
    assert all(token_id[0].isalnum() for token_id in ids)
    assert len(set(ids)) == len(ids)


def test_an_expired_token_is_invalid() -> None:
    old = _publisher(ttl=60, now=time.time() - 3600)
    with pytest.raises(TokenInvalidError, match="expired"):
        verify_token(SECRET, old)


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    with pytest.raises(TokenInvalidError):
        verify_token("x" * 40, _publisher())


def test_an_unsigned_token_is_invalid() -> None:
    forged = jwt.encode(
        {"sub": "a", "role": "publisher", "iat": 0, "exp": 2**40, "jti": "j"}, None, "none"
    )
    with pytest.raises(TokenInvalidError):
        verify_token(SECRET, forged)


def test_a_token_with_an_unknown_role_is_invalid() -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "a", "role": "root", "iat": now, "exp": now + 60, "jti": "j"}, SECRET, "HS256"
    )
    with pytest.raises(TokenInvalidError, match="claims"):
        verify_token(SECRET, token)


@pytest.mark.parametrize(
    ("token_kwargs", "session", "participant", "reason"),
    [
        ({"session": "s2"}, "s1", Role.CLIENT, "another session"),
        ({"participant": Role.THERAPIST}, "s1", Role.CLIENT, "other participant"),
    ],
)
def test_publisher_scope_is_one_session_and_one_participant(
    token_kwargs: dict[str, object], session: str, participant: Role, reason: str
) -> None:
    claims = verify_token(SECRET, _publisher(**token_kwargs))  # type: ignore[arg-type]
    with pytest.raises(TokenForbiddenError, match=reason):
        require_publisher(claims, session=session, participant=participant)


def test_a_therapist_token_cannot_publish() -> None:
    claims = verify_token(SECRET, issue_token(SECRET, role=TokenRole.THERAPIST, session="s1"))
    with pytest.raises(TokenForbiddenError, match="not a publisher"):
        require_publisher(claims, session="s1", participant=Role.THERAPIST)


def test_the_right_publisher_token_is_allowed() -> None:
    claims = verify_token(SECRET, _publisher())
    require_publisher(claims, session="s1", participant=Role.CLIENT)


def test_a_publisher_token_needs_session_and_participant() -> None:
    with pytest.raises(TokenError, match="needs a session and a participant"):
        issue_token(SECRET, role=TokenRole.PUBLISHER, session="s1")


def test_the_role_enum_is_the_issue_6_set() -> None:
    assert [r.value for r in TokenRole] == ["publisher", "therapist", "supervisor", "ops"]


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "bearer"])
def test_a_missing_or_non_bearer_authorization_is_invalid(header: str | None) -> None:
    with pytest.raises(TokenInvalidError):
        bearer_token(header)


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def") == "abc.def"


def test_cli_issues_a_token_that_verifies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    code = main(
        [
            "token",
            "issue",
            "--role",
            "publisher",
            "--session",
            "S",
            "--as",
            "therapist",
            "--ttl",
            "30",
        ]
    )
    assert code == 0
    claims = verify_token(SECRET, capsys.readouterr().out.strip())
    assert (claims.session, claims.participant) == ("S", Role.THERAPIST)
    assert claims.expires_at - claims.issued_at == 30


def test_cli_without_secret_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FELTSAFE_SECRET", raising=False)
    monkeypatch.delenv("FELTSAFE_CONFIG", raising=False)
    code = main(["token", "issue", "--role", "publisher", "--session", "S", "--as", "client"])
    assert code == 2
    err = capsys.readouterr().err
    assert "FELTSAFE_SECRET" in err
    assert "Traceback" not in err


def test_cli_publisher_without_as_fails_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELTSAFE_SECRET", SECRET)
    assert main(["token", "issue", "--role", "publisher", "--session", "S"]) == 2
    assert "--as" in capsys.readouterr().err
