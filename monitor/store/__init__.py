"""The flag store: sessions, flags, timelines and the audit log, in SQLite or PostgreSQL.

``Store.open(url)`` connects and migrates; see repository.py for the API and its
guarantees, records.py for what goes in and comes out, engine.py for the backends.
"""

from __future__ import annotations

from monitor.store.engine import DEFAULT_URL
from monitor.store.errors import (
    FlagNotFoundError,
    NotFoundError,
    SessionNotFoundError,
    StoreError,
)
from monitor.store.records import (
    Acknowledgement,
    Actor,
    AuditAction,
    AuditEntry,
    PurgeCounts,
    RoleSummary,
    SessionMode,
    SessionPage,
    SessionQuery,
    SessionRecord,
    SessionSummary,
    StoredFlag,
    TimelinePoint,
    TimelineSample,
)
from monitor.store.repository import SYSTEM_ACTOR, Store

__all__ = [
    "DEFAULT_URL",
    "SYSTEM_ACTOR",
    "Acknowledgement",
    "Actor",
    "AuditAction",
    "AuditEntry",
    "FlagNotFoundError",
    "NotFoundError",
    "PurgeCounts",
    "RoleSummary",
    "SessionMode",
    "SessionNotFoundError",
    "SessionPage",
    "SessionQuery",
    "SessionRecord",
    "SessionSummary",
    "Store",
    "StoreError",
    "StoredFlag",
    "TimelinePoint",
    "TimelineSample",
]
