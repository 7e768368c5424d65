"""Identical-content freezes: frames keep arriving but the picture does not change.

Theory of operation
-------------------
A camera or encoder that is stuck keeps sending frames, so the W3C timing rule
(probes/freeze.py) sees nothing, while the viewer sees a still picture. This probe compares
each frame with the previous one on a small grayscale thumbnail (the decoded Y plane,
subsampled by ``thumbnail_from_y_plane`` to about 64 x 36) and declares a *content freeze*
when the picture has stayed identical for ``min_duration`` (1 s, DESIGN.md).

Public monitors do not define this one: webrtc-issue-detector and ObserveRTC detect frozen
video from getStats() counters (``freezeCount``, ``framesDecoded`` not moving), i.e. the
timing rule. The rule here is ours:

- A frame pair differs by ``d``, the mean absolute difference of the thumbnails (grey
  levels), plus a motion guard: ``motion_pixel_count`` (4) or more pixels changing by more
  than ``motion_level`` (24) is local motion (a blink, a hand), never "identical".
- The *noise floor* ``F`` is the ``floor_quantile`` (20th percentile) of ``d`` over the
  last ``floor_samples`` (256, about 8.5 s at 30 fps) pairs judged live; motion only adds
  to ``d``, so a low quantile is the noise part. A live camera never drops below its own
  sensor noise: Gaussian noise of sigma 2 per pixel gives ``d ~ 2.26`` (sigma x 2 /
  sqrt(pi)) with a spread of about 0.035 over 2,304 pixels.
- A pair is *identical* when ``d == 0``, or when ``d <= min(max_identical_difference,
  floor_ratio x F)``: at most half a grey level and at most a tenth of the tracked floor.
  Until ``min_floor_samples`` live pairs have been seen, only bit-identical pairs count.
  The absolute cap means a raw sensor with sigma >= about 0.5 can never look frozen while
  live, whatever the floor estimate; the ratio protects cleaner (encoded) sources.
- Identical pairs do not feed the floor, so a long stall cannot teach the probe that
  "no change" is normal and end itself.
- A content freeze *starts* at the arrival of the first frame of the identical run (the
  last one that differed from its predecessor), is announced by the frame that makes the
  run last ``min_duration`` (so within one frame interval), and ends at the first frame
  that differs. Every pair inside the run must be identical: one live pair ends it.

Why a tenth, measured here through aiortc's own VP8 encoder and decoder (temporal
denoiser on, ``noise-sensitivity`` 4; 320x180 and 640x360; thumbnails 64x36). The denoiser
removes most sensor noise: consecutive decoded frames of a still scene with sensor noise
sigma 2 differ by d ~ 0.05-0.15, and a stuck source (identical input) converges to d ~
0.005 at 500 kbps and above, 0.01-0.1 at 150-250 kbps, after a few refinement frames of up
to ~1.0. A scene with a moving subject gives a floor of 0.3-1.4. With a ratio of 0.1, a stuck
source after motion was found at every bitrate tried (150 k to 1 Mbps; announced 1.0-1.8 s
after the stall began), and a scene that stopped moving but kept sensor noise of sigma 2
was never called frozen. At sigma 1 it was, after large motion (floor >= 0.6); with a
ratio of 0.25, already after small motion. The limit, stated plainly: after VP8, a picture
that is *perfectly* motionless and nearly noiseless is, pixel for pixel, the same as a
stuck one, and after a period of motion it is reported as a content freeze. Real people
are rarely that still for a second, but the rule has not been checked on recorded footage
of real people.

Content never leaves the probe: only the previous thumbnail is kept (as int16, for the
subtraction), nothing else of the picture, and no thumbnail is logged or exported.
Clock: ``now`` is monotonic seconds at frame arrival. Edge cases: ``now`` going backwards
is counted and the frame ignored; a change of thumbnail shape (a resolution change) is
counted and ends any run, since the pictures cannot be compared.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from probes.base import ConfigError, FeltsafeError

__all__ = [
    "ContentFreezeConfig",
    "ContentFreezeDetector",
    "ContentFreezeEnded",
    "ContentFreezeEvent",
    "ContentFreezeSnapshot",
    "ContentFreezeStarted",
    "ThumbnailError",
    "thumbnail_from_y_plane",
]

Thumbnail = npt.NDArray[np.uint8]


class ThumbnailError(FeltsafeError):
    """The caller passed something that is not a 2-D uint8 grayscale image."""


def thumbnail_from_y_plane(
    y: npt.NDArray[np.uint8], *, width: int = 64, height: int = 36
) -> Thumbnail:
    """A strided subsample of a luma plane, at most ``height`` x ``width``, covering it all.

    Takes every n-th pixel (no averaging: it costs a view, and keeps the sensor noise the
    noise floor relies on). ``y`` must be the visible picture: slice off any line padding
    (PyAV planes are ``line_size`` wide) before calling. Returns a view, not a copy.
    """
    if y.ndim != 2:
        raise ThumbnailError("a Y plane is a 2-D array")
    if width < 1 or height < 1:
        raise ThumbnailError("thumbnail width and height must be positive")
    rows, cols = y.shape
    step_y = max(1, -(-rows // height))
    step_x = max(1, -(-cols // width))
    return y[::step_y, ::step_x]


@dataclass(frozen=True, slots=True)
class ContentFreezeConfig:
    min_duration: float = 1.0  # DESIGN.md: unchanged for >= 1 s
    floor_ratio: float = 0.1
    max_identical_difference: float = 0.5  # grey levels, mean absolute difference
    motion_level: int = 24
    motion_pixel_count: int = 4
    floor_quantile: float = 0.2
    floor_samples: int = 256
    min_floor_samples: int = 15
    floor_refresh_every: int = 8  # live pairs between two quantile computations
    recent_window: float = 120.0

    def __post_init__(self) -> None:
        if self.min_duration <= 0 or self.recent_window <= 0:
            raise ConfigError("content freeze: min_duration and recent_window must be > 0")
        if not 0 < self.floor_ratio < 1 or self.max_identical_difference < 0:
            raise ConfigError("content freeze: 0 < floor_ratio < 1, max difference >= 0")
        if not 0 <= self.floor_quantile <= 1:
            raise ConfigError("content freeze: floor_quantile must lie in [0, 1]")
        if not 1 <= self.min_floor_samples <= self.floor_samples:
            raise ConfigError("content freeze: 1 <= min_floor_samples <= floor_samples")
        if self.motion_level < 0 or self.motion_pixel_count < 1 or self.floor_refresh_every < 1:
            raise ConfigError("content freeze: motion and refresh settings out of range")


@dataclass(frozen=True, slots=True)
class ContentFreezeStarted:
    start: float  # arrival of the first frame of the identical run
    detected_at: float


@dataclass(frozen=True, slots=True)
class ContentFreezeEnded:
    start: float
    end: float  # arrival of the first frame that differed
    duration: float


ContentFreezeEvent = ContentFreezeStarted | ContentFreezeEnded


@dataclass(frozen=True, slots=True)
class ContentFreezeSnapshot:
    frame_count: int
    frozen: bool
    current_freeze_duration: float  # 0.0 if not frozen
    freeze_count: int  # completed content freezes
    total_freezes_duration: float
    freezes_recent_count: int  # content freezes that began in the last recent_window
    noise_floor: float | None  # grey levels; None until enough live pairs
    identical_tolerance: float  # the largest d that counts as identical now
    last_difference: float | None
    non_monotonic_count: int
    shape_change_count: int


class ContentFreezeDetector:
    """Identical-content freezes of one video stream, from grayscale thumbnails."""

    __slots__ = (
        "_config",
        "_events",
        "_floor",
        "_floor_count",
        "_floor_pending",
        "_floor_pos",
        "_floor_ring",
        "_frame_count",
        "_freeze_count",
        "_frozen",
        "_last_difference",
        "_non_monotonic_count",
        "_previous",
        "_previous_time",
        "_recent_starts",
        "_run_start",
        "_shape_change_count",
        "_total_freezes_duration",
    )

    def __init__(self, config: ContentFreezeConfig | None = None) -> None:
        self._config = config or ContentFreezeConfig()
        self._previous: npt.NDArray[np.int16] | None = None
        self._previous_time: float | None = None
        self._run_start: float | None = None
        self._frozen = False
        self._events: list[ContentFreezeEvent] = []
        self._floor_ring = np.zeros(self._config.floor_samples, dtype=np.float64)
        self._floor_count = 0
        self._floor_pos = 0
        self._floor_pending = 0
        self._floor: float | None = None
        self._last_difference: float | None = None
        self._frame_count = 0
        self._freeze_count = 0
        self._total_freezes_duration = 0.0
        self._recent_starts: deque[float] = deque()
        self._non_monotonic_count = 0
        self._shape_change_count = 0

    @property
    def config(self) -> ContentFreezeConfig:
        return self._config

    def on_thumbnail(self, thumbnail: Thumbnail, *, now: float) -> None:
        if thumbnail.ndim != 2 or thumbnail.dtype != np.uint8:
            raise ThumbnailError("a thumbnail is a 2-D uint8 array")
        previous_time = self._previous_time
        if previous_time is not None and now < previous_time:
            self._non_monotonic_count += 1
            return
        current = thumbnail.astype(np.int16)
        previous = self._previous
        self._previous, self._previous_time = current, now
        self._frame_count += 1
        if previous is None or previous_time is None:
            return
        if current.shape != previous.shape:
            self._shape_change_count += 1
            self._last_difference = None
            self._end_run(now)
            return
        diff = np.abs(current - previous)
        difference = float(diff.mean())
        self._last_difference = difference
        moving = np.count_nonzero(diff > self._config.motion_level)
        if moving < self._config.motion_pixel_count and (
            difference == 0.0 or difference <= self._tolerance()
        ):
            self._extend_run(previous_time, now)
        else:
            self._end_run(now)
            self._learn_floor(difference)

    def drain_events(self) -> list[ContentFreezeEvent]:
        events, self._events = self._events, []
        return events

    def snapshot(self, *, now: float) -> ContentFreezeSnapshot:
        recent_start = now - self._config.recent_window
        recent = sum(1 for start in self._recent_starts if start >= recent_start)
        run_start = self._run_start
        if self._frozen and run_start is not None and run_start >= recent_start:
            recent += 1
        return ContentFreezeSnapshot(
            frame_count=self._frame_count,
            frozen=self._frozen,
            current_freeze_duration=(
                max(0.0, now - run_start) if self._frozen and run_start is not None else 0.0
            ),
            freeze_count=self._freeze_count,
            total_freezes_duration=self._total_freezes_duration,
            freezes_recent_count=recent,
            noise_floor=self._floor,
            identical_tolerance=self._tolerance(),
            last_difference=self._last_difference,
            non_monotonic_count=self._non_monotonic_count,
            shape_change_count=self._shape_change_count,
        )

    # -- internals --------------------------------------------------------------------

    def _tolerance(self) -> float:
        if self._floor is None:
            return 0.0
        return min(self._config.max_identical_difference, self._config.floor_ratio * self._floor)

    def _extend_run(self, previous_time: float, now: float) -> None:
        if self._run_start is None:
            self._run_start = previous_time
        if not self._frozen and now - self._run_start >= self._config.min_duration:
            self._frozen = True
            self._events.append(ContentFreezeStarted(start=self._run_start, detected_at=now))

    def _end_run(self, now: float) -> None:
        start = self._run_start
        if self._frozen and start is not None:
            duration = now - start
            self._freeze_count += 1
            self._total_freezes_duration += duration
            self._recent_starts.append(start)
            self._events.append(ContentFreezeEnded(start=start, end=now, duration=duration))
            while self._recent_starts and self._recent_starts[0] < now - self._config.recent_window:
                self._recent_starts.popleft()
        self._run_start = None
        self._frozen = False

    def _learn_floor(self, difference: float) -> None:
        config = self._config
        self._floor_ring[self._floor_pos] = difference
        self._floor_pos = (self._floor_pos + 1) % config.floor_samples
        self._floor_count = min(self._floor_count + 1, config.floor_samples)
        self._floor_pending += 1
        if self._floor_count < config.min_floor_samples:
            return
        if self._floor is None or self._floor_pending >= config.floor_refresh_every:
            samples = self._floor_ring[: self._floor_count]
            self._floor = float(np.quantile(samples, config.floor_quantile))
            self._floor_pending = 0
