"""What goes into the flag store and what comes out: plain frozen records.

Theory of operation: the monitor writes sessions, flags and timeline samples; the review
UI and the REST API read sessions, flags, timelines and the audit log. Both sides speak
these records, never ORM rows, so a web handler can serialize them without a database
session open and the schema can change behind them.

Clocks. The rules engine and the probes run on the *session clock* (the monotonic
``now`` the session runtime hands them; its origin is arbitrary). A session row stores
``started_at`` (wall clock, UTC) and ``clock_at_start`` (the session-clock reading at that
same instant); every session-clock time ``t`` then maps to ``elapsed = t - clock_at_start``
(seconds since the session began, what a timeline plots) and ``at = started_at + elapsed``
(an absolute UTC time, what a supervisor reads). Flags keep their raw session-clock
``start``/``end`` too, because the flag key is derived from them.

Every datetime crossing this API is timezone-aware; the store keeps UTC and rejects
naive datetimes (StoreError), since a naive time silently shifts by the server's offset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from alerts.model import Flag, Severity
from monitor.config import Mode
from probes.base import Role
from probes.signals import SignalValue

# How the monitor watched the session: the monitor's own Mode (full or metadata).
SessionMode = Mode


class AuditAction(StrEnum):
    VIEW = "view"
    ACK = "ack"
    EXPORT = "export"
    PURGE = "purge"


@dataclass(frozen=True, slots=True)
class RoleSummary:
    """End-of-session figures about one participant; None where never measured.

    ``interruptions_count``: successful interruptions this participant made.
    ``freeze_count``/``freeze_duration``: freezes of the video this participant sends,
    as received (W3C freezeCount / totalFreezesDuration), duration in seconds.
    ``mos_p10``/``p50``/``p90``: percentiles of the E-model MOS of this participant's
    audio path over the session's samples.
    """

    talk_share: float | None = None
    interruptions_count: int | None = None
    freeze_count: int | None = None
    freeze_duration: float | None = None
    mos_p10: float | None = None
    mos_p50: float | None = None
    mos_p90: float | None = None


@dataclass(frozen=True, slots=True)
class SessionSummary:
    therapist: RoleSummary = field(default_factory=RoleSummary)
    client: RoleSummary = field(default_factory=RoleSummary)

    def of(self, role: Role) -> RoleSummary:
        return self.therapist if role is Role.THERAPIST else self.client


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as the review list and page show it.

    ``duration`` and ``summary`` are None while the session is live (or if its end was
    never recorded). ``flag_counts`` has an entry for every severity, zero included.
    """

    session_id: str
    started_at: datetime
    ended_at: datetime | None
    duration: float | None
    mode: SessionMode
    profile: str | None
    clock_at_start: float
    summary: SessionSummary | None
    flag_counts: Mapping[Severity, int]
    unacknowledged_count: int

    @property
    def live(self) -> bool:
        return self.ended_at is None


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    at: datetime
    by: str
    note: str | None


@dataclass(frozen=True, slots=True)
class StoredFlag:
    """A flag as stored: the engine's Flag, its key, and where it sits in time."""

    key: str
    session_id: str
    flag: Flag
    start_at: datetime
    end_at: datetime | None
    start_elapsed: float
    end_elapsed: float | None
    acknowledgement: Acknowledgement | None


@dataclass(frozen=True, slots=True)
class TimelineSample:
    """One sampled set of derived figures, at ``time`` on the session clock.

    ``figures`` maps signal-catalogue names (probes/signals.py) to numbers, booleans or
    None; any other name is refused, which is what keeps content out of the timeline.
    """

    time: float
    figures: Mapping[str, SignalValue]


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    elapsed: float
    at: datetime
    figures: Mapping[str, SignalValue]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did something, as the access token names them: its subject and role.

    The subject is whatever the token issuer put there (an opaque account id); the
    store never asks for, and the review UI never shows, a client's name.
    """

    subject: str
    role: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    entry_id: int
    at: datetime
    actor: Actor
    action: AuditAction
    resource: str
    session_id: str | None


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Filters for the session list; every set filter must hold (AND).

    ``started_from`` is inclusive, ``started_before`` exclusive. ``min_severity`` keeps
    sessions with at least one flag at or above it; ``unacknowledged`` those with at
    least one flag nobody has acknowledged yet. ``session_ids`` restricts the list to an
    allow-list (a token scoped to some sessions). ``live`` True keeps sessions without
    a recorded end, False only ended ones. Newest first.
    """

    started_from: datetime | None = None
    started_before: datetime | None = None
    mode: SessionMode | None = None
    profile: str | None = None
    min_severity: Severity | None = None
    unacknowledged: bool = False
    live: bool | None = None
    session_ids: frozenset[str] | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class SessionPage:
    sessions: tuple[SessionRecord, ...]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class PurgeCounts:
    sessions: int
    flags: int
    timeline_points: int
    audit_entries: int
