"""Video freezes and pauses from frame arrival times (W3C webrtc-stats timing rule).

Theory of operation
-------------------
Definition (W3C webrtc-stats, RTCInboundRtpStreamStats ``freezeCount`` /
``totalFreezesDuration``): an interval between two consecutive frames is a *freeze* when it
is at least ``max(3 x avg, avg + 150 ms)``, ``avg`` being the linear average of the last 30
frame intervals. libwebrtc (``video/video_quality_observer2.cc``) adds that nothing is
detected before 5 frame-interval samples exist (``kMinFrameSamplesToDetectFreeze``).
``pauseCount`` / ``totalPausesDuration``: a frame that arrives more than 5 s after the
previous one ends a *pause*; the whole interval is the pause's duration, and a pause is
not also a freeze (libwebrtc keeps the two apart and leaves pauses out of the average).

Decisions this module makes, where the sources leave room:

- The average never includes the interval under test. libwebrtc adds the current interval
  to its moving average before testing it (a 30 fps stream then needs about 188 ms instead
  of 183 ms); leaving it out is what lets the threshold be known *before* the next frame
  arrives, so an ongoing freeze has a deadline. Once the interval is over it enters the
  window, freezes included (as in libwebrtc): a lasting drop in frame rate (30 -> 5 fps)
  then stops counting as freezes after a few frames instead of forever.
- Detection needs at least 5 frames before the gap (4 intervals in the window), which is
  libwebrtc's 5 samples counting the gap itself.
- A stall of 5 s or more is a pause (W3C says "more than 5 s"; ``>=`` gives the timer an
  exact deadline and differs only on a set of measure zero). A stall first becomes a
  freeze at the freeze threshold, then a pause at 5 s: the events are ``FreezeStarted``
  then ``PauseStarted`` and, when frames resume, ``PauseEnded`` (no ``FreezeEnded``).
  ``freeze_count`` and ``total_freezes_duration`` follow W3C and count the stall as a
  pause only; the live ``frozen`` flag is about the picture and is true in both states
  (``paused`` tells them apart). When the threshold is above 5 s (frame rates under
  about 0.6 fps) a stall is only ever a pause.
- A freeze *starts* at the last frame's arrival (``FreezeStarted.start``), so a freeze's
  duration is the whole frame interval, as W3C sums it; ``detected_at`` is the moment the
  threshold was crossed as seen by ``on_timer`` or by the frame that ended the stall.
  Every ``FreezeStarted`` is followed by exactly one ``FreezeEnded`` or ``PauseStarted``,
  whatever the timer's granularity.

Clock: ``now`` is the caller's monotonic clock, in seconds, at frame arrival (or decode).
Edge cases: ``now`` going backwards is counted (``non_monotonic_count``) and the frame is
ignored; a frame repeating the previous frame's id is counted (``duplicate_frame_count``)
and ignored. Two frames at the same ``now`` are *not* duplicates: decoders and jitter
buffers release frames in bursts, and the zero interval is real data for the average.

Snapshot: ``fps`` counts frames that arrived in the last ``fps_window`` (2 s) divided by
that window; on a younger stream it is the mean rate since the first frame.
``freezes_recent_count`` counts freezes whose start lies in the last ``recent_window``
(2 min), the ongoing one included.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from probes.base import ConfigError

__all__ = [
    "FreezeConfig",
    "FreezeDetector",
    "FreezeEnded",
    "FreezeEvent",
    "FreezeSnapshot",
    "FreezeStarted",
    "PauseEnded",
    "PauseStarted",
]


@dataclass(frozen=True, slots=True)
class FreezeConfig:
    """Thresholds of the timing rule; defaults are W3C webrtc-stats / libwebrtc's."""

    window_intervals: int = 30  # W3C: "average of the last 30 rendered frames"
    min_frames: int = 5  # libwebrtc kMinFrameSamplesToDetectFreeze
    ratio: float = 3.0  # W3C: 3 x avg
    min_increase: float = 0.150  # W3C: avg + 150 ms
    pause_after: float = 5.0  # W3C pauseCount: more than 5 s without a frame
    fps_window: float = 2.0
    recent_window: float = 120.0

    def __post_init__(self) -> None:
        if self.window_intervals < 1 or self.min_frames < 2:
            raise ConfigError("freeze: window_intervals >= 1 and min_frames >= 2 are required")
        if self.min_frames - 1 > self.window_intervals:
            raise ConfigError("freeze: min_frames - 1 must fit in window_intervals")
        if self.ratio < 1 or self.min_increase < 0 or self.pause_after <= 0:
            raise ConfigError("freeze: ratio >= 1, min_increase >= 0, pause_after > 0")
        if self.fps_window <= 0 or self.recent_window <= 0:
            raise ConfigError("freeze: fps_window and recent_window must be positive")


@dataclass(frozen=True, slots=True)
class FreezeStarted:
    start: float  # arrival of the last frame before the stall
    detected_at: float


@dataclass(frozen=True, slots=True)
class FreezeEnded:
    start: float
    end: float  # arrival of the frame that ended the stall
    duration: float


@dataclass(frozen=True, slots=True)
class PauseStarted:
    start: float
    detected_at: float


@dataclass(frozen=True, slots=True)
class PauseEnded:
    start: float
    end: float
    duration: float


FreezeEvent = FreezeStarted | FreezeEnded | PauseStarted | PauseEnded


@dataclass(frozen=True, slots=True)
class FreezeSnapshot:
    frame_count: int
    frozen: bool  # a stall is under way: a freeze, or a freeze that became a pause
    paused: bool  # the stall has lasted pause_after or more
    current_freeze_duration: float  # length of the ongoing stall, 0.0 if none
    freeze_count: int  # W3C freezeCount: completed freezes, pauses excluded
    total_freezes_duration: float
    pause_count: int
    total_pauses_duration: float
    freezes_recent_count: int  # freezes that began in the last recent_window
    fps: float | None
    since_last_frame: float | None
    freeze_threshold: float | None  # the interval that would be a freeze now
    non_monotonic_count: int
    duplicate_frame_count: int


class _Stall(StrEnum):
    NONE = "none"
    FREEZE = "freeze"
    PAUSE = "pause"


class FreezeDetector:
    """W3C freezes and pauses of one video stream, from frame arrival times."""

    __slots__ = (
        "_config",
        "_duplicate_frame_count",
        "_events",
        "_first_frame",
        "_frame_count",
        "_freeze_count",
        "_intervals",
        "_last_frame",
        "_last_frame_id",
        "_non_monotonic_count",
        "_pause_count",
        "_recent_arrivals",
        "_recent_freeze_starts",
        "_stall",
        "_total_freezes_duration",
        "_total_pauses_duration",
    )

    def __init__(self, config: FreezeConfig | None = None) -> None:
        self._config = config or FreezeConfig()
        self._intervals: deque[float] = deque(maxlen=self._config.window_intervals)
        self._recent_arrivals: deque[float] = deque()
        self._recent_freeze_starts: deque[float] = deque()
        self._events: list[FreezeEvent] = []
        self._first_frame: float | None = None
        self._last_frame: float | None = None
        self._last_frame_id: int | None = None
        self._frame_count = 0
        self._stall = _Stall.NONE
        self._freeze_count = 0
        self._total_freezes_duration = 0.0
        self._pause_count = 0
        self._total_pauses_duration = 0.0
        self._non_monotonic_count = 0
        self._duplicate_frame_count = 0

    @property
    def config(self) -> FreezeConfig:
        return self._config

    @property
    def frame_count(self) -> int:
        """Frames accepted so far (bad input excluded)."""
        return self._frame_count

    # -- input ------------------------------------------------------------------------

    def on_frame(self, *, now: float, frame_id: int | None = None) -> None:
        """A frame arrived (was decoded, or completed at the RTP level) at ``now``.

        ``frame_id`` (an RTP timestamp, a pts) is optional; when given, a frame repeating
        the previous frame's id is a duplicate and is counted, not used.
        """
        last = self._last_frame
        if last is not None and now < last:
            self._non_monotonic_count += 1
            return
        if frame_id is not None and frame_id == self._last_frame_id:
            self._duplicate_frame_count += 1
            return
        if last is not None:
            self._end_interval(last, now)
        else:
            self._first_frame = now
        self._last_frame = now
        self._last_frame_id = frame_id
        self._frame_count += 1
        self._recent_arrivals.append(now)
        self._prune(now)

    def next_deadline(self) -> float | None:
        """When the current interval becomes a freeze, then a pause; None if nothing is due."""
        last = self._last_frame
        if last is None or self._stall is _Stall.PAUSE:
            return None
        pause_at = last + self._config.pause_after
        threshold = self._threshold()
        if self._stall is _Stall.NONE and threshold is not None:
            return min(last + threshold, pause_at)
        return pause_at

    def on_timer(self, *, now: float) -> None:
        """Announce an ongoing freeze (or pause) whose deadline has passed."""
        if self._last_frame is not None and now >= self._last_frame:
            self._advance(now)

    def drain_events(self) -> list[FreezeEvent]:
        events, self._events = self._events, []
        return events

    # -- output -----------------------------------------------------------------------

    def snapshot(self, *, now: float) -> FreezeSnapshot:
        last = self._last_frame
        since_last = None if last is None else max(0.0, now - last)
        stall = self._stall_at(now)
        recent_start = now - self._config.recent_window
        recent = sum(1 for start in self._recent_freeze_starts if start >= recent_start)
        if stall is _Stall.FREEZE and last is not None and last >= recent_start:
            recent += 1
        return FreezeSnapshot(
            frame_count=self._frame_count,
            frozen=stall is not _Stall.NONE,
            paused=stall is _Stall.PAUSE,
            current_freeze_duration=(
                since_last if stall is not _Stall.NONE and since_last is not None else 0.0
            ),
            freeze_count=self._freeze_count,
            total_freezes_duration=self._total_freezes_duration,
            pause_count=self._pause_count,
            total_pauses_duration=self._total_pauses_duration,
            freezes_recent_count=recent,
            fps=self._fps(now),
            since_last_frame=since_last,
            freeze_threshold=self._threshold(),
            non_monotonic_count=self._non_monotonic_count,
            duplicate_frame_count=self._duplicate_frame_count,
        )

    # -- internals --------------------------------------------------------------------

    def _threshold(self) -> float | None:
        intervals = self._intervals
        if len(intervals) < self._config.min_frames - 1:
            return None
        avg = sum(intervals) / len(intervals)
        return max(self._config.ratio * avg, avg + self._config.min_increase)

    def _stall_at(self, now: float) -> _Stall:
        """What the interval under way is at ``now``, without side effects.

        Compares against the same sums ``next_deadline`` returns, so a timer fired exactly
        at a deadline always advances the state (no rounding loop).
        """
        last = self._last_frame
        if last is None:
            return _Stall.NONE
        if now >= last + self._config.pause_after:
            return _Stall.PAUSE
        threshold = self._threshold()
        if threshold is not None and now >= last + threshold:
            return _Stall.FREEZE
        return _Stall.NONE

    def _advance(self, now: float) -> None:
        """Move the stall state up to ``now``, announcing each step at most once."""
        assert self._last_frame is not None
        last = self._last_frame
        target = self._stall_at(now)
        if self._stall is _Stall.NONE and target is not _Stall.NONE:
            threshold = self._threshold()
            if threshold is not None and threshold < self._config.pause_after:
                self._events.append(FreezeStarted(start=last, detected_at=now))
            self._stall = _Stall.FREEZE
        if self._stall is _Stall.FREEZE and target is _Stall.PAUSE:
            self._events.append(PauseStarted(start=last, detected_at=now))
            self._stall = _Stall.PAUSE

    def _end_interval(self, last: float, now: float) -> None:
        self._advance(now)
        interval = now - last
        if self._stall is _Stall.PAUSE:
            self._pause_count += 1
            self._total_pauses_duration += interval
            self._events.append(PauseEnded(start=last, end=now, duration=interval))
        else:
            if self._stall is _Stall.FREEZE:
                self._freeze_count += 1
                self._total_freezes_duration += interval
                self._recent_freeze_starts.append(last)
                self._events.append(FreezeEnded(start=last, end=now, duration=interval))
            self._intervals.append(interval)
        self._stall = _Stall.NONE

    def _prune(self, now: float) -> None:
        arrivals_from = now - self._config.fps_window
        while self._recent_arrivals and self._recent_arrivals[0] <= arrivals_from:
            self._recent_arrivals.popleft()
        freezes_from = now - self._config.recent_window
        while self._recent_freeze_starts and self._recent_freeze_starts[0] < freezes_from:
            self._recent_freeze_starts.popleft()

    def _fps(self, now: float) -> float | None:
        first, last = self._first_frame, self._last_frame
        if first is None or last is None:
            return None
        window = self._config.fps_window
        if now - first >= window:
            since = now - window
            return sum(1 for t in self._recent_arrivals if t > since) / window
        if self._frame_count < 2 or last <= first:
            return None
        return (self._frame_count - 1) / (last - first)
