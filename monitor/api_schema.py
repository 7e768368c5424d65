"""The REST API's wire format and its OpenAPI 3.1 document, from one set of models.

Theory of operation: every JSON body the API sends or takes is one of the pydantic
models below; the handlers (monitor/api.py) build a model and dump it, and
:func:`openapi_document` builds the OpenAPI document from the same models' JSON Schemas
(pydantic emits JSON Schema 2020-12, which is OpenAPI 3.1's schema dialect). So the
document cannot drift from what the API really sends; tests/monitor/test_openapi.py
validates the document against the OpenAPI 3.1 specification and real answers against
the document.

Conventions: times are RFC 3339 UTC (``2026-03-02T09:00:00Z``); JSON names for durations
in seconds end in ``_s`` (as the snapshot route's ``elapsed_s``); figures keep the names
of the signal catalogue (probes/signals.py, DESIGN.md "Signals"). No field holds
content or a person's name: ``acknowledgement.by`` is the acknowledging token's opaque
subject.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from alerts.model import Severity
from monitor.store import RoleSummary, SessionRecord, SessionSummary, StoredFlag, TimelinePoint
from monitor.store.convert import TEXT_LENGTH

EXPORT_FORMAT: Final = "feltsafe-flags/1"
SignalValue = float | bool | None
ContextValue = float | bool | str | None


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RoleSummaryOut(_Out):
    """End-of-session figures about one participant; null where never measured."""

    talk_share: float | None = Field(description="share of the session's talk time, 0-1")
    interruptions_count: int | None = Field(description="successful interruptions made")
    freeze_count: int | None = Field(description="freezes of the video this role sends")
    freeze_duration_s: float | None = Field(description="total frozen time, seconds")
    mos_p10: float | None
    mos_p50: float | None
    mos_p90: float | None

    @classmethod
    def of(cls, summary: RoleSummary) -> RoleSummaryOut:
        return cls(
            talk_share=summary.talk_share,
            interruptions_count=summary.interruptions_count,
            freeze_count=summary.freeze_count,
            freeze_duration_s=summary.freeze_duration,
            mos_p10=summary.mos_p10,
            mos_p50=summary.mos_p50,
            mos_p90=summary.mos_p90,
        )


class SummaryOut(_Out):
    therapist: RoleSummaryOut
    client: RoleSummaryOut

    @classmethod
    def of(cls, summary: SessionSummary) -> SummaryOut:
        return cls(
            therapist=RoleSummaryOut.of(summary.therapist),
            client=RoleSummaryOut.of(summary.client),
        )


class FlagCountsOut(_Out):
    info: int
    warn: int
    alert: int


class SessionOut(_Out):
    """A session as the review list and page show it."""

    id: str
    started_at: datetime
    ended_at: datetime | None = Field(description="null while live or if never recorded")
    duration_s: float | None
    live: bool
    mode: Literal["full", "metadata"]
    profile: str | None
    flag_counts: FlagCountsOut = Field(description="flags by severity")
    unacknowledged: int = Field(description="flags nobody has acknowledged yet")
    summary: SummaryOut | None = Field(description="end-of-session figures; null while live")

    @classmethod
    def of(cls, record: SessionRecord) -> SessionOut:
        counts = {severity.value: record.flag_counts.get(severity, 0) for severity in Severity}
        return cls(
            id=record.session_id,
            started_at=record.started_at,
            ended_at=record.ended_at,
            duration_s=record.duration,
            live=record.live,
            mode=record.mode.value,
            profile=record.profile,
            flag_counts=FlagCountsOut(**counts),
            unacknowledged=record.unacknowledged_count,
            summary=None if record.summary is None else SummaryOut.of(record.summary),
        )


class SessionPageOut(_Out):
    sessions: list[SessionOut]
    total: int = Field(description="sessions matching the filters, over all pages")
    limit: int
    offset: int


class AcknowledgementOut(_Out):
    at: datetime
    by: str = Field(description="the acknowledging token's subject (an opaque account id)")
    note: str | None


class FlagOut(_Out):
    """One rule firing, with its evidence (signal values) and context at onset."""

    key: str
    session: str
    rule_id: str
    rule_version: int
    severity: Literal["info", "warn", "alert"]
    title: str
    message: str | None
    hint: str | None
    audience: list[str]
    undermines: list[str]
    evidence: dict[str, SignalValue]
    context: dict[str, ContextValue]
    start_at: datetime
    end_at: datetime | None = Field(description="null while the condition still holds")
    start_elapsed_s: float = Field(description="seconds since the session began")
    end_elapsed_s: float | None
    acknowledgement: AcknowledgementOut | None

    @classmethod
    def of(cls, stored: StoredFlag) -> FlagOut:
        flag, ack = stored.flag, stored.acknowledgement
        return cls(
            key=stored.key,
            session=stored.session_id,
            rule_id=flag.rule_id,
            rule_version=flag.rule_version,
            severity=flag.severity.value,
            title=flag.title,
            message=flag.message,
            hint=flag.hint,
            audience=sorted(a.value for a in flag.audience),
            undermines=sorted(u.value for u in flag.undermines),
            evidence=dict(sorted(flag.evidence.items())),
            context=dict(sorted(flag.context.items())),
            start_at=stored.start_at,
            end_at=stored.end_at,
            start_elapsed_s=stored.start_elapsed,
            end_elapsed_s=stored.end_elapsed,
            acknowledgement=None
            if ack is None
            else AcknowledgementOut(at=ack.at, by=ack.by, note=ack.note),
        )


class FlagListOut(_Out):
    session: str
    flags: list[FlagOut] = Field(description="in onset order")


class TimelinePointOut(_Out):
    elapsed_s: float
    at: datetime
    figures: dict[str, SignalValue] = Field(description="signal-catalogue names to values")

    @classmethod
    def of(cls, point: TimelinePoint) -> TimelinePointOut:
        return cls(elapsed_s=point.elapsed, at=point.at, figures=dict(point.figures))


class TimelineOut(_Out):
    session: str
    points: list[TimelinePointOut] = Field(description="in time order, about one every 5 s")


class FlagsExportOut(_Out):
    format: Literal["feltsafe-flags/1"]
    exported_at: datetime
    session: SessionOut
    flags: list[FlagOut]


class AggregatesOut(_Out):
    """Counts only: no session id, flag or figure of any one session."""

    live_sessions: int = Field(description="sessions live in this worker now")
    sessions: int = Field(description="stored sessions in range")
    sessions_with_warnings: int = Field(description="with a flag of severity warn or alert")
    sessions_with_alerts: int
    sessions_with_unacknowledged_flags: int


class SnapshotOut(_Out):
    session: str
    mode: Literal["full", "metadata"]
    elapsed_s: float | None
    signals: dict[str, SignalValue] | None


class ErrorOut(_Out):
    error: str


class AcknowledgeIn(BaseModel):
    """The body of an acknowledgement. Who acknowledges comes from the token, never here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    note: str | None = Field(default=None, max_length=TEXT_LENGTH)


# -- the OpenAPI document -------------------------------------------------------------

_OUTPUTS: Final = (
    SessionPageOut,
    SessionOut,
    FlagListOut,
    FlagOut,
    TimelineOut,
    FlagsExportOut,
    AggregatesOut,
    SnapshotOut,
    ErrorOut,
)
_REF = "#/components/schemas/{model}"
_SESSION_PARAM = {
    "name": "session",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._~-]{0,63}$"},
    "description": "the monitor's opaque session id",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "bad request (a parameter or the body)",
        401: "no, malformed, forged, expired or revoked token",
        403: "the token's role or scope does not reach this",
        404: "no such session or flag (or not one this token sees)",
        503: "the flag store is unreachable or busy; retry",
    }
    return {str(code): _json(ErrorOut, texts[code]) for code in codes}


def _get(summary: str, roles: str, ok: dict[str, Any], *errors: int, **extra: Any) -> Any:
    return {
        "get": {
            "summary": summary,
            "description": f"Roles: {roles}.",
            "responses": {"200": ok, **_errors(400, 401, 403, *errors, 503)},
            **extra,
        }
    }


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_INSTANT = {"type": "string", "description": "RFC 3339 date-time with offset, or a date (UTC)"}


def _paths() -> dict[str, Any]:
    supervisor = "supervisor (every session, or the sessions its token lists)"
    audited = " Writes a `view` audit row naming the token's subject and role."
    return {
        "/api/sessions": _get(
            "List sessions, newest first",
            supervisor,
            _json(SessionPageOut, "one page of sessions"),
            description=f"Roles: {supervisor}.{audited}",
            parameters=[
                _query("from", _INSTANT, "sessions that started at or after this"),
                _query("to", _INSTANT, "sessions that started before this (exclusive)"),
                _query("mode", {"enum": ["full", "metadata"]}, "how the session was watched"),
                _query("profile", {"type": "string"}, "the session profile"),
                _query(
                    "min_severity",
                    {"enum": ["info", "warn", "alert"]},
                    "with at least one flag at or above this severity",
                ),
                _query("unacknowledged", {"type": "boolean"}, "with a flag not yet acknowledged"),
                _query("live", {"type": "boolean"}, "true: live only; false: ended only"),
                _query(
                    "limit", {"type": "integer", "minimum": 1, "maximum": 500}, "page size (50)"
                ),
                _query("offset", {"type": "integer", "minimum": 0}, "sessions to skip"),
            ],
        ),
        "/api/sessions/{session}": _get(
            "One session",
            supervisor,
            _json(SessionOut, "the session"),
            404,
            description=f"Roles: {supervisor}.{audited}",
            parameters=[_SESSION_PARAM],
        ),
        "/api/sessions/{session}/flags": _get(
            "A session's flags, in onset order",
            supervisor,
            _json(FlagListOut, "the flags"),
            404,
            description=f"Roles: {supervisor}.{audited}",
            parameters=[_SESSION_PARAM],
        ),
        "/api/sessions/{session}/timeline": _get(
            "A session's sampled figures (about one point every 5 s)",
            supervisor,
            _json(TimelineOut, "the timeline"),
            404,
            description=f"Roles: {supervisor}.{audited}",
            parameters=[_SESSION_PARAM],
        ),
        "/api/sessions/{session}/snapshot": _get(
            "The latest snapshot of a live session",
            "therapist (of this session), supervisor",
            _json(SnapshotOut, "the latest signals"),
            404,
            parameters=[_SESSION_PARAM],
        ),
        "/api/sessions/{session}/export.csv": _get(
            "Export a session's flags as CSV",
            supervisor,
            {
                "description": "one row per flag; evidence and context as JSON cells",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            404,
            description=f"Roles: {supervisor}. Writes an `export` audit row.",
            parameters=[_SESSION_PARAM],
        ),
        "/api/sessions/{session}/export.json": _get(
            "Export a session and its flags as JSON",
            supervisor,
            _json(FlagsExportOut, "the session and its flags"),
            404,
            description=f"Roles: {supervisor}. Writes an `export` audit row.",
            parameters=[_SESSION_PARAM],
        ),
        "/api/flags/{key}/ack": {
            "post": {
                "summary": "Acknowledge a flag, with an optional note",
                "description": (
                    f"Roles: {supervisor}. The acknowledgement and its `ack` audit row are "
                    "written in one transaction; the actor is the token's subject and role. "
                    "Acknowledging again replaces the note (both acts stay in the audit)."
                ),
                "parameters": [
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"},
                    }
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref(AcknowledgeIn)}},
                },
                "responses": {
                    "200": _json(FlagOut, "the acknowledged flag"),
                    **_errors(400, 401, 403, 404, 503),
                    "415": _json(ErrorOut, "the body is not application/json"),
                },
            }
        },
        "/api/aggregates": _get(
            "Fleet counts (no session data)",
            "ops; supervisor (counts over the sessions its token reaches)",
            _json(AggregatesOut, "the counts"),
            parameters=[
                _query("from", _INSTANT, "sessions that started at or after this"),
                _query("to", _INSTANT, "sessions that started before this (exclusive)"),
            ],
        ),
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the REST API (served at ``/api/openapi.json``)."""
    entries: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        *((model, "serialization") for model in _OUTPUTS),
        (AcknowledgeIn, "validation"),
    ]
    _, definitions = models_json_schema(entries, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "feltsafe review API",
            "version": "1",
            "description": (
                "Sessions, flags, timelines and acknowledgements of the feltsafe flag store, "
                "for the supervisor's review. Every request carries a token "
                "(`feltsafe token issue`) as `Authorization: Bearer <token>`. Every view, "
                "acknowledgement and export is written to the audit log."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "security": [{"bearer": []}],
    }


__all__ = [
    "EXPORT_FORMAT",
    "AcknowledgeIn",
    "AggregatesOut",
    "ErrorOut",
    "FlagListOut",
    "FlagOut",
    "FlagsExportOut",
    "SessionOut",
    "SessionPageOut",
    "SnapshotOut",
    "TimelineOut",
    "openapi_document",
]
