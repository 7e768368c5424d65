"""The flag store's repository API, on SQLite and on a real PostgreSQL.

Every test runs on both backends (store_backends.py): the point of one code path is
that both give the same answers.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from alerts.model import Audience, Flag, SafetyElement, Severity
from monitor.store import (
    Actor,
    AuditAction,
    FlagNotFoundError,
    RoleSummary,
    SessionMode,
    SessionNotFoundError,
    SessionQuery,
    SessionSummary,
    Store,
    StoreError,
    TimelineSample,
    repository,
)
from tests.monitor import store_backends

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLOCK0 = 5000.0  # the session clock's reading at T0: an arbitrary monotonic origin
SUPERVISOR = Actor(subject="acct-7f3a", role="supervisor")


@pytest.fixture(params=store_backends.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with (
        store_backends.store_url(request.param, tmp_path, request.config) as url,
        Store.open(url) as opened,
    ):
        yield opened


def make_flag(**changes: object) -> Flag:
    flag = Flag(
        rule_id="video.frozen_during_disclosure",
        rule_version=2,
        start=CLOCK0 + 61.25,
        end=None,
        severity=Severity.WARN,
        audience=frozenset({Audience.THERAPIST, Audience.SUPERVISOR}),
        undermines=frozenset({SafetyElement.TRUST, SafetyElement.EMOTIONAL_SAFETY}),
        title="Your picture froze while your client was sharing",
        message="Your client may not have seen you for a moment.",
        hint="When the picture is back, tell your client what you missed.",
        evidence={"therapist.video.freeze_s": 2.1, "therapist.video.frozen": True},
        context={"speaker": "client", "session.disclosure": True, "client.floor_s": 24.0},
    )
    return dataclasses.replace(flag, **changes)  # type: ignore[arg-type]


def start(store: Store, session_id: str = "sess-1", *, at: datetime = T0, **kw: object) -> str:
    store.record_session_start(
        session_id,
        started_at=at,
        clock_at_start=CLOCK0,
        mode=str(kw.get("mode", "full")),
        profile=kw.get("profile"),  # type: ignore[arg-type]
    )
    return session_id


# -- sessions -----------------------------------------------------------------------------


def test_a_started_session_is_listed_live_with_no_flags(store: Store) -> None:
    start(store, profile="individual")

    record = store.get_session("sess-1")

    assert record is not None
    assert record.started_at == T0
    assert record.live
    assert record.duration is None
    assert record.summary is None
    assert record.mode is SessionMode.FULL
    assert record.profile == "individual"
    assert record.flag_counts == {Severity.INFO: 0, Severity.WARN: 0, Severity.ALERT: 0}


def test_recording_the_same_start_twice_keeps_one_session_and_the_first_start(
    store: Store,
) -> None:
    start(store)
    start(store, at=T0 + timedelta(minutes=3))

    page = store.list_sessions()

    assert page.total == 1
    assert page.sessions[0].started_at == T0


def test_an_ended_session_carries_its_duration_and_summary_per_role(store: Store) -> None:
    start(store)
    summary = SessionSummary(
        therapist=RoleSummary(
            talk_share=0.62, interruptions_count=4, freeze_count=1, freeze_duration=2.1,
            mos_p10=3.2, mos_p50=4.1, mos_p90=4.3,
        ),
        client=RoleSummary(talk_share=0.38, interruptions_count=0, mos_p50=4.2),
    )  # fmt: skip

    store.record_session_end("sess-1", ended_at=T0 + timedelta(minutes=50), summary=summary)

    record = store.get_session("sess-1")
    assert record is not None
    assert not record.live
    assert record.ended_at == T0 + timedelta(minutes=50)
    assert record.duration == 3000.0
    assert record.summary == summary


def test_a_non_finite_summary_figure_is_stored_as_unknown(store: Store) -> None:
    start(store)
    summary = SessionSummary(client=RoleSummary(mos_p10=float("nan"), talk_share=0.5))

    store.record_session_end("sess-1", ended_at=T0 + timedelta(minutes=1), summary=summary)

    record = store.get_session("sess-1")
    assert record is not None
    assert record.summary is not None
    assert record.summary.client == RoleSummary(mos_p10=None, talk_share=0.5)


def test_a_session_cannot_end_before_it_started(store: Store) -> None:
    start(store)
    with pytest.raises(StoreError, match="before it started"):
        store.record_session_end(
            "sess-1", ended_at=T0 - timedelta(seconds=1), summary=SessionSummary()
        )


def test_ending_an_unknown_session_raises_session_not_found(store: Store) -> None:
    with pytest.raises(SessionNotFoundError):
        store.record_session_end("nope", ended_at=T0, summary=SessionSummary())


@pytest.mark.parametrize("session_id", ["", "a/b", "x" * 65, "Ana Lima", "a%2Fb", "sess\n1"])
def test_a_session_id_that_is_not_opaque_and_url_safe_is_refused(
    store: Store, session_id: str
) -> None:
    with pytest.raises(StoreError, match="session id"):
        start(store, session_id)


def test_an_unknown_mode_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="mode"):
        start(store, mode="video")


def test_a_naive_datetime_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="timezone-aware"):
        start(store, at=datetime(2026, 3, 2, 9, 0))  # naive: the point of the test


def test_get_session_of_an_unknown_id_is_none(store: Store) -> None:
    assert store.get_session("unknown") is None


# -- flags -------------------------------------------------------------------------------


def test_a_flag_comes_back_whole_with_its_key_and_times_on_both_clocks(store: Store) -> None:
    start(store)
    flag = make_flag(end=CLOCK0 + 64.0)

    key = store.upsert_flag("sess-1", flag)

    (stored,) = store.list_flags("sess-1")
    assert key == flag.key("sess-1") == stored.key
    assert stored.flag == flag
    assert stored.flag.key("sess-1") == key
    assert stored.start_elapsed == 61.25
    assert stored.end_elapsed == 64.0
    assert stored.start_at == T0 + timedelta(seconds=61.25)
    assert stored.end_at == T0 + timedelta(seconds=64)
    assert stored.acknowledgement is None
    assert store.get_flag(key) == stored


def test_writing_the_same_flag_again_stores_it_once(store: Store) -> None:
    start(store)
    for _ in range(3):
        store.upsert_flag("sess-1", make_flag())

    assert len(store.list_flags("sess-1")) == 1


def test_a_flag_that_ends_later_is_updated_in_place(store: Store) -> None:
    start(store)
    store.upsert_flag("sess-1", make_flag())
    store.upsert_flag(
        "sess-1", make_flag(end=CLOCK0 + 70.0, evidence={"therapist.video.freeze_s": 8.0})
    )

    (stored,) = store.list_flags("sess-1")
    assert stored.flag.end == CLOCK0 + 70.0
    assert stored.flag.evidence == {"therapist.video.freeze_s": 8.0}


def test_a_stale_retry_without_an_end_does_not_reopen_a_flag(store: Store) -> None:
    start(store)
    store.upsert_flag("sess-1", make_flag(end=CLOCK0 + 70.0))
    store.upsert_flag("sess-1", make_flag(end=None))

    (stored,) = store.list_flags("sess-1")
    assert stored.flag.end == CLOCK0 + 70.0
    assert stored.end_elapsed == pytest.approx(70.0)


def test_severity_keeps_its_highest_rank_whatever_the_write_order(store: Store) -> None:
    start(store)
    store.upsert_flag("sess-1", make_flag(severity=Severity.WARN))
    store.upsert_flag("sess-1", make_flag(severity=Severity.ALERT))
    store.upsert_flag("sess-1", make_flag(severity=Severity.INFO))

    (stored,) = store.list_flags("sess-1")
    assert stored.flag.severity is Severity.ALERT


def test_flags_of_different_starts_rules_or_sessions_are_different_rows(store: Store) -> None:
    start(store, "sess-1")
    start(store, "sess-2")
    store.upsert_flag("sess-1", make_flag())
    store.upsert_flag("sess-1", make_flag(start=CLOCK0 + 90.0))
    store.upsert_flag("sess-1", make_flag(rule_id="audio.drop_while_client_speaks"))
    store.upsert_flag("sess-2", make_flag())

    assert len(store.list_flags("sess-1")) == 3
    assert len(store.list_flags("sess-2")) == 1


def test_a_flag_for_an_unknown_session_is_refused(store: Store) -> None:
    with pytest.raises(SessionNotFoundError):
        store.upsert_flag("ghost", make_flag())


def test_a_flag_ending_before_it_starts_is_refused(store: Store) -> None:
    start(store)
    with pytest.raises(StoreError, match="before it starts"):
        store.upsert_flag("sess-1", make_flag(end=CLOCK0))


def test_non_finite_evidence_is_stored_as_unknown(store: Store) -> None:
    start(store)
    evidence = {"client.network.mos": float("nan"), "client.network.rtt_ms": float("inf")}
    store.upsert_flag("sess-1", make_flag(evidence=evidence))

    (stored,) = store.list_flags("sess-1")
    assert stored.flag.evidence == {"client.network.mos": None, "client.network.rtt_ms": None}


@pytest.mark.parametrize("value", ["I feel unsafe", b"\x00\x01", [1.0, 2.0]])
def test_evidence_that_is_not_a_number_is_refused(store: Store, value: object) -> None:
    start(store)
    with pytest.raises(StoreError, match="not a number"):
        store.upsert_flag("sess-1", make_flag(evidence={"client.audio.loss_ratio": value}))


def test_a_long_string_in_flag_context_is_refused(store: Store) -> None:
    start(store)
    with pytest.raises(StoreError, match="context"):
        store.upsert_flag("sess-1", make_flag(context={"speaker": "x" * 200}))


def test_flags_list_in_onset_order_and_filter_by_audience(store: Store) -> None:
    start(store)
    ops_only = make_flag(
        rule_id="network.poor_mos", start=CLOCK0 + 10.0, audience=frozenset({Audience.OPS})
    )
    store.upsert_flag("sess-1", make_flag(start=CLOCK0 + 30.0))
    store.upsert_flag("sess-1", ops_only)

    everything = store.list_flags("sess-1")
    for_supervisor = store.list_flags("sess-1", audience=Audience.SUPERVISOR)

    assert [s.start_elapsed for s in everything] == [10.0, 30.0]
    assert [s.flag.rule_id for s in for_supervisor] == ["video.frozen_during_disclosure"]


def test_listing_flags_of_an_unknown_session_raises(store: Store) -> None:
    with pytest.raises(SessionNotFoundError):
        store.list_flags("ghost")


def test_every_field_of_a_flag_has_a_column() -> None:
    # A field added to alerts.model.Flag must get a column (and a migration) here, not be
    # dropped on the floor; this fails until it does.
    stored_fields = {
        "rule_id", "rule_version", "start", "end", "severity", "audience", "undermines",
        "title", "message", "hint", "evidence", "context",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(Flag)} == stored_fields


# -- timeline ------------------------------------------------------------------------------


def test_timeline_samples_come_back_in_time_order_on_both_clocks(store: Store) -> None:
    start(store)
    written = store.append_timeline(
        "sess-1",
        [
            TimelineSample(CLOCK0 + 10.0, {"client.network.mos": 3.9, "client.video.frozen": True}),
            TimelineSample(CLOCK0 + 5.0, {"client.network.mos": 4.2, "client.video.frozen": False}),
        ],
    )

    points = store.timeline("sess-1")

    assert written == 2
    assert [p.elapsed for p in points] == [5.0, 10.0]
    assert points[0].at == T0 + timedelta(seconds=5)
    assert points[1].figures == {"client.network.mos": 3.9, "client.video.frozen": True}


def test_a_resent_timeline_sample_replaces_itself(store: Store) -> None:
    start(store)
    store.append_timeline("sess-1", [TimelineSample(CLOCK0 + 5.0, {"client.network.mos": 4.0})])
    store.append_timeline("sess-1", [TimelineSample(CLOCK0 + 5.0, {"client.network.mos": 3.0})])

    (point,) = store.timeline("sess-1")
    assert point.figures == {"client.network.mos": 3.0}


def test_a_timeline_range_keeps_only_samples_inside_it(store: Store) -> None:
    start(store)
    store.append_timeline(
        "sess-1", [TimelineSample(CLOCK0 + t, {"session.elapsed_s": t}) for t in range(0, 60, 5)]
    )

    points = store.timeline("sess-1", from_elapsed=10.0, to_elapsed=20.0)

    assert [p.elapsed for p in points] == [10.0, 15.0, 20.0]


def test_timeline_figures_outside_the_signal_catalogue_are_refused(store: Store) -> None:
    start(store)
    with pytest.raises(StoreError, match="catalogue"):
        store.append_timeline("sess-1", [TimelineSample(CLOCK0, {"client.transcript_words": 12.0})])
    assert store.timeline("sess-1") == []


def test_the_timeline_of_an_unknown_session_raises(store: Store) -> None:
    with pytest.raises(SessionNotFoundError):
        store.timeline("ghost")


# -- the session list ----------------------------------------------------------------------


@pytest.fixture
def five_sessions(store: Store) -> Store:
    """Five sessions, a day apart, oldest first: modes, flags and ends vary."""
    for day, (mode, severities, ended) in enumerate(
        [
            ("full", [], True),
            ("metadata", [Severity.INFO], True),
            ("full", [Severity.WARN, Severity.INFO], True),
            ("metadata", [Severity.ALERT], True),
            ("full", [Severity.WARN], False),
        ]
    ):
        session_id = f"day-{day}"
        start(store, session_id, at=T0 + timedelta(days=day), mode=mode)
        for n, severity in enumerate(severities):
            store.upsert_flag(session_id, make_flag(start=CLOCK0 + 10.0 * n, severity=severity))
        if ended:
            store.record_session_end(
                session_id,
                ended_at=T0 + timedelta(days=day, hours=1),
                summary=SessionSummary(),
            )
    return store


def ids(store: Store, **filters: object) -> list[str]:
    page = store.list_sessions(SessionQuery(**filters))  # type: ignore[arg-type]
    return [s.session_id for s in page.sessions]


def test_sessions_list_newest_first(five_sessions: Store) -> None:
    assert ids(five_sessions) == ["day-4", "day-3", "day-2", "day-1", "day-0"]


def test_sessions_filter_by_start_date_range(five_sessions: Store) -> None:
    found = ids(
        five_sessions, started_from=T0 + timedelta(days=1), started_before=T0 + timedelta(days=3)
    )
    assert found == ["day-2", "day-1"]


def test_sessions_filter_by_mode(five_sessions: Store) -> None:
    assert ids(five_sessions, mode=SessionMode.METADATA) == ["day-3", "day-1"]


def test_sessions_filter_by_minimum_severity(five_sessions: Store) -> None:
    assert ids(five_sessions, min_severity=Severity.WARN) == ["day-4", "day-3", "day-2"]
    assert ids(five_sessions, min_severity=Severity.ALERT) == ["day-3"]


def test_sessions_filter_live_or_ended(five_sessions: Store) -> None:
    assert ids(five_sessions, live=True) == ["day-4"]
    assert "day-4" not in ids(five_sessions, live=False)


def test_an_allow_list_of_session_ids_restricts_the_list(five_sessions: Store) -> None:
    assert ids(five_sessions, session_ids=frozenset({"day-1", "day-3", "other"})) == [
        "day-3",
        "day-1",
    ]
    assert ids(five_sessions, session_ids=frozenset()) == []


def test_sessions_page_with_a_total(five_sessions: Store) -> None:
    page = five_sessions.list_sessions(SessionQuery(limit=2, offset=2))

    assert [s.session_id for s in page.sessions] == ["day-2", "day-1"]
    assert page.total == 5


def test_each_listed_session_counts_its_flags_by_severity(five_sessions: Store) -> None:
    record = five_sessions.get_session("day-2")

    assert record is not None
    assert record.flag_counts == {Severity.INFO: 1, Severity.WARN: 1, Severity.ALERT: 0}
    assert record.unacknowledged_count == 2


def test_sessions_filter_by_unacknowledged_flags(five_sessions: Store) -> None:
    (alert,) = five_sessions.list_flags("day-3")
    five_sessions.acknowledge(alert.key, by=SUPERVISOR, note=None, now=T0 + timedelta(days=9))

    assert ids(five_sessions, unacknowledged=True) == ["day-4", "day-2", "day-1"]


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (501, 0), (10, -1)])
def test_an_out_of_range_page_is_refused(store: Store, limit: int, offset: int) -> None:
    with pytest.raises(StoreError, match="limit"):
        store.list_sessions(SessionQuery(limit=limit, offset=offset))


# -- acknowledgement and audit --------------------------------------------------------------


def test_acknowledging_a_flag_records_who_when_and_the_note_with_an_audit_row(
    store: Store,
) -> None:
    start(store)
    key = store.upsert_flag("sess-1", make_flag())
    when = T0 + timedelta(days=1)

    acknowledged = store.acknowledge(key, by=SUPERVISOR, note="Discussed in supervision", now=when)

    assert acknowledged.acknowledgement is not None
    assert acknowledged.acknowledgement.by == "acct-7f3a"
    assert acknowledged.acknowledgement.note == "Discussed in supervision"
    assert acknowledged.acknowledgement.at == when
    assert store.list_flags("sess-1")[0].acknowledgement == acknowledged.acknowledgement
    (entry,) = store.list_audit()
    assert (entry.action, entry.actor, entry.at) == (AuditAction.ACK, SUPERVISOR, when)
    assert entry.resource == f"flag/{key}"
    assert entry.session_id == "sess-1"


def test_acknowledging_an_unknown_flag_raises_and_audits_nothing(store: Store) -> None:
    with pytest.raises(FlagNotFoundError):
        store.acknowledge("0" * 32, by=SUPERVISOR, note=None, now=T0)
    assert store.list_audit() == []


def test_an_acknowledgement_whose_audit_row_fails_is_rolled_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(store)
    key = store.upsert_flag("sess-1", make_flag())
    real_audit_row = repository._audit_row

    def broken_audit_row(*args: object) -> object:
        row = real_audit_row(*args)  # type: ignore[arg-type]
        row.action = "tamper"  # violates the CHECK constraint when inserted
        return row

    monkeypatch.setattr(repository, "_audit_row", broken_audit_row)
    with pytest.raises(IntegrityError):
        store.acknowledge(key, by=SUPERVISOR, note="lost", now=T0)

    assert store.list_flags("sess-1")[0].acknowledgement is None


def test_acknowledging_again_replaces_the_note_and_both_acts_stay_in_the_audit(
    store: Store,
) -> None:
    start(store)
    key = store.upsert_flag("sess-1", make_flag())
    store.acknowledge(key, by=SUPERVISOR, note="first", now=T0 + timedelta(hours=1))
    other = Actor(subject="acct-0b11", role="supervisor")
    store.acknowledge(key, by=other, note="second", now=T0 + timedelta(hours=2))

    (stored,) = store.list_flags("sess-1")
    assert stored.acknowledgement is not None
    assert (stored.acknowledgement.by, stored.acknowledgement.note) == ("acct-0b11", "second")
    assert [e.actor for e in store.list_audit()] == [other, SUPERVISOR]


def test_a_flag_rewritten_after_acknowledgement_stays_acknowledged(store: Store) -> None:
    start(store)
    key = store.upsert_flag("sess-1", make_flag())
    store.acknowledge(key, by=SUPERVISOR, note="seen", now=T0 + timedelta(hours=1))

    store.upsert_flag("sess-1", make_flag(end=CLOCK0 + 90.0))

    (stored,) = store.list_flags("sess-1")
    assert stored.acknowledgement is not None
    assert stored.acknowledgement.note == "seen"


def test_an_overlong_note_is_refused(store: Store) -> None:
    start(store)
    key = store.upsert_flag("sess-1", make_flag())
    with pytest.raises(StoreError, match="note"):
        store.acknowledge(key, by=SUPERVISOR, note="x" * 2001, now=T0)


def test_views_and_exports_are_audited_newest_first_and_by_session(store: Store) -> None:
    start(store, "sess-1")
    start(store, "sess-2")
    store.record_view(by=SUPERVISOR, resource="sessions", now=T0 + timedelta(minutes=1))
    store.record_view(
        by=SUPERVISOR, resource="session/sess-1", session_id="sess-1",
        now=T0 + timedelta(minutes=2),
    )  # fmt: skip
    store.record_export(
        by=SUPERVISOR, resource="session/sess-2/flags.csv", session_id="sess-2",
        now=T0 + timedelta(minutes=3),
    )  # fmt: skip

    everything = store.list_audit()
    about_sess_1 = store.list_audit(session_id="sess-1")
    recent = store.list_audit(since=T0 + timedelta(minutes=2))

    assert [e.action for e in everything] == [
        AuditAction.EXPORT,
        AuditAction.VIEW,
        AuditAction.VIEW,
    ]
    assert [e.resource for e in about_sess_1] == ["session/sess-1"]
    assert len(recent) == 2


def test_an_audit_row_needs_a_subject(store: Store) -> None:
    with pytest.raises(StoreError, match="subject"):
        store.record_view(by=Actor(subject=" ", role="supervisor"), resource="sessions", now=T0)


# -- concurrency ----------------------------------------------------------------------------


def test_writers_in_several_threads_share_one_store_and_lose_nothing(store: Store) -> None:
    start(store)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for n in range(15):
                store.upsert_flag("sess-1", make_flag(start=CLOCK0 + worker * 100 + n))
                store.upsert_flag("sess-1", make_flag(start=CLOCK0 + n))  # all workers race here
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(store.list_flags("sess-1")) == 4 * 15 + 15
