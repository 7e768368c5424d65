"""The store's engine: SQLite durability settings, URL handling, locking, cascades."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from alerts.model import Audience, Flag, Severity
from monitor.store import Store, StoreError, engine
from monitor.store.engine import BUSY_TIMEOUT_MS, parse_url
from tests.monitor import store_backends

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def a_flag(start: float = 1.0) -> Flag:
    return Flag(
        rule_id="network.poor_mos", rule_version=1, start=start, end=None,
        severity=Severity.WARN, audience=frozenset({Audience.OPS}), undermines=frozenset(),
        title="Poor network",
    )  # fmt: skip


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'feltsafe.db'}") as store:
        store.record_session_start("s", started_at=T0, clock_at_start=0.0, mode="full")
        yield store


def test_a_sqlite_store_uses_wal_full_sync_foreign_keys_and_a_busy_timeout(
    sqlite_store: Store,
) -> None:
    with sqlite_store.engine.connect() as connection:
        pragma = {
            name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }

    assert pragma == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": BUSY_TIMEOUT_MS,
    }


def test_a_write_waits_for_another_writers_lock_instead_of_failing(
    sqlite_store: Store, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "feltsafe.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    outcome: list[object] = []
    writer = threading.Thread(
        target=lambda: outcome.append(sqlite_store.upsert_flag("s", a_flag()))
    )
    writer.start()
    writer.join(timeout=0.3)
    blocked_while_locked = writer.is_alive()
    other.execute("COMMIT")
    other.close()
    writer.join(timeout=10)

    assert blocked_while_locked
    assert len(outcome) == 1  # the write returned its key: no "database is locked"
    assert len(sqlite_store.list_flags("s")) == 1


@pytest.fixture(params=store_backends.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with (
        store_backends.store_url(request.param, tmp_path, request.config) as url,
        Store.open(url) as opened,
    ):
        yield opened


def test_deleting_a_session_row_cascades_to_its_flags_and_timeline(store: Store) -> None:
    store.record_session_start("s", started_at=T0, clock_at_start=0.0, mode="full")
    store.upsert_flag("s", a_flag())
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM sessions WHERE id = 's'"))
        flags = connection.execute(text("SELECT COUNT(*) FROM flags")).scalar()

    assert flags == 0


def test_a_plain_postgresql_url_means_psycopg_3() -> None:
    assert parse_url("postgresql://feltsafe@db.internal/feltsafe").drivername == (
        "postgresql+psycopg"
    )
    assert parse_url("postgresql+psycopg://db/feltsafe").drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_sqlite_store_is_refused(url: str) -> None:
    with pytest.raises(StoreError, match="needs a file"):
        parse_url(url)


def test_an_unsupported_database_is_refused_without_showing_its_password() -> None:
    with pytest.raises(StoreError, match="unsupported database") as error:
        parse_url("mysql://feltsafe:hunter2-secret@db/feltsafe")
    assert "hunter2" not in str(error.value)


def test_text_postgresql_cannot_hold_is_refused_on_every_backend(store: Store) -> None:
    store.record_session_start("s", started_at=T0, clock_at_start=0.0, mode="full")
    for title in ("nul \x00 byte", "lone \ud800 surrogate"):
        with pytest.raises(StoreError, match="title"):
            store.upsert_flag("s", dataclasses.replace(a_flag(), title=title))


class LockedCursor:
    """A cursor whose database is locked for the first ``locked_for`` statements."""

    def __init__(self, locked_for: int, mode: str = "delete", error: str = "database is locked"):
        self.locked_for, self.mode, self.error = locked_for, mode, error
        self.statements: list[str] = []

    def execute(self, sql: str) -> LockedCursor:
        self.statements.append(sql)
        if len(self.statements) <= self.locked_for:
            raise sqlite3.OperationalError(self.error)
        if sql.endswith("= WAL"):
            self.mode = "wal"
        return self

    def fetchone(self) -> tuple[str]:
        return (self.mode,)


def test_switching_to_wal_retries_while_another_connection_holds_the_file() -> None:
    cursor = LockedCursor(locked_for=2)

    assert engine._enable_wal(cursor) == "wal"
    assert cursor.statements[-1] == "PRAGMA journal_mode = WAL"


def test_a_file_already_in_wal_is_left_alone() -> None:
    cursor = LockedCursor(locked_for=0, mode="wal")

    assert engine._enable_wal(cursor) == "wal"
    assert cursor.statements == ["PRAGMA journal_mode"]


def test_switching_to_wal_gives_up_after_the_busy_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 30)

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        engine._enable_wal(LockedCursor(locked_for=10_000))


def test_other_errors_while_switching_to_wal_are_not_retried() -> None:
    cursor = LockedCursor(locked_for=1, error="disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk"):
        engine._enable_wal(cursor)
    assert len(cursor.statements) == 1
