"""A MOS estimate of an audio path from RTT, jitter and loss: the simplified E-model.

Theory of operation
-------------------
ITU-T G.107's E-model rates a voice path by its transmission rating R (0..100) and maps
R to a mean opinion score. WebRTC monitors (Twilio, LiveKit, webrtc-issue-detector) use
a simplified form driven by the three figures RTP statistics give (DESIGN.md, "MOS"):

    effective latency  EL = RTT + 2 x jitter + 10 ms
    R = r0 - EL / 40              if EL < 160 ms
    R = r0 - (EL - 120) / 10      otherwise       (continuous at 160 ms)
    R = R - 2.5 x loss in percent
    MOS = 1 + 0.035 R + 7e-6 R (R - 60)(100 - R)

R is clamped to [0, 100] and MOS to [1, 4.5]: the cubic dips below 1 for R under about
6.5, and the clamps keep MOS non-increasing in each of RTT, jitter and loss.

r0, the rating of a perfect path, is a parameter. The default is 93.2, G.107's default
rating (Ro - Is with every other impairment at its default), as webrtc-issue-detector
uses; Twilio uses 94.768 (Ro alone), with which the worked values of the tests hold
(100 ms / 20 ms / 1 % -> MOS 4.30).

Loss goes in as a ratio (0..1, the unit of every ``*_loss_ratio`` signal) and is
converted to percent inside: feeding a fraction to a formula that wants percent is a
known bug (DESIGN.md: one monitor scores 5 % loss as 0.05 %, a near-perfect 4.34). A
ratio above 1 is rejected, so a percent passed by mistake (5 for 5 %) fails loudly
instead of scoring nonsense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from probes.base import FeltsafeError

R0_G107_DEFAULT = 93.2  # ITU-T G.107 default rating; webrtc-issue-detector
R0_TWILIO = 94.768  # Twilio's Ro
DEFAULT_R0 = R0_G107_DEFAULT
CODEC_DELAY_MS = 10.0
KNEE_MS = 160.0
LOSS_WEIGHT_PER_PERCENT = 2.5
MOS_MIN, MOS_MAX = 1.0, 4.5


class QualityInputError(FeltsafeError):
    """A caller passed an impossible figure (negative delay, loss outside 0..1)."""


@dataclass(frozen=True, slots=True)
class QualityScore:
    r_factor: float  # clamped to [0, 100]
    mos: float  # clamped to [1, 4.5]


def r_factor(
    *, rtt_ms: float, jitter_ms: float, loss_ratio: float, r0: float = DEFAULT_R0
) -> float:
    """The transmission rating R of the simplified E-model, clamped to [0, 100]."""
    _check(rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_ratio=loss_ratio, r0=r0)
    effective_latency_ms = rtt_ms + 2.0 * jitter_ms + CODEC_DELAY_MS
    if effective_latency_ms < KNEE_MS:
        r = r0 - effective_latency_ms / 40.0
    else:
        r = r0 - (effective_latency_ms - 120.0) / 10.0
    r -= LOSS_WEIGHT_PER_PERCENT * (100.0 * loss_ratio)
    return min(100.0, max(0.0, r))


def mos_from_r(r: float) -> float:
    """G.107's R to MOS mapping, with R clamped to [0, 100] and MOS to [1, 4.5]."""
    r = min(100.0, max(0.0, r))
    mos = 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r)
    return min(MOS_MAX, max(MOS_MIN, mos))


def estimate_quality(
    *, rtt_ms: float, jitter_ms: float, loss_ratio: float, r0: float = DEFAULT_R0
) -> QualityScore:
    """R and MOS of an audio path; ``loss_ratio`` is a fraction in [0, 1], not percent."""
    r = r_factor(rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_ratio=loss_ratio, r0=r0)
    return QualityScore(r_factor=r, mos=mos_from_r(r))


def _check(*, rtt_ms: float, jitter_ms: float, loss_ratio: float, r0: float) -> None:
    if not all(math.isfinite(x) for x in (rtt_ms, jitter_ms, loss_ratio, r0)):
        raise QualityInputError("E-model inputs must be finite numbers")
    if rtt_ms < 0 or jitter_ms < 0:
        raise QualityInputError("RTT and jitter cannot be negative")
    if not 0.0 <= loss_ratio <= 1.0:
        raise QualityInputError(
            f"loss_ratio is a fraction in [0, 1], got {loss_ratio!r} (a percentage?)"
        )
