"""Token revocation: the list of revoked token ids (``jti``) and the gate that enforces it.

Theory of operation
-------------------
A token (monitor/tokens.py) is valid until it expires; revocation ends it earlier. The
list names tokens by their ``jti`` claim, never by the token itself, so the list is not
a secret.

The list (:class:`RevocationList`) lives in a small text file, the setting
``revocation_list`` (``FELTSAFE_REVOCATION_LIST``), one revoked token a line::

    # feltsafe revocation list: <jti> <expiry, Unix seconds>
    J7kq2wQm0Ssx9PA1 1767225600

``feltsafe token revoke`` writes it (atomically: a temporary file renamed over it, under
an advisory lock, dropping lines whose token has expired anyway). Every worker re-reads
the file when it changes (inode, size or mtime), looking at most once per ``poll``
second (1 s): a revocation reaches every worker on the machine within about a second.
On several machines, ship the file the way the configuration (and its secret) is
shipped. A line with a jti and no expiry (written by hand) revokes that token for good;
a line that is neither is skipped and counted (``malformed_lines``), never guessed at.
A missing file is an empty list; a file that cannot be read keeps the last list read
(fail closed for what was revoked). Without a file, :meth:`RevocationList.revoke`
still revokes in this process (tests, an embedding app).

The gate (:class:`RevocationGate`, ASGI middleware inside CORS) enforces the list on
every connection, before any route sees it:

- HTTP: a request whose ``Authorization: Bearer`` token is revoked gets 401 (RFC 6750
  §3.1 ``invalid_token``), whatever the route (WHIP, the REST API). Routes still verify
  the token themselves (signature, expiry, scope); the REST API checks the list too.
- Websockets (the token is the first message, DESIGN.md): the gate reads the token of
  the first text message (``{"type": "auth", "token": T}`` or a bare token) and of every
  later ``auth`` message. A revoked one is closed with 4401 "token revoked" before the
  endpoint sees it. While the connection lives, a watcher closes it with 4401 as soon
  as any token it presented is revoked (a refreshed connection still ends when its older
  token is revoked: the conservative choice). Expiry stays the endpoints' job.

The gate reads the ``jti`` without checking the signature: it only ever refuses, and a
forged token is refused by the endpoint anyway. Clocks: ``time.monotonic`` paces the
file checks; expiries are wall-clock Unix seconds (tokens cross processes). No token,
token id or session id goes into a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jwt
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.tokens import CLOCK_SKEW

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED: Final = 4401  # the websockets' code for no, bad, expired or revoked
DEFAULT_POLL: Final = 1.0
MAX_TOKEN_BYTES: Final = 8192
HEADER: Final = "# feltsafe revocation list: <jti> <expiry, Unix seconds>\n"
_TOKEN_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FOREVER: Final = float("inf")


@dataclass(frozen=True, slots=True)
class _FileState:
    inode: int
    size: int
    mtime_ns: int


def parse_revocations(text: str) -> tuple[dict[str, float], int]:
    """The ``{jti: expiry}`` a revocation file names, and how many lines were malformed."""
    revoked: dict[str, float] = {}
    malformed = 0
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        entry = _entry(line.split())
        if entry is None:
            malformed += 1
            continue
        token_id, expires_at = entry
        revoked[token_id] = max(expires_at, revoked.get(token_id, expires_at))
    return revoked, malformed


def _entry(parts: list[str]) -> tuple[str, float] | None:
    """``jti`` (revoked for good) or ``jti expiry``; None for anything else."""
    if not 1 <= len(parts) <= 2 or not _TOKEN_ID.fullmatch(parts[0]):
        return None
    if len(parts) == 1:
        return parts[0], _FOREVER
    try:
        expires_at = float(parts[1])
    except ValueError:
        return None
    return (parts[0], expires_at) if math.isfinite(expires_at) else None


def revoke_in_file(path: Path, token_id: str, *, expires_at: float, now: float) -> int:
    """Add ``token_id`` to the file at ``path`` (created if missing); how many it lists.

    Lines whose token expired (with ``CLOCK_SKEW`` to spare) before ``now`` are dropped:
    an expired token is refused anyway. The file is replaced atomically, under an
    advisory lock (``<path>.lock``) so two concurrent revocations both land.
    """
    if not _TOKEN_ID.fullmatch(token_id):
        raise ValueError("a token id is 1-128 characters of A-Z a-z 0-9 _ -")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
        revoked, _ = parse_revocations(text)
        revoked[token_id] = max(expires_at, revoked.get(token_id, expires_at))
        kept = {jti: exp for jti, exp in revoked.items() if exp + CLOCK_SKEW >= now}
        lines = [f"{jti} {_format_expiry(exp)}\n" for jti, exp in sorted(kept.items())]
        handle, temporary = tempfile.mkstemp(prefix=path.name, dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(HEADER + "".join(lines))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    return len(kept)


def _format_expiry(expires_at: float) -> str:
    return "" if expires_at == _FOREVER else str(int(expires_at))


class RevocationList:
    """The revoked token ids of this process, following the file (see the docstring).

    A ``Container[str]``: ``jti in revocations`` is what ``verify_token(revoked=)`` asks.
    Safe to use from several threads and event loops.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        poll: float = DEFAULT_POLL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.poll = poll
        self._clock = clock
        self._lock = threading.Lock()
        self._from_file: dict[str, float] = {}
        self._local: dict[str, float] = {}
        self._state: _FileState | None = None
        self._checked_at: float | None = None
        self._waiters: set[asyncio.Future[None]] = set()
        self.malformed_lines = 0
        self.read_errors = 0
        self.reloads = 0
        if path is not None:
            self.refresh()

    # -- reading ----------------------------------------------------------------------

    def __contains__(self, token_id: object) -> bool:
        return isinstance(token_id, str) and self.is_revoked(token_id)

    def is_revoked(self, token_id: str) -> bool:
        self._refresh_if_due()
        return token_id in self._local or token_id in self._from_file

    def any_revoked(self, token_ids: Iterable[str]) -> bool:
        self._refresh_if_due()
        return any(t in self._local or t in self._from_file for t in token_ids)

    def refresh(self) -> bool:
        """Re-read the file now if it changed; True if the list was reloaded."""
        if self.path is None:
            return False
        with self._lock:
            self._checked_at = self._clock()
            try:
                stat = self.path.stat()
            except FileNotFoundError:
                changed = bool(self._from_file) or self._state is not None
                self._from_file, self._state = {}, None
                return changed
            except OSError:
                self._read_failed()
                return False
            state = _FileState(stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if state == self._state:
                return False
            try:
                text = self.path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                self._read_failed()
                return False
            self._from_file, self.malformed_lines = parse_revocations(text)
            self._state = state
            self.reloads += 1
        self._wake_all()
        return True

    def _read_failed(self) -> None:
        self.read_errors += 1
        if self.read_errors == 1:
            logger.warning("cannot read the revocation list; keeping the last one read")

    def _refresh_if_due(self) -> None:
        checked = self._checked_at
        if self.path is not None and (checked is None or self._clock() - checked >= self.poll):
            self.refresh()

    # -- revoking ---------------------------------------------------------------------

    def revoke(self, token_id: str, *, expires_at: float | None = None) -> None:
        """Revoke a token now, in this process and (with a file) for every worker."""
        expiry = _FOREVER if expires_at is None else expires_at
        if self.path is not None:
            revoke_in_file(self.path, token_id, expires_at=expiry, now=time.time())
            self.refresh()
        with self._lock:
            self._local[token_id] = expiry
        self._wake_all()

    # -- waiting (the websocket watcher) ----------------------------------------------

    async def wait_revoked(self, token_ids: AbstractSet[str]) -> None:
        """Return once any of ``token_ids`` (a set that may grow) is revoked."""
        loop = asyncio.get_running_loop()
        while not self.any_revoked(token_ids):
            waiter: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.add(waiter)
            try:
                await asyncio.wait({waiter}, timeout=self.poll)
            finally:
                with self._lock:
                    self._waiters.discard(waiter)

    def _wake_all(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for waiter in waiters:
            with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


# -- the gate --------------------------------------------------------------------------


def token_id_of(token: str) -> str | None:
    """The ``jti`` of a token, signature unchecked (the gate only ever refuses)."""
    if len(token) > MAX_TOKEN_BYTES:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    token_id = claims.get("jti") if isinstance(claims, dict) else None
    return token_id if isinstance(token_id, str) and token_id else None


def websocket_token(text: object, *, first: bool) -> str | None:
    """The token a websocket text message carries: an auth message, or (first) bare."""
    if not isinstance(text, str) or len(text) > MAX_TOKEN_BYTES:
        return None
    stripped = text.strip()
    if not stripped.startswith("{"):
        return stripped or None if first else None
    if '"auth"' not in stripped:  # cheap: most frames are reports, not auth
        return None
    try:
        message = json.loads(stripped)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "auth":
        return None
    token = message.get("token")
    return token if isinstance(token, str) and token else None


def bearer_of(scope: Scope) -> str | None:
    authorization = Headers(scope=scope).get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class RevocationGate:
    """ASGI middleware refusing revoked tokens on every route (see the docstring)."""

    def __init__(self, app: ASGIApp, *, revocations: RevocationList) -> None:
        self.app = app
        self.revocations = revocations
        self.refused = 0  # requests and connections refused, and connections closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = bearer_of(scope)
            token_id = None if token is None else token_id_of(token)
            if token_id is not None and self.revocations.is_revoked(token_id):
                self.refused += 1
                await _refuse_http(send)
                return
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await _GatedWebsocket(self, scope, receive, send).run()
        else:
            await self.app(scope, receive, send)


async def _refuse_http(send: Send) -> None:
    body = b'{"error":"token revoked"}'
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer error="invalid_token"'),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _GatedWebsocket:
    """One websocket seen through the gate: watch its tokens, close it on revocation."""

    def __init__(self, gate: RevocationGate, scope: Scope, receive: Receive, send: Send):
        self.gate = gate
        self.scope = scope
        self._receive = receive
        self._send = send
        self._send_lock = asyncio.Lock()
        self._token_ids: set[str] = set()
        self._first = True
        self._closed = False
        self._watcher: asyncio.Task[None] | None = None

    async def run(self) -> None:
        try:
            await self.gate.app(self.scope, self.receive, self.send)
        finally:
            if self._watcher is not None:
                self._watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watcher

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] != "websocket.receive" or self._closed:
            return message
        token = websocket_token(message.get("text"), first=self._first)
        self._first = False
        token_id = None if token is None else token_id_of(token)
        if token_id is None:
            return message
        if self.gate.revocations.is_revoked(token_id):
            await self._close_revoked()
            return {"type": "websocket.disconnect", "code": CLOSE_UNAUTHORIZED}
        self._token_ids.add(token_id)
        if self._watcher is None:
            self._watcher = asyncio.ensure_future(self._watch())
        return message

    async def send(self, message: Message) -> None:
        async with self._send_lock:
            if self._closed and message["type"] in ("websocket.send", "websocket.close"):
                return  # the gate closed the connection; the endpoint has not noticed yet
            await self._send(message)

    async def _watch(self) -> None:
        await self.gate.revocations.wait_revoked(self._token_ids)
        await self._close_revoked()

    async def _close_revoked(self) -> None:
        async with self._send_lock:
            if self._closed:
                return
            self._closed = True
            self.gate.refused += 1
            with contextlib.suppress(Exception):  # the peer may be gone already
                await self._send(
                    {
                        "type": "websocket.close",
                        "code": CLOSE_UNAUTHORIZED,
                        "reason": "token revoked",
                    }
                )


__all__ = [
    "CLOSE_UNAUTHORIZED",
    "RevocationGate",
    "RevocationList",
    "parse_revocations",
    "revoke_in_file",
    "token_id_of",
    "websocket_token",
]
