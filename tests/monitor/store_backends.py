"""The two store backends the store tests run on: an SQLite file and a real PostgreSQL.

PostgreSQL: a throwaway cluster in a temporary directory, started once per test run on
127.0.0.1 and a free port, stopped (and deleted) when pytest exits. initdb refuses to
run as root, so as root the server runs as the ``postgres`` OS user (Debian's package
creates it). fsync is off: durability is tested on SQLite (test_crash.py); here we test
that the same code path gives the same answers.

Speed: a migrated store is what most tests want, and migrating (or CREATE DATABASE,
about 0.4 s here) per test would dominate the run. So the schema is migrated once per
run: SQLite tests get a copy of a migrated file, PostgreSQL tests share one migrated
database that is emptied (TRUNCATE) before each test. Tests that need a database
without the schema (migration tests) get a brand-new one.

Where the binaries are missing, the PostgreSQL variants skip with the reason, except
under CI (the ``CI`` environment variable set), where they fail: CI installs
``postgresql`` from .ci/debian-packages, so missing binaries there are a broken set-up,
not something to pass over.

Test modules define their own small fixtures on top of ``store_url`` (no conftest.py,
which other parts of the suite share).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from monitor.store import Store

BACKENDS = ("sqlite", "postgresql")
SHARED = "feltsafe_shared"
TABLES = ("sessions", "flags", "timeline", "audit")
_POSTGRES_USER = "postgres"


def _find_bindir() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PostgresCluster:
    bindir: Path
    root: Path
    port: int = 0
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *argv: str) -> None:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _POSTGRES_USER, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(_POSTGRES_USER)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync", "--no-instructions")  # fmt: skip
        for _attempt in range(3):
            self.port = _free_port()
            options = f"-k {self.root} -p {self.port} -h 127.0.0.1 -F"
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"),
                          "-o", options, "-w", "-t", "30", "start")  # fmt: skip
                break
            except subprocess.CalledProcessError:
                continue  # the port was taken between probe and bind: try another
        else:
            log = (self.root / "log").read_text(errors="replace")
            raise RuntimeError(f"PostgreSQL did not start:\n{log}")
        self._admin(f"CREATE DATABASE {SHARED}")
        Store.open(self.url(SHARED)).close()  # migrate once; tests share it

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, FileNotFoundError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str, database: str = "postgres") -> None:
        conninfo = f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(sql)

    def emptied_shared_database(self) -> str:
        """The shared migrated database, with every table of the store emptied."""
        tables = ", ".join(sorted(TABLES))
        self._admin(
            f"SET lock_timeout = '10s'; TRUNCATE {tables} RESTART IDENTITY", database=SHARED
        )
        return SHARED

    def fresh_database(self) -> str:
        name = f"feltsafe_test_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_cluster: PostgresCluster | None = None


def postgres_cluster(config: pytest.Config) -> PostgresCluster:
    """The run's PostgreSQL cluster, started on first use; skip (or fail in CI) if none."""
    global _cluster  # noqa: PLW0603 (one cluster per test run, shared by modules)
    if _cluster is not None:
        return _cluster
    bindir = _find_bindir()
    if bindir is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the PostgreSQL variant must run)")
        pytest.skip(reason)
    cluster = PostgresCluster(bindir, Path(tempfile.mkdtemp(prefix="feltsafe-pg-")))
    config.add_cleanup(cluster.stop)
    cluster.start()
    _cluster = cluster
    return cluster


_sqlite_template: Path | None = None


def _migrated_sqlite_file(config: pytest.Config) -> Path:
    global _sqlite_template  # noqa: PLW0603 (one template file per test run)
    if _sqlite_template is None:
        root = Path(tempfile.mkdtemp(prefix="feltsafe-sqlite-"))
        config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
        template = root / "template.db"
        Store.open(f"sqlite:///{template}").close()
        # The last connection's close checkpoints the WAL into the file and removes it.
        assert not template.with_name("template.db-wal").exists()
        _sqlite_template = template
    return _sqlite_template


@contextlib.contextmanager
def store_url(
    backend: str, tmp_path: Path, config: pytest.Config, *, migrated: bool = True
) -> Iterator[str]:
    """A URL to an empty store on ``backend``, its schema in place unless ``migrated``
    is False (then the database has no tables at all)."""
    if backend == "sqlite":
        path = tmp_path / "feltsafe.db"
        if migrated:
            shutil.copyfile(_migrated_sqlite_file(config), path)
        yield f"sqlite:///{path}"
        return
    cluster = postgres_cluster(config)
    if migrated:
        yield cluster.url(cluster.emptied_shared_database())
        return
    name = cluster.fresh_database()
    try:
        yield cluster.url(name)
    finally:
        cluster.drop_database(name)
