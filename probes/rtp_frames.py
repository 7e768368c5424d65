"""Video frames from RTP headers alone (metadata mode).

Theory of operation
-------------------
Without decoding, a video frame is known from its RTP header (RFC 3550 §5.1; RFC 7741
§4.1 for VP8): every packet of a frame carries the same RTP timestamp, and the marker bit
is set on the last packet of the frame. ``RtpFrameTracker`` turns per-packet
``(rtp_timestamp, marker, now)`` into one ``on_frame(now=...)`` call per frame on a sink
(normally a ``FreezeDetector``), so the W3C timing rule works on encrypted media too.

Rules:

- A timestamp *newer* than every one seen so far opens a new frame. "Newer" is 32-bit
  serial-number arithmetic (RFC 1982 style): ``0 < (a - b) mod 2**32 < 2**31``, so the
  wrap from 4294967295 to 0 is a step forward, not back.
- A frame is reported once: at its marker packet, or, when the marker packet never
  arrives (lost), when the next frame's first packet arrives (at that packet's ``now``).
- A packet whose timestamp equals the current frame's is part of it (reordering inside a
  frame is harmless: the marker may come before its siblings).
- A packet with an *older* timestamp (a retransmission, a late reordered packet of an
  earlier frame) never counts as a frame: a late RTX of an old frame must not end a
  freeze. Those are counted in ``late_packet_count``; that is normal traffic, not bad input.

Feed only the media stream's packets (after RTX unwrap: an RTX packet carries the
original timestamp, so it is either part of the current frame or late, and never
harmful). Clock: ``now`` is monotonic seconds at packet arrival.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["FrameSink", "RtpFrameTracker", "rtp_timestamp_newer"]

_MOD = 1 << 32
_HALF = 1 << 31


def rtp_timestamp_newer(a: int, b: int) -> bool:
    """True when RTP timestamp ``a`` is after ``b`` in 32-bit wraparound arithmetic."""
    return 0 < (a - b) % _MOD < _HALF


class FrameSink(Protocol):
    def on_frame(self, *, now: float) -> None: ...


class RtpFrameTracker:
    """Per-stream frame boundaries from RTP timestamps and marker bits."""

    __slots__ = (
        "_current_reported",
        "_current_timestamp",
        "_frame_count",
        "_late_packet_count",
        "_marker_missing_count",
        "_packet_count",
        "_sink",
    )

    def __init__(self, sink: FrameSink) -> None:
        self._sink = sink
        self._current_timestamp: int | None = None
        self._current_reported = False
        self._frame_count = 0
        self._packet_count = 0
        self._late_packet_count = 0
        self._marker_missing_count = 0

    def on_packet(self, *, rtp_timestamp: int, marker: bool, now: float) -> None:
        self._packet_count += 1
        timestamp = rtp_timestamp % _MOD
        current = self._current_timestamp
        if current is not None and timestamp != current:
            if not rtp_timestamp_newer(timestamp, current):
                self._late_packet_count += 1
                return
            if not self._current_reported:
                self._marker_missing_count += 1
                self._report(now)
        if timestamp != current:
            self._current_timestamp = timestamp
            self._current_reported = False
        if marker and not self._current_reported:
            self._report(now)

    def _report(self, now: float) -> None:
        self._current_reported = True
        self._frame_count += 1
        self._sink.on_frame(now=now)

    @property
    def frame_count(self) -> int:
        return self._frame_count

    @property
    def packet_count(self) -> int:
        return self._packet_count

    @property
    def late_packet_count(self) -> int:
        """Packets of frames already superseded (retransmissions, late reordering)."""
        return self._late_packet_count

    @property
    def marker_missing_count(self) -> int:
        """Frames that ended without their marker packet (reported at the next frame)."""
        return self._marker_missing_count
