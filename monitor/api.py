"""The REST API over the flag store: the supervisor's review, with access and audit.

Theory of operation
-------------------
Routes (the wire format and the OpenAPI document are monitor/api_schema.py's):

====  ===================================  ==========================================
GET   /api/sessions                        list, filtered (from, to, mode, profile,
                                           min_severity, unacknowledged, live; paged)
GET   /api/sessions/{session}              one session
GET   /api/sessions/{session}/flags        its flags, in onset order
GET   /api/sessions/{session}/timeline     its sampled figures
GET   /api/sessions/{session}/export.csv   its flags as CSV (an attachment)
GET   /api/sessions/{session}/export.json  the session and its flags as JSON
POST  /api/flags/{key}/ack                 acknowledge, ``{"note": ...}``
GET   /api/aggregates                      counts only (ops, supervisors)
GET   /api/openapi.json, /api/docs         the OpenAPI 3.1 document and a docs page
====  ===================================  ==========================================

Each request, in order: the bearer token is verified (signature, expiry, revocation)
and authorized against the policy table (monitor/access.py), a session outside a
supervisor's allow-list being refused *before* the store is asked; the parameters are
checked (unknown ones are a 400: a misspelt filter must not silently widen a list); then
one worker thread (``asyncio.to_thread``: the store is synchronous) reads and appends
the audit row, so nothing is shown that was not audited: if the audit row cannot be
written, the answer is a 503, not the data. Views write ``view`` rows, exports
``export`` rows, and ``Store.acknowledge`` writes its ``ack`` row in the same
transaction as the acknowledgement. The actor is always the token's subject and role;
an acknowledgement body naming anyone (any field but ``note``) is refused.

Errors (JSON ``{"error": ...}``): 400 bad parameters or body, 401/403 as access.py,
404 no such session or flag (a flag in a session the token does not reach is "no such
flag" too: its key is looked up before its session is known), 415 an acknowledgement
that is not JSON, 503 the store unreachable or locked past its busy timeout
(SQLAlchemy's ``OperationalError``) or not configured. Every answer is ``no-store``:
review data must not sit in a browser or proxy cache.

Time: the audit's ``now`` comes from ``clock`` (UTC wall clock; tests pass their own).
Session ids and flag keys never go into a log line.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from alerts.model import Severity
from monitor import access
from monitor.access import Action, Grant, Resource, Scope
from monitor.api_schema import (
    EXPORT_FORMAT,
    AcknowledgeIn,
    AggregatesOut,
    FlagListOut,
    FlagOut,
    FlagsExportOut,
    SessionOut,
    SessionPageOut,
    TimelineOut,
    TimelinePointOut,
    openapi_document,
)
from monitor.config import Mode
from monitor.store import (
    FlagNotFoundError,
    NotFoundError,
    SessionQuery,
    Store,
    StoredFlag,
    StoreError,
)
from monitor.store.convert import check_flag_key, check_session_id
from monitor.store.repository import MAX_PAGE
from monitor.tokens import TokenError

MAX_BODY_BYTES: Final = 8192
NO_STORE: Final = {"Cache-Control": "no-store"}
CSV_COLUMNS: Final = (
    "key",
    "rule_id",
    "rule_version",
    "severity",
    "title",
    "start_at",
    "end_at",
    "start_elapsed_s",
    "end_elapsed_s",
    "message",
    "hint",
    "audience",
    "undermines",
    "evidence",
    "context",
    "acknowledged_at",
    "acknowledged_by",
    "acknowledgement_note",
)
# Spreadsheets run a cell that starts with one of these as a formula (OWASP "CSV
# injection"); free text (titles, notes) gets a leading apostrophe instead.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
_LIST_PARAMS: Final = frozenset(
    {"from", "to", "mode", "profile", "min_severity", "unacknowledged", "live", "limit", "offset"}
)
_TRUE, _FALSE = frozenset({"true", "1", "yes"}), frozenset({"false", "0", "no"})

T = TypeVar("T")


class ApiError(Exception):
    """An answer other than 200, raised inside a handler."""

    def __init__(self, status: int, error: str, headers: Mapping[str, str] | None = None):
        super().__init__(error)
        self.status = status
        self.error = error
        self.headers = dict(headers or {})


@dataclass(frozen=True, slots=True)
class ApiConfig:
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


def _store(request: Request) -> Store:
    store: Store | None = getattr(request.app.state, "store", None)
    if store is None:
        raise ApiError(503, "no flag store is configured")
    return store


def _now(request: Request) -> datetime:
    config: ApiConfig = request.app.state.api
    return config.clock()


async def _in_thread(call: Callable[[], T]) -> T:
    try:
        return await asyncio.to_thread(call)
    except NotFoundError as error:
        raise ApiError(404, _not_found(error)) from None
    except StoreError as error:
        raise ApiError(400, str(error)) from None
    except OperationalError:
        raise ApiError(503, "the flag store is unavailable", {"Retry-After": "5"}) from None


def _not_found(error: NotFoundError) -> str:
    return "no such flag" if isinstance(error, FlagNotFoundError) else "no such session"


def _json(
    model: BaseModel, *, status: int = 200, headers: Mapping[str, str] = NO_STORE
) -> Response:
    return JSONResponse(model.model_dump(mode="json"), status_code=status, headers=dict(headers))


Handler = Callable[[Request, Grant], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def _handler(resource: Resource, action: Action) -> Callable[[Handler], Endpoint]:
    """Authorize against the policy, run the handler, turn errors into answers."""

    def wrap(handler: Handler) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            try:
                session = request.path_params.get("session")
                grant = access.require(request, resource, action, session=session)
                if session is not None and not _valid_session(session):
                    raise ApiError(404, "no such session")
                return await handler(request, grant)
            except TokenError as error:
                return access.denial(error)
            except ApiError as error:
                return JSONResponse(
                    {"error": error.error},
                    status_code=error.status,
                    headers={**NO_STORE, **error.headers},
                )

        endpoint.__name__ = handler.__name__
        endpoint.__doc__ = handler.__doc__
        return endpoint

    return wrap


def _valid_session(session_id: str) -> bool:
    try:
        check_session_id(session_id)
    except StoreError:
        return False
    return True


# -- parameters ---------------------------------------------------------------------------


def _instant(name: str, text: str) -> datetime:
    """An RFC 3339 date-time with an offset, or a date (00:00 UTC that day)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected a date or an RFC 3339 date-time") from None
    if moment.utcoffset() is None:
        raise ApiError(400, f"{name}: a date-time needs an offset (Z or +hh:mm)")
    return moment


def _flag(name: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ApiError(400, f"{name}: expected true or false")


def _integer(name: str, text: str, *, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ApiError(400, f"{name}: expected an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name}: expected an integer in [{low}, {high}]")
    return value


def _choice(name: str, text: str, choices: type[Mode] | type[Severity]) -> Any:
    try:
        return choices(text)
    except ValueError:
        allowed = ", ".join(c.value for c in choices)
        raise ApiError(400, f"{name}: expected one of {allowed}") from None


def _check_params(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    params = request.query_params
    unknown = sorted(set(params.keys()) - allowed)
    if unknown:
        raise ApiError(400, f"unknown parameter(s): {', '.join(unknown)}")
    repeated = sorted(k for k in params if len(params.getlist(k)) > 1)
    if repeated:
        raise ApiError(400, f"parameter(s) given twice: {', '.join(repeated)}")
    return dict(params)


def session_query(params: Mapping[str, str], grant: Grant) -> SessionQuery:
    """The store query for the list's parameters, narrowed to the token's sessions."""
    started_from = _instant("from", params["from"]) if "from" in params else None
    started_before = _instant("to", params["to"]) if "to" in params else None
    if started_from and started_before and started_before <= started_from:
        raise ApiError(400, "to must be later than from")
    return SessionQuery(
        started_from=started_from,
        started_before=started_before,
        mode=_choice("mode", params["mode"], Mode) if "mode" in params else None,
        profile=params.get("profile") or None,
        min_severity=(
            _choice("min_severity", params["min_severity"], Severity)
            if "min_severity" in params
            else None
        ),
        unacknowledged=_flag("unacknowledged", params.get("unacknowledged", "false")),
        live=_flag("live", params["live"]) if "live" in params else None,
        session_ids=grant.sessions,
        limit=_integer("limit", params.get("limit", "50"), low=1, high=MAX_PAGE),
        offset=_integer("offset", params.get("offset", "0"), low=0, high=10**9),
    )


# -- handlers -----------------------------------------------------------------------------


@_handler(Resource.SESSIONS, Action.READ)
async def list_sessions(request: Request, grant: Grant) -> Response:
    query = session_query(_check_params(request, _LIST_PARAMS), grant)
    store, now = _store(request), _now(request)

    def work() -> SessionPageOut:
        page = store.list_sessions(query)
        store.record_view(by=grant.actor, resource="sessions", now=now)
        return SessionPageOut(
            sessions=[SessionOut.of(s) for s in page.sessions],
            total=page.total,
            limit=page.limit,
            offset=page.offset,
        )

    return _json(await _in_thread(work))


@_handler(Resource.SESSION, Action.READ)
async def get_session(request: Request, grant: Grant) -> Response:
    _check_params(request, frozenset())
    session_id, store, now = request.path_params["session"], _store(request), _now(request)

    def work() -> SessionOut | None:
        record = store.get_session(session_id)
        if record is None:
            return None
        store.record_view(
            by=grant.actor, resource=f"session/{session_id}", now=now, session_id=session_id
        )
        return SessionOut.of(record)

    found = await _in_thread(work)
    if found is None:
        raise ApiError(404, "no such session")
    return _json(found)


@_handler(Resource.FLAGS, Action.READ)
async def list_flags(request: Request, grant: Grant) -> Response:
    _check_params(request, frozenset())
    session_id, store, now = request.path_params["session"], _store(request), _now(request)

    def work() -> FlagListOut:
        flags = store.list_flags(session_id)
        store.record_view(
            by=grant.actor, resource=f"session/{session_id}/flags", now=now, session_id=session_id
        )
        return FlagListOut(session=session_id, flags=[FlagOut.of(f) for f in flags])

    return _json(await _in_thread(work))


@_handler(Resource.TIMELINE, Action.READ)
async def timeline(request: Request, grant: Grant) -> Response:
    _check_params(request, frozenset())
    session_id, store, now = request.path_params["session"], _store(request), _now(request)

    def work() -> TimelineOut:
        points = store.timeline(session_id)
        store.record_view(
            by=grant.actor,
            resource=f"session/{session_id}/timeline",
            now=now,
            session_id=session_id,
        )
        return TimelineOut(session=session_id, points=[TimelinePointOut.of(p) for p in points])

    return _json(await _in_thread(work))


@_handler(Resource.FLAGS, Action.ACKNOWLEDGE)
async def acknowledge(request: Request, grant: Grant) -> Response:
    key = request.path_params["key"]
    try:
        check_flag_key(key)
    except StoreError:
        raise ApiError(404, "no such flag") from None
    _check_params(request, frozenset())
    body = await _acknowledgement(request)
    store, now = _store(request), _now(request)

    def work() -> StoredFlag | None:
        found = store.get_flag(key)
        if found is None or not grant.covers(found.session_id):
            return None
        return store.acknowledge(key, by=grant.actor, note=body.note, now=now)

    acknowledged = await _in_thread(work)
    if acknowledged is None:
        raise ApiError(404, "no such flag")
    return _json(FlagOut.of(acknowledged))


async def _acknowledgement(request: Request) -> AcknowledgeIn:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(400, f"the body is over {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        return AcknowledgeIn()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "the body must be application/json")
    try:
        return AcknowledgeIn.model_validate_json(raw)
    except ValidationError as error:
        fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in error.errors()})
        raise ApiError(400, f"bad acknowledgement: {', '.join(fields)}") from None


@_handler(Resource.FLAGS, Action.EXPORT)
async def export_csv(request: Request, grant: Grant) -> Response:
    _check_params(request, frozenset())
    session_id, store, now = request.path_params["session"], _store(request), _now(request)

    def work() -> list[StoredFlag]:
        flags = store.list_flags(session_id)
        store.record_export(
            by=grant.actor,
            resource=f"session/{session_id}/flags.csv",
            now=now,
            session_id=session_id,
        )
        return flags

    flags = await _in_thread(work)
    return Response(
        flags_csv(flags),
        media_type="text/csv; charset=utf-8",
        headers={**NO_STORE, "Content-Disposition": _attachment(session_id, "csv")},
    )


@_handler(Resource.FLAGS, Action.EXPORT)
async def export_json(request: Request, grant: Grant) -> Response:
    _check_params(request, frozenset())
    session_id, store, now = request.path_params["session"], _store(request), _now(request)

    def work() -> FlagsExportOut | None:
        record = store.get_session(session_id)
        if record is None:
            return None
        flags = store.list_flags(session_id)
        store.record_export(
            by=grant.actor,
            resource=f"session/{session_id}/flags.json",
            now=now,
            session_id=session_id,
        )
        return FlagsExportOut(
            format=EXPORT_FORMAT,
            exported_at=now,
            session=SessionOut.of(record),
            flags=[FlagOut.of(f) for f in flags],
        )

    exported = await _in_thread(work)
    if exported is None:
        raise ApiError(404, "no such session")
    headers = {**NO_STORE, "Content-Disposition": _attachment(session_id, "json")}
    return _json(exported, headers=headers)


@_handler(Resource.AGGREGATES, Action.READ)
async def aggregates(request: Request, grant: Grant) -> Response:
    params = _check_params(request, frozenset({"from", "to"}))
    base = session_query(params, grant)
    store = _store(request)
    # Ops sees the fleet; a listed supervisor only counts within its list.
    reach = None if grant.scope is Scope.FLEET else grant.sessions
    live_ids = [s.id for s in request.app.state.registry if not s.closed]
    live = len([i for i in live_ids if reach is None or i in reach])

    def count(**filters: Any) -> int:
        query = SessionQuery(
            started_from=base.started_from,
            started_before=base.started_before,
            session_ids=reach,
            limit=1,
            **filters,
        )
        return store.list_sessions(query).total

    def work() -> AggregatesOut:
        return AggregatesOut(
            live_sessions=live,
            sessions=count(),
            sessions_with_warnings=count(min_severity=Severity.WARN),
            sessions_with_alerts=count(min_severity=Severity.ALERT),
            sessions_with_unacknowledged_flags=count(unacknowledged=True),
        )

    return _json(await _in_thread(work))


def flags_csv(flags: list[StoredFlag]) -> str:
    """One row per flag (:data:`CSV_COLUMNS`); evidence and context as JSON cells."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow(CSV_COLUMNS)
    for stored in flags:
        flag, ack = stored.flag, stored.acknowledgement
        writer.writerow(
            [
                stored.key,
                flag.rule_id,
                flag.rule_version,
                flag.severity.value,
                _cell(flag.title),
                stored.start_at.isoformat(),
                "" if stored.end_at is None else stored.end_at.isoformat(),
                f"{stored.start_elapsed:.3f}",
                "" if stored.end_elapsed is None else f"{stored.end_elapsed:.3f}",
                _cell(flag.message),
                _cell(flag.hint),
                " ".join(sorted(a.value for a in flag.audience)),
                " ".join(sorted(u.value for u in flag.undermines)),
                json.dumps(dict(sorted(flag.evidence.items())), separators=(",", ":")),
                _cell(json.dumps(dict(sorted(flag.context.items())), separators=(",", ":"))),
                "" if ack is None else ack.at.isoformat(),
                "" if ack is None else _cell(ack.by),
                "" if ack is None else _cell(ack.note),
            ]
        )
    return out.getvalue()


def _cell(text: str | None) -> str:
    if not text:
        return ""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _attachment(session_id: str, extension: str) -> str:
    # Session ids are RFC 3986 unreserved characters: safe in a quoted filename.
    return f'attachment; filename="feltsafe-{session_id}-flags.{extension}"'


# -- documentation ------------------------------------------------------------------------


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def docs(request: Request) -> Response:
    page = resources.files("monitor.review").joinpath("static", "api-docs.html")
    return HTMLResponse(page.read_text(encoding="utf-8"))


def routes() -> list[Route]:
    return [
        Route("/api/sessions", list_sessions, methods=["GET"]),
        Route("/api/sessions/{session}", get_session, methods=["GET"]),
        Route("/api/sessions/{session}/flags", list_flags, methods=["GET"]),
        Route("/api/sessions/{session}/timeline", timeline, methods=["GET"]),
        Route("/api/sessions/{session}/export.csv", export_csv, methods=["GET"]),
        Route("/api/sessions/{session}/export.json", export_json, methods=["GET"]),
        Route("/api/flags/{key}/ack", acknowledge, methods=["POST"]),
        Route("/api/aggregates", aggregates, methods=["GET"]),
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/docs", docs, methods=["GET"]),
    ]


def mount(app: Starlette, *, config: ApiConfig | None = None) -> None:
    """Add the REST routes to an app made by :func:`monitor.app.create_app`.

    Reads ``app.state.store`` (None: the data routes answer 503), ``settings`` and
    ``revocations`` (monitor/access.py's :func:`~monitor.access.mount`) at request time.
    """
    app.state.api = config or ApiConfig()
    app.state.openapi = openapi_document()
    app.router.routes.extend(routes())


__all__ = ["CSV_COLUMNS", "ApiConfig", "flags_csv", "mount", "routes", "session_query"]
