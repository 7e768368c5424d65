"""Initial schema: sessions, flags, timeline, and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27

Written from monitor/store/schema.py (a test asserts Alembic's compare_metadata finds no
difference after this runs). Times are ``DateTime(timezone=True)`` here, which is what
the models' ``UTCDateTime`` decorator stores. Beyond the models: a trigger on each
backend refuses UPDATE on ``audit``, so the log is append-only in the database itself,
not only in the repository's API (rows leave only through retention purges).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT_APPEND_ONLY_SQLITE = """
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END
"""

_AUDIT_APPEND_ONLY_POSTGRESQL = (
    """
CREATE FUNCTION feltsafe_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END
$$
""",
    """
CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
FOR EACH ROW EXECUTE FUNCTION feltsafe_audit_append_only()
""",
)


def upgrade() -> None:
    utc = sa.DateTime(timezone=True)
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("started_at", utc, nullable=False),
        sa.Column("clock_at_start", sa.Double(), nullable=False),
        sa.Column("ended_at", utc, nullable=True),
        sa.Column("duration", sa.Double(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("profile", sa.String(length=32), nullable=True),
        *(
            column
            for role in ("therapist", "client")
            for column in (
                sa.Column(f"{role}_talk_share", sa.Double(), nullable=True),
                sa.Column(f"{role}_interruptions_count", sa.Integer(), nullable=True),
                sa.Column(f"{role}_freeze_count", sa.Integer(), nullable=True),
                sa.Column(f"{role}_freeze_duration", sa.Double(), nullable=True),
                sa.Column(f"{role}_mos_p10", sa.Double(), nullable=True),
                sa.Column(f"{role}_mos_p50", sa.Double(), nullable=True),
                sa.Column(f"{role}_mos_p90", sa.Double(), nullable=True),
            )
        ),
        sa.CheckConstraint("mode IN ('full', 'metadata')", name=op.f("ck_sessions_mode")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_started_at"), "sessions", ["started_at"])
    op.create_index(op.f("ix_sessions_ended_at"), "sessions", ["ended_at"])

    op.create_table(
        "flags",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("rule_version", sa.Integer(), nullable=False),
        sa.Column("start_clock", sa.Double(), nullable=False),
        sa.Column("end_clock", sa.Double(), nullable=True),
        sa.Column("start_at", utc, nullable=False),
        sa.Column("end_at", utc, nullable=True),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("audience", sa.JSON(), nullable=False),
        sa.Column("undermines", sa.JSON(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("hint", sa.Text(), nullable=True),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("acknowledged_at", utc, nullable=True),
        sa.Column("ack_by", sa.String(length=128), nullable=True),
        sa.Column("ack_note", sa.Text(), nullable=True),
        sa.CheckConstraint("severity IN ('info', 'warn', 'alert')", name=op.f("ck_flags_severity")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_flags_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_flags")),
    )
    op.create_index(op.f("ix_flags_session_id_start_clock"), "flags", ["session_id", "start_clock"])

    op.create_table(
        "timeline",
        sa.Column("session_id", sa.String(length=64), nullable=False),
        sa.Column("elapsed", sa.Double(), nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_timeline_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "elapsed", name=op.f("pk_timeline")),
    )

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", utc, nullable=False),
        sa.Column("actor_subject", sa.String(length=128), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("resource", sa.String(length=256), nullable=False),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.CheckConstraint(
            "action IN ('view', 'ack', 'export', 'purge')", name=op.f("ck_audit_action")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit")),
    )
    op.create_index(op.f("ix_audit_at"), "audit", ["at"])
    op.create_index(op.f("ix_audit_session_id"), "audit", ["session_id"])

    if op.get_bind().dialect.name == "postgresql":
        for statement in _AUDIT_APPEND_ONLY_POSTGRESQL:
            op.execute(statement)
    else:
        op.execute(_AUDIT_APPEND_ONLY_SQLITE)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_append_only" + _on_audit())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS feltsafe_audit_append_only()")
    op.drop_table("audit")
    op.drop_table("timeline")
    op.drop_table("flags")
    op.drop_table("sessions")


def _on_audit() -> str:
    # PostgreSQL names a trigger per table; SQLite's trigger names are database-wide.
    return " ON audit" if op.get_bind().dialect.name == "postgresql" else ""
