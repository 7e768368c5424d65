"""RTP receive statistics from header fields only: jitter, loss, loss bursts, rates.

Theory of operation
-------------------
Input is one :class:`RtpHeader` per packet (SSRC, sequence number, RTP timestamp, payload
type, marker, size, optional RFC 6464 level) plus its arrival time ``now`` (monotonic
seconds, given by the caller). Nothing here looks at a payload, so the same probe serves
the full mode (packets seen by aiortc) and the metadata mode (headers of encrypted
media, :func:`parse_rtp_header`).

One :class:`RtpReceiveStats` holds the streams one participant sends of one media kind,
keyed by *media* SSRC, and knows the negotiated clock rate of each payload type and the
RTX map (``a=fmtp:<rtx pt> apt=<media pt>``, RFC 4588).

Sequence numbers (RFC 3550 A.1, without the initial probation). The 16-bit number is
extended with a cycle count. Relative to the highest number seen so far, a packet is
*ahead* (0 < delta < ``max_dropout``, 3000): the new highest, skipped numbers are
missing; a *duplicate* of one already received (its slot in a small ring is set); *late*
(fewer than ``max_misorder`` = 100 behind): it repairs a missing number; *too late*
(further behind, but less than ``max_dropout``): the reorder horizon has passed, the
number stays lost and the packet is counted apart (RFC 3550 would treat it as a jump;
this way a few very late packets cannot re-synchronise the stream onto old numbers);
anything else is a *jump*: dropped, and if the next packet follows it (seq + 1) the
sender restarted its numbering and the stream re-synchronises, keeping the counts it
had (RFC 3550's ``bad_seq`` rule).

Duplicates (a choice): RFC 3550 counts every packet as received, so duplicates make the
cumulative loss negative and hide real loss. Here a duplicate is recognised within the
reorder horizon and counted in ``packets_duplicated`` only; ``packets_received`` counts
distinct original packets, so ``packets_lost = expected - received`` does not go
negative from duplicates (webrtc-stats' packetsReceived is our received + duplicated).
A late packet older than the first one seen lowers the base, as if it had come first.
Ratios are clamped to [0, 1] all the same.

Loss bursts: a burst is a run of consecutive missing sequence numbers. A number is
decided once it is ``max_misorder`` behind the highest (the reorder horizon), since no
packet that old is accepted any more; so a late packet repairs a gap instead of splitting
a burst. A burst is counted when its first number is decided and its length grows as the
rest are: figures lag the loss by ``max_misorder`` packets (2 s of 50 pkt/s audio), while
``packets_lost`` and the loss ratios count a gap at once.

Jitter (RFC 3550 section 6.4.1 and A.8): for each accepted original packet after the
first, in arrival order, D = (arrival difference in clock units) - (RTP timestamp
difference, signed 32-bit, so timestamp wraparound is harmless); J += (|D| - J) / 16 in
floating point; reported as J / clock rate in ms. Late packets enter it (the RFC
computes it per packet received); duplicates, too-late packets, jumps and RTX do not:
it measures the network path of the original packets (as webrtc-stats separates
packetsLost from retransmittedPacketsReceived).

RTX (RFC 4588): a packet whose payload type is an RTX type is a retransmission of its
media stream. Its SSRC is attributed to the media SSRC given by :meth:`associate_rtx`
(SDP ``a=ssrc-group:FID``) or else to the most recently active media stream of the
associated payload type, remembered thereafter. It counts as retransmitted packets and
bytes of that stream and in its packet and bit rates, never in its loss or jitter.

Windows: time is cut in slots of ``window / checkpoints_per_window`` (0.25 s by
default); the first packet of a slot records the counters as they stood at the slot's
start (a checkpoint). A windowed figure (loss ratio, packet and bit rates) is the change
of the counters since the window's first slot start, which lies between ``window`` minus
one slot and ``window`` before ``now`` (or the stream's start, if later); rates divide by
that exact span. A slot without packets has no checkpoint and needs none. That is at
most ``checkpoints_per_window + 1`` tuples per stream, never one per packet. Windowed
loss is None when no packet was expected in the window; a late packet repairing a gap
older than the window can make its loss negative, clamped to 0.

No media: :meth:`RtpReceiveStats.since_last_packet` counts media and RTX alike, and
``next_deadline()`` / ``on_timer(now=...)`` wake the session when ``no_media_after``
(2 s, Jitsi and mediasoup) passes without a packet.

Bad input (unknown payload type, fields out of range, time going backwards) is counted
per :class:`RtpDropReason` and dropped, never raised.
"""

from __future__ import annotations

import math
import struct
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from probes.base import FeltsafeError

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000  # RFC 3550 A.1
MAX_MISORDER = 100  # RFC 3550 A.1
JITTER_GAIN = 1.0 / 16.0  # RFC 3550 A.8
DEFAULT_WINDOW = 5.0  # DESIGN.md: loss ratio over the last 5 s
DEFAULT_NO_MEDIA_AFTER = 2.0  # Jitsi, mediasoup: 2 s without packets = interrupted

_U32 = 0xFFFFFFFF
_HALF_U32 = 0x80000000
_INF = math.inf  # a module constant: cheaper than math.inf on the hot path


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The header fields of one RTP packet (RFC 3550 section 5.1).

    ``size_bytes`` is the whole RTP packet as received (header, payload, padding, and the
    SRTP tag if any). ``audio_level_dbov`` is the RFC 6464 level, 0..127 meaning -dBov
    (0 is the loudest, 127 silence), or None when the extension is absent.
    """

    ssrc: int
    sequence_number: int
    timestamp: int
    payload_type: int
    marker: bool
    size_bytes: int
    audio_level_dbov: int | None = None


class RtpDropReason(StrEnum):
    """Why a packet (or one of its fields) was not used; a closed set of counter keys."""

    UNKNOWN_PAYLOAD_TYPE = "unknown_payload_type"
    BAD_SSRC = "bad_ssrc"
    BAD_SEQUENCE_NUMBER = "bad_sequence_number"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_SIZE = "bad_size"
    BAD_ARRIVAL_TIME = "bad_arrival_time"
    BAD_AUDIO_LEVEL = "bad_audio_level"  # the packet is used, its level is not
    SEQUENCE_JUMP = "sequence_jump"
    RTX_WITHOUT_MEDIA = "rtx_without_media"


class RtpStatsConfigError(FeltsafeError):
    """The probe was configured with impossible values (a caller's mistake)."""


@dataclass(frozen=True, slots=True)
class RtpStreamSnapshot:
    """All figures of one media stream at ``now``; None where not known yet."""

    ssrc: int
    payload_type: int
    clock_rate_hz: int
    packets_received: int  # distinct original packets
    packets_expected: int
    packets_lost: int  # expected - received, RFC 3550 A.3 (duplicates excluded)
    packets_duplicated: int
    packets_too_late: int  # arrived after the reorder horizon; their numbers stay lost
    retransmitted_packets: int
    retransmitted_bytes: int
    bytes_received: int  # every byte attributed to the stream, RTX included
    loss_ratio: float | None  # over the window; None when no packet was expected in it
    loss_ratio_total: float | None
    loss_burst_count: int
    longest_loss_burst_packets: int
    jitter_ms: float | None  # None until two packets have arrived
    packet_rate_pps: float | None  # every packet of the stream, RTX included
    bitrate_bps: float | None
    since_last_packet: float
    audio_level_dbov: int | None  # last RFC 6464 level, 0..127 meaning -dBov


@dataclass(frozen=True, slots=True)
class RtpReceiveSnapshot:
    """Every stream of one participant and media kind, and the drop counters."""

    streams: tuple[RtpStreamSnapshot, ...]
    drops: Mapping[str, int]  # RtpDropReason value -> count
    since_last_packet: float | None

    @property
    def primary(self) -> RtpStreamSnapshot | None:
        """The stream that received a packet most recently (the one a user sees)."""
        if not self.streams:
            return None
        return min(self.streams, key=lambda s: s.since_last_packet)


# (slot index, expected, received, packets arrived, bytes arrived) at the slot's start
_Checkpoint = tuple[int, int, int, int, int]


class _Stream:
    """State of one media SSRC. Plain attributes and local variables on the hot path."""

    __slots__ = (
        "_base",
        "_checkpoint_slot",
        "_checkpoints",
        "_clock_rate",
        "_ext_max",
        "_final",
        "_first_checkpoint",
        "_jitter",
        "_jitter_ready",
        "_last_timestamp",
        "_mask",
        "_max_dropout",
        "_max_misorder",
        "_next_checkpoint",
        "_ring",
        "_run",
        "_slots_per_window",
        "arrived_bytes",
        "arrived_packets",
        "audio_level",
        "bad_seq",
        "burst_count",
        "duplicated",
        "expected_before",
        "last_arrival",
        "last_media_arrival",
        "longest_burst",
        "payload_type",
        "received",
        "retransmitted_bytes",
        "retransmitted_packets",
        "ssrc",
        "too_late",
    )

    def __init__(
        self,
        *,
        ssrc: int,
        first_sequence_number: int,
        payload_type: int,
        clock_rate: int,
        checkpoint_slot: float,
        slots_per_window: int,
        max_dropout: int,
        max_misorder: int,
    ) -> None:
        self.ssrc = ssrc
        self.payload_type = payload_type
        self._clock_rate = clock_rate
        self._max_dropout = max_dropout
        self._max_misorder = max_misorder
        ring_size = 1 << max_misorder.bit_length()  # a power of two > max_misorder
        self._ring = bytearray(ring_size)
        self._mask = ring_size - 1
        self._checkpoint_slot = checkpoint_slot
        self._slots_per_window = slots_per_window
        # At most one checkpoint per slot: the window's slots are always all kept.
        self._checkpoints: deque[_Checkpoint] = deque(maxlen=slots_per_window + 1)
        self._next_checkpoint = -math.inf
        self._first_checkpoint = -1  # slot index of the first checkpoint
        # The first packet then takes the ordinary "next in order" path.
        self._ext_max = first_sequence_number - 1
        self._base = first_sequence_number
        self._final = first_sequence_number - 1
        self._run = 0
        self._jitter = 0.0
        self._jitter_ready = False
        self._last_timestamp = 0
        self.bad_seq = -1
        self.expected_before = 0
        self.received = 0
        self.duplicated = 0
        self.too_late = 0
        self.burst_count = 0
        self.longest_burst = 0
        self.arrived_packets = 0
        self.arrived_bytes = 0
        self.retransmitted_packets = 0
        self.retransmitted_bytes = 0
        self.last_arrival = -math.inf
        self.last_media_arrival = -math.inf
        self.audio_level: int | None = None

    # -- per packet -----------------------------------------------------------------

    def receive(
        self, seq: int, timestamp: int, clock_rate: int, size: int, now: float
    ) -> RtpDropReason | None:
        """Count one original packet; the hot path, so locals and few calls."""
        if now >= self._next_checkpoint:
            self._checkpoint(now)
        ext_max = self._ext_max
        delta = (seq - ext_max) & 0xFFFF
        if 0 < delta < self._max_dropout:
            ext = ext_max + delta
            oldest = ext - self._max_misorder
            if oldest == self._final + 1:  # in order: one number leaves the horizon
                slot = oldest & self._mask
                if self._ring[slot]:
                    self._ring[slot] = 0
                    self._run = 0
                else:
                    self._extend_burst(1)
                self._final = oldest
            elif oldest > self._final:
                self._decide_through(oldest, ext_max)
            self._ext_max = ext
            self._ring[ext & self._mask] = 1
        elif delta == 0:
            self.duplicated += 1
            self._count_arrival(size, now)
            return None
        elif delta > RTP_SEQ_MOD - self._max_misorder:  # late, within the horizon
            ext = ext_max - (RTP_SEQ_MOD - delta)
            slot = ext & self._mask
            if self._ring[slot]:
                self.duplicated += 1
                self._count_arrival(size, now)
                return None
            self._ring[slot] = 1
            if ext < self._base:  # older than the first packet: it should have been first
                self._base = ext
                self._final = ext - 1
        elif delta > RTP_SEQ_MOD - self._max_dropout:
            self.too_late += 1
            self._count_arrival(size, now)
            return None
        elif seq == self.bad_seq:
            self._restart(seq)
        else:
            self.bad_seq = (seq + 1) & 0xFFFF
            return RtpDropReason.SEQUENCE_JUMP
        self.received += 1
        self.arrived_packets += 1
        self.arrived_bytes += size
        self.last_arrival = now
        if self._jitter_ready:
            if clock_rate == self._clock_rate:
                transit_delta = (timestamp - self._last_timestamp) & _U32
                if transit_delta & _HALF_U32:
                    transit_delta -= 1 << 32
                d = (now - self.last_media_arrival) * clock_rate - transit_delta
                if d < 0:
                    d = -d
                self._jitter += (d - self._jitter) * JITTER_GAIN
            else:  # a payload type of another clock rate: rescale J, skip this D
                self._jitter *= clock_rate / self._clock_rate
                self._clock_rate = clock_rate
        else:
            self._jitter_ready = True
            self._clock_rate = clock_rate
        self.last_media_arrival = now
        self._last_timestamp = timestamp
        return None

    def receive_retransmission(self, size: int, now: float) -> None:
        if now >= self._next_checkpoint:
            self._checkpoint(now)
        self.retransmitted_packets += 1
        self.retransmitted_bytes += size
        self._count_arrival(size, now)

    # -- sequence bookkeeping (the less frequent paths) ------------------------------

    def _count_arrival(self, size: int, now: float) -> None:
        self.arrived_packets += 1
        self.arrived_bytes += size
        self.last_arrival = now

    def _extend_burst(self, missing: int) -> None:
        if self._run == 0:
            self.burst_count += 1
        self._run += missing
        self.longest_burst = max(self.longest_burst, self._run)

    def _decide_through(self, last: int, old_max: int) -> None:
        """Decide every number up to ``last``: received, or lost as part of a burst.

        A decided number's slot is cleared for the number ``ring size`` above it, so
        slots ahead of the highest are always 0 (missing) without clearing gaps.
        """
        ring = self._ring
        mask = self._mask
        for number in range(self._final + 1, min(last, old_max) + 1):
            slot = number & mask
            if ring[slot]:
                ring[slot] = 0
                self._run = 0
            else:
                self._extend_burst(1)
        unseen_from = max(old_max, self._final)
        if last > unseen_from:  # numbers above the old maximum were never seen
            self._extend_burst(last - unseen_from)
        self._final = max(self._final, last)

    def _restart(self, seq: int) -> None:
        """RFC 3550 A.1: two sequential packets after a jump; the sender renumbered."""
        self._decide_through(self._ext_max, self._ext_max)
        self.expected_before += self._ext_max - self._base + 1
        self._ring = bytearray(len(self._ring))
        self._run = 0
        self._base = seq
        self._final = seq - 1
        self._ext_max = seq
        self._ring[seq & self._mask] = 1
        self._jitter_ready = False
        self.bad_seq = -1

    # -- windows ----------------------------------------------------------------------

    @property
    def expected(self) -> int:
        return self.expected_before + self._ext_max - self._base + 1

    def _slot_index(self, now: float) -> int:
        slot = self._checkpoint_slot
        index = math.floor(now / slot)
        return index + 1 if (index + 1) * slot <= now else index  # against rounding

    def _checkpoint(self, now: float) -> None:
        index = self._slot_index(now)
        self._checkpoints.append(
            (index, self.expected, self.received, self.arrived_packets, self.arrived_bytes)
        )
        self._next_checkpoint = (index + 1) * self._checkpoint_slot
        if self._first_checkpoint < 0:
            self._first_checkpoint = index

    def snapshot(self, now: float) -> RtpStreamSnapshot:
        expected = self.expected
        lost = expected - self.received
        # The window starts at a slot boundary, (slots_per_window - 1) slots back: it
        # covers between window - slot and window seconds.
        start = self._slot_index(now) - self._slots_per_window + 1
        current = (start, expected, self.received, self.arrived_packets, self.arrived_bytes)
        # No checkpoint at or after the window start means no packet since then.
        baseline = next((c for c in self._checkpoints if c[0] >= start), current)
        window_expected = expected - baseline[1]
        window_lost = window_expected - (self.received - baseline[2])
        covered = now - max(start, self._first_checkpoint) * self._checkpoint_slot
        packet_rate = bitrate = None
        if covered > 0:
            packet_rate = (self.arrived_packets - baseline[3]) / covered
            bitrate = 8 * (self.arrived_bytes - baseline[4]) / covered
        return RtpStreamSnapshot(
            ssrc=self.ssrc,
            payload_type=self.payload_type,
            clock_rate_hz=self._clock_rate,
            packets_received=self.received,
            packets_expected=expected,
            packets_lost=lost,
            packets_duplicated=self.duplicated,
            packets_too_late=self.too_late,
            retransmitted_packets=self.retransmitted_packets,
            retransmitted_bytes=self.retransmitted_bytes,
            bytes_received=self.arrived_bytes,
            loss_ratio=_clamped_ratio(window_lost, window_expected),
            loss_ratio_total=_clamped_ratio(lost, expected),
            loss_burst_count=self.burst_count,
            longest_loss_burst_packets=self.longest_burst,
            jitter_ms=1000.0 * self._jitter / self._clock_rate if self.received >= 2 else None,
            packet_rate_pps=packet_rate,
            bitrate_bps=bitrate,
            since_last_packet=now - self.last_arrival,
            audio_level_dbov=self.audio_level,
        )


def _clamped_ratio(part: int, whole: int) -> float | None:
    if whole <= 0:
        return None
    return min(1.0, max(0.0, part / whole))


class RtpReceiveStats:
    """RTP statistics of one participant's streams of one media kind.

    ``clock_rates``: payload type -> RTP clock rate (Hz), from the SDP ``a=rtpmap``.
    ``rtx_payload_types``: RTX payload type -> the payload type it repairs (``apt``).
    """

    __slots__ = (
        "_clock_rates",
        "_deadline_fired_for",
        "_drops",
        "_fid",
        "_last_arrival",
        "_max_dropout",
        "_max_misorder",
        "_no_media_after",
        "_rtx_apt",
        "_rtx_owner",
        "_slot",
        "_slots_per_window",
        "_streams",
    )

    def __init__(
        self,
        *,
        clock_rates: Mapping[int, int],
        rtx_payload_types: Mapping[int, int] | None = None,
        window: float = DEFAULT_WINDOW,
        checkpoints_per_window: int = 20,
        max_dropout: int = MAX_DROPOUT,
        max_misorder: int = MAX_MISORDER,
        no_media_after: float = DEFAULT_NO_MEDIA_AFTER,
    ) -> None:
        rtx = dict(rtx_payload_types or {})
        if any(not 0 <= pt <= 127 or rate <= 0 for pt, rate in clock_rates.items()):
            raise RtpStatsConfigError("payload types are 0..127 and clock rates positive")
        if any(apt not in clock_rates or rtx_pt in clock_rates for rtx_pt, apt in rtx.items()):
            raise RtpStatsConfigError("each RTX payload type must repair a known media type")
        if not (window > 0 and checkpoints_per_window >= 1 and no_media_after > 0):
            raise RtpStatsConfigError("window, checkpoints and no-media time must be positive")
        if not 0 < max_misorder < max_dropout < RTP_SEQ_MOD // 2:
            raise RtpStatsConfigError("need 0 < max_misorder < max_dropout < 32768")
        self._clock_rates = dict(clock_rates)
        self._rtx_apt = rtx
        self._slot = window / checkpoints_per_window
        self._slots_per_window = checkpoints_per_window
        self._max_dropout = max_dropout
        self._max_misorder = max_misorder
        self._no_media_after = no_media_after
        self._streams: dict[int, _Stream] = {}
        self._rtx_owner: dict[int, _Stream] = {}
        self._fid: dict[int, int] = {}
        self._drops: dict[RtpDropReason, int] = {}
        self._last_arrival = -math.inf
        self._deadline_fired_for = -math.inf  # the last arrival whose deadline has passed

    def on_packet(self, header: RtpHeader, *, now: float) -> None:
        """Account one received packet (header fields only) that arrived at ``now``."""
        payload_type = header.payload_type
        clock_rate = self._clock_rates.get(payload_type)
        if clock_rate is None:
            self._on_other_payload_type(header, now)
            return
        seq = header.sequence_number
        timestamp = header.timestamp
        size = header.size_bytes
        ssrc = header.ssrc
        if not (
            0 <= seq <= 0xFFFF
            and 0 <= timestamp <= _U32
            and size >= 0
            and 0 <= ssrc <= _U32
            and self._last_arrival <= now < _INF
        ):
            self._drop(_diagnose(header, now, self._last_arrival))
            return
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = self._new_stream(ssrc, seq, payload_type, clock_rate)
        reason = stream.receive(seq, timestamp, clock_rate, size, now)
        if reason is not None:
            self._drop(reason)
            return
        stream.payload_type = payload_type
        level = header.audio_level_dbov
        if level is not None:
            if 0 <= level <= 127:
                stream.audio_level = level
            else:
                self._drop(RtpDropReason.BAD_AUDIO_LEVEL)
        self._last_arrival = now

    def associate_rtx(self, *, rtx_ssrc: int, media_ssrc: int) -> None:
        """Attribute RTX SSRC to a media SSRC (SDP ``a=ssrc-group:FID media rtx``).

        Without it, an RTX SSRC is attributed to the most recently active media stream
        of the payload type it repairs, and that choice is remembered.
        """
        self._fid[rtx_ssrc] = media_ssrc
        self._rtx_owner.pop(rtx_ssrc, None)

    def snapshot(self, *, now: float) -> RtpReceiveSnapshot:
        return RtpReceiveSnapshot(
            streams=tuple(s.snapshot(now) for s in self._streams.values()),
            drops=MappingProxyType({str(k): v for k, v in self._drops.items()}),
            since_last_packet=self.since_last_packet(now=now),
        )

    def since_last_packet(self, *, now: float) -> float | None:
        """Seconds since any packet (media or RTX) of these streams; None before the first."""
        if self._last_arrival == -math.inf:
            return None
        return max(0.0, now - self._last_arrival)

    def next_deadline(self) -> float | None:
        """When the media counts as interrupted if nothing arrives before (DESIGN: 2 s)."""
        if self._deadline_fired_for == self._last_arrival:  # both -inf before any packet
            return None
        return self._last_arrival + self._no_media_after

    def on_timer(self, *, now: float) -> None:
        deadline = self.next_deadline()
        if deadline is not None and now >= deadline:
            self._deadline_fired_for = self._last_arrival

    def interrupted(self, *, now: float) -> bool | None:
        """No packet for ``no_media_after`` seconds; None before the first packet."""
        since = self.since_last_packet(now=now)
        return None if since is None else since >= self._no_media_after

    @property
    def drops(self) -> Mapping[RtpDropReason, int]:
        return MappingProxyType(self._drops)

    # -- less frequent paths ------------------------------------------------------------

    def _new_stream(self, ssrc: int, seq: int, payload_type: int, clock_rate: int) -> _Stream:
        return _Stream(
            ssrc=ssrc,
            first_sequence_number=seq,
            payload_type=payload_type,
            clock_rate=clock_rate,
            checkpoint_slot=self._slot,
            slots_per_window=self._slots_per_window,
            max_dropout=self._max_dropout,
            max_misorder=self._max_misorder,
        )

    def _drop(self, reason: RtpDropReason) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def _on_other_payload_type(self, header: RtpHeader, now: float) -> None:
        repaired = self._rtx_apt.get(header.payload_type)
        if repaired is None:
            self._drop(RtpDropReason.UNKNOWN_PAYLOAD_TYPE)
            return
        if not (
            header.size_bytes >= 0 and 0 <= header.ssrc <= _U32 and self._last_arrival <= now
        ) or not (0 <= header.sequence_number <= 0xFFFF and now < math.inf):
            self._drop(_diagnose(header, now, self._last_arrival))
            return
        stream = self._rtx_owner.get(header.ssrc) or self._rtx_media(header.ssrc, repaired)
        if stream is None:
            self._drop(RtpDropReason.RTX_WITHOUT_MEDIA)
            return
        stream.receive_retransmission(header.size_bytes, now)
        self._last_arrival = now

    def _rtx_media(self, rtx_ssrc: int, repaired_payload_type: int) -> _Stream | None:
        media_ssrc = self._fid.get(rtx_ssrc)
        if media_ssrc is not None:
            stream = self._streams.get(media_ssrc)
        else:
            candidates = [
                s for s in self._streams.values() if s.payload_type == repaired_payload_type
            ]
            stream = max(candidates, key=lambda s: s.last_media_arrival, default=None)
        if stream is not None:
            self._rtx_owner[rtx_ssrc] = stream
        return stream


def _diagnose(header: RtpHeader, now: float, last_arrival: float) -> RtpDropReason:
    if not 0 <= header.ssrc <= _U32:
        return RtpDropReason.BAD_SSRC
    if not 0 <= header.sequence_number <= 0xFFFF:
        return RtpDropReason.BAD_SEQUENCE_NUMBER
    if not 0 <= header.timestamp <= _U32:
        return RtpDropReason.BAD_TIMESTAMP
    if not header.size_bytes >= 0:
        return RtpDropReason.BAD_SIZE
    return RtpDropReason.BAD_ARRIVAL_TIME


# -- parsing raw packets (metadata mode) ---------------------------------------------

_FIXED_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")
_ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 section 4.2
_TWO_BYTE_PROFILE_MASK = 0xFFF0  # RFC 8285 section 4.3: 0x100X


def parse_rtp_header(data: bytes, *, audio_level_ext_id: int | None = None) -> RtpHeader | None:
    """The header fields of a raw RTP packet, or None for anything that is not one.

    Reads the 12-byte fixed header, skips the CSRC list, and when ``audio_level_ext_id``
    (the ``a=extmap`` id of ``urn:ietf:params:rtp-hdrext:ssrc-audio-level``) is given,
    finds the RFC 6464 level in an RFC 8285 one- or two-byte header extension. Never
    raises: RTCP (RFC 5761 demultiplexing), a wrong version, truncation or a malformed
    extension all give None.
    """
    size = len(data)
    if size < 12:
        return None
    first, second, seq, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
    if first & 0xC0 != 0x80 or 192 <= second <= 223:
        return None
    offset = 12 + 4 * (first & 0x0F)
    if size < offset:
        return None
    level = None
    if first & 0x10:
        if size < offset + 4:
            return None
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > size:
            return None
        if audio_level_ext_id is not None:
            if profile == _ONE_BYTE_PROFILE:
                level = _one_byte_level(data, start, offset, audio_level_ext_id)
            elif profile & _TWO_BYTE_PROFILE_MASK == 0x1000:
                level = _two_byte_level(data, start, offset, audio_level_ext_id)
            if level is not None and level < 0:
                return None
    if first & 0x20 and (size == offset or data[-1] == 0 or offset + data[-1] > size):
        return None
    return RtpHeader(ssrc, seq, timestamp, second & 0x7F, second >= 0x80, size, level)


def _one_byte_level(data: bytes, index: int, end: int, wanted: int) -> int | None:
    """RFC 6464 level from one-byte elements; -1 if the extension block is malformed."""
    while index < end:
        head = data[index]
        if head == 0:  # padding between elements
            index += 1
            continue
        ext_id = head >> 4
        if ext_id == 15:  # reserved: stop parsing (RFC 8285 section 4.2)
            return None
        data_end = index + 2 + (head & 0x0F)
        if data_end > end:
            return -1
        if ext_id == wanted:
            return data[index + 1] & 0x7F
        index = data_end
    return None


def _two_byte_level(data: bytes, index: int, end: int, wanted: int) -> int | None:
    """RFC 6464 level from two-byte elements; -1 if the extension block is malformed."""
    while index < end:
        ext_id = data[index]
        if ext_id == 0:
            index += 1
            continue
        if index + 2 > end:
            return -1
        length = data[index + 1]
        data_end = index + 2 + length
        if data_end > end:
            return -1
        if ext_id == wanted:
            return data[index + 2] & 0x7F if length else -1
        index = data_end
    return None
