"""WHIP ingest (RFC 9725): the HTTP side of a participant publishing to the monitor.

Theory of operation: ``POST /whip/{session}/{role}`` carries an SDP offer
(``application/sdp``) and a publisher token (``Authorization: Bearer``, RFC 9725 §4.4,
issued by ``feltsafe token issue --role publisher --session S --as ROLE``). The answer
is ``201 Created`` with the SDP answer and a ``Location`` naming the WHIP session
resource, ``/whip/{session}/{role}/{resource}``; ``DELETE`` on it ends that participant's
stream (RFC 9725 §4.2). The monitor does not trickle: candidates are all in the answer,
and ``PATCH`` is ``405`` (RFC 9725 §4.3.1).

Checks, in this order, each with its status:

====  =================================================================================
404   the role is not ``therapist`` or ``client``, or the session id is not URL-safe
401   no bearer token, or one that is malformed, forged or expired (``WWW-Authenticate``)
403   a valid token that is not a publisher token for this session and role
415   a body that is not ``application/sdp``
413   an offer over 64 KiB
400   SDP that does not parse, lacks ICE credentials or a DTLS fingerprint, has no
      sending audio/video section, or more than one of a kind; an unknown ``?mode=``
406   no codec in a section that aiortc can receive (e.g. only AV1 video)
409   the role already has a publisher in this session, or ``?mode=`` differs from the
      live session's mode
====  =================================================================================

Per-session mode: the first publisher may ask ``?mode=metadata`` (or ``full``); without
it the session runs in the server's mode. Error bodies are short plain text; they never
echo the offer or the token.
"""

from __future__ import annotations

import logging
from collections import Counter
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from monitor.config import Mode
from monitor.participant import LeftReason
from monitor.publisher import MAX_OFFER_BYTES, OfferError, parse_offer
from monitor.sessions import SESSION_ID_PATTERN, SessionConflictError, SessionRegistry
from monitor.tokens import (
    TokenForbiddenError,
    TokenInvalidError,
    bearer_token,
    require_publisher,
    verify_token,
)
from probes.base import Role

logger = logging.getLogger(__name__)

SDP_CONTENT_TYPE = "application/sdp"


class WhipEndpoint:
    """The WHIP routes over one session registry and one token secret."""

    def __init__(self, registry: SessionRegistry, *, secret: str) -> None:
        self._registry = registry
        self._secret = secret
        self.rejected: Counter[int] = Counter()  # 4xx answers to POST, by status (metrics)

    def routes(self) -> list[Route]:
        return [
            Route("/whip/{session}/{role}", self._counted_post, methods=["POST", "OPTIONS"]),
            Route(
                "/whip/{session}/{role}/{resource}",
                self.resource,
                methods=["DELETE", "PATCH", "OPTIONS"],
            ),
        ]

    async def post(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Accept-Post": SDP_CONTENT_TYPE})
        target = _target(request)
        if isinstance(target, Response):
            return target
        session_id, role = target
        denied = self._authorize(request, session_id, role)
        if denied is not None:
            return denied
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != SDP_CONTENT_TYPE:
            return _error(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"expected {SDP_CONTENT_TYPE}")
        body = await request.body()
        if len(body) > MAX_OFFER_BYTES:
            return _error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "offer too large")
        mode_text = request.query_params.get("mode")
        try:
            mode = Mode(mode_text) if mode_text is not None else None
        except ValueError:
            return _error(HTTPStatus.BAD_REQUEST, "mode must be full or metadata")
        try:
            offer = parse_offer(body.decode("utf-8"))
        except UnicodeDecodeError:
            return _error(HTTPStatus.BAD_REQUEST, "malformed SDP: not UTF-8")
        except OfferError as exc:
            return _error(exc.status, exc.reason)
        try:
            live = self._registry.open(session_id, mode=mode)
            publisher, answer = await live.publish(role, offer)
        except SessionConflictError as exc:
            return _error(HTTPStatus.CONFLICT, str(exc))
        except OfferError as exc:
            return _error(exc.status, exc.reason)
        location = f"/whip/{session_id}/{role}/{publisher.resource_id}"
        return Response(
            answer,
            status_code=HTTPStatus.CREATED,
            media_type=SDP_CONTENT_TYPE,
            headers={"Location": location, "ETag": f'"{publisher.resource_id}"'},
        )

    async def _counted_post(self, request: Request) -> Response:
        response = await self.post(request)
        if 400 <= response.status_code < 500:
            self.rejected[response.status_code] += 1
        return response

    async def resource(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": "DELETE, OPTIONS"})
        target = _target(request)
        if isinstance(target, Response):
            return target
        session_id, role = target
        denied = self._authorize(request, session_id, role)
        if denied is not None:
            return denied
        if request.method == "PATCH":
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                "trickle ICE is not supported: all candidates are in the answer",
                headers={"Allow": "DELETE, OPTIONS"},
            )
        live = self._registry.get(session_id)
        resource_id = request.path_params["resource"]
        if live is None or not await live.unpublish(role, resource_id, reason=LeftReason.DELETED):
            return _error(HTTPStatus.NOT_FOUND, "no such WHIP session")
        return Response(status_code=HTTPStatus.OK)

    def _authorize(self, request: Request, session_id: str, role: Role) -> Response | None:
        try:
            claims = verify_token(self._secret, bearer_token(request.headers.get("authorization")))
            require_publisher(claims, session=session_id, participant=role)
        except TokenInvalidError as exc:
            return _error(HTTPStatus.UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"})
        except TokenForbiddenError as exc:
            return _error(HTTPStatus.FORBIDDEN, str(exc))
        return None


def _target(request: Request) -> tuple[str, Role] | Response:
    session_id = request.path_params["session"]
    try:
        role = Role(request.path_params["role"])
    except ValueError:
        return _error(HTTPStatus.NOT_FOUND, "the role is therapist or client")
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        return _error(HTTPStatus.NOT_FOUND, "not a session id")
    return session_id, role


def _error(
    status: HTTPStatus, reason: str, *, headers: dict[str, str] | None = None
) -> PlainTextResponse:
    return PlainTextResponse(f"{reason}\n", status_code=status, headers=headers)
