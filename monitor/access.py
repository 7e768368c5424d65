"""Who may do what: the access policy as a table, and its enforcement on HTTP routes.

Theory of operation
-------------------
Every request or connection carries a token (monitor/tokens.py: signed, expiring, with
a ``role`` and a scope). The policy is one table, :data:`POLICY`, from (role, resource,
action) to the *scope* within which the role may act; anything not in the table is
refused (deny by default). The roles are the closed set of issue 6:

==========  =================================================================
publisher   WHIP and the beacon, for one session and one participant
therapist   the indicator of their own session (and that session's snapshot)
supervisor  review: sessions, flags, timelines, acknowledgements, exports and
            live snapshots, of every session or of the sessions its token lists
ops         aggregates only (counts; no session id, flag or figure of a session)
==========  =================================================================

Scopes:

- ``PARTICIPANT``: the token's ``session`` and ``as`` equal the request's session and
  participant (a publisher publishes as exactly one participant of one session);
- ``SESSION``: the token's ``session`` is the request's session;
- ``LISTED``: a supervisor token without a list reaches every session; one with a
  ``sessions`` claim (and/or a ``session``) reaches exactly those. The store holds no
  person ids, so "the sessions of these therapists" is issued as their session ids.
  A list request is narrowed to the allow-list (``Grant.sessions``);
- ``FLEET``: no session data at all, so no session to check.

Failures follow RFC 6750 §3.1: no, malformed, forged, expired or revoked token -> 401
``invalid_token`` (with ``WWW-Authenticate: Bearer``); a valid token outside the table
or its scope -> 403 ``insufficient_scope``. A session outside a supervisor's list is
refused (403) before the store is asked, so the answer does not tell whether it exists.

Where each row is enforced: the REST API (monitor/api.py) and the snapshot route call
:func:`require` on every request. WHIP (monitor/whip.py), the beacon
(monitor/beacon_ws.py) and the indicator (monitor/indicator_ws.py) check the same
scopes themselves (their rows here are the specification, and
tests/monitor/test_access.py proves the endpoints agree with them, cell by cell).
Revocation is enforced for all of them by one gate (monitor/revocation.py), which
:func:`mount` installs.

Open without a token, on purpose: ``/healthz`` (a count), ``/metrics`` (Prometheus,
usually scraped on an internal network: fleet aggregates whose labels come from closed
sets, never a session id; tests check no id leaks into it), ``/api/beacon/counters``
(counts), the OpenAPI document and docs page, the review page's static files (the
page holds no data: it fetches everything through the API with the user's token) and
``/static``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from monitor.revocation import RevocationGate, RevocationList
from monitor.store.records import Actor
from monitor.tokens import (
    TokenClaims,
    TokenError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenMissingError,
    TokenRole,
    bearer_token,
    verify_token,
)
from probes.base import Role


class Resource(StrEnum):
    WHIP = "whip"  # POST, DELETE /whip/{session}/{role}
    BEACON = "beacon"  # /ws/beacon/{session}/{role}
    INDICATOR = "indicator"  # /ws/indicator/{session}
    SNAPSHOT = "snapshot"  # GET /api/sessions/{id}/snapshot (live sessions)
    SESSIONS = "sessions"  # GET /api/sessions (the list)
    SESSION = "session"  # GET /api/sessions/{id}
    FLAGS = "flags"  # GET /api/sessions/{id}/flags, export.*, POST /api/flags/{key}/ack
    TIMELINE = "timeline"  # GET /api/sessions/{id}/timeline
    AGGREGATES = "aggregates"  # GET /api/aggregates (counts only)


class Action(StrEnum):
    PUBLISH = "publish"  # send media or browser stats
    SUBSCRIBE = "subscribe"  # receive live pushes
    MARK = "mark"  # the therapist's "sensitive moment" toggle
    READ = "read"
    ACKNOWLEDGE = "acknowledge"
    EXPORT = "export"


class Scope(StrEnum):
    PARTICIPANT = "participant"  # the token's session and participant
    SESSION = "session"  # the token's session
    LISTED = "listed"  # every session, or the token's allow-list
    FLEET = "fleet"  # no session data


_P, _T, _S, _O = TokenRole.PUBLISHER, TokenRole.THERAPIST, TokenRole.SUPERVISOR, TokenRole.OPS
_R, _A = Resource, Action

POLICY: Final[Mapping[tuple[TokenRole, Resource, Action], Scope]] = MappingProxyType(
    {
        (_P, _R.WHIP, _A.PUBLISH): Scope.PARTICIPANT,
        (_P, _R.BEACON, _A.PUBLISH): Scope.PARTICIPANT,
        (_T, _R.INDICATOR, _A.SUBSCRIBE): Scope.SESSION,
        (_T, _R.INDICATOR, _A.MARK): Scope.SESSION,
        (_T, _R.SNAPSHOT, _A.READ): Scope.SESSION,
        (_S, _R.SNAPSHOT, _A.READ): Scope.LISTED,
        (_S, _R.SESSIONS, _A.READ): Scope.LISTED,
        (_S, _R.SESSION, _A.READ): Scope.LISTED,
        (_S, _R.FLAGS, _A.READ): Scope.LISTED,
        (_S, _R.FLAGS, _A.ACKNOWLEDGE): Scope.LISTED,
        (_S, _R.FLAGS, _A.EXPORT): Scope.LISTED,
        (_S, _R.TIMELINE, _A.READ): Scope.LISTED,
        (_S, _R.AGGREGATES, _A.READ): Scope.LISTED,
        (_O, _R.AGGREGATES, _A.READ): Scope.FLEET,
    }
)


@dataclass(frozen=True, slots=True)
class Grant:
    """What an authorized request may touch: who it is, and which sessions."""

    claims: TokenClaims
    resource: Resource
    action: Action
    scope: Scope
    # The sessions the grant covers; None: every session (an unlisted supervisor).
    sessions: frozenset[str] | None

    @property
    def actor(self) -> Actor:
        """The audit log's actor: the token's subject and role, never a client's name."""
        return Actor(subject=self.claims.subject, role=self.claims.role.value)

    def covers(self, session_id: str) -> bool:
        return self.sessions is None or session_id in self.sessions


def allowed_sessions(claims: TokenClaims) -> frozenset[str] | None:
    """The sessions a token reaches; None for an unlisted supervisor (all of them)."""
    named = frozenset(() if claims.session is None else (claims.session,))
    if claims.role is TokenRole.SUPERVISOR:
        if claims.sessions is None and claims.session is None:
            return None
        return named | (claims.sessions or frozenset())
    if claims.role is TokenRole.OPS:
        return frozenset()
    return named


def authorize(
    claims: TokenClaims,
    resource: Resource,
    action: Action,
    *,
    session: str | None = None,
    participant: Role | None = None,
) -> Grant:
    """The grant for this request, or TokenForbiddenError (the table, then the scope).

    ``session``: the session the request is about (None for a list or aggregates);
    ``participant``: the participant a publisher publishes as.
    """
    scope = POLICY.get((claims.role, resource, action))
    if scope is None:
        raise TokenForbiddenError(f"a {claims.role} token may not {action} {resource}")
    sessions = allowed_sessions(claims)
    if scope is Scope.FLEET:
        return Grant(claims, resource, action, scope, frozenset())
    if scope is Scope.LISTED:
        if session is not None and sessions is not None and session not in sessions:
            raise TokenForbiddenError("the token does not list this session")
        return Grant(claims, resource, action, scope, sessions)
    if session is None or claims.session != session:
        raise TokenForbiddenError("token is for another session")
    if scope is Scope.PARTICIPANT and (
        participant is None or claims.participant is not participant
    ):
        raise TokenForbiddenError("token publishes as the other participant")
    return Grant(claims, resource, action, scope, frozenset((session,)))


# -- HTTP ---------------------------------------------------------------------------------


def revocations_of(app: Starlette) -> RevocationList | None:
    revocations: RevocationList | None = getattr(app.state, "revocations", None)
    return revocations


def authenticate(request: Request) -> TokenClaims:
    """The verified claims of the request's bearer token (RFC 6750 §2.1), or TokenError."""
    secret = request.app.state.settings.require_secret()
    token = bearer_token(request.headers.get("authorization"))
    return verify_token(secret, token, revoked=revocations_of(request.app))


def require(
    request: Request, resource: Resource, action: Action, *, session: str | None = None
) -> Grant:
    """Authenticate the request and authorize it against :data:`POLICY`."""
    return authorize(authenticate(request), resource, action, session=session)


def denial(error: TokenError) -> Response:
    """The RFC 6750 answer to a refused token: 401 or 403, never echoing the token."""
    if isinstance(error, TokenForbiddenError):
        return JSONResponse(
            {"error": str(error)},
            status_code=403,
            headers={
                "WWW-Authenticate": 'Bearer error="insufficient_scope"',
                "Cache-Control": "no-store",
            },
        )
    challenge = "Bearer" if isinstance(error, TokenMissingError) else 'Bearer error="invalid_token"'
    return JSONResponse(
        {"error": str(error) if isinstance(error, TokenInvalidError) else "token invalid"},
        status_code=401,
        headers={"WWW-Authenticate": challenge, "Cache-Control": "no-store"},
    )


Endpoint = Callable[[Request], Awaitable[Response]]


def protect(endpoint: Endpoint, resource: Resource, action: Action = Action.READ) -> Endpoint:
    """Wrap a route taking ``{session}`` so only the policy's roles reach it."""

    async def guarded(request: Request) -> Response:
        try:
            require(request, resource, action, session=request.path_params.get("session"))
        except TokenError as error:
            return denial(error)
        response = await endpoint(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guarded


def mount(app: Starlette) -> RevocationList:
    """Install the revocation list (``app.state.revocations``) and its gate.

    The gate goes inside CORS, so a browser on an allowed origin can read its 401.
    Call before the app serves its first request.
    """
    settings = app.state.settings
    revocations = RevocationList(settings.revocation_list)
    app.user_middleware.append(Middleware(RevocationGate, revocations=revocations))
    app.state.revocations = revocations
    return revocations


__all__ = [
    "POLICY",
    "Action",
    "Grant",
    "Resource",
    "Scope",
    "allowed_sessions",
    "authenticate",
    "authorize",
    "denial",
    "mount",
    "protect",
    "require",
]
