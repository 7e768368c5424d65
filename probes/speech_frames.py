"""The frame grid, frames, voice edges and parameters shared by the speech probes.

Theory of operation: every speech probe (probes/speech.py, probes/speech_smoothing.py,
probes/crosstalk.py) works on one grid of 30 ms frames whose start times are whole
multiples of ``FRAME`` on the caller's clock: frame ``k`` covers ``[k * FRAME, (k + 1) *
FRAME)``. The detectors snap their input to it, so two participants' frames line up by
index with no resampling. A frame is reported one at a time as a :class:`SpeechFrame`
(the public, per-frame form) or many at a time as a :class:`FrameBlock` (numpy arrays
over consecutive indices, the form the pipeline moves around: per-frame Python objects
cost more than webrtcvad itself).

Levels are dBov (RFC 6464 section 3): RMS relative to the overload point, a full-scale
square wave; a full-scale sine reads -3.01. Digital silence reads ``LEVEL_FLOOR_DB``
(-127, RFC 6464's value for it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from probes.base import ConfigError, Role

FRAME: Final = 0.03
"""Frame duration, seconds: the grid every speech probe shares."""

LEVEL_FLOOR_DB: Final = -127.0
"""Level of digital silence (RFC 6464's -127 dBov); no level reads lower."""

Levels = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]


def windows(values: Levels, width: int) -> Levels:
    """Every run of ``width`` consecutive values, one per row (a read-only view).

    ``numpy.lib.stride_tricks.sliding_window_view`` without its argument checks, which
    cost more than the work on the few frames a live batch holds."""
    count = len(values) - width + 1
    if count <= 0 or width <= 0:
        return np.empty((0, max(width, 0)))
    step = values.strides[0]
    view: Levels = as_strided(values, shape=(count, width), strides=(step, step), writeable=False)
    return view


def frame_index(t: float) -> int:
    """Index of the grid frame starting nearest to ``t``."""
    return round(t / FRAME)


def dbov_from_rfc6464(level: int) -> float:
    """RFC 6464 section 3: the 7-bit level is -dBov, 0 loudest, 127 digital silence."""
    return -float(level)


def dbov_from_audio_level(linear: float) -> float:
    """W3C webrtc-stats ``audioLevel``: linear 0..1 with 1.0 = 0 dBov, so 20 log10."""
    if not linear > 0.0:  # also catches NaN
        return LEVEL_FLOOR_DB
    return max(LEVEL_FLOOR_DB, 20.0 * math.log10(linear))


@dataclass(frozen=True, slots=True)
class SpeechConfig:
    """Parameters of speech detection and smoothing (probes/speech.py explains each)."""

    vad_mode: int = 2
    noise_margin_db: float = 10.0
    continue_margin_db: float = 5.0
    min_speech_level_db: float = -60.0
    click_share_ratio: float = 0.95
    floor_window: float = 1.5
    floor_stationary_band_db: float = 6.0
    floor_quick_window: float = 0.5
    floor_quick_band_db: float = 3.0
    warmup_steady: float = 0.3
    warmup_band_db: float = 4.0
    warmup_limit: float = 5.0
    digital_silence_db: float = -90.0
    timestamp_tolerance: float = 0.005
    min_run: float = 0.09
    fill_gap: float = 0.25
    min_burst: float = 0.1
    batch: float = 0.12

    def __post_init__(self) -> None:
        if self.vad_mode not in (0, 1, 2, 3):
            raise ConfigError(f"vad_mode must be 0..3, not {self.vad_mode}")
        if min(self.floor_window, self.floor_quick_window, self.warmup_steady) < 2 * FRAME:
            raise ConfigError(f"the floor and warm-up windows must be at least {2 * FRAME} s")
        if not 0.0 < self.timestamp_tolerance < FRAME / 2:
            raise ConfigError(f"timestamp_tolerance must be in (0, {FRAME / 2}) s")
        if self.batch < 0.0:
            raise ConfigError("batch must not be negative")
        if min(self.fill_gap, self.min_burst, self.min_run) < 0.0:
            raise ConfigError("fill_gap, min_burst and min_run must not be negative")
        if self.noise_margin_db < 0.0 or self.floor_stationary_band_db <= 0.0:
            raise ConfigError("noise_margin_db and floor_stationary_band_db must be positive")
        if not 0.0 <= self.continue_margin_db <= self.noise_margin_db:
            raise ConfigError("continue_margin_db must be within 0..noise_margin_db")

    @property
    def floor_window_frames(self) -> int:
        return round(self.floor_window / FRAME)

    @property
    def floor_quick_window_frames(self) -> int:
        return round(self.floor_quick_window / FRAME)

    @property
    def warmup_steady_frames(self) -> int:
        return round(self.warmup_steady / FRAME)

    @property
    def warmup_limit_frames(self) -> int:
        return max(1, round(self.warmup_limit / FRAME))


@dataclass(frozen=True, slots=True)
class SpeechFrame:
    """One 30 ms frame of one participant's audio, as a detector saw it.

    ``t`` is the frame's start on the caller's clock (a multiple of ``FRAME``),
    ``level_db`` its level in dBov (``LEVEL_FLOOR_DB`` for digital silence), ``voiced``
    the detector's decision before the crosstalk gate and smoothing, and
    ``noise_floor_db`` the floor that decision used (``LEVEL_FLOOR_DB`` before any
    non-silent frame).
    """

    t: float
    level_db: float
    voiced: bool
    noise_floor_db: float


@dataclass(frozen=True, slots=True, eq=False)
class FrameBlock:
    """Frames ``k0, k0 + 1, ...`` of one participant as arrays (the bulk SpeechFrame)."""

    k0: int
    level_db: Levels
    voiced: Flags
    noise_floor_db: Levels

    def __len__(self) -> int:
        return len(self.level_db)

    @property
    def end(self) -> int:
        """Index one past the last frame."""
        return self.k0 + len(self.level_db)

    def frames(self) -> list[SpeechFrame]:
        return [
            SpeechFrame((self.k0 + i) * FRAME, level, voiced, floor)
            for i, (level, voiced, floor) in enumerate(
                zip(
                    self.level_db.tolist(),
                    self.voiced.tolist(),
                    self.noise_floor_db.tolist(),
                    strict=True,
                )
            )
        ]

    def tail(self, k: int) -> FrameBlock:
        """The frames from index ``k`` on."""
        skip = max(0, k - self.k0)
        return FrameBlock(
            self.k0 + skip,
            self.level_db[skip:],
            self.voiced[skip:],
            self.noise_floor_db[skip:],
        )

    @staticmethod
    def of(frames: list[SpeechFrame]) -> list[FrameBlock]:
        """Blocks of consecutive grid indices, in order, from single frames."""
        blocks: list[FrameBlock] = []
        run: list[SpeechFrame] = []
        for frame in frames:
            if run and frame_index(frame.t) != frame_index(run[-1].t) + 1:
                blocks.append(FrameBlock._from_run(run))
                run = []
            run.append(frame)
        if run:
            blocks.append(FrameBlock._from_run(run))
        return blocks

    @staticmethod
    def _from_run(run: list[SpeechFrame]) -> FrameBlock:
        return FrameBlock(
            frame_index(run[0].t),
            np.array([f.level_db for f in run], dtype=np.float64),
            np.array([f.voiced for f in run], dtype=bool),
            np.array([f.noise_floor_db for f in run], dtype=np.float64),
        )


@dataclass(frozen=True, slots=True)
class VoiceStarted:
    """A talk spurt of ``role`` began at ``t`` (the start of its first frame)."""

    role: Role
    t: float


@dataclass(frozen=True, slots=True)
class VoiceStopped:
    """The talk spurt of ``role`` ended at ``t`` (the end of its last frame)."""

    role: Role
    t: float


VoiceEvent = VoiceStarted | VoiceStopped


@dataclass(frozen=True, slots=True)
class InputCounters:
    """Bad input a detector received and survived (counted, never raised)."""

    frame_count: int = 0
    bad_dtype_count: int = 0
    bad_shape_count: int = 0
    unsupported_rate_count: int = 0
    non_finite_count: int = 0
    gap_count: int = 0
    overlap_count: int = 0

    @property
    def bad_input_count(self) -> int:
        return (
            self.bad_dtype_count
            + self.bad_shape_count
            + self.unsupported_rate_count
            + self.non_finite_count
        )
