"""One SQLAlchemy engine for either backend: an SQLite file or PostgreSQL.

Theory of operation: everything backend-specific about the store lives here, so the
repository has one code path.

SQLite (the embedded default, ``sqlite:///./feltsafe.db``, always a file):
- ``journal_mode=WAL``: readers (the review UI) never block the flag writer.
- ``synchronous=FULL``: in WAL mode every commit fsyncs the log, so a commit that has
  returned survives a kill -9 and a power cut (https://www.sqlite.org/pragma.html#pragma_synchronous).
  NORMAL would be faster but may lose the last commits on power loss.
- ``foreign_keys=ON``: off by default in SQLite; the cascades depend on it.
- ``busy_timeout``: a writer waits for another's lock instead of failing at once.
- Transactions: Python's sqlite3 module (3.11) starts transactions lazily and not for
  SELECT, which breaks read-then-write atomicity. We switch that off and emit BEGIN
  ourselves (SQLAlchemy's documented recipe); a connection marked ``feltsafe_write``
  begins with ``BEGIN IMMEDIATE``, taking the write lock up front so two writers wait
  on the busy timeout rather than deadlock on a lock upgrade (SQLITE_BUSY).

PostgreSQL (by URL): ``postgresql://`` is taken to mean psycopg 3
(``postgresql+psycopg://``), the driver feltsafe installs. Default READ COMMITTED
isolation is enough: every write is a single upsert or a short transaction.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from monitor.store.errors import StoreError

DEFAULT_URL = "sqlite:///./feltsafe.db"
BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "feltsafe_write"


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StoreError("the SQLite store needs a file: sqlite:///PATH")
        return parsed
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            return parsed.set(drivername="postgresql+psycopg")
        return parsed
    shown = parsed.render_as_string(hide_password=True)
    raise StoreError(f"unsupported database {shown}: use sqlite:///FILE or postgresql://...")


def create_store_engine(url: str) -> Engine:
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (_sqlite_on_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        journal_mode = _enable_wal(cursor)
        if journal_mode != "wal":
            raise StoreError(f"SQLite refused WAL mode (got {journal_mode!r}): use a local disk")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> str:
    """Switch the file to WAL once; wait out a concurrent switch.

    Several workers creating a new store together race on this switch, and SQLite may
    answer "database is locked" at once instead of waiting out the busy timeout (seen
    here with three threads opening one new file): retry until the busy timeout.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            (mode,) = cursor.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                (mode,) = cursor.execute("PRAGMA journal_mode = WAL").fetchone()
            return str(mode).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_on_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
