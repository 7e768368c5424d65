"""A flag store filled through its own API, for the REST, access and review-page tests.

Three sessions, content-free like everything in the store:

- ``SESSION_A`` (full mode, ended, 3 min): three flags - an alert (the therapist's
  picture froze while the client was disclosing), a warn (the client's audio loss) and
  an info (therapist talk share) - a summary, and a timeline every 5 s with a 15 s
  freeze of the therapist's video inside a disclosure window and a loss/MOS dip;
- ``SESSION_B`` (metadata mode, ended a day later): one warn flag, already acknowledged;
- ``SESSION_C`` (full mode, live, started two days later): no flags.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from alerts.model import Audience, Flag, SafetyElement, Severity
from monitor.store import (
    Actor,
    RoleSummary,
    SessionSummary,
    Store,
    TimelineSample,
)
from monitor.tokens import TokenRole, issue_token
from probes.base import Role

SECRET = "r" * 40
SESSION_A = "sess-7f3a91"
SESSION_B = "sess-b2c4d8"
SESSION_C = "sess-c0ffee"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CLOCK0 = 7000.0
EARLIER_REVIEWER = Actor(subject="acct-earlier", role="supervisor")


@dataclass(frozen=True)
class Filled:
    freeze_alert: str
    loss_warn: str
    talk_info: str
    acknowledged_b: str


def _flag(**fields: Any) -> Flag:
    base: dict[str, Any] = {
        "rule_version": 1,
        "end": None,
        "audience": frozenset({Audience.SUPERVISOR}),
        "undermines": frozenset({SafetyElement.TRUST}),
        "message": None,
        "hint": None,
        "evidence": {},
        "context": {},
    }
    return Flag(**{**base, **fields})


def _timeline(store: Store) -> None:
    samples = []
    for step in range(1, 37):  # every 5 s for 3 min
        t = step * 5.0
        frozen = 95.0 <= t <= 110.0
        disclosure = 80.0 <= t <= 125.0
        dip = 140.0 <= t <= 155.0
        samples.append(
            TimelineSample(
                time=CLOCK0 + t,
                figures={
                    "conversation.therapist.talk_share_5m": 0.62 - t / 1000,
                    "conversation.client.talk_share_5m": 0.38 + t / 1000,
                    "conversation.interruptions_by_therapist_5m": float(t > 60) + float(t > 150),
                    "conversation.interruptions_by_client_5m": 0.0,
                    "therapist.network.mos": 4.3,
                    "client.network.mos": 3.0 if dip else 4.2,
                    "therapist.audio.loss_ratio": 0.002,
                    "client.audio.loss_ratio": 0.09 if dip else 0.004,
                    "therapist.audio.jitter_ms": 8.0,
                    "client.audio.jitter_ms": 35.0 if dip else 12.0,
                    "therapist.video.frozen": frozen,
                    "client.video.frozen": False,
                    "session.disclosure": disclosure,
                },
            )
        )
    store.append_timeline(SESSION_A, samples)


def fill(store: Store) -> Filled:
    """Write the three sessions (see the module docstring); the flag keys."""
    store.record_session_start(SESSION_A, started_at=T0, clock_at_start=CLOCK0, mode="full")
    freeze = store.upsert_flag(
        SESSION_A,
        _flag(
            rule_id="video.frozen_during_disclosure",
            start=CLOCK0 + 95.0,
            end=CLOCK0 + 110.0,
            severity=Severity.ALERT,
            audience=frozenset({Audience.THERAPIST, Audience.SUPERVISOR}),
            undermines=frozenset({SafetyElement.TRUST, SafetyElement.EMOTIONAL_SAFETY}),
            title="The therapist's picture froze while the client was sharing",
            message="The client may not have seen the therapist for 15 seconds.",
            hint="Ask the client what they missed.",
            evidence={"therapist.video.freeze_s": 15.0, "therapist.video.frozen": True},
            context={"speaker": "client", "session.disclosure": True, "client.floor_s": 24.0},
        ),
    )
    loss = store.upsert_flag(
        SESSION_A,
        _flag(
            rule_id="audio.loss",
            start=CLOCK0 + 140.0,
            end=CLOCK0 + 158.0,
            severity=Severity.WARN,
            title="The client's audio was breaking up",
            message="About 9 % of the client's audio was lost.",
            evidence={"client.audio.loss_ratio": 0.09},
            context={"speaker": "therapist"},
        ),
    )
    talk = store.upsert_flag(
        SESSION_A,
        _flag(
            rule_id="conversation.talk_share",
            start=CLOCK0 + 60.0,
            end=CLOCK0 + 90.0,
            severity=Severity.INFO,
            audience=frozenset({Audience.SUPERVISOR}),
            undermines=frozenset({SafetyElement.RESPECT}),
            title="=SUM(A1) the therapist spoke most of the time",  # a formula-looking title
            evidence={"conversation.therapist.talk_share_5m": 0.62},
        ),
    )
    _timeline(store)
    store.record_session_end(
        SESSION_A,
        ended_at=T0 + timedelta(minutes=3),
        summary=SessionSummary(
            therapist=RoleSummary(
                talk_share=0.55,
                interruptions_count=2,
                freeze_count=1,
                freeze_duration=15.0,
                mos_p10=4.2,
                mos_p50=4.3,
                mos_p90=4.4,
            ),
            client=RoleSummary(talk_share=0.45, interruptions_count=0, freeze_count=0),
        ),
    )
    day_b = T0 + timedelta(days=1)
    store.record_session_start(SESSION_B, started_at=day_b, clock_at_start=0.0, mode="metadata")
    acknowledged = store.upsert_flag(
        SESSION_B,
        _flag(
            rule_id="network.rtt",
            start=30.0,
            end=45.0,
            severity=Severity.WARN,
            title="Lag made the conversation hard to follow",
            evidence={"client.network.rtt_ms": 420.0},
        ),
    )
    store.acknowledge(acknowledged, by=EARLIER_REVIEWER, note="seen", now=day_b)
    store.record_session_end(
        SESSION_B, ended_at=day_b + timedelta(minutes=50), summary=SessionSummary()
    )
    store.record_session_start(
        SESSION_C, started_at=T0 + timedelta(days=2), clock_at_start=0.0, mode="full"
    )
    return Filled(freeze, loss, talk, acknowledged)


def token(role: TokenRole, *, secret: str = SECRET, **claims: Any) -> str:
    """A token for ``role``; publisher tokens default to SESSION_A's therapist."""
    if role is TokenRole.PUBLISHER:
        claims.setdefault("session", SESSION_A)
        claims.setdefault("participant", Role.THERAPIST)
    return issue_token(secret, role=role, **claims)


def expired(role: TokenRole, **claims: Any) -> str:
    """A token that expired an hour ago (well past the 5 s clock-skew leeway)."""
    return token(role, ttl=60, now=time.time() - 3600, **claims)


def bearer(value: str | None) -> dict[str, str]:
    return {} if value is None else {"Authorization": f"Bearer {value}"}
