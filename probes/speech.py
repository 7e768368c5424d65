"""Speech activity per participant: frame levels, a noise floor, voicing and smoothing.

Theory of operation
-------------------
Everything here works on one **frame grid**: 30 ms frames whose start times are whole
multiples of ``FRAME`` on the caller's clock (frame ``k`` covers ``[k * FRAME, (k + 1) *
FRAME)``). Both detectors snap their input to that grid, so the frames of the two
participants line up by index and the crosstalk gate (probes/crosstalk.py) can compare
them without resampling. A frame is a :class:`SpeechFrame`: its start ``t``, its level in
dB relative to full scale, the detector's decision ``voiced`` (before the crosstalk gate
and before smoothing) and the noise floor that decision used.

Level
    RMS of the frame relative to a full-scale square wave, ``10 log10(mean(x^2) /
    32768^2)``: the dBov of RFC 6464 section 3 (0 dBov is the overload point; a full-scale
    sine reads -3.01), the same figure WebRTC's ``RmsLevel`` puts in the RTP header.
    Digital silence reads ``LEVEL_FLOOR_DB`` (-127, RFC 6464's value for silence).

Noise floor (:class:`NoiseFloorTracker`)
    A minimum tracker in the spirit of minimum statistics (R. Martin, "Noise power
    spectral density estimation based on optimal smoothing and minimum statistics",
    IEEE Trans. Speech Audio Process. 9(5), 2001), with the rise made conditional:

    - *fall* at once to any lower frame level (inter-syllable dips and pauses pull it
      down to the room; a rare lone low frame costs at most ``floor_window`` of a floor
      that is too low, during which webrtcvad alone decides);
    - *rise* only when the recent levels are stationary: the last ``floor_window``
      (1.5 s) all within ``floor_stationary_band_db`` (6 dB) of each other, or the last
      ``floor_quick_window`` (0.5 s) within ``floor_quick_band_db`` (3 dB); the floor is
      then the minimum of that window. Steady noise is learned within 0.5-1.5 s of
      starting (measured spreads: white 1.6 dB over 1.5 s and 1.5 dB over 0.5 s, pink
      from 40 Hz 4.5 and 3.8 dB, hum 0); speech is not, because its syllable
      modulation spans more in any such window (even a synthetic legato voice whose
      envelope dips only 15 dB spans at least 7.5 dB over 1.5 s and 5.9 dB over
      0.5 s). So the floor cannot creep up during a long monologue, however few pauses
      it has. While a louder noise is being learned, webrtcvad alone decides: a step
      up in noise can read as talk for up to the window (0.5 s for white noise);
    - digital silence (below ``digital_silence_db``: mute, DTX, zero fill) says nothing
      about the room and is ignored;
    - it starts at the first non-silent frame's level (falls from there on the first dip).

    Fluctuating noise (babble, music) is not learned as floor: it is not steady noise,
    and webrtcvad plus the crosstalk gate see it.

Voicing (:class:`VadDetector`, from PCM)
    webrtcvad (WebRTC's GMM voice activity detector, ``vad_mode`` 0-3, default 2) on each
    30 ms frame of 16 kHz mono, AND the frame's level at least ``noise_margin_db`` (10 dB)
    above the noise floor, AND at least ``min_speech_level_db``, AND not a click.
    webrtcvad alone calls loud steady noise speech (white noise at -20 dBov, hum at -30)
    and holds a hangover of 2-3 frames after every keyboard click; the level condition
    removes the first, and the click test (a frame holding more than
    ``click_share_ratio``, 95 %, of its energy within 5 ms: a voice, periodic at its
    pitch, spreads its energy; measured on synthetic voices down to 60 Hz, under 2 % of
    voiced frames exceed it, against 94 % of click frames) the second. Mode 2 was picked
    by measurement (tests/probes/test_speech_detector.py): on voiced speech it matches
    mode 3 at ordinary levels, but mode 3 loses a quiet talker (about 25 % of the
    frames of a voice at -46 dBov, none at -51) where mode 2 keeps over 90 %; mode 3's
    extra rejection of noise and clicks is redundant with the level and click tests.

    Input: int16 (or float in [-1, 1]) at 16 kHz times an integer (16, 32, 48 kHz...),
    mono or interleaved (or planar ``(channels, n)``) multi-channel, e.g. aiortc's
    decoded Opus (48 kHz interleaved stereo s16). Channels are averaged and the rate
    brought to 16 kHz by averaging each group of ``rate / 16000`` input samples and
    keeping one: at 48 kHz a 3-tap boxcar, ``|H(f)| = |sin(3 pi f / 48000) / (3 sin(pi f
    / 48000))|``: -3.5 dB at 8 kHz, nulls at 16 and 32 kHz, so what folds into the
    0-4 kHz band webrtcvad analyses (from 12-20 kHz) is attenuated by 9.5 dB or more,
    on top of speech's own 40-60 dB fall-off up there. Cheaper than av's resampler and
    plenty for a speech/non-speech decision. Input is processed in blocks (levels
    vectorised with numpy; webrtcvad once per frame).

    ``t`` is the time of the first sample. Consecutive calls within
    ``timestamp_tolerance`` of the expected time are contiguous (the sample count keeps
    the clock, so caller jitter cannot drift the grid); a later ``t`` is a gap (the
    partial frame is dropped and the grid re-entered at the next frame boundary); an
    earlier one an overlap (the overlapping samples are dropped). Bad input from a peer
    (wrong dtype or shape, an odd interleaved length, NaN, an unsupported rate) is
    counted in :class:`InputCounters`, never raised.

Voicing (:class:`LevelDetector`, from levels alone: metadata mode)
    A level per RTP packet (RFC 6464: 0..127 meaning 0..-127 dBov, one per 20 ms packet;
    use the level, not the V bit, which Chrome sets almost always) or a browser's
    ``audioLevel`` (W3C webrtc-stats: linear 0..1, 1.0 = 0 dBov, so ``20 log10``; about
    every 100 ms). Each level covers ``[now - duration, now)``; power is averaged onto the
    same 30 ms grid (a frame needs half its span covered), then the same noise floor and
    the same margin decide ``voiced``; there is no webrtcvad to ask. Levels averaged
    over more than a frame (a browser's 100 ms) vary less than 30 ms ones, so the floor's
    stationarity windows and the warm-up are stretched by ``duration / FRAME`` (set by
    the first level) to see as many independent levels; a steady stretch of speech
    levels would otherwise pass for noise.

Smoothing (:class:`Smoother`)
    Per participant, gated booleans become talk spurts the way Brady's on-off analysis
    does it (P. T. Brady, "A statistical analysis of on-off patterns in 16
    conversations", Bell Syst. Tech. J. 47(1), 1968: gaps under 200 ms are filled, they
    are stop consonants and syllable joins, not pauses): first every run of voiced
    frames shorter than ``min_burst`` (100 ms) is dropped, then gaps shorter than
    ``fill_gap`` (200 ms) between the surviving runs are filled. So every spurt is at
    least ``min_burst`` long and every silence between spurts at least ``fill_gap``,
    whatever the input. :class:`VoiceStarted` and :class:`VoiceStopped` carry the true
    edges (start of the first frame, end of the last) and are emitted once decided: a
    start ``min_burst`` after it, a stop ``fill_gap`` after it (a little more if a new
    run began inside the fill window and has not yet proved itself). Frame times are the
    smoother's clock; ``advance(now=...)`` is a watermark (no frame will come with
    ``t < now``) that decides what silence alone can decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import webrtcvad
from numpy.lib.stride_tricks import sliding_window_view

from probes.base import ConfigError, Role

FRAME: Final = 0.03
"""Frame duration, seconds: the grid every speech probe shares."""

VAD_RATE: Final = 16000
FRAME_SAMPLES: Final = 480  # FRAME at VAD_RATE
LEVEL_FLOOR_DB: Final = -127.0
"""Level of digital silence (RFC 6464's -127 dBov); no level reads lower."""

_FULL_SCALE_DB: Final = 20.0 * math.log10(32768.0)
_EPS: Final = 1e-6  # seconds; below any sample period that matters here
_BLOCK_FRAMES: Final = 2048  # frames per numpy block: about a minute, bounded memory
_CLICK_BLOCKS: Final = 12  # 2.5 ms blocks per frame, for the click test


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
    """Parameters of speech detection and smoothing; defaults from DESIGN.md."""

    vad_mode: int = 2
    noise_margin_db: float = 10.0
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
    fill_gap: float = 0.2
    min_burst: float = 0.1

    def __post_init__(self) -> None:
        if self.vad_mode not in (0, 1, 2, 3):
            raise ConfigError(f"vad_mode must be 0..3, not {self.vad_mode}")
        if self.floor_window < 2 * FRAME:
            raise ConfigError(f"floor_window must be at least {2 * FRAME} s")
        if not 0.0 < self.timestamp_tolerance < FRAME / 2:
            raise ConfigError(f"timestamp_tolerance must be in (0, {FRAME / 2}) s")
        if self.fill_gap < 0.0 or self.min_burst < 0.0:
            raise ConfigError("fill_gap and min_burst must not be negative")
        if self.noise_margin_db < 0.0 or self.floor_stationary_band_db <= 0.0:
            raise ConfigError("noise_margin_db and floor_stationary_band_db must be positive")

    @property
    def floor_window_frames(self) -> int:
        return max(2, round(self.floor_window / FRAME))

    @property
    def floor_quick_window_frames(self) -> int:
        return max(2, round(self.floor_quick_window / FRAME))

    @property
    def warmup_steady_frames(self) -> int:
        return max(2, round(self.warmup_steady / FRAME))

    @property
    def warmup_limit_frames(self) -> int:
        return max(1, round(self.warmup_limit / FRAME))


@dataclass(frozen=True, slots=True)
class SpeechFrame:
    """One 30 ms frame of one participant's audio, as a detector saw it.

    ``t`` is the frame's start on the caller's clock (a multiple of ``FRAME``),
    ``level_db`` its RMS level in dBov (``LEVEL_FLOOR_DB`` for digital silence),
    ``voiced`` the detector's decision before the crosstalk gate and smoothing, and
    ``noise_floor_db`` the floor that decision used (``LEVEL_FLOOR_DB`` before any
    non-silent frame).
    """

    t: float
    level_db: float
    voiced: bool
    noise_floor_db: float


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


class NoiseFloorTracker:
    """Fast-falling, stationarity-gated minimum tracker over frame levels (see module doc)."""

    def __init__(self, config: SpeechConfig, *, scale: float = 1.0) -> None:
        # (window frames, band dB): the long test, then the quick one for very steady noise.
        # ``scale`` frames per independent level: coarser input needs longer windows.
        self._tests = (
            (math.ceil(config.floor_window_frames * scale), config.floor_stationary_band_db),
            (math.ceil(config.floor_quick_window_frames * scale), config.floor_quick_band_db),
        )
        self._history = max(window for window, _ in self._tests) - 1
        self._silence_db = config.digital_silence_db
        self._tail = np.empty(0, dtype=np.float64)  # the last _history levels
        self._floor: float | None = None

    @property
    def floor_db(self) -> float | None:
        return self._floor

    def track(self, levels: npt.NDArray[np.float64]) -> list[float | None]:
        """Update with consecutive frame levels; return the floor in force at each."""
        joined = np.concatenate((self._tail, levels))
        count = len(levels)
        steady_min = np.full(count, np.nan)  # window minimum where a window is stationary
        for window, band in reversed(self._tests):  # the long test wins where both pass
            if len(joined) < window:
                continue
            windows = sliding_window_view(joined[-(count + window - 1) :], window)
            low = windows.min(axis=1)
            steady = (windows.max(axis=1) - low <= band) & (low > self._silence_db)
            steady_min[count - len(low) :] = np.where(steady, low, steady_min[count - len(low) :])
        self._tail = joined[-self._history :].copy()

        floors: list[float | None] = []
        floor = self._floor
        silence = self._silence_db
        for level, low in zip(levels.tolist(), steady_min.tolist(), strict=True):
            if not math.isnan(low):  # a stationary window ends here
                floor = low
            elif level > silence and (floor is None or level < floor):
                floor = level
            floors.append(floor)
        self._floor = floor
        return floors


class _Detector:
    """What both detectors share: the floor, the level condition, the warm-up, the output.

    Warm-up: the floor means nothing on the first frames (is the first sound a voice or
    the room?), so frames are held back until the floor has been seen, which is either
    a pause (``warmup_steady``, 0.3 s, of levels within ``warmup_band_db``, 4 dB, and
    ``noise_margin_db`` below the loudest frame so far: white and pink noise stay within
    1.6 and 3.4 dB over 0.3 s), or a steady room (``floor_window``, 1.5 s, within 4 dB:
    speech moves more, even averaged over a browser's 100 ms levels), or at most
    ``warmup_limit`` (5 s) of non-silent input. The held frames are then decided with
    the floor learnt by that frame. A stream that opens with steady noise learns it in
    1.5 s, before any of it could count as talk; one that opens with speech is decided
    with the floor found in its first pause. A one-off delay at stream start;
    ``flush()`` releases a stream that ends sooner.
    """

    def __init__(self, config: SpeechConfig | None) -> None:
        self._config = config or SpeechConfig()
        self._scale = 1.0  # grid frames per independent level (LevelDetector: coarser)
        self._tracker = NoiseFloorTracker(self._config)
        self._frames: list[SpeechFrame] = []
        self._counts = dict.fromkeys(InputCounters.__dataclass_fields__, 0)
        self._warmup: list[tuple[int, float, bool]] | None = []  # None once warm
        self._warmup_recent: list[float] = []  # the last non-silent levels, oldest first
        self._warmup_peak = -math.inf
        self._warmup_loud = 0

    @property
    def noise_floor_db(self) -> float | None:
        return self._tracker.floor_db

    def counters(self) -> InputCounters:
        return InputCounters(**self._counts)

    def drain_frames(self) -> list[SpeechFrame]:
        frames, self._frames = self._frames, []
        return frames

    def flush(self) -> None:
        """End of input: release the frames the warm-up still holds."""
        if self._warmup:
            self._release_warmup(self._tracker.floor_db)
        self._warmup = None

    def _count(self, name: str) -> None:
        self._counts[name] += 1

    def _loud_enough(self, level: float, floor: float | None) -> bool:
        config = self._config
        return (
            floor is not None
            and level >= floor + config.noise_margin_db
            and level >= config.min_speech_level_db
        )

    def _decide(self, k0: int, levels: npt.NDArray[np.float64], raw: list[bool]) -> None:
        """Consecutive frames ``k0, k0 + 1, ...``: levels and raw (pre-level) decisions."""
        self._counts["frame_count"] += len(raw)
        floors = self._tracker.track(levels)
        silence_db = self._config.digital_silence_db
        frames = self._frames
        loud_enough = self._loud_enough
        for i, (level, floor, raw_voiced) in enumerate(
            zip(levels.tolist(), floors, raw, strict=True)
        ):
            warmup = self._warmup
            if warmup is None:
                frames.append(
                    SpeechFrame(
                        (k0 + i) * FRAME,
                        level,
                        raw_voiced and loud_enough(level, floor),
                        LEVEL_FLOOR_DB if floor is None else floor,
                    )
                )
            elif not warmup and level <= silence_db:
                frames.append(SpeechFrame((k0 + i) * FRAME, level, False, LEVEL_FLOOR_DB))
            else:
                warmup.append((k0 + i, level, raw_voiced))
                if self._warmed_up(level):
                    self._release_warmup(floor)
                    self._warmup = None

    def _warmed_up(self, level: float) -> bool:
        config = self._config
        if level <= config.digital_silence_db:
            return False
        self._warmup_loud += 1
        self._warmup_peak = max(self._warmup_peak, level)
        steady_frames = math.ceil(config.warmup_steady_frames * self._scale)
        room_frames = math.ceil(config.floor_window_frames * self._scale)
        recent = self._warmup_recent
        recent.append(level)
        del recent[:-room_frames]
        if self._warmup_loud >= config.warmup_limit_frames:
            return True
        short = recent[-steady_frames:]
        pause = (
            len(short) == steady_frames
            and max(short) - min(short) <= config.warmup_band_db
            and max(short) <= self._warmup_peak - config.noise_margin_db
        )
        steady_room = (
            len(recent) == room_frames and max(recent) - min(recent) <= config.warmup_band_db
        )
        return pause or steady_room

    def _release_warmup(self, floor: float | None) -> None:
        assert self._warmup is not None
        for k, level, raw_voiced in self._warmup:
            self._frames.append(
                SpeechFrame(
                    k * FRAME,
                    level,
                    raw_voiced and self._loud_enough(level, floor),
                    LEVEL_FLOOR_DB if floor is None else floor,
                )
            )
        self._warmup.clear()


class VadDetector(_Detector):
    """webrtcvad plus a noise-floor level gate on decoded PCM (see module doc)."""

    def __init__(self, config: SpeechConfig | None = None) -> None:
        super().__init__(config)
        self._vad = webrtcvad.Vad(self._config.vad_mode)
        self._rate: int | None = None
        self._channels: int | None = None
        self._expected_t: float | None = None  # time of the next contiguous input sample
        self._carry = np.empty(0, dtype=np.float64)  # input-rate mono not yet decimated
        self._pending: npt.NDArray[np.int16] = np.empty(0, dtype=np.int16)  # not yet a frame
        self._next_k = 0  # grid index of the frame that starts at _pending[0]

    def on_pcm(
        self, samples: npt.NDArray[np.generic], *, sample_rate: int, channels: int, t: float
    ) -> None:
        """Feed decoded audio whose first sample is at ``t``; frames go to drain_frames()."""
        mono = self._mono(samples, sample_rate, channels)
        if mono is None or not math.isfinite(t):
            if mono is not None:
                self._count("non_finite_count")
            self._restart()
            return
        if (sample_rate, channels) != (self._rate, self._channels):
            self._restart()
            self._rate, self._channels = sample_rate, channels
        mono, t = self._align(mono, t, sample_rate)
        if len(mono) == 0:
            return
        self._expected_t = t + len(mono) / sample_rate
        factor = sample_rate // VAD_RATE
        step = _BLOCK_FRAMES * FRAME_SAMPLES * factor
        for start in range(0, len(mono), step):
            self._decimate(mono[start : start + step], factor)
            self._analyse_complete_frames()

    # -- input conditioning ------------------------------------------------------------

    def _restart(self) -> None:
        self._expected_t = None
        self._carry = self._carry[:0]
        self._pending = self._pending[:0]

    def _mono(
        self, samples: npt.NDArray[np.generic], sample_rate: int, channels: int
    ) -> npt.NDArray[np.float64] | npt.NDArray[np.int16] | None:
        """Validate and downmix; None (counted) when the input is unusable."""
        if not isinstance(samples, np.ndarray):
            self._count("bad_dtype_count")
            return None
        if (
            not isinstance(sample_rate, int)
            or sample_rate < VAD_RATE
            or sample_rate % VAD_RATE
            or not isinstance(channels, int)
            or not 1 <= channels <= 8
        ):
            self._count("unsupported_rate_count")
            return None
        data: npt.NDArray[np.int16] | npt.NDArray[np.float64]
        if samples.dtype == np.int16:
            data = samples.astype(np.int16, copy=False)
        elif samples.dtype in (np.float32, np.float64):
            as_float = samples.astype(np.float64, copy=False)
            if not np.isfinite(as_float).all():
                self._count("non_finite_count")
                return None
            data = np.clip(as_float, -1.0, 1.0) * 32767.0
        else:
            self._count("bad_dtype_count")
            return None
        if data.ndim == 2 and data.shape[0] == channels and channels > 1:
            return np.asarray(data.mean(axis=0), dtype=np.float64)  # planar
        if data.ndim == 2 and data.shape[0] == 1:
            data = data[0]  # packed, as aiortc's to_ndarray() gives it
        if data.ndim != 1 or len(data) % channels:
            self._count("bad_shape_count")
            return None
        if channels == 1:
            return data
        return np.asarray(data.reshape(-1, channels).mean(axis=1), dtype=np.float64)

    def _align(
        self,
        mono: npt.NDArray[np.float64] | npt.NDArray[np.int16],
        t: float,
        rate: int,
    ) -> tuple[npt.NDArray[np.float64] | npt.NDArray[np.int16], float]:
        """Fit the input to the running clock: continue, skip an overlap, or re-enter the grid."""
        tolerance = self._config.timestamp_tolerance
        expected = self._expected_t
        if expected is not None and abs(t - expected) <= tolerance:
            return mono, expected
        if expected is not None and t < expected:
            self._count("overlap_count")
            return mono[round((expected - t) * rate) :], expected
        if expected is not None:
            self._count("gap_count")
            self._restart()
        k = math.ceil((t - tolerance) / FRAME)  # a fresh start: the next frame boundary
        skip = max(0, round((k * FRAME - t) * rate))
        self._next_k = k
        return mono[skip:], t + skip / rate

    def _decimate(self, mono: npt.NDArray[np.float64] | npt.NDArray[np.int16], factor: int) -> None:
        out: npt.NDArray[np.int16]
        if factor == 1 and len(self._carry) == 0:
            out = (
                mono.astype(np.int16, copy=False)
                if mono.dtype == np.int16
                else np.rint(mono).astype(np.int16)
            )
        else:
            joined = np.concatenate((self._carry, mono.astype(np.float64, copy=False)))
            usable = len(joined) - len(joined) % factor
            self._carry = joined[usable:]
            out = np.rint(joined[:usable].reshape(-1, factor).mean(axis=1)).astype(np.int16)
        self._pending = np.concatenate((self._pending, out)) if len(self._pending) else out

    # -- analysis ----------------------------------------------------------------------

    def _analyse_complete_frames(self) -> None:
        count = len(self._pending) // FRAME_SAMPLES
        if count == 0:
            return
        used = count * FRAME_SAMPLES
        block = self._pending[:used]
        self._pending = self._pending[used:]
        audio = memoryview(block.tobytes())
        is_speech = self._vad.is_speech
        width = FRAME_SAMPLES * 2
        levels, clicks = frame_features(block, click_share_ratio=self._config.click_share_ratio)
        raw = [
            not click and is_speech(audio[i : i + width], VAD_RATE, FRAME_SAMPLES)
            for i, click in zip(range(0, used * 2, width), clicks, strict=True)
        ]
        self._decide(self._next_k, levels, raw)
        self._next_k += count


def frame_levels_db(block: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Level of each whole 30 ms frame of 16 kHz int16 audio, dBov (module doc)."""
    return frame_features(block, click_share_ratio=2.0)[0]


def frame_features(
    block: npt.NDArray[np.int16], *, click_share_ratio: float
) -> tuple[npt.NDArray[np.float64], list[bool]]:
    """Per whole frame of 16 kHz int16 audio: its level (dBov) and whether it is a click.

    A click holds more than ``click_share_ratio`` of its frame's energy within 5 ms (two
    adjacent 2.5 ms blocks); a voice, periodic at its pitch, spreads energy over the frame.
    """
    blocks = block.reshape(-1, _CLICK_BLOCKS, FRAME_SAMPLES // _CLICK_BLOCKS).astype(np.float32)
    energy = np.einsum("ijk,ijk->ij", blocks, blocks).astype(np.float64)
    total = energy.sum(axis=1)
    with np.errstate(divide="ignore"):
        levels = np.maximum(10.0 * np.log10(total / FRAME_SAMPLES) - _FULL_SCALE_DB, LEVEL_FLOOR_DB)
    if click_share_ratio > 1.0:
        return levels, [False] * len(levels)
    peak = (energy[:, 1:] + energy[:, :-1]).max(axis=1)
    clicks = peak > click_share_ratio * total
    return levels, clicks.tolist()


class LevelDetector(_Detector):
    """The same frames from levels alone (RFC 6464 or a browser's audioLevel)."""

    def __init__(self, config: SpeechConfig | None = None) -> None:
        super().__init__(config)
        self._covered_until: float | None = None
        self._cell: int | None = None  # grid index being accumulated
        self._energy = 0.0  # power x seconds in the cell
        self._coverage = 0.0  # seconds of the cell covered

    def on_level(self, level_dbov: float, *, now: float, duration: float) -> None:
        """A level in dBov (<= 0; see ``dbov_from_rfc6464``) for ``[now - duration, now)``."""
        if not (math.isfinite(level_dbov) and math.isfinite(now) and math.isfinite(duration)):
            self._count("non_finite_count")
            return
        if level_dbov > 0.5 or not 0.0 < duration <= 1.0:
            self._count("bad_shape_count")  # positive: a raw RFC 6464 value, or worse
            return
        if self._counts["frame_count"] == 0 and self._cell is None:
            # Levels averaged over more than a frame vary less: the floor's stationarity
            # tests need as many independent levels as at 30 ms, so their windows grow.
            self._scale = max(1.0, duration / FRAME)
            self._tracker = NoiseFloorTracker(self._config, scale=self._scale)
        start, end = now - duration, now
        tolerance = self._config.timestamp_tolerance
        if self._covered_until is not None:
            if start < self._covered_until - tolerance:
                self._count("overlap_count")
                if end <= self._covered_until:
                    return
            elif start > self._covered_until + tolerance:
                self._count("gap_count")
            start = max(start, self._covered_until)
        self._covered_until = end
        self._spread(max(LEVEL_FLOOR_DB, min(0.0, level_dbov)), start, end)

    def flush(self) -> None:
        self._emit(self._close_cell())
        super().flush()

    def _spread(self, level_db: float, start: float, end: float) -> None:
        """Add ``[start, end)`` at ``level_db`` to the grid cells it covers."""
        power = 10.0 ** (level_db / 10.0)
        completed: list[tuple[int, float]] = []
        k = math.floor(start / FRAME + _EPS)
        while k * FRAME < end - _EPS:
            if self._cell is not None and k != self._cell:
                completed += self._close_cell()
            self._cell = k
            overlap = min(end, (k + 1) * FRAME) - max(start, k * FRAME)
            self._energy += power * overlap
            self._coverage += overlap
            if end >= (k + 1) * FRAME - _EPS:
                completed += self._close_cell()
            k += 1
        self._emit(completed)

    def _close_cell(self) -> list[tuple[int, float]]:
        cell, energy, coverage = self._cell, self._energy, self._coverage
        self._cell, self._energy, self._coverage = None, 0.0, 0.0
        if cell is None or coverage < FRAME / 2:
            return []
        mean_power = energy / coverage
        level = 10.0 * math.log10(mean_power) if mean_power > 0.0 else LEVEL_FLOOR_DB
        return [(cell, max(LEVEL_FLOOR_DB, level))]

    def _emit(self, cells: list[tuple[int, float]]) -> None:
        start = 0
        for i in range(1, len(cells) + 1):  # _decide takes runs of consecutive frames
            if i == len(cells) or cells[i][0] != cells[i - 1][0] + 1:
                levels = np.array([level for _, level in cells[start:i]], dtype=np.float64)
                self._decide(cells[start][0], levels, [True] * (i - start))
                start = i


# -- smoothing -------------------------------------------------------------------------


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


class Smoother:
    """Gated frame decisions of one participant -> talk-spurt edges (module doc)."""

    def __init__(self, role: Role, config: SpeechConfig | None = None) -> None:
        config = config or SpeechConfig()
        self.role = role
        self._min_burst = config.min_burst - _EPS
        self._fill = config.fill_gap - _EPS
        self._events: list[VoiceEvent] = []
        self._cursor: float | None = None  # end of the time accounted for
        self._run_start: float | None = None  # the current run of speech frames
        self._run_end = 0.0
        self._active = False  # a spurt has started and not yet stopped
        self._spurt_end = 0.0  # end of the last proven run of the active spurt
        self.late_frame_count = 0

    @property
    def active(self) -> bool:
        """A spurt is in progress, as far as has been decided."""
        return self._active

    @property
    def horizon(self) -> float | None:
        """No event still to come has a time before this (None before any input)."""
        if self._active:
            return self._spurt_end
        if self._run_start is not None:
            return self._run_start
        return self._cursor

    def drain_events(self) -> list[VoiceEvent]:
        events, self._events = self._events, []
        return events

    def on_frame(self, t: float, speech: bool) -> None:
        """One grid frame starting at ``t``; missing frames between calls are silence."""
        if self._cursor is not None and t < self._cursor - FRAME / 2:
            self.late_frame_count += 1
            return
        self._pass_silence_until(t, FRAME / 2)
        if speech:
            if self._run_start is None:
                self._run_start = t
            self._run_end = t + FRAME
            if self._run_end - self._run_start >= self._min_burst:
                self._prove_run()
        else:
            self._run_start = None
        self._cursor = t + FRAME
        self._decide_stop()

    def advance(self, *, now: float) -> None:
        """Watermark: no frame will start before ``now``; decide what silence decides."""
        self._pass_silence_until(now, _EPS)

    def _pass_silence_until(self, now: float, tolerance: float) -> None:
        if self._cursor is not None and now <= self._cursor:
            return
        if self._run_start is not None and now > self._run_end + tolerance:
            self._run_start = None  # the run is over; if it never proved itself, dropped
        self._cursor = now
        self._decide_stop()

    def next_deadline(self) -> float | None:
        """When, absent new frames, the pending stop would be decided."""
        if not self._active:
            return None
        if self._run_proven():
            return self._run_end + self._fill + 2 * _EPS
        deadline = self._spurt_end + self._fill
        if self._run_start is not None:
            deadline = max(deadline, self._run_end)
        return deadline + 2 * _EPS

    def on_timer(self, *, now: float) -> None:
        self.advance(now=now)

    def _run_proven(self) -> bool:
        return self._run_start is not None and self._run_end - self._run_start >= self._min_burst

    def _prove_run(self) -> None:
        assert self._run_start is not None
        if not self._active:
            self._events.append(VoiceStarted(self.role, self._run_start))
            self._active = True
        self._spurt_end = self._run_end

    def _decide_stop(self) -> None:
        if not self._active or self._cursor is None:
            return
        if self._run_proven():
            return
        fill_ends = self._spurt_end + self._fill
        if self._cursor < fill_ends:
            return
        if self._run_start is not None and self._run_start < fill_ends:
            return  # a run began inside the fill window and may still prove itself
        self._events.append(VoiceStopped(self.role, self._spurt_end))
        self._active = False
