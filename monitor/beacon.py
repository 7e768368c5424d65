"""The browser beacon's wire format: schema, size limit, rate limit, validation.

Theory of operation (the websockets sans-I/O way): :class:`BeaconInput` is one beacon
connection's parser. The websocket adapter (monitor/beacon_ws.py) feeds it every frame
after the token, with the time it arrived (``now``, monotonic seconds), and gets back a
typed input for the session, or a :class:`Rejected` naming a closed :class:`BeaconError`
kind. Nothing here reads a clock, does I/O or raises on what a browser sends: a bad
frame is counted and answered, and the connection goes on.

Messages (JSON text frames, sent by ``feltsafe-beacon.js``; field names are the W3C
webrtc-stats names, units are W3C units: seconds and counts):

``{"type": "stats", "v": 1, "inbound": [...], "roundTripTime": 0.012}``
    Once a second: the *receiver's view*. ``inbound`` holds at most one
    ``RTCInboundRtpStreamStats`` digest per kind, ``{"kind": "audio", "jitter",
    "packetsReceived", "packetsLost", "concealedSamples", "totalSamplesReceived"}`` or
    ``{"kind": "video", "jitter", "packetsReceived", "packetsLost", "framesPerSecond",
    "freezeCount", "totalFreezesDuration"}``, every field but ``kind`` optional;
    ``roundTripTime`` is from ``remote-inbound-rtp`` (the sender's own path). Becomes a
    :class:`monitor.observations.BeaconReport`.
``{"type": "level", "v": 1, "rms": 0.05, "duration": 0.1}``
    Ten times a second: the local microphone's RMS level over the last ``duration``
    seconds, from the ``media-source`` stats: ``rms = sqrt(d totalAudioEnergy /
    d totalSamplesDuration)`` (W3C webrtc-stats §8.2: the energy is the integral of
    ``audioLevel**2`` over time). Becomes a :class:`LevelSample` in dBov.

Strictness: types are exact (a count is a JSON integer, not ``1.0`` or ``true``), numbers
finite and within physical bounds, unknown fields rejected (pydantic v2, strict). A
beacon never sends content, and the schema has nowhere to put any.

Limits, per connection: a frame over ``max_message_bytes`` (4 KiB; a real report is
about 400 bytes) is rejected before parsing; frames (good or bad) take a token from a
bucket refilled at ``rate_per_s`` (15/s, the beacon sends 11/s) up to ``burst`` (30),
so a flood costs the server one comparison per frame. While the bucket is empty only the
first rejected frame is answered, so a flood cannot make the server talk more than the
browser does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from monitor.observations import BeaconReport, InboundStreamStats, level_db_from_energy
from probes.base import FeltsafeError, MediaKind

MAX_MESSAGE_BYTES = 4096
RATE_PER_S = 15.0
BURST = 30
MAX_COUNT = 2**53  # JavaScript's largest exact integer
MAX_STAT_SECONDS = 60.0  # jitter or RTT beyond a minute is not a measurement
MAX_LEVEL_DURATION = 1.0


class BeaconError(StrEnum):
    """Why a frame from a beacon was rejected (a closed set: also a metric label)."""

    BINARY = "binary_frame"  # the beacon only sends text
    OVERSIZED = "oversized"
    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"  # JSON, but not a message of this schema
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class BeaconLimits:
    max_message_bytes: int = MAX_MESSAGE_BYTES
    rate_per_s: float = RATE_PER_S
    burst: int = BURST

    def __post_init__(self) -> None:
        if self.max_message_bytes < 256 or self.rate_per_s <= 0 or self.burst < 1:
            raise FeltsafeError("beacon limits: max_message_bytes >= 256, rate > 0, burst >= 1")


@dataclass(frozen=True, slots=True)
class LevelSample:
    """A microphone level: ``level_db`` dBov over the ``duration`` seconds just ended."""

    level_db: float
    duration: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame that was counted and dropped; ``reply``: answer it with an error frame."""

    error: BeaconError
    reply: bool = True


BeaconInputResult = BeaconReport | LevelSample | Rejected


# --- the schema ------------------------------------------------------------------------

_STRICT = ConfigDict(
    strict=True, extra="forbid", frozen=True, alias_generator=to_camel, allow_inf_nan=False
)
_Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
_SignedCount = Annotated[int, Field(ge=-MAX_COUNT, le=MAX_COUNT)]  # RFC 3550 allows < 0
_StatSeconds = Annotated[float, Field(ge=0.0, le=MAX_STAT_SECONDS)]
_TotalSeconds = Annotated[float, Field(ge=0.0, le=float(MAX_COUNT))]


class _AudioInbound(BaseModel):
    model_config = _STRICT
    kind: Literal["audio"]
    jitter: _StatSeconds | None = None
    packets_received: _Count | None = None
    packets_lost: _SignedCount | None = None
    concealed_samples: _Count | None = None
    total_samples_received: _Count | None = None


class _VideoInbound(BaseModel):
    model_config = _STRICT
    kind: Literal["video"]
    jitter: _StatSeconds | None = None
    packets_received: _Count | None = None
    packets_lost: _SignedCount | None = None
    frames_per_second: Annotated[float, Field(ge=0.0, le=1000.0)] | None = None
    freeze_count: _Count | None = None
    total_freezes_duration: _TotalSeconds | None = None


class _StatsMessage(BaseModel):
    model_config = _STRICT
    type: Literal["stats"]
    v: Literal[1]
    inbound: Annotated[
        list[Annotated[_AudioInbound | _VideoInbound, Field(discriminator="kind")]],
        Field(max_length=2),
    ] = []
    round_trip_time: _StatSeconds | None = None

    @model_validator(mode="after")
    def _one_stream_per_kind(self) -> _StatsMessage:
        kinds = [stream.kind for stream in self.inbound]
        if len(set(kinds)) != len(kinds):
            raise ValueError("at most one inbound stream per kind")
        return self


class _LevelMessage(BaseModel):
    model_config = _STRICT
    type: Literal["level"]
    v: Literal[1]
    rms: Annotated[float, Field(ge=0.0, le=1.0)]
    duration: Annotated[float, Field(gt=0.0, le=MAX_LEVEL_DURATION)]


_MESSAGE: TypeAdapter[_StatsMessage | _LevelMessage] = TypeAdapter(
    Annotated[_StatsMessage | _LevelMessage, Field(discriminator="type")]
)


def parse_message(text: str) -> BeaconReport | LevelSample | BeaconError:
    """Validate one text frame (no size or rate check): a typed input or why not."""
    try:
        message = _MESSAGE.validate_json(text)
    except ValidationError as exc:
        if any(error["type"] == "json_invalid" for error in exc.errors()):
            return BeaconError.MALFORMED_JSON
        return BeaconError.SCHEMA
    if isinstance(message, _LevelMessage):
        energy = message.rms * message.rms * message.duration
        return LevelSample(level_db_from_energy(energy, message.duration), message.duration)
    return BeaconReport(
        inbound=tuple(_inbound(stream) for stream in message.inbound),
        round_trip_time=message.round_trip_time,
    )


def _inbound(stream: _AudioInbound | _VideoInbound) -> InboundStreamStats:
    if isinstance(stream, _AudioInbound):
        return InboundStreamStats(
            kind=MediaKind.AUDIO,
            jitter=stream.jitter,
            packets_received=stream.packets_received,
            packets_lost=stream.packets_lost,
            concealed_samples=stream.concealed_samples,
            total_samples_received=stream.total_samples_received,
        )
    return InboundStreamStats(
        kind=MediaKind.VIDEO,
        jitter=stream.jitter,
        packets_received=stream.packets_received,
        packets_lost=stream.packets_lost,
        frames_per_second=stream.frames_per_second,
        freeze_count=stream.freeze_count,
        total_freezes_duration=stream.total_freezes_duration,
    )


# --- per connection ----------------------------------------------------------------------


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; :meth:`take` spends one if there is one."""

    __slots__ = ("_burst", "_last", "_rate", "_tokens")

    def __init__(self, *, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def take(self, *, now: float) -> bool:
        if now > self._last:  # a clock that steps back refills nothing
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class BeaconRefusal(StrEnum):
    """Why a beacon connection was refused or closed (a closed set: also a metric label)."""

    BAD_TARGET = "bad_target"  # not a session id, or not therapist/client
    ORIGIN = "origin_not_allowed"
    AUTH_TIMEOUT = "auth_timeout"  # no first message in time
    TOKEN_INVALID = "token_invalid"  # missing, malformed, forged or expired
    TOKEN_FORBIDDEN = "token_forbidden"  # a good token for another session or role
    TOKEN_EXPIRED = "token_expired"  # the token ran out during the connection


@dataclass(slots=True)
class BeaconCounters:
    """What beacons sent, over every connection of a process (no ids: metric-safe)."""

    connections: int = 0  # authenticated connections opened
    reports: int = 0
    levels: int = 0
    rejected: Counter[BeaconError] = field(default_factory=Counter)
    refused: Counter[BeaconRefusal] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "reports": self.reports,
            "levels": self.levels,
            "rejected": {error.value: self.rejected[error] for error in BeaconError},
            "refused": {reason.value: self.refused[reason] for reason in BeaconRefusal},
        }


class BeaconInput:
    """One authenticated beacon connection: frames in, session inputs or rejections out."""

    __slots__ = ("_bucket", "_counters", "_limits", "_throttled")

    def __init__(
        self,
        *,
        now: float,
        limits: BeaconLimits | None = None,
        counters: BeaconCounters | None = None,
    ) -> None:
        self._limits = limits or BeaconLimits()
        self._counters = counters if counters is not None else BeaconCounters()
        self._bucket = TokenBucket(rate=self._limits.rate_per_s, burst=self._limits.burst, now=now)
        self._throttled = False

    @property
    def counters(self) -> BeaconCounters:
        return self._counters

    def receive_text(self, text: str, *, now: float) -> BeaconInputResult:
        limited = self._admit(now)
        if limited is not None:
            return limited
        # Cheap bound first: a str of n characters is at least n UTF-8 bytes.
        too_big = self._limits.max_message_bytes
        if len(text) > too_big or len(text.encode("utf-8", "surrogatepass")) > too_big:
            return self._reject(BeaconError.OVERSIZED)
        result = parse_message(text)
        if isinstance(result, BeaconError):
            return self._reject(result)
        if isinstance(result, LevelSample):
            self._counters.levels += 1
        else:
            self._counters.reports += 1
        return result

    def receive_bytes(self, data: bytes, *, now: float) -> Rejected:
        limited = self._admit(now)
        if limited is not None:
            return limited
        return self._reject(BeaconError.BINARY)

    def _admit(self, now: float) -> Rejected | None:
        if not self._bucket.take(now=now):
            first = not self._throttled
            self._throttled = True
            self._counters.rejected[BeaconError.RATE_LIMITED] += 1
            return Rejected(BeaconError.RATE_LIMITED, reply=first)
        self._throttled = False
        return None

    def _reject(self, error: BeaconError) -> Rejected:
        self._counters.rejected[error] += 1
        return Rejected(error)
