"""What a session accepts from its ingest adapters, besides RTP headers and decoded media.

Theory of operation: the WHIP tap and the browser beacon speak different languages (SDP
and RTP; W3C ``getStats()``); the session takes both in the few typed shapes below, so
the adapters own parsing and validation and the session owns meaning.

:class:`BeaconReport` is one validated beacon message: the *receiver's view* from one
participant's browser, as W3C webrtc-stats names it (``RTCInboundRtpStreamStats``,
``RTCRemoteInboundRtpStreamStats``), in W3C units (seconds, counts). Counters are the
cumulative values the browser reports; the session takes differences. A report sent by
participant P's browser describes

- in ``inbound``: the media P *receives*, i.e. what the other participant sends (the
  subject of the ``<other>.audio.*`` / ``<other>.video.*`` signals);
- in ``round_trip_time``: P's own path (``remote-inbound-rtp`` of P's outgoing stream,
  the ``<P>.network.rtt_ms`` signal).

The microphone level (``<P>.speech``) arrives separately, ten times a second, as
:meth:`monitor.session.Session.on_audio_level`; see :func:`level_db_from_energy` for
the conversion from ``media-source`` ``totalAudioEnergy`` deltas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from probes.base import MediaKind

SILENCE_DB = -127.0  # RFC 6464's level of digital silence, dBov


@dataclass(frozen=True, slots=True)
class InboundStreamStats:
    """One ``inbound-rtp`` entry; None where the browser did not report the field."""

    kind: MediaKind
    jitter: float | None = None  # seconds
    packets_received: int | None = None
    packets_lost: int | None = None  # may be negative (RFC 3550 duplicates)
    frames_per_second: float | None = None  # video
    freeze_count: int | None = None  # video
    total_freezes_duration: float | None = None  # video, seconds
    concealed_samples: int | None = None  # audio
    total_samples_received: int | None = None  # audio


@dataclass(frozen=True, slots=True)
class BeaconReport:
    """One validated beacon report (sent once a second by ``feltsafe-beacon.js``)."""

    inbound: tuple[InboundStreamStats, ...] = ()
    round_trip_time: float | None = None  # seconds, remote-inbound-rtp of the sender


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """The negotiated RTP parameters of one media kind a publisher sends (from its SDP)."""

    kind: MediaKind
    clock_rates: dict[int, int]  # payload type -> clock rate, Hz (media codecs only)
    rtx_payload_types: dict[int, int]  # RTX payload type -> repaired payload type
    rtx_ssrcs: dict[int, int]  # RTX SSRC -> media SSRC (a=ssrc-group:FID)
    codec_names: dict[int, str]  # payload type -> codec name ("opus", "VP8", ...)


def level_db_from_energy(energy_delta: float, duration_delta: float) -> float:
    """The level in dBov (0 at full scale, -127 silence) of an interval of a media source.

    W3C ``totalAudioEnergy`` sums ``audioLevel**2 x duration``, ``audioLevel`` being
    linear in [0, 1] with 1 at full scale; the mean square over an interval is the energy
    delta over the duration delta (``totalSamplesDuration``), and its level is
    ``10 log10`` of that.
    """
    if duration_delta <= 0 or energy_delta <= 0 or not math.isfinite(energy_delta):
        return SILENCE_DB
    mean_square = energy_delta / duration_delta
    return max(SILENCE_DB, min(0.0, 10.0 * math.log10(mean_square)))
