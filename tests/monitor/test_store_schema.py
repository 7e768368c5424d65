"""The store's schema: migrations, the models, the content rule, the append-only audit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import LargeBinary, PickleType, inspect, text
from sqlalchemy.exc import DBAPIError

from monitor.store import Store, StoreError
from monitor.store.engine import create_store_engine
from monitor.store.migrate import HEAD_REVISION, alembic_config, downgrade, upgrade
from monitor.store.schema import Base
from tests.monitor import store_backends

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"sessions", "flags", "timeline", "audit"}
WORKERS = 3


@pytest.fixture(params=store_backends.BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all."""
    with store_backends.store_url(request.param, tmp_path, request.config, migrated=False) as url:
        yield url


def schema_differences(url: str) -> list[object]:
    engine = create_store_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_the_migrated_schema_is_exactly_the_models(empty_url: str) -> None:
    Store.open(empty_url).close()

    assert schema_differences(empty_url) == []


def test_comparing_a_schema_that_misses_a_column_does_find_it(empty_url: str) -> None:
    # The check above can fail: drop a column behind the models' back and it is noticed.
    Store.open(empty_url).close()
    engine = create_store_engine(empty_url)
    with engine.begin() as connection:
        connection.execute(text("ALTER TABLE sessions DROP COLUMN profile"))
    engine.dispose()

    assert schema_differences(empty_url) != []


def test_opening_a_new_database_creates_every_table_at_the_head_revision(empty_url: str) -> None:
    Store.open(empty_url).close()
    Store.open(empty_url).close()  # a second open is a no-op upgrade

    engine = create_store_engine(empty_url)
    with engine.connect() as connection:
        assert set(inspect(connection).get_table_names()) == TABLES | {"alembic_version"}
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    assert revision == HEAD_REVISION


def test_head_revision_constant_names_the_newest_script() -> None:
    scripts = ScriptDirectory.from_config(alembic_config())

    assert scripts.get_current_head() == HEAD_REVISION


def test_downgrading_to_base_removes_everything_and_upgrading_restores_it(empty_url: str) -> None:
    engine = create_store_engine(empty_url)
    try:
        upgrade(engine)
        downgrade(engine, "base")
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
        upgrade(engine)
    finally:
        engine.dispose()

    assert schema_differences(empty_url) == []


def test_a_database_from_a_newer_feltsafe_is_refused_with_a_clear_error(empty_url: str) -> None:
    Store.open(empty_url).close()
    engine = create_store_engine(empty_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(StoreError, match="newer feltsafe"):
        Store.open(empty_url)


def test_two_workers_opening_a_new_database_at_once_both_succeed(empty_url: str) -> None:
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            Store.open(empty_url).close()
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    # Creating the file races on switching it to WAL mode (see engine._enable_wal).
    workers = [threading.Thread(target=open_store) for _ in range(WORKERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert errors == []
    assert schema_differences(empty_url) == []


# -- content rule -------------------------------------------------------------------------


def test_no_model_column_can_hold_bytes() -> None:
    for table in Base.metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, LargeBinary | PickleType), column
            assert column.type.python_type is not bytes, column


def test_no_column_of_the_migrated_database_is_binary(empty_url: str) -> None:
    Store.open(empty_url).close()
    engine = create_store_engine(empty_url)
    with engine.connect() as connection:
        inspector = inspect(connection)
        types = {
            f"{table}.{column['name']}": str(column["type"]).upper()
            for table in TABLES
            for column in inspector.get_columns(table)
        }
    engine.dispose()

    assert len(types) >= 40
    assert not {
        name: t for name, t in types.items() if "BLOB" in t or "BYTEA" in t or "BINARY" in t
    }


# -- append-only audit ------------------------------------------------------------------------


def test_the_database_itself_refuses_to_update_an_audit_row(empty_url: str) -> None:
    Store.open(empty_url).close()
    engine = create_store_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO audit (at, actor_subject, actor_role, action, resource)"
                    " VALUES (:at, 'acct-1', 'supervisor', 'view', 'sessions')"
                ),
                {"at": "2026-03-02 09:00:00"},
            )
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text("UPDATE audit SET actor_subject = 'someone-else'"))
        with engine.connect() as connection:
            subject = connection.execute(text("SELECT actor_subject FROM audit")).scalar()
    finally:
        engine.dispose()

    assert subject == "acct-1"


# -- packaging -------------------------------------------------------------------------------


@pytest.mark.slow
def test_an_installed_wheel_finds_and_runs_its_migrations(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("probes", "alerts", "monitor", "dashboards"):
        shutil.copytree(ROOT / package, source / package, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), "."],
        cwd=source, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("feltsafe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for packaged in (
        "monitor/store/migrations/env.py",
        "monitor/store/migrations/script.py.mako",
        "monitor/store/migrations/versions/0001_initial_schema.py",
    ):
        assert packaged in names

    target = tmp_path / "site"
    subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    script = (
        "import monitor.store, sys\n"
        "from monitor.store import Store\n"
        "Store.open('sqlite:///elsewhere.db').close()\n"
        "print(monitor.store.__file__)\n"
    )
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=elsewhere, env=env,
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert result.stdout.strip().startswith(str(target))
    assert (elsewhere / "elsewhere.db").exists()
    assert schema_differences(f"sqlite:///{elsewhere / 'elsewhere.db'}") == []
