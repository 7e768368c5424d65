"""What the rules engine produces: flags, and the closed sets that describe them.

A Flag is content-free by construction: rule identity, times on the session clock,
severity and audience, the peak evidence (signal values) and the conversation context
at onset (who was speaking, disclosure window or not). Its key is deterministic, so a
replay or a retried write of the same flag never duplicates it in the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from probes.signals import SignalValue


class Severity(StrEnum):
    INFO = "info"
    WARN = "warn"
    ALERT = "alert"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARN: 1, Severity.ALERT: 2}


class Audience(StrEnum):
    THERAPIST = "therapist"
    SUPERVISOR = "supervisor"
    OPS = "ops"


class SafetyElement(StrEnum):
    """The elements of psychological safety in therapy a fault can undermine."""

    TRUST = "trust"
    EMOTIONAL_SAFETY = "emotional_safety"
    RESPECT = "respect"
    NON_DISCRIMINATION = "non_discrimination"
    CONFIDENTIALITY = "confidentiality"


ContextValue = float | bool | str | None


@dataclass(frozen=True, slots=True)
class Flag:
    """One rule firing, from onset (``start``) to clearing (``end``; None while firing).

    Times are seconds on the session clock (the ``now`` the engine was given).
    """

    rule_id: str
    rule_version: int
    start: float
    end: float | None
    severity: Severity
    audience: frozenset[Audience]
    undermines: frozenset[SafetyElement]
    title: str
    message: str | None = None
    hint: str | None = None
    evidence: Mapping[str, SignalValue] = field(default_factory=dict)
    context: Mapping[str, ContextValue] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form with a stable layout (sets sorted, mappings key-sorted)."""
        return {
            "rule_id": self.rule_id,
            "rule_version": self.rule_version,
            "start": self.start,
            "end": self.end,
            "severity": str(self.severity),
            "audience": sorted(str(a) for a in self.audience),
            "undermines": sorted(str(u) for u in self.undermines),
            "title": self.title,
            "message": self.message,
            "hint": self.hint,
            "evidence": dict(sorted(self.evidence.items())),
            "context": dict(sorted(self.context.items())),
        }

    def key(self, session_id: str) -> str:
        """Deterministic identity: the same firing in the same session, however often
        it is written (live, retried, replayed), has the same key."""
        raw = f"{session_id}|{self.rule_id}|{self.rule_version}|{self.start:.3f}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]
