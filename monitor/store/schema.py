"""The flag store's tables, as typed SQLAlchemy 2 ORM models.

Theory of operation: four tables, derived numbers only (DESIGN.md, non-negotiable 1).

- ``sessions``: one row per monitored session, keyed by the monitor's opaque session id
  (never a person's name), with start, end, mode, profile and the end-of-session summary
  figures as typed columns (per role: talk share, interruptions made, freezes, MOS
  percentiles).
- ``flags``: one row per rule firing, keyed by ``Flag.key(session_id)``. Writes are
  upserts on that key, so a replay or a retried write never adds a second row.
- ``timeline``: sampled figures per session (about one sample every 5 s) for the review
  page's charts; primary key (session, elapsed), so a re-sent sample replaces itself.
- ``audit``: append-only log of who viewed, acknowledged, exported or purged what. It
  has no foreign key to ``sessions`` on purpose: the record of who looked at a session
  outlives the session's own retention. The initial migration also installs a trigger
  that refuses any UPDATE of an audit row, on both SQLite and PostgreSQL.

Times: ``UTCDateTime`` stores timezone-aware UTC on both backends (``timestamptz`` on
PostgreSQL; an ISO string in UTC on SQLite, which compares correctly as text) and always
hands back aware UTC datetimes. There is no binary column anywhere, and a test keeps it
that way.

Migrations (monitor/store/migrations/versions/) are written by hand from these models;
a test runs them and asserts Alembic's ``compare_metadata`` finds no difference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from monitor.store.errors import StoreError

# Stable constraint names, so migrations can address them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SESSION_ID_LENGTH = 64
FLAG_KEY_LENGTH = 64
SUBJECT_LENGTH = 128


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC, refused when naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise StoreError(f"naive datetime {value.isoformat()}: pass a timezone-aware time")
        value = value.astimezone(UTC)
        # SQLite stores the text form without an offset: make it UTC first, then drop it.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 (SQLAlchemy's own class attribute)
        datetime: UTCDateTime(),
        float: Double(),
    }


class SessionRow(Base):
    __tablename__ = "sessions"
    __table_args__ = (
        CheckConstraint("mode IN ('full', 'metadata')", name="mode"),
        Index(None, "started_at"),
        Index(None, "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(SESSION_ID_LENGTH), primary_key=True)
    started_at: Mapped[datetime]
    clock_at_start: Mapped[float]
    ended_at: Mapped[datetime | None]
    duration: Mapped[float | None]
    mode: Mapped[str] = mapped_column(String(16))
    profile: Mapped[str | None] = mapped_column(String(32))

    therapist_talk_share: Mapped[float | None]
    therapist_interruptions_count: Mapped[int | None]
    therapist_freeze_count: Mapped[int | None]
    therapist_freeze_duration: Mapped[float | None]
    therapist_mos_p10: Mapped[float | None]
    therapist_mos_p50: Mapped[float | None]
    therapist_mos_p90: Mapped[float | None]

    client_talk_share: Mapped[float | None]
    client_interruptions_count: Mapped[int | None]
    client_freeze_count: Mapped[int | None]
    client_freeze_duration: Mapped[float | None]
    client_mos_p10: Mapped[float | None]
    client_mos_p50: Mapped[float | None]
    client_mos_p90: Mapped[float | None]


class FlagRow(Base):
    __tablename__ = "flags"
    __table_args__ = (
        CheckConstraint("severity IN ('info', 'warn', 'alert')", name="severity"),
        Index(None, "session_id", "start_clock"),
    )

    key: Mapped[str] = mapped_column(String(FLAG_KEY_LENGTH), primary_key=True)
    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_LENGTH), ForeignKey("sessions.id", ondelete="CASCADE")
    )
    rule_id: Mapped[str] = mapped_column(String(128))
    rule_version: Mapped[int] = mapped_column(Integer)
    start_clock: Mapped[float]
    end_clock: Mapped[float | None]
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    severity: Mapped[str] = mapped_column(String(8))
    audience: Mapped[list[str]] = mapped_column(JSON)
    undermines: Mapped[list[str]] = mapped_column(JSON)
    title: Mapped[str] = mapped_column(String(256))
    message: Mapped[str | None] = mapped_column(Text)
    hint: Mapped[str | None] = mapped_column(Text)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    acknowledged_at: Mapped[datetime | None]
    ack_by: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH))
    ack_note: Mapped[str | None] = mapped_column(Text)


class TimelineRow(Base):
    __tablename__ = "timeline"

    session_id: Mapped[str] = mapped_column(
        String(SESSION_ID_LENGTH),
        ForeignKey("sessions.id", ondelete="CASCADE"),
        primary_key=True,
    )
    elapsed: Mapped[float] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)


class AuditRow(Base):
    __tablename__ = "audit"
    __table_args__ = (
        CheckConstraint("action IN ('view', 'ack', 'export', 'purge')", name="action"),
        Index(None, "at"),
        Index(None, "session_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor_subject: Mapped[str] = mapped_column(String(SUBJECT_LENGTH))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16))
    resource: Mapped[str] = mapped_column(String(256))
    session_id: Mapped[str | None] = mapped_column(String(SESSION_ID_LENGTH))
