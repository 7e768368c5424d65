"""Schema migrations with Alembic, configured from Python: no alembic.ini needed.

Theory of operation: the migration scripts ship inside the package
(``monitor/store/migrations/``: ``env.py``, ``script.py.mako``, ``versions/*.py``; the
package data patterns in pyproject.toml carry the non-Python files), and
``upgrade(engine)`` builds an Alembic ``Config`` in memory that points at them, so an
installed feltsafe migrates its database from any working directory.

``Store.open`` calls ``upgrade`` on every start. The whole upgrade runs in one
transaction that first takes the database's write lock (``BEGIN IMMEDIATE`` on SQLite,
a transaction-scoped advisory lock on PostgreSQL), so two workers starting at once
migrate once, one after the other. When the database already sits at ``HEAD_REVISION``
the upgrade is a single SELECT and Alembic is not even imported, which keeps a CLI
start cheap; a test checks ``HEAD_REVISION`` against the scripts.

For developers::

    python -m monitor.store.migrate upgrade --db URL    # what Store.open does
    python -m monitor.store.migrate current --db URL
    python -m monitor.store.migrate revision -m "add x" # autogenerate a new script

After writing a new revision, set ``HEAD_REVISION`` to its id.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect, text

from monitor.store.engine import DEFAULT_URL, WRITE_OPTION, create_store_engine
from monitor.store.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")
HEAD_REVISION = "0001"
VERSION_TABLE = "alembic_version"
# Any fixed 64-bit number: PostgreSQL advisory locks are named by integers.
_PG_MIGRATION_LOCK = 0x6665_6C74_7361_6665  # "feltsafe"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    from alembic.config import Config  # noqa: PLC0415 (only when a migration must run)

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    return connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (default: the newest), idempotently."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            if revision == "head" and current_revision(connection) == HEAD_REVISION:
                return
            _run_alembic(connection, revision)


def _run_alembic(connection: Connection, revision: str) -> None:
    from alembic import command  # noqa: PLC0415
    from alembic.util import CommandError  # noqa: PLC0415

    try:
        command.upgrade(alembic_config(connection), revision)
    except CommandError as exc:
        found = current_revision(connection)
        raise StoreError(
            f"cannot migrate the store from revision {found!r} to {revision!r}: {exc}"
            " (is the database from a newer feltsafe?)"
        ) from exc


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command  # noqa: PLC0415

    with engine.connect() as connection:
        connection.execution_options(**{WRITE_OPTION: True})
        with connection.begin():
            command.downgrade(alembic_config(connection), revision)


def _make_revision(message: str) -> None:
    """Autogenerate a script: diff the models against a scratch SQLite at head."""
    from alembic import command  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/scratch.db"
        engine = create_store_engine(url)
        try:
            upgrade(engine)
        finally:
            engine.dispose()
        command.revision(alembic_config(url=url), message=message, autogenerate=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.store.migrate")
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("upgrade", "current"):
        sub.add_parser(action).add_argument("--db", default=DEFAULT_URL, metavar="URL")
    sub.add_parser("revision").add_argument("-m", "--message", required=True)
    args = parser.parse_args(argv)
    if args.action == "revision":
        _make_revision(args.message)
        return 0
    engine = create_store_engine(args.db)
    try:
        if args.action == "upgrade":
            upgrade(engine)
        with engine.connect() as connection:
            print(current_revision(connection))
    finally:
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
