"""Errors the flag store raises on purpose.

As everywhere in feltsafe (probes/base.py), an error here means the *caller* misused the
API: an unknown session or flag, a naive datetime, a signal name outside the catalogue.
Database failures (the file is read-only, PostgreSQL is down) surface as SQLAlchemy's own
``OperationalError`` family; the web layer maps those to 503.
"""

from __future__ import annotations

from probes.base import FeltsafeError


class StoreError(FeltsafeError):
    """The store was asked for something it cannot do."""


class NotFoundError(StoreError):
    """The session or flag named does not exist (or was purged)."""


class SessionNotFoundError(NotFoundError):
    def __init__(self, session_id: str) -> None:
        super().__init__(f"no session {session_id!r} in the store")
        self.session_id = session_id


class FlagNotFoundError(NotFoundError):
    def __init__(self, flag_key: str) -> None:
        super().__init__(f"no flag {flag_key!r} in the store")
        self.flag_key = flag_key
