"""The beacon websocket: ``/ws/beacon/{session}/{role}``, and the script that speaks to it.

Theory of operation: a therapy web app includes ``/static/feltsafe-beacon.js`` and hands
it its RTCPeerConnection; the script connects here as one participant (``role``: the
therapist's or the client's browser) and sends, once a second, that browser's view of
the media it *receives* and, ten times a second, its own microphone level
(monitor/beacon.py has the wire format). This is the monitor's window on peer-to-peer
calls it never sees, and on the client's actual experience of calls it does see.

Handshake, in this order (each refusal is counted in :class:`BeaconCounters`):

1. the path names a valid session id and ``therapist`` or ``client``, else the
   handshake is refused (HTTP 403);
2. the ``Origin`` (sent by every browser) is the monitor's own host or one of the
   configured ``allowed_origins`` (``*`` allows any), else refused (HTTP 403): this stops
   a page on another site from borrowing a user's token (cross-site websocket
   hijacking). A client without ``Origin`` is not a browser, and only the token counts;
3. the connection is accepted, and the *first message* must carry a publisher token for
   this session and participant (monitor/tokens.py; DESIGN.md: tokens never go in
   URLs) within ``auth_timeout`` (10 s): ``{"type": "auth", "token": "..."}``, as on
   the indicator websocket, or the bare token. A bad one is answered with an error
   frame and closed with 4401 (missing, malformed, forged or expired; also no token in
   time) or 4403 (a good token for another session or participant), the indicator's
   codes;
4. ``{"type": "ready"}``: from now on frames go through :class:`~monitor.beacon.BeaconInput`.

The session (``registry.open``: a beacon may be the first to arrive, as in a
peer-to-peer call) sees the participant attached as ``Attachment.BEACON`` until the
connection ends. Valid reports go to ``Session.on_beacon_report``, levels to
``Session.on_audio_level``, at the arrival time on the session's clock. A bad frame is
answered with ``{"type": "error", "error": "<kind>"}`` (never echoing the frame) and
the connection stays open; nothing a browser sends can raise into the session.

One connection per participant: a newer authenticated connection for the same session
and role supersedes the older one, closed with code 4001 (a reconnecting page whose old
connection the server has not yet noticed is gone). Other close codes: 1001 when the
session has ended (the script reconnects, which starts a new session), 4401 when the
token expires during the connection (the script reconnects only if it can ask the app
for a new token).

Routes (:meth:`BeaconEndpoint.routes`; :func:`mount` adds them to the monitor app): the
websocket, ``GET /api/beacon/counters`` (process-wide counters, no ids) and ``GET
/static/feltsafe-beacon.js`` (in the monitor app the ``/static`` mount, which holds the
same file, answers first; the route serves it where the endpoint runs alone).

Frames larger than ``max_message_bytes`` are rejected here; uvicorn's ``ws_max_size``
(64 KiB in every feltsafe server, monitor/serving.py) bounds what it buffers before that.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from monitor.beacon import (
    BeaconCounters,
    BeaconError,
    BeaconInput,
    BeaconLimits,
    BeaconRefusal,
    LevelSample,
    Rejected,
)
from monitor.observations import BeaconReport
from monitor.participant import Attachment, LeftReason
from monitor.revocation import websocket_token
from monitor.sessions import SESSION_ID_PATTERN, LiveSession, SessionRegistry
from monitor.tokens import (
    TokenForbiddenError,
    TokenInvalidError,
    require_publisher,
    verify_token,
)
from probes.base import Role

logger = logging.getLogger(__name__)

BEACON_PATH = "/ws/beacon/{session}/{role}"
SCRIPT_PATH = "/static/feltsafe-beacon.js"
COUNTERS_PATH = "/api/beacon/counters"
AUTH_TIMEOUT = 10.0

CLOSE_GOING_AWAY = 1001  # RFC 6455 §7.4.1: the session ended
CLOSE_POLICY = 1008  # refused at the handshake (before accept: HTTP 403)
CLOSE_SUPERSEDED = 4001  # a newer connection for the same participant took over
CLOSE_UNAUTHORIZED = 4401  # no, bad or expired token (as /ws/indicator)
CLOSE_FORBIDDEN = 4403  # a good token, not for this session or participant


def origin_allowed(origin: str | None, *, host: str | None, allowed: Sequence[str]) -> bool:
    """Whether a websocket handshake's ``Origin`` may connect (see the module docstring).

    Same origin is judged by host and port only: behind a TLS-terminating proxy the
    server sees ``ws://`` while the page is ``https://`` on the same host.
    """
    if origin is None:
        return True
    if "*" in allowed or origin in allowed:
        return True
    netloc = urlsplit(origin).netloc if "://" in origin else ""
    return bool(netloc) and host is not None and netloc.lower() == host.lower()


@dataclass(eq=False, slots=True)
class _Connection:
    websocket: WebSocket
    live: LiveSession
    role: Role


class BeaconEndpoint:
    """The beacon routes over one session registry, one token secret and an origin list."""

    def __init__(
        self,
        registry: SessionRegistry,
        *,
        secret: str,
        allowed_origins: Sequence[str] = (),
        limits: BeaconLimits | None = None,
        auth_timeout: float = AUTH_TIMEOUT,
        counters: BeaconCounters | None = None,
    ) -> None:
        self._registry = registry
        self._secret = secret
        self._allowed_origins = tuple(allowed_origins)
        self._limits = limits or BeaconLimits()
        self._auth_timeout = auth_timeout
        self.counters = counters if counters is not None else BeaconCounters()
        self.internal_errors = 0
        self._current: dict[tuple[str, Role], _Connection] = {}
        self._script = resources.files("monitor").joinpath("static/feltsafe-beacon.js")

    def routes(self) -> list[BaseRoute]:
        return [
            WebSocketRoute(BEACON_PATH, self.handle),
            Route(SCRIPT_PATH, self.script, methods=["GET"]),
            Route(COUNTERS_PATH, self.counters_view, methods=["GET"]),
        ]

    @property
    def connection_count(self) -> int:
        return len(self._current)

    # -- HTTP -------------------------------------------------------------------------

    async def script(self, request: Request) -> Response:
        return Response(
            self._script.read_bytes(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    async def counters_view(self, request: Request) -> Response:
        """Process-wide, content-free counters (no session ids): for operators and tests."""
        body = self.counters.as_dict()
        body["open_connections"] = len(self._current)
        body["internal_errors"] = self.internal_errors
        return JSONResponse(body)

    # -- the websocket ------------------------------------------------------------------

    async def handle(self, websocket: WebSocket) -> None:
        session_id = websocket.path_params["session"]
        role: Role | None
        try:
            role = Role(websocket.path_params["role"])
        except ValueError:
            role = None
        if role is None or not SESSION_ID_PATTERN.fullmatch(session_id):
            await self._refuse_handshake(websocket, BeaconRefusal.BAD_TARGET)
            return
        origin = websocket.headers.get("origin")
        if not origin_allowed(
            origin, host=websocket.headers.get("host"), allowed=self._allowed_origins
        ):
            await self._refuse_handshake(websocket, BeaconRefusal.ORIGIN)
            return
        await websocket.accept()
        token_deadline = await self._authenticate(websocket, session_id, role)
        if token_deadline is None:
            return
        live = self._registry.open(session_id)
        connection = _Connection(websocket, live, role)
        await self._attach(connection, session_id)
        try:
            await self._send(websocket, {"type": "ready"})
            await self._serve(connection, token_deadline)
        finally:
            self._detach(connection, session_id)

    async def _refuse_handshake(self, websocket: WebSocket, reason: BeaconRefusal) -> None:
        self.counters.refused[reason] += 1
        await websocket.close(code=CLOSE_POLICY)  # before accept: an HTTP 403

    async def _authenticate(
        self, websocket: WebSocket, session_id: str, role: Role
    ) -> float | None:
        """Read and check the token; the loop time it expires at, or None (closed)."""
        loop = asyncio.get_running_loop()
        try:
            message = await asyncio.wait_for(websocket.receive(), self._auth_timeout)
        except TimeoutError:
            await self._close(websocket, CLOSE_UNAUTHORIZED, BeaconRefusal.AUTH_TIMEOUT)
            return None
        if message["type"] == "websocket.disconnect":
            return None
        # The first message: {"type": "auth", "token": T} or a bare T.
        token = websocket_token(message.get("text"), first=True)
        try:
            if token is None:
                raise TokenInvalidError("the first message must be the token")
            claims = verify_token(self._secret, token)
            require_publisher(claims, session=session_id, participant=role)
        except TokenInvalidError:
            await self._close(websocket, CLOSE_UNAUTHORIZED, BeaconRefusal.TOKEN_INVALID)
            return None
        except TokenForbiddenError:
            await self._close(websocket, CLOSE_FORBIDDEN, BeaconRefusal.TOKEN_FORBIDDEN)
            return None
        # Tokens carry wall-clock expiry; the connection runs on the loop's clock.
        return loop.time() + max(0.0, claims.expires_at - time.time())

    async def _attach(self, connection: _Connection, session_id: str) -> None:
        self.counters.connections += 1
        key = (session_id, connection.role)
        previous = self._current.get(key)
        self._current[key] = connection
        if previous is not None:
            await self._close(previous.websocket, CLOSE_SUPERSEDED, "superseded")
        self._ensure_attached(connection)

    def _ensure_attached(self, connection: _Connection) -> None:
        session = connection.live.session
        participant = session.participants[connection.role]
        if Attachment.BEACON not in participant.attachments:
            # Also after the session declared the participant gone for lack of input.
            session.attach(connection.role, Attachment.BEACON, now=connection.live.clock())

    def _detach(self, connection: _Connection, session_id: str) -> None:
        key = (session_id, connection.role)
        if self._current.get(key) is not connection:
            return  # superseded: the newer connection keeps the attachment
        del self._current[key]
        live = connection.live
        if not live.closed:
            live.session.detach(
                connection.role, Attachment.BEACON, now=live.clock(), reason=LeftReason.DELETED
            )

    async def _serve(self, connection: _Connection, token_deadline: float) -> None:
        websocket, live = connection.websocket, connection.live
        frames = BeaconInput(now=live.clock(), limits=self._limits, counters=self.counters)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            now = live.clock()
            if live.closed:
                await self._close(websocket, CLOSE_GOING_AWAY, "session ended")
                return
            if now >= token_deadline:
                await self._close(websocket, CLOSE_UNAUTHORIZED, BeaconRefusal.TOKEN_EXPIRED)
                return
            text, data = message.get("text"), message.get("bytes")
            if text is not None:
                result = frames.receive_text(text, now=now)
            else:
                result = frames.receive_bytes(data or b"", now=now)
            if isinstance(result, Rejected):
                if result.reply:
                    await self._send(websocket, {"type": "error", "error": result.error.value})
                continue
            self._deliver(connection, result, now)

    def _deliver(
        self, connection: _Connection, result: BeaconReport | LevelSample, now: float
    ) -> None:
        session, role = connection.live.session, connection.role
        try:
            self._ensure_attached(connection)
            if isinstance(result, LevelSample):
                session.on_audio_level(role, result.level_db, now=now, duration=result.duration)
            else:
                session.on_beacon_report(role, result, now=now)
        except Exception:
            # A valid report must never take the connection (or the session) down.
            self.internal_errors += 1
            if self.internal_errors == 1:
                logger.exception("a beacon input failed in the session (counted; further quiet)")

    async def _close(self, websocket: WebSocket, code: int, reason: str) -> None:
        if isinstance(reason, BeaconRefusal):
            self.counters.refused[reason] += 1
            await self._send(websocket, {"type": "error", "error": reason.value})
        if websocket.application_state is WebSocketState.CONNECTED:
            try:
                await websocket.close(code=code, reason=str(reason))
            except Exception:  # the peer is already gone; nothing to tell it
                logger.debug("beacon close failed", exc_info=True)

    async def _send(self, websocket: WebSocket, body: dict[str, Any]) -> None:
        if websocket.application_state is not WebSocketState.CONNECTED:
            return
        try:
            await websocket.send_text(json.dumps(body))
        except Exception:  # the peer went away mid-send; the receive loop will see it
            logger.debug("beacon send failed", exc_info=True)


def mount(app: Starlette, *, limits: BeaconLimits | None = None) -> BeaconEndpoint:
    """Add the beacon routes to an app made by :func:`monitor.app.create_app`.

    Uses ``app.state.registry`` and ``app.state.settings`` (secret, allowed origins);
    the endpoint is kept as ``app.state.beacon``.
    """
    settings = app.state.settings
    endpoint = BeaconEndpoint(
        app.state.registry,
        secret=settings.require_secret(),
        allowed_origins=settings.allowed_origins,
        limits=limits,
    )
    app.router.routes.extend(endpoint.routes())
    app.state.beacon = endpoint
    return endpoint


__all__ = [
    "BEACON_PATH",
    "COUNTERS_PATH",
    "SCRIPT_PATH",
    "BeaconEndpoint",
    "BeaconError",
    "mount",
    "origin_allowed",
]
