"""The flag store's repository: the monitor writes through it, the review UI reads.

Theory of operation:

- One ``Store`` per process wraps one SQLAlchemy engine (a connection pool). Every
  method runs its own short transaction and has committed before it returns: when
  ``upsert_flag`` returns, the flag is durable (SQLite: WAL + ``synchronous=FULL``).
  The API is synchronous; the asyncio web app calls it in a worker thread
  (``await asyncio.to_thread(store.list_sessions, query)``). A Store is safe to share
  between threads: each call checks a connection out of the pool and returns it.
- ``Store.open(url)`` creates the engine and runs the Alembic migrations to head
  (monitor/store/migrate.py): a fresh file is ready to use, an old one is upgraded.
- Idempotent writes. A flag's key is ``Flag.key(session_id)`` (rule, version, session,
  start); ``upsert_flag`` inserts or, on that key, updates the flag in one statement
  (``INSERT ... ON CONFLICT DO UPDATE`` on both backends). A retried or replayed write
  never duplicates, and an evolving flag (its end arrives, its severity rises) is the
  same row. Merging is monotonic so an out-of-order retry cannot undo progress: a
  recorded end is never cleared by a write without one, severity keeps its highest
  rank; title, texts, evidence and context are the latest written. Acknowledgements
  are never touched by an upsert. Session starts and timeline samples are idempotent
  the same way.
- Audit. ``acknowledge`` updates the flag and appends the audit row in one
  transaction: there is no acknowledgement without its audit row. The API has no path
  that updates or deletes an audit row except ``purge`` with an audit retention, and
  the database refuses UPDATE on ``audit`` by trigger.
- Time. Methods that stamp a time take ``now`` (aware datetime) from the caller; flag
  and timeline times come on the session clock and are converted with the session's
  ``started_at``/``clock_at_start`` (records.py).
- Retention (``purge``): sessions whose end is older than the cutoff go, with their
  flags and timeline. A session whose end was never recorded (the monitor died) counts
  from its start. Audit rows have their own, longer retention and go only when the
  caller passes one; it may not be shorter than the sessions' retention, so the record
  of who saw a session outlives the session. Every purge appends a ``purge`` audit row.

Reads return records (records.py), never ORM rows. ``get_session``/``get_flag`` return
None for an unknown id; ``list_flags``/``timeline`` raise SessionNotFoundError, so the
REST layer can tell "no flags" from "no such session".

How the REST API (DESIGN.md, "Interfaces") maps onto it, each call in a worker thread:

    GET  /api/sessions                 list_sessions(SessionQuery(...))   + record_view
    GET  /api/sessions/{id}            get_session (None -> 404)          + record_view
    GET  /api/sessions/{id}/flags      list_flags                         + record_view
    GET  /api/sessions/{id}/timeline   timeline                           + record_view
    POST /api/flags/{key}/ack          acknowledge (audits by itself)
    export as CSV/JSON                 list_flags                         + record_export
    the audit page                     list_audit(session_id=...)

Errors: NotFoundError -> 404, other StoreError -> 400, SQLAlchemy's OperationalError
(database unreachable or locked past the busy timeout) -> 503. A token scoped to some
sessions becomes ``SessionQuery(session_ids=...)``; the store holds no person ids.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Delete,
    Engine,
    case,
    delete,
    exists,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from alerts.model import Audience, Flag, Severity
from monitor.store import convert
from monitor.store.engine import DEFAULT_URL, WRITE_OPTION, create_store_engine
from monitor.store.errors import FlagNotFoundError, SessionNotFoundError, StoreError
from monitor.store.migrate import upgrade
from monitor.store.records import (
    Actor,
    AuditAction,
    AuditEntry,
    PurgeCounts,
    SessionMode,
    SessionPage,
    SessionQuery,
    SessionRecord,
    SessionSummary,
    StoredFlag,
    TimelinePoint,
    TimelineSample,
)
from monitor.store.schema import AuditRow, Base, FlagRow, SessionRow, TimelineRow

MAX_PAGE = 500
SYSTEM_ACTOR = Actor(subject="feltsafe", role="system")

_RANK = {severity.value: severity.rank for severity in Severity}


class Store:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @classmethod
    def open(cls, url: str = DEFAULT_URL, *, migrate: bool = True) -> Store:
        """Connect to ``url`` and, unless ``migrate`` is False, upgrade its schema."""
        engine = create_store_engine(url)
        try:
            if migrate:
                upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[Session]:
        options = {WRITE_OPTION: True} if write else {}
        with (
            Session(self._engine, expire_on_commit=False, execution_options=options) as session,
            session.begin(),
        ):
            yield session

    # -- writes: the monitor ---------------------------------------------------------

    def record_session_start(
        self,
        session_id: str,
        *,
        started_at: datetime,
        clock_at_start: float,
        mode: str,
        profile: str | None = None,
    ) -> None:
        """Record that a session began; a repeat of the same start is a no-op.

        ``clock_at_start`` is the session-clock reading at ``started_at``. If the row
        already exists (a retry, a restarted worker), the first start stands.
        """
        convert.check_session_id(session_id)
        convert.check_aware(started_at, "started_at")
        convert.check_text(profile, what="profile", limit=convert.PROFILE_LENGTH)
        values = {
            "id": session_id,
            "started_at": started_at,
            "clock_at_start": _finite(clock_at_start, "clock_at_start"),
            "mode": _mode(mode).value,
            "profile": profile,
        }
        with self._transaction(write=True) as session:
            insert = _insert_for(session, SessionRow).values(values)
            session.execute(insert.on_conflict_do_nothing(index_elements=["id"]))

    def record_session_end(
        self, session_id: str, *, ended_at: datetime, summary: SessionSummary
    ) -> None:
        """Record the end and the summary figures; a later call replaces both."""
        convert.check_aware(ended_at, "ended_at")
        with self._transaction(write=True) as session:
            row = _session_row(session, session_id)
            duration = (ended_at - row.started_at).total_seconds()
            if duration < 0:
                raise StoreError(f"session {session_id} cannot end before it started")
            row.ended_at = ended_at
            row.duration = duration
            for column, value in convert.summary_values(summary).items():
                setattr(row, column, value)

    def upsert_flag(self, session_id: str, flag: Flag) -> str:
        """Insert the flag or merge it into the stored one with the same key.

        Returns the key. When this returns, the write is committed.
        """
        with self._transaction(write=True) as session:
            row = _session_row(session, session_id)
            key = flag.key(session_id)
            values = convert.flag_values(row, key, flag)
            insert = _insert_for(session, FlagRow).values(values)
            new, old = insert.excluded, FlagRow.__table__.c
            latest = ("title", "message", "hint", "evidence", "context", "audience", "undermines")
            merged: dict[str, Any] = {name: new[name] for name in latest}
            merged["end_clock"] = func.coalesce(new.end_clock, old.end_clock)
            merged["end_at"] = func.coalesce(new.end_at, old.end_at)
            merged["severity"] = case(
                (_rank(new.severity) >= _rank(old.severity), new.severity),
                else_=old.severity,
            )
            session.execute(insert.on_conflict_do_update(index_elements=["key"], set_=merged))
        return key

    def append_timeline(self, session_id: str, samples: Iterable[TimelineSample]) -> int:
        """Store sampled figures; a sample re-sent at the same time replaces itself."""
        with self._transaction(write=True) as session:
            row = _session_row(session, session_id)
            values = []
            for sample in samples:
                elapsed = _finite(sample.time, "timeline time") - row.clock_at_start
                values.append(
                    {
                        "session_id": session_id,
                        "elapsed": elapsed,
                        "at": convert.wall_time(row.started_at, elapsed),
                        "figures": convert.plain_figures(sample.figures),
                    }
                )
            if not values:
                return 0
            insert = _insert_for(session, TimelineRow)
            session.execute(
                insert.on_conflict_do_update(
                    index_elements=["session_id", "elapsed"],
                    set_={"at": insert.excluded.at, "figures": insert.excluded.figures},
                ),
                values,
            )
        return len(values)

    # -- reads: the review UI and REST API --------------------------------------------

    def list_sessions(self, query: SessionQuery | None = None) -> SessionPage:
        query = query or SessionQuery()
        if not 1 <= query.limit <= MAX_PAGE or query.offset < 0:
            raise StoreError(f"limit must be 1-{MAX_PAGE} and offset >= 0")
        for bound in (query.started_from, query.started_before):
            if bound is not None:
                convert.check_aware(bound, "a session list date bound")
        conditions = _session_conditions(query)
        with self._transaction(write=False) as session:
            total = session.scalar(select(func.count()).select_from(SessionRow).where(*conditions))
            rows = session.scalars(
                select(SessionRow)
                .where(*conditions)
                .order_by(SessionRow.started_at.desc(), SessionRow.id.desc())
                .limit(query.limit)
                .offset(query.offset)
            ).all()
            records = _session_records(session, rows)
        return SessionPage(
            sessions=tuple(records), total=total or 0, limit=query.limit, offset=query.offset
        )

    def get_session(self, session_id: str) -> SessionRecord | None:
        convert.check_session_id(session_id)
        with self._transaction(write=False) as session:
            row = session.get(SessionRow, session_id)
            return None if row is None else _session_records(session, [row])[0]

    def list_flags(self, session_id: str, *, audience: Audience | None = None) -> list[StoredFlag]:
        """The session's flags in onset order; only those for ``audience`` if given."""
        with self._transaction(write=False) as session:
            row = _session_row(session, session_id)
            flags = session.scalars(
                select(FlagRow)
                .where(FlagRow.session_id == session_id)
                .order_by(FlagRow.start_clock, FlagRow.key)
            ).all()
            stored = [convert.stored_flag(flag, row.clock_at_start) for flag in flags]
        if audience is not None:
            stored = [s for s in stored if audience in s.flag.audience]
        return stored

    def get_flag(self, flag_key: str) -> StoredFlag | None:
        convert.check_flag_key(flag_key)
        with self._transaction(write=False) as session:
            flag = session.get(FlagRow, flag_key)
            if flag is None:
                return None
            return convert.stored_flag(flag, _session_row(session, flag.session_id).clock_at_start)

    def timeline(
        self,
        session_id: str,
        *,
        from_elapsed: float | None = None,
        to_elapsed: float | None = None,
    ) -> list[TimelinePoint]:
        """The session's samples in time order, optionally within [from, to]."""
        with self._transaction(write=False) as session:
            _session_row(session, session_id)
            statement = select(TimelineRow).where(TimelineRow.session_id == session_id)
            if from_elapsed is not None:
                statement = statement.where(TimelineRow.elapsed >= from_elapsed)
            if to_elapsed is not None:
                statement = statement.where(TimelineRow.elapsed <= to_elapsed)
            rows = session.scalars(statement.order_by(TimelineRow.elapsed)).all()
            return [TimelinePoint(r.elapsed, r.at, dict(r.figures)) for r in rows]

    def list_audit(
        self,
        *,
        session_id: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditEntry]:
        """Audit entries, newest first: all, or those about one session."""
        if not 1 <= limit <= MAX_PAGE:
            raise StoreError(f"limit must be 1-{MAX_PAGE}")
        statement = select(AuditRow)
        if session_id is not None:
            statement = statement.where(AuditRow.session_id == session_id)
        if since is not None:
            convert.check_aware(since, "since")
            statement = statement.where(AuditRow.at >= since)
        statement = statement.order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
        with self._transaction(write=False) as session:
            return [_audit_entry(row) for row in session.scalars(statement)]

    # -- review actions: each leaves an audit row ---------------------------------------

    def acknowledge(
        self, flag_key: str, *, by: Actor, note: str | None, now: datetime
    ) -> StoredFlag:
        """Mark a flag acknowledged, with an optional note, and audit it atomically.

        Acknowledging again replaces the note and time (both acts stay in the audit).
        """
        convert.check_flag_key(flag_key)
        convert.check_aware(now, "now")
        convert.check_actor(by)
        convert.check_text(note, what="acknowledgement note", limit=convert.TEXT_LENGTH)
        with self._transaction(write=True) as session:
            flag = session.get(FlagRow, flag_key)
            if flag is None:
                raise FlagNotFoundError(flag_key)
            flag.acknowledged_at = now
            flag.ack_by = by.subject
            flag.ack_note = note
            session.add(_audit_row(now, by, AuditAction.ACK, f"flag/{flag_key}", flag.session_id))
            session.flush()
            clock_at_start = _session_row(session, flag.session_id).clock_at_start
            return convert.stored_flag(flag, clock_at_start)

    def record_view(
        self, *, by: Actor, resource: str, now: datetime, session_id: str | None = None
    ) -> None:
        """Append a ``view`` audit row, e.g. resource ``session/{id}/flags``."""
        self._record(AuditAction.VIEW, by=by, resource=resource, now=now, session_id=session_id)

    def record_export(
        self, *, by: Actor, resource: str, now: datetime, session_id: str | None = None
    ) -> None:
        """Append an ``export`` audit row, e.g. resource ``session/{id}/flags.csv``."""
        self._record(AuditAction.EXPORT, by=by, resource=resource, now=now, session_id=session_id)

    def _record(
        self,
        action: AuditAction,
        *,
        by: Actor,
        resource: str,
        now: datetime,
        session_id: str | None,
    ) -> None:
        convert.check_aware(now, "now")
        convert.check_actor(by)
        convert.check_text(resource, what="resource", limit=convert.RESOURCE_LENGTH, required=True)
        if session_id is not None:
            convert.check_session_id(session_id)
        with self._transaction(write=True) as session:
            session.add(_audit_row(now, by, action, resource, session_id))

    # -- retention ------------------------------------------------------------------------

    def purge(
        self,
        *,
        older_than_days: float,
        now: datetime,
        audit_older_than_days: float | None = None,
        by: Actor = SYSTEM_ACTOR,
    ) -> PurgeCounts:
        """Delete sessions that ended before ``now - older_than_days`` with their flags
        and timeline, and audit rows older than ``audit_older_than_days`` if given.

        Idempotent: a second run with the same ``now`` deletes nothing more.
        """
        convert.check_aware(now, "now")
        if older_than_days < 0:
            raise StoreError("older_than_days must be >= 0")
        if audit_older_than_days is not None and audit_older_than_days < older_than_days:
            raise StoreError(
                "the audit log is kept at least as long as the sessions it is about:"
                f" audit retention {audit_older_than_days} < {older_than_days} days"
            )
        cutoff = now - timedelta(days=older_than_days)
        expired = select(SessionRow.id).where(
            func.coalesce(SessionRow.ended_at, SessionRow.started_at) < cutoff
        )
        with self._transaction(write=True) as session:
            flags = _delete(session, delete(FlagRow).where(FlagRow.session_id.in_(expired)))
            points = _delete(
                session, delete(TimelineRow).where(TimelineRow.session_id.in_(expired))
            )
            sessions = _delete(session, delete(SessionRow).where(SessionRow.id.in_(expired)))
            audits = 0
            if audit_older_than_days is not None:
                audit_cutoff = now - timedelta(days=audit_older_than_days)
                audits = _delete(session, delete(AuditRow).where(AuditRow.at < audit_cutoff))
            resource = f"sessions ended over {older_than_days:g} days ago"
            session.add(_audit_row(now, by, AuditAction.PURGE, resource, None))
        return PurgeCounts(
            sessions=sessions, flags=flags, timeline_points=points, audit_entries=audits
        )


# -- helpers -----------------------------------------------------------------------------


def _finite(value: float, what: str) -> float:
    number = convert.plain_float(value)
    if number is None:
        raise StoreError(f"{what} must be a finite number")
    return number


def _mode(mode: str) -> SessionMode:
    try:
        return SessionMode(mode)
    except ValueError:
        modes = ", ".join(m.value for m in SessionMode)
        raise StoreError(f"unknown session mode {mode!r} (one of {modes})") from None


def _insert_for(session: Session, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """INSERT with ON CONFLICT support: the one place the two backends differ."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def _rank(severity: ColumnElement[str]) -> ColumnElement[int]:
    return case(_RANK, value=severity, else_=-1)


def _session_row(session: Session, session_id: str) -> SessionRow:
    convert.check_session_id(session_id)
    row = session.get(SessionRow, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    return row


def _delete(session: Session, statement: Delete) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return cast(CursorResult[Any], result).rowcount


def _session_conditions(query: SessionQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if query.started_from is not None:
        conditions.append(SessionRow.started_at >= query.started_from)
    if query.started_before is not None:
        conditions.append(SessionRow.started_at < query.started_before)
    if query.mode is not None:
        conditions.append(SessionRow.mode == _mode(query.mode).value)
    if query.profile is not None:
        conditions.append(SessionRow.profile == query.profile)
    if query.live is not None:
        ended = SessionRow.ended_at.is_(None) if query.live else SessionRow.ended_at.is_not(None)
        conditions.append(ended)
    if query.session_ids is not None:
        conditions.append(SessionRow.id.in_(sorted(query.session_ids)))
    if query.min_severity is not None:
        floor = Severity(query.min_severity).rank
        severities = [s.value for s in Severity if s.rank >= floor]
        conditions.append(
            exists().where(FlagRow.session_id == SessionRow.id, FlagRow.severity.in_(severities))
        )
    if query.unacknowledged:
        conditions.append(
            exists().where(FlagRow.session_id == SessionRow.id, FlagRow.acknowledged_at.is_(None))
        )
    return conditions


def _session_records(session: Session, rows: Sequence[SessionRow]) -> list[SessionRecord]:
    ids = [row.id for row in rows]
    counts: dict[str, dict[Severity, int]] = {i: dict.fromkeys(Severity, 0) for i in ids}
    unacknowledged = dict.fromkeys(ids, 0)
    if ids:
        tally = session.execute(
            select(
                FlagRow.session_id,
                FlagRow.severity,
                func.count(),
                func.count(FlagRow.acknowledged_at),
            )
            .where(FlagRow.session_id.in_(ids))
            .group_by(FlagRow.session_id, FlagRow.severity)
        )
        for session_id, severity, total, acknowledged in tally:
            counts[session_id][Severity(severity)] = total
            unacknowledged[session_id] += total - acknowledged
    return [
        SessionRecord(
            session_id=row.id,
            started_at=row.started_at,
            ended_at=row.ended_at,
            duration=row.duration,
            mode=SessionMode(row.mode),
            profile=row.profile,
            clock_at_start=row.clock_at_start,
            summary=convert.summary_of(row),
            flag_counts=counts[row.id],
            unacknowledged_count=unacknowledged[row.id],
        )
        for row in rows
    ]


def _audit_row(
    now: datetime, by: Actor, action: AuditAction, resource: str, session_id: str | None
) -> AuditRow:
    return AuditRow(
        at=now,
        actor_subject=by.subject,
        actor_role=by.role,
        action=action.value,
        resource=resource,
        session_id=session_id,
    )


def _audit_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        entry_id=row.id,
        at=row.at,
        actor=Actor(subject=row.actor_subject, role=row.actor_role),
        action=AuditAction(row.action),
        resource=row.resource,
        session_id=row.session_id,
    )
