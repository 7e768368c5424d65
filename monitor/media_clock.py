"""Placing media on the session clock by its own timestamps rather than by arrival.

Theory of operation (LAB.md): arrival times carry the network's jitter and aiortc's
jitter buffer releases decoded audio in bursts and drops frames under loss, so a frame's
time is best taken from its media timestamp (a decoded frame's pts, an RTP timestamp)
mapped onto the monotonic session clock. The offset ``arrival - media time`` is
anchored on the least-delayed frame seen, so no frame is placed after it arrived, and
re-anchored when frames come more than ``resync_after`` later than their timestamp
predicts (the sender stalled with continuous timestamps, or the clocks drifted), or when
the media time goes backwards (a new stream).

:class:`RtpTimestampClock` adds what RTP needs: 32-bit wraparound, the clock rate, and
refusing packets older than the newest (a late packet carries no new time).
"""

from __future__ import annotations

RESYNC_AFTER = 1.0


class MediaClock:
    """Maps media time (seconds, arbitrary origin) to the session clock."""

    __slots__ = ("_last", "_last_media", "_offset", "_resync_after")

    def __init__(self, *, resync_after: float = RESYNC_AFTER) -> None:
        self._offset: float | None = None
        self._last = float("-inf")
        self._last_media: float | None = None
        self._resync_after = resync_after

    def place(self, media_time: float, arrival: float) -> float:
        """The session time of the media at ``media_time``, never before the previous one.

        A frame that arrives earlier than the anchor predicts lowers the anchor; the
        frames placed before it cannot move, so the first frames of a stream may be
        placed up to one arrival burst late (the clamp keeps time monotonic).
        """
        if self._last_media is not None and media_time < self._last_media:
            self._offset = None  # media time went backwards: a new stream
        offset = arrival - media_time
        if (
            self._offset is None
            or offset < self._offset
            or offset - self._offset > self._resync_after
        ):
            self._offset = offset
        placed = max(self._offset + media_time, self._last)
        self._last = placed
        self._last_media = media_time
        return placed


class RtpTimestampClock:
    """Places RTP packets of one stream; :meth:`place` returns None for stale packets."""

    __slots__ = ("_clock", "_extended", "_last")

    def __init__(self) -> None:
        self._clock = MediaClock()
        self._last: int | None = None
        self._extended = 0

    def place(self, timestamp: int, clock_rate: int, arrival: float) -> tuple[float, float] | None:
        """(session time, seconds since the previous newer packet), or None if not newer."""
        if self._last is None:
            self._last = timestamp
            return self._clock.place(0.0, arrival), 0.0
        step = ((timestamp - self._last + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
        if step <= 0:
            return None
        self._last = timestamp
        self._extended += step
        return self._clock.place(self._extended / clock_rate, arrival), step / clock_rate
