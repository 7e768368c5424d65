"""One video stream's freeze state: timing and content signals merged.

Theory of operation
-------------------
``VideoFreezeProbe`` owns, per received video stream, a ``FreezeDetector`` (W3C
webrtc-stats timing rule and pauses, probes/freeze.py) and, when decoded pictures are
available, a ``ContentFreezeDetector`` (identical content, probes/content_freeze.py).
It is fed one of two ways, fixed by the first input:

- full mode: ``on_frame(now=, thumbnail=)`` per decoded frame (thumbnail optional);
- metadata mode: ``on_rtp_packet(rtp_timestamp=, marker=, now=)`` per media packet, framed
  by an ``RtpFrameTracker`` (probes/rtp_frames.py); there is no content check.

Mixing the two on one probe would count every frame twice: it raises
``VideoInputModeError`` (a caller error, not bad media).

Merge rule, for the viewer's point of view: the picture is ``frozen`` when the timing rule
sees a freeze or a pause, or the content has not changed for 1 s. ``freeze_duration`` is
the longest of the ongoing ones. ``freeze_count`` and ``total_freezes_duration`` stay the
W3C figures (comparable with a browser's ``freezeCount``); ``freezes_recent_count`` counts
both kinds that began in the last 2 minutes, because a stuck camera is a freeze the
viewer saw. Before the first frame every signal is unknown (``None``), never zero.

Clock: ``now`` is monotonic seconds. The probe's only deadline is the timing detector's
(a content freeze can only be seen when frames arrive).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from probes.base import FeltsafeError, Role
from probes.content_freeze import (
    ContentFreezeConfig,
    ContentFreezeDetector,
    ContentFreezeEvent,
    ContentFreezeSnapshot,
    Thumbnail,
)
from probes.freeze import FreezeConfig, FreezeDetector, FreezeEvent, FreezeSnapshot
from probes.rtp_frames import RtpFrameTracker
from probes.signals import SignalValue

__all__ = [
    "VideoFreezeEvent",
    "VideoFreezeProbe",
    "VideoFreezeSnapshot",
    "VideoInputMode",
    "VideoInputModeError",
]

VideoFreezeEvent = FreezeEvent | ContentFreezeEvent


class VideoInputMode(StrEnum):
    FRAMES = "frames"
    RTP = "rtp"


class VideoInputModeError(FeltsafeError):
    """Frame-level and RTP-level input were mixed on one probe."""


@dataclass(frozen=True, slots=True)
class VideoFreezeSnapshot:
    timing: FreezeSnapshot
    content: ContentFreezeSnapshot | None  # None in metadata mode or without thumbnails
    frozen: bool | None  # None before the first frame
    freeze_duration: float | None
    freezes_recent_count: int | None

    def signals(self, role: Role) -> dict[str, SignalValue]:
        """The ``<role>.video.*`` signals of probes/signals.py."""
        known = self.frozen is not None
        timing = self.timing
        prefix = f"{role}.video"
        return {
            f"{prefix}.fps": timing.fps,
            f"{prefix}.frozen": self.frozen,
            f"{prefix}.freeze_s": self.freeze_duration,
            f"{prefix}.freeze_count": float(timing.freeze_count) if known else None,
            f"{prefix}.freezes_2m_count": (
                float(self.freezes_recent_count) if self.freezes_recent_count is not None else None
            ),
            f"{prefix}.total_freezes_s": timing.total_freezes_duration if known else None,
        }


class VideoFreezeProbe:
    """Freezes of one received video stream, from frames (full mode) or RTP (metadata)."""

    __slots__ = ("_content", "_events", "_mode", "_timing", "_tracker")

    def __init__(
        self,
        *,
        timing: FreezeConfig | None = None,
        content: ContentFreezeConfig | None = None,
    ) -> None:
        self._timing = FreezeDetector(timing)
        self._content = ContentFreezeDetector(content)
        self._tracker = RtpFrameTracker(self._timing)
        self._mode: VideoInputMode | None = None
        self._events: list[VideoFreezeEvent] = []

    @property
    def mode(self) -> VideoInputMode | None:
        return self._mode

    @property
    def rtp_frames(self) -> RtpFrameTracker:
        return self._tracker

    def on_frame(
        self, *, now: float, thumbnail: Thumbnail | None = None, frame_id: int | None = None
    ) -> None:
        """A decoded frame arrived; ``thumbnail`` from ``thumbnail_from_y_plane``."""
        self._enter(VideoInputMode.FRAMES)
        accepted_before = self._timing.frame_count
        self._timing.on_frame(now=now, frame_id=frame_id)
        # A frame the timing rule rejected (time going back, a duplicate) would read as an
        # identical picture: keep it away from the content check too.
        if thumbnail is not None and self._timing.frame_count > accepted_before:
            self._content.on_thumbnail(thumbnail, now=now)
        self._collect()

    def on_rtp_packet(self, *, rtp_timestamp: int, marker: bool, now: float) -> None:
        self._enter(VideoInputMode.RTP)
        self._tracker.on_packet(rtp_timestamp=rtp_timestamp, marker=marker, now=now)
        self._collect()

    def next_deadline(self) -> float | None:
        return self._timing.next_deadline()

    def on_timer(self, *, now: float) -> None:
        self._timing.on_timer(now=now)
        self._collect()

    def drain_events(self) -> list[VideoFreezeEvent]:
        events, self._events = self._events, []
        return events

    def snapshot(self, *, now: float) -> VideoFreezeSnapshot:
        timing = self._timing.snapshot(now=now)
        content: ContentFreezeSnapshot | None = self._content.snapshot(now=now)
        if content is not None and content.frame_count == 0:
            content = None
        if timing.frame_count == 0:
            return VideoFreezeSnapshot(timing, content, None, None, None)
        frozen = timing.frozen or (content is not None and content.frozen)
        duration = max(
            timing.current_freeze_duration,
            content.current_freeze_duration if content is not None else 0.0,
        )
        recent = timing.freezes_recent_count + (
            content.freezes_recent_count if content is not None else 0
        )
        return VideoFreezeSnapshot(timing, content, frozen, duration, recent)

    def _enter(self, mode: VideoInputMode) -> None:
        if self._mode is None:
            self._mode = mode
        elif self._mode is not mode:
            raise VideoInputModeError(
                f"this probe takes {self._mode} input; {mode} input needs its own probe"
            )

    def _collect(self) -> None:
        self._events.extend(self._timing.drain_events())
        self._events.extend(self._content.drain_events())
