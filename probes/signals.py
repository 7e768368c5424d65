"""The signal catalogue: every name a Snapshot may carry.

Theory of operation: a session ticks (every 250 ms, and at once on a probe deadline) and
each tick yields a Snapshot, a flat mapping ``name -> float | bool | None``. Names are
``<subject>.<kind>.<metric>`` (DESIGN.md, "Signals"); subjects are ``therapist`` and
``client`` (the media that participant *sends*, as received), ``conversation`` and
``session``. A value is ``None`` (or the name is absent) when it is unknown: no data yet,
muted, stream gone. It is never a made-up zero; the rules engine has a NO_DATA state.

This catalogue is the contract between the session runtime (which produces snapshots),
the rules engine (which rejects unknown names at load time) and the metrics collector.
Units: seconds carry ``_s``, everything else its own suffix (``_ms``, ``_ratio``,
``_db``, ``_count``, ``_bps``); booleans and MOS carry none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from probes.base import Role

SignalValue = float | bool | None
Snapshot = Mapping[str, SignalValue]


class SignalType(StrEnum):
    NUMBER = "number"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class SignalSpec:
    name: str
    type: SignalType
    help: str


_N, _B = SignalType.NUMBER, SignalType.BOOL

# Per participant: the media that participant sends, as the monitor (or their peer's
# browser, through the beacon) receives it.
_PER_ROLE: tuple[tuple[str, SignalType, str], ...] = (
    ("audio.jitter_ms", _N, "RFC 3550 interarrival jitter of the audio stream, ms"),
    ("audio.loss_ratio", _N, "fraction of audio packets lost, last 5 s"),
    ("audio.loss_ratio_total", _N, "fraction of audio packets lost since the stream began"),
    ("audio.bitrate_bps", _N, "audio bit rate, last 5 s"),
    ("audio.since_last_packet_s", _N, "seconds since the last audio packet arrived"),
    ("audio.concealment_ratio", _N, "concealed / received samples, last 15 s (beacon)"),
    ("audio.echo_leak_db", _N, "how far below the other voice its echo sits in this track, dB"),
    ("video.jitter_ms", _N, "RFC 3550 interarrival jitter of the video stream, ms"),
    ("video.loss_ratio", _N, "fraction of video packets lost, last 5 s"),
    ("video.bitrate_bps", _N, "video bit rate, last 5 s"),
    ("video.fps", _N, "frames received per second, last 2 s"),
    ("video.frozen", _B, "the video is frozen now (W3C timing rule or identical content)"),
    ("video.freeze_s", _N, "how long the current freeze has lasted, 0 if none"),
    ("video.freeze_count", _N, "freezes since the stream began (W3C freezeCount)"),
    ("video.freezes_2m_count", _N, "freezes that began in the last 2 minutes"),
    ("video.total_freezes_s", _N, "total frozen time since the stream began"),
    ("network.rtt_ms", _N, "round-trip time on this participant's path, ms"),
    ("network.mos", _N, "E-model MOS estimate of this participant's audio path"),
    ("media.interrupted", _B, "no packets from this participant for 2 s or more"),
    ("speech.active", _B, "this participant is speaking now (gated and smoothed)"),
    ("speech.level_db", _N, "speech level, dBFS (or -dBov), last frame"),
)

# Conversation dynamics, per role (the role is the speaker the metric is about).
_CONVERSATION_PER_ROLE: tuple[tuple[str, SignalType, str], ...] = (
    ("floor_s", _N, "how long this participant has held the floor, 0 if not"),
    ("holds_floor", _B, "this participant holds the floor now"),
    ("talk_time_s", _N, "this participant's talk time since the session began"),
    ("talk_share", _N, "this participant's share of talk time since the session began"),
    ("talk_share_5m", _N, "this participant's share of talk time, last 5 minutes"),
    ("talk_share_10m", _N, "this participant's share of talk time, last 10 minutes"),
    ("longest_monologue_s", _N, "this participant's longest monologue so far"),
)

_CONVERSATION: tuple[tuple[str, SignalType, str], ...] = (
    (
        "conversation.interruptions_by_therapist_5m",
        _N,
        "successful interruptions of the client by the therapist, last 5 minutes",
    ),
    (
        "conversation.interruptions_by_client_5m",
        _N,
        "successful interruptions of the therapist by the client, last 5 minutes",
    ),
    ("conversation.interruptions_total", _N, "successful interruptions since the session began"),
    ("conversation.backchannels_total", _N, "backchannels since the session began"),
    ("conversation.overlap_ratio_1m", _N, "fraction of the last minute both spoke at once"),
    ("conversation.overlap_ratio_5m", _N, "fraction of the last 5 minutes both spoke at once"),
    ("conversation.turns_total", _N, "floor changes since the session began"),
    ("conversation.gap_median_s", _N, "median gap between speakers, last 5 minutes"),
)

_SESSION: tuple[tuple[str, SignalType, str], ...] = (
    (
        "session.disclosure",
        _B,
        "the disclosure window is open (client floor-holding >= 20 s, or a therapist marker)",
    ),
    ("session.marker", _B, "the therapist has marked a sensitive moment"),
    ("session.one_way_delay_ms", _N, "estimated one-way delay between the participants, ms"),
    ("session.elapsed_s", _N, "seconds since the session began"),
)


def _build() -> dict[str, SignalSpec]:
    specs: list[SignalSpec] = []
    for role in Role:
        specs += [SignalSpec(f"{role}.{n}", t, h) for n, t, h in _PER_ROLE]
        specs += [
            SignalSpec(f"conversation.{role}.{n}", t, h) for n, t, h in _CONVERSATION_PER_ROLE
        ]
    specs += [SignalSpec(n, t, h) for n, t, h in _CONVERSATION + _SESSION]
    return {s.name: s for s in specs}


CATALOGUE: Mapping[str, SignalSpec] = _build()


def is_known(name: str) -> bool:
    return name in CATALOGUE
