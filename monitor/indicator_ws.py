"""``/ws/indicator/{session}``: the therapist's live indicator over a websocket.

Theory of operation
-------------------
Handshake (RFC 6455 §4, and DESIGN.md's access rules):

1. The session id must be well formed and the ``Origin`` header, when present, must be
   in the configured ``allowed_origins`` (or ``*``) or be the monitor's own origin; else
   the upgrade is refused (HTTP 403), so a page on another site cannot ride on a
   therapist's open tab (cross-site websocket hijacking). A request without ``Origin``
   does not come from a browser page; it is let through to the token check, which every
   connection must pass anyway.
2. After the upgrade the **first message** must be ``{"type": "auth", "token": "..."}``
   within ``auth_timeout`` seconds: a token in a URL ends up in logs, proxies and
   browser history, so it is never taken from one. The token must be a valid therapist
   token (monitor/tokens.py) for *this* session. Else the server closes with 4401
   (missing, invalid or expired token) or 4403 (a valid token for another session or
   role); the close reason names the failure, never the token.

Then the server sends, at once and on every change of what is shown::

    {"type": "state", "level": "ok|warn|alert|interrupted",
     "message": str|null, "hint": str|null, "since": epoch seconds}

``since`` is when the level began, converted from the session clock to wall-clock Unix
seconds for the browser. States are coalesced: a client that reads slowly gets the
latest state, never a backlog.

The client may send:

* ``{"type": "marker", "on": true|false}``: the therapist's "sensitive moment" toggle,
  which opens (or closes) the disclosure window by hand (``Session.set_marker``, the
  conversation tracker's ``mark_sensitive``). Answered with ``{"type": "marker",
  "on": ...}`` once applied; the current marker is also sent after the first state.
* ``{"type": "auth", "token": "..."}`` again: a fresh token for the same session
  extends the connection (a long session outlives a short-lived token).
* ``{"type": "ping"}``: answered with ``{"type": "pong"}``.

Limits (the peer is untrusted; its mistakes are answered, never raised): a message
longer than ``max_message_bytes`` or binary, malformed JSON, an unknown type or bad
fields get ``{"type": "error", "error": <code>}`` and the connection stays up; more than
``rate`` messages a second (token bucket, burst ``burst``) get ``rate_limited``, and a
client that keeps flooding (``max_strikes`` refused messages) is closed with 1008. The
token's expiry closes the connection with 4401 at that moment (wall clock: tokens cross
processes). No session id or token goes into a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from alerts.indicator import IndicatorState
from monitor.indicator_feed import IndicatorChannel, IndicatorHub
from monitor.sessions import SESSION_ID_PATTERN, SessionRegistry
from monitor.tokens import (
    TokenClaims,
    TokenError,
    TokenForbiddenError,
    TokenInvalidError,
    TokenRole,
    verify_token,
)

logger = logging.getLogger(__name__)

CLOSE_POLICY: Final = 1008  # RFC 6455 §7.4.1: policy violation (flooding)
CLOSE_UNAUTHORIZED: Final = 4401  # no, bad or expired token
CLOSE_FORBIDDEN: Final = 4403  # a good token, not for this session or role


@dataclass(frozen=True, slots=True)
class IndicatorLimits:
    max_message_bytes: int = 4096  # a token is a few hundred bytes
    rate: float = 5.0  # messages per second, sustained
    burst: float = 10.0
    max_strikes: int = 20  # refused (rate-limited) messages before the connection closes
    auth_timeout: float = 10.0


def allowed_origin(origin: str | None, *, allowed: Sequence[str], own: str) -> bool:
    """True if a websocket from a page at ``origin`` may connect (see the docstring)."""
    if origin is None:
        return True
    origin = origin.rstrip("/")
    return origin == own or "*" in allowed or origin in allowed


def state_message(state: IndicatorState, *, loop_now: float, wall_now: float) -> dict[str, Any]:
    """The wire form of a state; ``since`` moved from the session clock to Unix seconds."""
    return {
        "type": "state",
        "level": state.level.value,
        "message": state.message,
        "hint": state.hint,
        "since": round(wall_now - (loop_now - state.since), 3),
    }


class IndicatorEndpoint:
    """The websocket route and its per-connection protocol."""

    def __init__(
        self,
        hub: IndicatorHub,
        registry: SessionRegistry,
        *,
        secret: str,
        allowed_origins: Sequence[str] = (),
        limits: IndicatorLimits | None = None,
    ) -> None:
        self.hub = hub
        self.registry = registry
        self._secret = secret
        self._allowed = tuple(o.rstrip("/") for o in allowed_origins)
        self.limits = limits or IndicatorLimits()
        self.connections = 0
        self.refused = 0

    def routes(self) -> list[BaseRoute]:
        return [WebSocketRoute("/ws/indicator/{session}", self.handle)]

    async def handle(self, websocket: WebSocket) -> None:
        session_id = websocket.path_params["session"]
        scheme = "https" if websocket.url.scheme == "wss" else "http"
        own = f"{scheme}://{websocket.headers.get('host', '')}"
        if not SESSION_ID_PATTERN.fullmatch(session_id) or not allowed_origin(
            websocket.headers.get("origin"), allowed=self._allowed, own=own
        ):
            self.refused += 1
            await websocket.close(code=CLOSE_POLICY)  # before accept: HTTP 403
            return
        await websocket.accept()
        connection = _Connection(self, websocket, session_id)
        self.connections += 1
        try:
            await connection.run()
        finally:
            self.connections -= 1

    def authorize(self, token: object, session_id: str) -> TokenClaims:
        if not isinstance(token, str) or not token:
            raise TokenInvalidError("no token")
        claims = verify_token(self._secret, token)
        if claims.role is not TokenRole.THERAPIST:
            raise TokenForbiddenError("not a therapist token")
        if claims.session != session_id:
            raise TokenForbiddenError("token is for another session")
        return claims


class _Connection:
    """One therapist's websocket: authenticate, then push states and take markers."""

    def __init__(self, endpoint: IndicatorEndpoint, websocket: WebSocket, session_id: str):
        self.endpoint = endpoint
        self.websocket = websocket
        self.session_id = session_id
        self.limits = endpoint.limits
        self._loop = asyncio.get_running_loop()
        self._pending: IndicatorState | None = None
        self._changed = asyncio.Event()
        self._expired = asyncio.Event()
        self._expiry: asyncio.TimerHandle | None = None
        self._tokens = self.limits.burst
        self._refilled = self._loop.time()
        self.strikes = 0

    async def run(self) -> None:
        claims = await self._authenticate()
        if claims is None:
            return
        self._expire_at(claims.expires_at)
        channel = self.endpoint.hub.channel(self.session_id)
        unsubscribe = channel.subscribe(self._on_state)
        try:
            await self._send_state(channel.state)
            await self._send_marker_state()
            await self._serve(channel)
        finally:
            unsubscribe()
            self.endpoint.hub.release(channel)
            if self._expiry is not None:
                self._expiry.cancel()

    # -- authentication -----------------------------------------------------------------

    async def _authenticate(self) -> TokenClaims | None:
        try:
            async with asyncio.timeout(self.limits.auth_timeout):
                message = await self.websocket.receive()
        except TimeoutError:
            await self._close(CLOSE_UNAUTHORIZED, "no token in time")
            return None
        if message["type"] == "websocket.disconnect":
            return None
        payload = self._parse(message)
        if not isinstance(payload, dict) or payload.get("type") != "auth":
            await self._close(CLOSE_UNAUTHORIZED, "the first message must be the token")
            return None
        try:
            return self.endpoint.authorize(payload.get("token"), self.session_id)
        except TokenForbiddenError as exc:
            await self._close(CLOSE_FORBIDDEN, str(exc))
        except TokenError as exc:
            await self._close(CLOSE_UNAUTHORIZED, str(exc))
        return None

    def _expire_at(self, expires_at: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        delay = max(0.0, expires_at - time.time())
        self._expiry = self._loop.call_later(delay, self._expired.set)

    # -- the running connection ---------------------------------------------------------

    def _on_state(self, state: IndicatorState) -> None:
        self._pending = state
        self._changed.set()

    async def _serve(self, channel: IndicatorChannel) -> None:
        tasks = {
            asyncio.ensure_future(self._receive_loop()),
            asyncio.ensure_future(self._send_loop()),
            asyncio.ensure_future(self._expired.wait()),
        }
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._expired.is_set():
            await self._close(CLOSE_UNAUTHORIZED, "token expired")
            return
        for task in done:
            error = None if task.cancelled() else task.exception()
            # A peer that vanished mid-send is the end of the connection, not a failure.
            if error is not None and not isinstance(
                error, WebSocketDisconnect | OSError | RuntimeError
            ):
                raise error

    async def _send_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            state, self._pending = self._pending, None
            if state is not None:
                await self._send_state(state)

    async def _receive_loop(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if not self._take_token():
                self.strikes += 1
                if self.strikes >= self.limits.max_strikes:
                    await self._close(CLOSE_POLICY, "too many messages")
                    return
                await self._send({"type": "error", "error": "rate_limited"})
                continue
            await self._handle(message)

    def _take_token(self) -> bool:
        now = self._loop.time()
        limits = self.limits
        self._tokens = min(limits.burst, self._tokens + (now - self._refilled) * limits.rate)
        self._refilled = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    async def _handle(self, message: Mapping[str, Any]) -> None:
        payload = self._parse(message)
        if isinstance(payload, str):
            await self._send({"type": "error", "error": payload})
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
            await self._send({"type": "error", "error": "malformed"})
            return
        kind = payload["type"]
        if kind == "marker":
            await self._marker(payload.get("on"))
        elif kind == "auth":
            await self._reauthenticate(payload.get("token"))
        elif kind == "ping":
            await self._send({"type": "pong"})
        else:
            await self._send({"type": "error", "error": "unknown_type"})

    def _parse(self, message: Mapping[str, Any]) -> object:
        """The JSON of a text message, or an error code (a str) for a bad one."""
        text = message.get("text")
        if text is None:
            return "binary_not_accepted" if message.get("bytes") is not None else "malformed"
        if len(text) > self.limits.max_message_bytes or (
            len(text.encode("utf-8", "surrogatepass")) > self.limits.max_message_bytes
        ):
            return "too_large"
        try:
            payload = json.loads(text, parse_constant=_no_constant)
        except (ValueError, RecursionError):
            return "malformed"
        return payload if isinstance(payload, dict) else "malformed"

    async def _marker(self, on: object) -> None:
        if not isinstance(on, bool):
            await self._send({"type": "error", "error": "malformed"})
            return
        live = self.endpoint.registry.get(self.session_id)
        if live is None or live.closed:
            await self._send({"type": "error", "error": "no_live_session"})
            return
        live.session.set_marker(on, now=live.clock())
        await self._send({"type": "marker", "on": on})

    async def _reauthenticate(self, token: object) -> None:
        try:
            claims = self.endpoint.authorize(token, self.session_id)
        except TokenError:
            await self._send({"type": "error", "error": "token_refused"})
            return
        self._expire_at(claims.expires_at)
        await self._send({"type": "auth", "ok": True})

    # -- sending --------------------------------------------------------------------------

    async def _send_state(self, state: IndicatorState) -> None:
        await self._send(state_message(state, loop_now=self._loop.time(), wall_now=time.time()))

    async def _send_marker_state(self) -> None:
        live = self.endpoint.registry.get(self.session_id)
        latest = None if live is None else live.latest.snapshot
        marker = None if latest is None else latest.get("session.marker")
        if isinstance(marker, bool):
            await self._send({"type": "marker", "on": marker})

    async def _send(self, payload: dict[str, Any]) -> None:
        if self.websocket.application_state is WebSocketState.CONNECTED:
            await self.websocket.send_text(json.dumps(payload, separators=(",", ":")))

    async def _close(self, code: int, reason: str) -> None:
        if self.websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await self.websocket.close(code=code, reason=reason)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


__all__ = [
    "CLOSE_FORBIDDEN",
    "CLOSE_POLICY",
    "CLOSE_UNAUTHORIZED",
    "IndicatorEndpoint",
    "IndicatorLimits",
    "allowed_origin",
    "state_message",
]
