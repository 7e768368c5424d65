"""The flag writer behind the rules sink: ordered, retried, bounded, drained on close."""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import exc as sa_exc

from alerts.model import Audience, Flag, SafetyElement, Severity
from monitor.flag_writer import FlagWriter, is_transient
from monitor.store import SessionSummary, Store
from monitor.store.errors import SessionNotFoundError
from tests.monitor.flag_fakes import RecordingStore

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def flag(start: float, *, end: float | None = None) -> Flag:
    return Flag(
        rule_id="therapist_video_frozen",
        rule_version=1,
        start=start,
        end=end,
        severity=Severity.WARN,
        audience=frozenset({Audience.SUPERVISOR}),
        undermines=frozenset({SafetyElement.TRUST}),
        title="The therapist's picture froze",
        evidence={"therapist.video.freeze_s": 1.5},
        context={"speaking": "therapist", "session.disclosure": False},
    )


def locked() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("UPSERT ...", {}, sqlite3.OperationalError("locked"))


def test_a_locked_database_is_retried_until_the_write_lands() -> None:
    fake = RecordingStore(failures=[locked(), locked()])
    writer = FlagWriter(fake, retry_delays=(0.0, 0.0, 0.0))
    writer.flag("s1", flag(1.0))
    assert writer.close(timeout=5)
    assert fake.of("flag") == [flag(1.0)]
    assert fake.attempts == 3
    assert (writer.written_count, writer.retried_count, writer.failed_count) == (1, 2, 0)


def test_a_write_the_store_refuses_is_not_retried_and_the_next_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = RecordingStore(failures=[SessionNotFoundError("secret-room")])
    writer = FlagWriter(fake, retry_delays=(0.0, 0.0))
    with caplog.at_level(logging.ERROR, logger="monitor.flag_writer"):
        writer.flag("secret-room", flag(1.0))
        writer.flag("secret-room", flag(2.0))
        assert writer.close(timeout=5)
    assert fake.attempts == 2
    assert fake.of("flag") == [flag(2.0)]
    assert writer.failed_count == 1
    assert "SessionNotFoundError" in caplog.text
    assert "secret-room" not in caplog.text  # no session id in the logs


def test_a_store_down_for_good_gives_up_after_the_retries() -> None:
    fake = RecordingStore(failures=[locked()] * 10)
    writer = FlagWriter(fake, retry_delays=(0.0, 0.0))
    writer.flag("s1", flag(1.0))
    assert writer.close(timeout=5)
    assert (fake.attempts, writer.failed_count, writer.written_count) == (3, 1, 0)


def test_only_database_trouble_counts_as_transient() -> None:
    assert is_transient(locked())
    assert is_transient(sa_exc.TimeoutError("pool exhausted"))
    assert not is_transient(sa_exc.IntegrityError("INSERT", {}, Exception("dup")))
    assert not is_transient(SessionNotFoundError("s1"))
    assert not is_transient(ValueError("bug"))


def test_a_full_queue_drops_and_counts_instead_of_blocking() -> None:
    gate = threading.Event()
    fake = RecordingStore(gate=gate, gate_timeout=20.0)
    writer = FlagWriter(fake, capacity=3)
    accepted = [writer.flag("s1", flag(float(i))) for i in range(10)]
    # One write is in the store (held at the gate), three wait in the queue; the rest
    # were refused at once.
    assert accepted.count(True) in (3, 4)
    assert writer.dropped_count == accepted.count(False)
    gate.set()
    assert writer.close(timeout=5)
    assert len(fake.of("flag")) == accepted.count(True)


def test_close_drains_every_queued_write_in_order(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'flags.db'}")
    try:
        writer = FlagWriter(store)
        writer.session_started("s1", started_at=T0, clock_at_start=100.0, mode="full")
        for i in range(20):
            writer.flag("s1", flag(100.0 + i))
            writer.flag("s1", flag(100.0 + i, end=100.5 + i))
        writer.session_ended("s1", ended_at=T0.replace(minute=5), summary=SessionSummary())
        assert writer.close(timeout=20)
        assert not writer.flag("s1", flag(999.0))  # after close: dropped, not raised
        stored = store.list_flags("s1")
        assert len(stored) == 20
        assert all(s.flag.end == s.flag.start + 0.5 for s in stored)
        record = store.get_session("s1")
        assert record is not None
        assert record.duration == 300.0
    finally:
        store.close()


def test_flush_waits_for_what_was_submitted() -> None:
    fake = RecordingStore()
    writer = FlagWriter(fake)
    for i in range(20):
        writer.flag("s1", flag(float(i)))
    assert writer.flush(timeout=5)
    assert len(fake.of("flag")) == 20
    assert writer.pending == 0
    assert writer.close(timeout=5)
