"""Signed, expiring access tokens: JWT (RFC 7519), HS256 (RFC 7518 §3.2), PyJWT.

Theory of operation: ``feltsafe token issue`` and the server share one secret from the
configuration. A token says who may do what: its ``role`` (the closed set
:class:`TokenRole`; issue 6 gives the non-publisher roles their meaning) and its scope: a
``session`` and, for a publisher, the participant it publishes ``as`` (therapist or
client). Claims:

========  ==========================================================================
``sub``   a random opaque subject (never a person's name or id)
``role``  publisher | therapist | supervisor | ops
``session``  the session the token is for (absent: not limited to one session)
``sessions``  a supervisor's allow-list of session ids (absent: every session); the
          store holds no person ids, so "the sessions of these therapists" is issued
          as the list of their sessions
``as``    the participant a publisher token publishes as
``iat``   issued at, seconds since the epoch (wall clock: tokens cross processes)
``exp``   expiry; verification rejects expired tokens (no leeway beyond 5 s of skew)
``jti``   a random token id, so a revocation list can name one token
========  ==========================================================================

What each role may reach is monitor/access.py's policy table. Revocation: a verifier
given the revoked token ids (monitor/revocation.py keeps them) refuses a revoked token
with :class:`TokenRevokedError`, a kind of :class:`TokenInvalidError` (401), exactly as
an expired one.

Two kinds of failure, as HTTP needs them: :class:`TokenInvalidError` (missing, malformed,
bad signature, expired: 401) and :class:`TokenForbiddenError` (a good token used outside its
scope: 403). Error messages never contain the token.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import StrEnum

import jwt

from probes.base import FeltsafeError, Role

ALGORITHM = "HS256"
DEFAULT_TTL = 3600.0
MAX_TTL = 30 * 86400.0
CLOCK_SKEW = 5.0
_REQUIRED = ("sub", "role", "iat", "exp", "jti")
MAX_LISTED_SESSIONS = 256  # a token travels in a header: keep it a few KiB at most
# The monitor's session ids (monitor/sessions.py SESSION_ID_PATTERN): RFC 3986 unreserved.
_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,127}")


class TokenRole(StrEnum):
    """Who a token is for. Only PUBLISHER is used by ingest; issue 6 uses the others."""

    PUBLISHER = "publisher"  # WHIP and beacon, for one session and one participant
    THERAPIST = "therapist"  # the indicator of their own session
    SUPERVISOR = "supervisor"  # review of sessions
    OPS = "ops"  # aggregates only


class TokenError(FeltsafeError):
    """Base of token failures."""


class TokenInvalidError(TokenError):
    """Not a token this server signed, or no longer valid (HTTP 401)."""


class TokenMissingError(TokenInvalidError):
    """No token at all (HTTP 401 without an error code, RFC 6750 §3.1)."""


class TokenRevokedError(TokenInvalidError):
    """A token whose id is on the revocation list (HTTP 401, like an expired one)."""


class TokenForbiddenError(TokenError):
    """A valid token used outside its scope (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    subject: str
    role: TokenRole
    session: str | None
    participant: Role | None
    issued_at: float
    expires_at: float
    token_id: str
    # A supervisor's allow-list of sessions; None: not limited by a list.
    sessions: frozenset[str] | None = None


def issue_token(
    secret: str,
    *,
    role: TokenRole,
    session: str | None = None,
    participant: Role | None = None,
    ttl: float = DEFAULT_TTL,
    subject: str | None = None,
    now: float | None = None,
    sessions: Iterable[str] | None = None,
) -> str:
    """Sign a token. ``now`` is wall-clock epoch seconds (default: the current time).

    A publisher token must name its session and participant; only a publisher token
    names a participant; only a supervisor token carries a ``sessions`` allow-list.
    """
    if not 0 < ttl <= MAX_TTL:
        raise TokenError(f"ttl must be in (0, {MAX_TTL:.0f}] seconds, got {ttl}")
    if role is TokenRole.PUBLISHER and (session is None or participant is None):
        raise TokenError("a publisher token needs a session and a participant (--as)")
    if role is not TokenRole.PUBLISHER and participant is not None:
        raise TokenError("only a publisher token names a participant (--as)")
    if session is not None and not session:
        raise TokenError("the session id must not be empty")
    listed = None if sessions is None else _session_list(sessions)
    if listed is not None and role is not TokenRole.SUPERVISOR:
        raise TokenError("only a supervisor token carries a list of sessions (--sessions)")
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "sub": subject or secrets.token_urlsafe(12),
        "role": role.value,
        "iat": int(issued),
        "exp": int(issued + ttl),
        # Hex, not urlsafe base64: an id starting with "-" reads as an option to
        # `feltsafe token revoke --jti ID` (ids of older tokens: --jti=ID).
        "jti": secrets.token_hex(12),
    }
    if session is not None:
        claims["session"] = session
    if participant is not None:
        claims["as"] = participant.value
    if listed is not None:
        claims["sessions"] = listed
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str, *, revoked: Container[str] | None = None) -> TokenClaims:
    """Check signature, expiry and claim shapes; raise TokenInvalidError on any failure.

    With ``revoked`` (token ids), a revoked token raises TokenRevokedError.
    """
    claims = _decode(secret, token)
    if revoked is not None and claims.token_id in revoked:
        raise TokenRevokedError("token revoked")
    return claims


def revocable_id(secret: str, token: str) -> tuple[str, float]:
    """The ``(jti, exp)`` of a token this server signed, expired or not (to revoke it)."""
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": list(_REQUIRED), "verify_exp": False},
        )
        token_id, expires_at = raw["jti"], float(raw["exp"])
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError):
        raise TokenInvalidError("token invalid") from None
    if not isinstance(token_id, str) or not token_id:
        raise TokenInvalidError("token claims malformed")
    return token_id, expires_at


def _decode(secret: str, token: str) -> TokenClaims:
    try:
        raw = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=CLOCK_SKEW,
            options={"require": list(_REQUIRED)},
        )
    except jwt.ExpiredSignatureError:
        raise TokenInvalidError("token expired") from None
    except jwt.InvalidTokenError:
        raise TokenInvalidError("token invalid") from None
    try:
        role = TokenRole(raw["role"])
        participant = Role(raw["as"]) if "as" in raw else None
        session = raw.get("session")
        if session is not None and not (isinstance(session, str) and session):
            raise ValueError("session")
        if not isinstance(raw["sub"], str) or not isinstance(raw["jti"], str):
            raise ValueError("sub/jti")
        listed = raw.get("sessions")
        if listed is not None and (
            role is not TokenRole.SUPERVISOR or not isinstance(listed, list)
        ):
            raise ValueError("sessions")
        return TokenClaims(
            subject=raw["sub"],
            role=role,
            session=session,
            participant=participant,
            issued_at=float(raw["iat"]),
            expires_at=float(raw["exp"]),
            token_id=raw["jti"],
            sessions=None if listed is None else frozenset(_session_list(listed)),
        )
    except (ValueError, TypeError, KeyError, TokenError):
        raise TokenInvalidError("token claims malformed") from None


def _session_list(sessions: Iterable[object]) -> list[str]:
    """A sorted, duplicate-free allow-list of well-formed session ids (may be empty)."""
    if isinstance(sessions, str):
        raise TokenError("sessions is a list of session ids, not one string")
    listed = sorted({str(s) if isinstance(s, str) else "" for s in sessions})
    if len(listed) > MAX_LISTED_SESSIONS:
        raise TokenError(f"at most {MAX_LISTED_SESSIONS} sessions in one token")
    if not all(_SESSION_ID.fullmatch(s) for s in listed):
        raise TokenError("a listed session id is 1-128 characters of A-Z a-z 0-9 . _ ~ -")
    return listed


def require_publisher(claims: TokenClaims, *, session: str, participant: Role) -> None:
    """Allow only a publisher token for exactly this session and participant."""
    if claims.role is not TokenRole.PUBLISHER:
        raise TokenForbiddenError("not a publisher token")
    if claims.session != session:
        raise TokenForbiddenError("token is for another session")
    if claims.participant is not participant:
        raise TokenForbiddenError("token publishes as the other participant")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 §2.1)."""
    if not authorization:
        raise TokenMissingError("missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalidError("expected Authorization: Bearer <token>")
    return token.strip()
