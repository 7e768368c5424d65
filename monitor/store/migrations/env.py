"""Alembic environment of the flag store.

Run through monitor.store.migrate, which hands over an open connection (already inside
the transaction that holds the migration lock) in ``config.attributes["connection"]``.
Given only ``sqlalchemy.url`` instead (``revision --autogenerate``, offline SQL), it
builds its own engine with the store's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from monitor.store.engine import create_store_engine
from monitor.store.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things: autogenerate batch (copy-and-move) operations.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no connection and no sqlalchemy.url: use monitor.store.migrate")
    engine = create_store_engine(url)
    try:
        with engine.connect() as own_connection:
            _configure_and_run(own_connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
