"""The REST API over a filled store: filters, records, acknowledgements, exports, audit.

The app is the one ``feltsafe serve`` runs (create_app with a store), called in process
(httpx's ASGI transport). The store is filled through its own API (review_data.py);
every test reads the audit log back from the store, the way an auditor would.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette

from monitor.api import CSV_COLUMNS, ApiConfig
from monitor.app import create_app
from monitor.config import Settings
from monitor.media_host import media_host
from monitor.store import Store
from monitor.tokens import TokenRole
from tests.monitor import review_data
from tests.monitor.review_data import SECRET, SESSION_A, SESSION_B, SESSION_C, bearer, token

NOW = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
_subjects = itertools.count()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("api") / "store.db"
    with Store.open(f"sqlite:///{path}") as opened:
        yield opened


@pytest.fixture(scope="module")
def filled(store: Store) -> review_data.Filled:
    return review_data.fill(store)


@pytest.fixture(scope="module")
def app(store: Store, filled: review_data.Filled) -> Starlette:
    with media_host("127.0.0.2"):
        application = create_app(Settings(secret=SECRET), store=store)
    application.state.api = ApiConfig(clock=lambda: NOW)
    return application


@pytest.fixture
def subject() -> str:
    """A subject of its own for each test, to find that test's audit rows."""
    return f"acct-{next(_subjects)}"


@pytest.fixture
async def client(app: Starlette, subject: str) -> AsyncIterator[httpx.AsyncClient]:
    headers = bearer(token(TokenRole.SUPERVISOR, subject=subject))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://monitor", headers=headers
    ) as http:
        yield http


def audit_of(store: Store, subject: str) -> list[tuple[str, str, str | None]]:
    rows = [e for e in store.list_audit(limit=500) if e.actor.subject == subject]
    for entry in rows:
        assert entry.actor.role == "supervisor"
        assert entry.at == NOW
    return [(e.action.value, e.resource, e.session_id) for e in reversed(rows)]


async def ids(client: httpx.AsyncClient, query: str = "") -> list[str]:
    response = await client.get(f"/api/sessions{query}")
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["sessions"]]


# -- the session list ----------------------------------------------------------------------


async def test_the_list_is_newest_first_with_duration_mode_and_flags_by_severity(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/api/sessions")).json()
    assert [s["id"] for s in body["sessions"]] == [SESSION_C, SESSION_B, SESSION_A]
    assert (body["total"], body["limit"], body["offset"]) == (3, 50, 0)
    a = body["sessions"][2]
    assert a["started_at"] == "2026-03-02T09:00:00Z"
    assert a["ended_at"] == "2026-03-02T09:03:00Z"
    assert a["duration_s"] == 180.0
    assert (a["mode"], a["live"]) == ("full", False)
    assert a["flag_counts"] == {"info": 1, "warn": 1, "alert": 1}
    assert a["unacknowledged"] == 3
    assert a["summary"]["therapist"]["freeze_duration_s"] == 15.0
    assert a["summary"]["client"]["talk_share"] == 0.45
    c = body["sessions"][0]
    assert (c["live"], c["ended_at"], c["duration_s"], c["summary"]) == (True, None, None, None)
    assert c["flag_counts"] == {"info": 0, "warn": 0, "alert": 0}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?from=2026-03-03&to=2026-03-04", [SESSION_B]),
        ("?to=2026-03-03", [SESSION_A]),  # "to" is exclusive: B began on the 3rd
        ("?from=2026-03-03T10:00:00%2B01:00", [SESSION_C, SESSION_B]),  # = 09:00Z, inclusive
        ("?from=2026-03-03T09:00:01Z", [SESSION_C]),
        ("?mode=metadata", [SESSION_B]),
        ("?mode=full", [SESSION_C, SESSION_A]),
        ("?min_severity=alert", [SESSION_A]),
        ("?min_severity=warn", [SESSION_B, SESSION_A]),
        ("?min_severity=info", [SESSION_B, SESSION_A]),
        ("?unacknowledged=true", [SESSION_A]),  # B's one flag was acknowledged
        ("?unacknowledged=false", [SESSION_C, SESSION_B, SESSION_A]),
        ("?live=true", [SESSION_C]),
        ("?live=false", [SESSION_B, SESSION_A]),
        ("?mode=full&min_severity=warn&unacknowledged=1", [SESSION_A]),
        ("?limit=1&offset=1", [SESSION_B]),
    ],
)
async def test_the_list_filters_as_a_supervisor_would_expect(
    client: httpx.AsyncClient, query: str, expected: list[str]
) -> None:
    assert await ids(client, query) == expected


async def test_paging_reports_the_total_over_all_pages(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/sessions?limit=2&offset=2")).json()
    assert [s["id"] for s in body["sessions"]] == [SESSION_A]
    assert (body["total"], body["limit"], body["offset"]) == (3, 2, 2)


@pytest.mark.parametrize(
    ("query", "complaint"),
    [
        ("?min_severty=alert", "unknown parameter(s): min_severty"),
        ("?from=yesterday", "from: expected a date or an RFC 3339 date-time"),
        ("?from=2026-03-03T09:00:00", "from: a date-time needs an offset"),
        ("?mode=video", "mode: expected one of full, metadata"),
        ("?min_severity=critical", "min_severity: expected one of info, warn, alert"),
        ("?unacknowledged=maybe", "unacknowledged: expected true or false"),
        ("?limit=0", "limit: expected an integer in [1, 500]"),
        ("?limit=501", "limit: expected an integer in [1, 500]"),
        ("?offset=-1", "offset: expected an integer in [0, "),
        ("?limit=ten", "limit: expected an integer"),
        ("?from=2026-03-04&to=2026-03-03", "to must be later than from"),
        ("?mode=full&mode=metadata", "parameter(s) given twice: mode"),
    ],
)
async def test_a_bad_filter_is_a_400_that_names_it_never_a_wider_list(
    client: httpx.AsyncClient, query: str, complaint: str
) -> None:
    response = await client.get(f"/api/sessions{query}")
    assert response.status_code == 400
    assert response.json()["error"].startswith(complaint)


_param_names = st.sampled_from(
    ["from", "to", "mode", "min_severity", "unacknowledged", "live", "limit", "offset", "x"]
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.dictionaries(_param_names, st.text(max_size=30), max_size=4))
async def test_no_query_string_makes_the_list_fail_or_widen_a_scoped_token(
    app: Starlette, params: dict[str, str]
) -> None:
    headers = bearer(token(TokenRole.SUPERVISOR, sessions=[SESSION_B]))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
        response = await http.get("/api/sessions", params=params, headers=headers)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert {s["id"] for s in response.json()["sessions"]} <= {SESSION_B}


# -- one session: record, flags, timeline ---------------------------------------------------


async def test_one_session_reads_as_in_the_list(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/api/sessions?mode=metadata")).json()["sessions"][0]
    assert (await client.get(f"/api/sessions/{SESSION_B}")).json() == listed


@pytest.mark.parametrize("path", ["", "/flags", "/timeline", "/export.csv", "/export.json"])
@pytest.mark.parametrize("session", ["sess-nobody", "x" * 65, "bad%20id"])
async def test_an_unknown_or_malformed_session_is_404(
    client: httpx.AsyncClient, path: str, session: str
) -> None:
    response = await client.get(f"/api/sessions/{session}{path}")
    assert response.status_code == 404
    assert response.json() == {"error": "no such session"}


async def test_flags_come_in_onset_order_with_evidence_and_context(
    client: httpx.AsyncClient, filled: review_data.Filled
) -> None:
    body = (await client.get(f"/api/sessions/{SESSION_A}/flags")).json()
    assert body["session"] == SESSION_A
    flags = body["flags"]
    assert [f["key"] for f in flags] == [filled.talk_info, filled.freeze_alert, filled.loss_warn]
    freeze = flags[1]
    assert freeze["severity"] == "alert"
    assert freeze["title"] == "The therapist's picture froze while the client was sharing"
    assert (freeze["start_elapsed_s"], freeze["end_elapsed_s"]) == (95.0, 110.0)
    assert (freeze["start_at"], freeze["end_at"]) == (
        "2026-03-02T09:01:35Z",
        "2026-03-02T09:01:50Z",
    )
    assert freeze["evidence"] == {"therapist.video.freeze_s": 15.0, "therapist.video.frozen": True}
    assert freeze["context"]["speaker"] == "client"
    assert freeze["context"]["session.disclosure"] is True
    assert freeze["undermines"] == ["emotional_safety", "trust"]
    assert freeze["audience"] == ["supervisor", "therapist"]
    assert freeze["hint"] == "Ask the client what they missed."


async def test_an_earlier_acknowledgement_shows_who_and_the_note(client: httpx.AsyncClient) -> None:
    (flag,) = (await client.get(f"/api/sessions/{SESSION_B}/flags")).json()["flags"]
    assert flag["acknowledgement"] == {
        "at": "2026-03-03T09:00:00Z",
        "by": "acct-earlier",
        "note": "seen",
    }


async def test_the_timeline_is_every_sample_in_time_order(client: httpx.AsyncClient) -> None:
    body = (await client.get(f"/api/sessions/{SESSION_A}/timeline")).json()
    points = body["points"]
    assert [p["elapsed_s"] for p in points] == [5.0 * step for step in range(1, 37)]
    assert points[0]["at"] == "2026-03-02T09:00:05Z"
    frozen = [p["elapsed_s"] for p in points if p["figures"]["therapist.video.frozen"]]
    assert frozen == [95.0, 100.0, 105.0, 110.0]
    assert points[29]["figures"]["client.audio.loss_ratio"] == 0.09  # at 150 s, in the dip
    assert (await client.get(f"/api/sessions/{SESSION_C}/timeline")).json()["points"] == []


# -- acknowledgement -------------------------------------------------------------------------


async def test_acknowledging_records_the_tokens_subject_the_note_and_an_audit_row(
    client: httpx.AsyncClient, store: Store, filled: review_data.Filled, subject: str
) -> None:
    response = await client.post(
        f"/api/flags/{filled.talk_info}/ack", json={"note": "Discussed in supervision."}
    )
    assert response.status_code == 200
    ack = response.json()["acknowledgement"]
    assert ack == {"at": "2026-03-09T12:00:00Z", "by": subject, "note": "Discussed in supervision."}
    flags = (await client.get(f"/api/sessions/{SESSION_A}/flags")).json()["flags"]
    assert next(f for f in flags if f["key"] == filled.talk_info)["acknowledgement"] == ack
    assert ("ack", f"flag/{filled.talk_info}", SESSION_A) in audit_of(store, subject)


async def test_an_acknowledgement_cannot_name_who_acknowledged(
    client: httpx.AsyncClient, store: Store, filled: review_data.Filled, subject: str
) -> None:
    response = await client.post(
        f"/api/flags/{filled.freeze_alert}/ack", json={"note": "ok", "by": "Dr Someone"}
    )
    assert response.status_code == 400
    assert "by" in response.json()["error"]
    assert audit_of(store, subject) == []
    stored = store.get_flag(filled.freeze_alert)
    assert stored is not None
    assert stored.acknowledgement is None


async def test_an_acknowledgement_without_a_body_has_no_note(
    client: httpx.AsyncClient, filled: review_data.Filled
) -> None:
    response = await client.post(f"/api/flags/{filled.loss_warn}/ack")
    assert response.status_code == 200
    assert response.json()["acknowledgement"]["note"] is None


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"note=hello", "application/x-www-form-urlencoded", 415),
        (b'{"note": "x"}', "text/plain", 415),
        (b"{not json", "application/json", 400),
        (b'["a list"]', "application/json", 400),
        (json.dumps({"note": "n" * 2001}).encode(), "application/json", 400),
        (json.dumps({"note": 5}).encode(), "application/json", 400),
        (b"x" * 9000, "application/json", 400),
    ],
)
async def test_a_bad_acknowledgement_body_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    store: Store,
    filled: review_data.Filled,
    subject: str,
    content: bytes,
    content_type: str,
    status: int,
) -> None:
    response = await client.post(
        f"/api/flags/{filled.freeze_alert}/ack",
        content=content,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == status
    assert audit_of(store, subject) == []


@pytest.mark.parametrize("key", ["0" * 32, "NOT-HEX", "f" * 65])
async def test_acknowledging_an_unknown_flag_is_404(client: httpx.AsyncClient, key: str) -> None:
    response = await client.post(f"/api/flags/{key}/ack", json={"note": "x"})
    assert response.status_code == 404
    assert response.json() == {"error": "no such flag"}


# -- audit of views and exports --------------------------------------------------------------


async def test_every_view_and_export_writes_one_audit_row_naming_the_token(
    client: httpx.AsyncClient, store: Store, subject: str
) -> None:
    for path in ("", "/flags", "/timeline", "/export.csv", "/export.json"):
        assert (await client.get(f"/api/sessions/{SESSION_A}{path}")).status_code == 200
    assert (await client.get("/api/sessions?mode=full")).status_code == 200
    assert audit_of(store, subject) == [
        ("view", f"session/{SESSION_A}", SESSION_A),
        ("view", f"session/{SESSION_A}/flags", SESSION_A),
        ("view", f"session/{SESSION_A}/timeline", SESSION_A),
        ("export", f"session/{SESSION_A}/flags.csv", SESSION_A),
        ("export", f"session/{SESSION_A}/flags.json", SESSION_A),
        ("view", "sessions", None),
    ]


async def test_a_refused_or_missing_read_writes_no_audit_row(
    app: Starlette, store: Store, subject: str
) -> None:
    transport = httpx.ASGITransport(app=app)
    listed = bearer(token(TokenRole.SUPERVISOR, subject=subject, sessions=[SESSION_B]))
    async with httpx.AsyncClient(transport=transport, base_url="http://m", headers=listed) as http:
        assert (await http.get(f"/api/sessions/{SESSION_A}/flags")).status_code == 403
        assert (await http.get("/api/sessions/sess-nobody")).status_code == 403
    assert audit_of(store, subject) == []


# -- exports ---------------------------------------------------------------------------------


async def test_the_csv_export_has_one_row_per_flag_and_defuses_formulas(
    client: httpx.AsyncClient, filled: review_data.Filled
) -> None:
    response = await client.get(f"/api/sessions/{SESSION_A}/export.csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="feltsafe-{SESSION_A}-flags.csv"'
    )
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["key"] for r in rows] == [filled.talk_info, filled.freeze_alert, filled.loss_warn]
    talk, freeze = rows[0], rows[1]
    assert talk["title"] == "'=SUM(A1) the therapist spoke most of the time"
    assert freeze["severity"] == "alert"
    assert freeze["start_elapsed_s"] == "95.000"
    assert json.loads(freeze["evidence"])["therapist.video.freeze_s"] == 15.0
    assert json.loads(freeze["context"])["speaker"] == "client"
    assert freeze["undermines"] == "emotional_safety trust"


async def test_the_json_export_is_the_session_and_its_flags_as_the_api_shows_them(
    client: httpx.AsyncClient,
) -> None:
    exported = (await client.get(f"/api/sessions/{SESSION_A}/export.json")).json()
    assert exported["format"] == "feltsafe-flags/1"
    assert exported["exported_at"] == "2026-03-09T12:00:00Z"
    assert exported["session"] == (await client.get(f"/api/sessions/{SESSION_A}")).json()
    flags = (await client.get(f"/api/sessions/{SESSION_A}/flags")).json()["flags"]
    assert exported["flags"] == flags


# -- failures and headers ----------------------------------------------------------------------


async def test_an_unreachable_store_is_a_503_with_retry_after(
    client: httpx.AsyncClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("SELECT", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "list_sessions", down)
    response = await client.get("/api/sessions")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json() == {"error": "the flag store is unavailable"}


async def test_no_data_is_shown_when_its_audit_row_cannot_be_written(
    client: httpx.AsyncClient, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def audit_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(store, "record_view", audit_down)
    response = await client.get(f"/api/sessions/{SESSION_A}/flags")
    assert response.status_code == 503
    assert "evidence" not in response.text


async def test_without_a_store_the_data_routes_answer_503() -> None:
    with media_host("127.0.0.2"):
        bare = create_app(Settings(secret=SECRET))
    transport = httpx.ASGITransport(app=bare)
    headers = bearer(token(TokenRole.SUPERVISOR))
    async with httpx.AsyncClient(transport=transport, base_url="http://m", headers=headers) as http:
        response = await http.get("/api/sessions")
    assert response.status_code == 503
    assert response.json() == {"error": "no flag store is configured"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/sessions",
        f"/api/sessions/{SESSION_A}",
        f"/api/sessions/{SESSION_A}/flags",
        f"/api/sessions/{SESSION_A}/timeline",
        f"/api/sessions/{SESSION_A}/export.json",
        "/api/sessions/sess-nobody",
        "/api/aggregates",
    ],
)
async def test_review_data_is_never_cached(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["cache-control"] == "no-store"


async def test_aggregates_count_sessions_in_a_date_range(app: Starlette) -> None:
    transport = httpx.ASGITransport(app=app)
    headers = bearer(token(TokenRole.OPS))
    async with httpx.AsyncClient(transport=transport, base_url="http://m", headers=headers) as http:
        everything = (await http.get("/api/aggregates")).json()
        second_day = (await http.get("/api/aggregates?from=2026-03-03&to=2026-03-04")).json()
    assert everything == {
        "live_sessions": 0,
        "sessions": 3,
        "sessions_with_warnings": 2,
        "sessions_with_alerts": 1,
        "sessions_with_unacknowledged_flags": 1,  # A's freeze alert stays unacknowledged
    }
    assert second_day["sessions"] == 1
    assert second_day["sessions_with_alerts"] == 0
