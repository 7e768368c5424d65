"""Round-trip time from RTCP report blocks, or from an RTT measured elsewhere.

Theory of operation
-------------------
RFC 3550 section 6.4.1: a report block (in a sender or a receiver report) about a stream
we send carries LSR, the middle 32 bits of the NTP timestamp of our last sender report
it saw, and DLSR, how long it held that report before replying; both are NTP short
format (16.16 fixed point seconds, a unit of 1/65536 s). With A the arrival time of the
report block in the same format, RTT = A - LSR - DLSR. RFC 3611 section 4.5 (XR DLRR for
a receive-only endpoint, LRR and DLRR) has the same form and takes the same call.

The clock: ``arrival_ntp_short`` is the caller's wall clock at arrival, converted with
:func:`ntp_short_from_ntp64` (the probe reads no clock). NTP short wraps every 65536 s
(about 18 h), so the subtraction is done modulo 2**32 and a result in the upper half is
a negative RTT. Ignored and counted: LSR = 0 (no sender report seen yet), a negative
RTT (clocks or reports out of step) and one above ``max_plausible`` (default 60 s).

An RTT measured elsewhere, such as the browser's remote-inbound-rtp ``roundTripTime``
from the beacon, enters through :meth:`RttEstimator.on_external_rtt`.

Smoothing: every accepted sample updates an exponentially weighted moving average,
rtt += ``ewma_weight`` * (sample - rtt), weight 1/4 by default: RTCP and browser
reports come about once a second, so the estimate follows a change within a few
seconds while a single odd sample moves it by a quarter. (TCP's SRTT, RFC 6298, uses
1/8 on far more frequent samples.) :meth:`RttEstimator.rtt_ms` is None once the newest
sample is older than ``max_age`` (default 10 s), and the next sample starts afresh
rather than averaging with stale history.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from probes.base import FeltsafeError

NTP_SHORT_UNITS_PER_SECOND = 65536
DEFAULT_MAX_AGE = 10.0
DEFAULT_EWMA_WEIGHT = 0.25
DEFAULT_MAX_PLAUSIBLE = 60.0

_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


class RttRejectReason(StrEnum):
    NO_SENDER_REPORT = "no_sender_report"  # LSR = 0
    NEGATIVE = "negative"
    IMPLAUSIBLE = "implausible"
    BAD_FIELD = "bad_field"  # a field outside 32 bits, or an RTT that is not a number


class RttConfigError(FeltsafeError):
    """The estimator was configured with impossible values (a caller's mistake)."""


def ntp_short_from_ntp64(ntp64: int) -> int:
    """The middle 32 bits of a 64-bit NTP timestamp (RFC 3550 section 4: NTP short)."""
    return (ntp64 & _U64) >> 16 & _U32


def rtt_from_report_block(*, lsr: int, dlsr: int, arrival_ntp_short: int) -> float | None:
    """RTT in seconds from one report block, or None when it gives no valid RTT.

    None for LSR = 0, fields outside 32 bits and a negative result. Wraparound of the
    NTP short clock between our sender report and this report block is harmless.
    """
    if lsr == 0 or not (0 <= lsr <= _U32 and 0 <= dlsr <= _U32 and 0 <= arrival_ntp_short <= _U32):
        return None
    units = (arrival_ntp_short - lsr - dlsr) & _U32
    if units >= 1 << 31:
        return None
    return units / NTP_SHORT_UNITS_PER_SECOND


@dataclass(frozen=True, slots=True)
class RttSnapshot:
    rtt_ms: float | None  # smoothed, None when stale or never measured
    last_sample_ms: float | None
    sample_count: int
    rejects: Mapping[str, int]


class RttEstimator:
    """The freshest smoothed RTT of one path, from RTCP and from outside reports."""

    __slots__ = (
        "_ewma_weight",
        "_last_sample_ms",
        "_last_sample_time",
        "_max_age",
        "_max_plausible",
        "_rejects",
        "_sample_count",
        "_smoothed_ms",
    )

    def __init__(
        self,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        ewma_weight: float = DEFAULT_EWMA_WEIGHT,
        max_plausible: float = DEFAULT_MAX_PLAUSIBLE,
    ) -> None:
        if not (max_age > 0 and 0 < ewma_weight <= 1 and max_plausible > 0):
            raise RttConfigError("need max_age > 0, 0 < ewma_weight <= 1, max_plausible > 0")
        self._max_age = max_age
        self._ewma_weight = ewma_weight
        self._max_plausible = max_plausible
        self._smoothed_ms: float | None = None
        self._last_sample_ms: float | None = None
        self._last_sample_time = -math.inf
        self._sample_count = 0
        self._rejects: dict[RttRejectReason, int] = {}

    def on_report_block(
        self, *, lsr: int, dlsr: int, arrival_ntp_short: int, now: float
    ) -> float | None:
        """Take one RTCP report block about a stream we send; returns the RTT in ms if used."""
        if lsr == 0:
            self._reject(RttRejectReason.NO_SENDER_REPORT)
            return None
        if not (0 <= lsr <= _U32 and 0 <= dlsr <= _U32 and 0 <= arrival_ntp_short <= _U32):
            self._reject(RttRejectReason.BAD_FIELD)
            return None
        rtt = rtt_from_report_block(lsr=lsr, dlsr=dlsr, arrival_ntp_short=arrival_ntp_short)
        if rtt is None:
            self._reject(RttRejectReason.NEGATIVE)
            return None
        return self._sample(rtt * 1000.0, now)

    def on_external_rtt(self, rtt_ms: float, *, now: float) -> float | None:
        """Take an RTT measured elsewhere (browser remote-inbound-rtp roundTripTime x 1000)."""
        if not math.isfinite(rtt_ms):
            self._reject(RttRejectReason.BAD_FIELD)
            return None
        if rtt_ms < 0:
            self._reject(RttRejectReason.NEGATIVE)
            return None
        return self._sample(rtt_ms, now)

    def rtt_ms(self, *, now: float) -> float | None:
        if self._smoothed_ms is None or now - self._last_sample_time > self._max_age:
            return None
        return self._smoothed_ms

    def snapshot(self, *, now: float) -> RttSnapshot:
        return RttSnapshot(
            rtt_ms=self.rtt_ms(now=now),
            last_sample_ms=self._last_sample_ms,
            sample_count=self._sample_count,
            rejects=MappingProxyType({str(k): v for k, v in self._rejects.items()}),
        )

    @property
    def rejects(self) -> Mapping[RttRejectReason, int]:
        return MappingProxyType(self._rejects)

    def _sample(self, rtt_ms: float, now: float) -> float | None:
        if rtt_ms > self._max_plausible * 1000.0:
            self._reject(RttRejectReason.IMPLAUSIBLE)
            return None
        if self.rtt_ms(now=now) is None:  # first, or after a stale gap: start afresh
            self._smoothed_ms = rtt_ms
        else:
            assert self._smoothed_ms is not None
            self._smoothed_ms += self._ewma_weight * (rtt_ms - self._smoothed_ms)
        self._last_sample_ms = rtt_ms
        self._last_sample_time = max(self._last_sample_time, now)
        self._sample_count += 1
        return rtt_ms

    def _reject(self, reason: RttRejectReason) -> None:
        self._rejects[reason] = self._rejects.get(reason, 0) + 1
