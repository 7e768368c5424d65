"""Speech activity per participant: frame levels, a noise floor, and voicing.

Theory of operation
-------------------
Two detectors turn one participant's audio into frames on the 30 ms grid of
probes/speech_frames.py: :class:`VadDetector` from decoded PCM, :class:`LevelDetector`
from levels alone (metadata mode). A frame carries its start ``t``, its level, the
detector's decision ``voiced`` (before the crosstalk gate of probes/crosstalk.py and the
smoothing of probes/speech_smoothing.py) and the noise floor that decision used. Frames
come out one by one (``drain_frames()``: :class:`SpeechFrame`) or in bulk
(``drain_blocks()``: :class:`FrameBlock`, what the pipeline uses). This module also
re-exports the shared names (``FRAME``, ``SpeechConfig``, ``Smoother``, the voice
events) so callers need one import.

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

    Warm-up: the floor means nothing on the first frames (is the first sound a voice or
    the room?), so a detector holds frames back until the floor has been seen, which is
    either a pause (``warmup_steady``, 0.3 s, of levels within ``warmup_band_db``, 4 dB,
    and ``noise_margin_db`` below the loudest frame so far: white and pink noise stay
    within 1.6 and 3.4 dB over 0.3 s), or a steady room (``floor_window``, 1.5 s, within
    4 dB: speech moves more, even averaged over a browser's 100 ms levels), or at most
    ``warmup_limit`` (5 s) of non-silent input. The held frames are then decided with
    the floor learnt by that frame. A stream that opens with steady noise learns it in
    1.5 s, before any of it could count as talk; one that opens with speech is decided
    with the floor found in its first pause. A one-off delay at stream start.

    Fluctuating noise (babble, music) is not learned as floor: it is not steady noise,
    and webrtcvad plus the crosstalk gate see it.

Voicing (:class:`VadDetector`, from PCM)
    webrtcvad (WebRTC's GMM voice activity detector, ``vad_mode`` 0-3, default 2) on each
    30 ms frame of 16 kHz mono, AND the frame's level at least ``noise_margin_db`` (10 dB)
    above the noise floor, AND at least ``min_speech_level_db``, AND not a click. The
    level condition has hysteresis, the two thresholds of Lamel et al.'s endpoint
    detector (L. F. Lamel, L. R. Rabiner, A. E. Rosenberg, J. G. Wilpon, "An improved
    endpoint detector for isolated word recognition", IEEE Trans. ASSP 29(4), 1981): the
    10 dB margin starts a run of voiced frames, which then continues while frames
    stand ``continue_margin_db`` (5 dB) above the floor and the other tests hold. At
    15 dB SNR a syllable's quieter half lies 5-10 dB above the noise; a flat 10 dB bar
    cut about 40 % of the speech frames of the composed test voices into fragments
    (tests/accuracy), while steady noise, which never stands 10 dB above its own floor,
    still never starts a run.
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
    plenty for a speech/non-speech decision. Levels and the click test are vectorised
    over whole blocks with numpy; webrtcvad runs once per frame, on every frame (it
    adapts its own noise model as it goes).

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

Clock and held input
    Frame times are the caller's clock; no method reads one. Both detectors gather input
    for ``batch`` (120 ms) before analysing it, because numpy's per-call cost on a
    20 ms packet is larger than the work (live, the whole speech chain costs well under
    1 % of a core per session this way; bench/bench_speech.py). Input is therefore held
    back: by the batch, by the warm-up (above), by a level frame half filled.
    ``held_since`` is the start of the oldest such input, which the pipeline uses so
    that the crosstalk gate does not give up on frames still to come;
    ``on_timer(now=...)`` releases a batch ``batch`` after it began and a warm-up
    ``warmup_limit`` after it began (a stream that stops must not hold the other
    participant back), ``next_deadline()`` says when, and ``flush()`` releases
    everything at the end of input.
"""

from __future__ import annotations

import math
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import webrtcvad

from probes.speech_frames import (
    FRAME,
    LEVEL_FLOOR_DB,
    Flags,
    FrameBlock,
    InputCounters,
    Levels,
    SpeechConfig,
    SpeechFrame,
    VoiceEvent,
    VoiceStarted,
    VoiceStopped,
    dbov_from_audio_level,
    dbov_from_rfc6464,
    frame_index,
    windows,
)
from probes.speech_smoothing import Smoother

__all__ = [
    "FRAME",
    "FRAME_SAMPLES",
    "LEVEL_FLOOR_DB",
    "VAD_RATE",
    "FrameBlock",
    "InputCounters",
    "LevelDetector",
    "NoiseFloorTracker",
    "Smoother",
    "SpeechConfig",
    "SpeechFrame",
    "VadDetector",
    "VoiceEvent",
    "VoiceStarted",
    "VoiceStopped",
    "dbov_from_audio_level",
    "dbov_from_rfc6464",
    "frame_features",
    "frame_index",
    "frame_levels_db",
]

VAD_RATE: Final = 16000
FRAME_SAMPLES: Final = 480  # FRAME at VAD_RATE

_FULL_SCALE_DB: Final = 20.0 * math.log10(32768.0)
_EPS: Final = 1e-6  # seconds; below any sample period that matters here
_BLOCK_FRAMES: Final = 2048  # frames per numpy block: about a minute, bounded memory
_CLICK_BLOCKS: Final = 12  # 2.5 ms blocks per frame, for the click test


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

    def track(self, levels: Levels) -> Levels:
        """Update with consecutive frame levels; return the floor in force at each (NaN:
        none yet)."""
        joined = np.concatenate((self._tail, levels))
        count = len(levels)
        steady_min = np.full(count, np.nan)  # window minimum where a window is stationary
        for window, band in reversed(self._tests):  # the long test wins where both pass
            if len(joined) < window:
                continue
            rows = windows(joined[-(count + window - 1) :], window)
            low = rows.min(axis=1)
            steady = (rows.max(axis=1) - low <= band) & (low > self._silence_db)
            tail = steady_min[count - len(low) :]
            tail[steady] = low[steady]
        self._tail = joined[-self._history :].copy()

        # Between stationary windows the floor is a running minimum of the non-silent
        # levels, restarted at each window's minimum. Vectorised exactly: pair each value
        # with minus its segment number (segments run between restarts) as a complex
        # number, which numpy orders lexicographically, so one running minimum never
        # carries a value across a restart and no arithmetic touches the levels.
        restart = ~np.isnan(steady_min)
        values = np.where(levels > self._silence_db, levels, np.inf)
        values[restart] = steady_min[restart]
        keyed = np.empty(count + 1, dtype=np.complex128)
        keyed.real[0] = 0.0
        keyed.imag[0] = np.inf if self._floor is None else self._floor  # carried over
        keyed.real[1:] = -np.cumsum(restart)
        keyed.imag[1:] = values
        floors = np.minimum.accumulate(keyed)[1:].imag.copy()
        floors[np.isinf(floors)] = np.nan
        if count:
            last = float(floors[-1])
            self._floor = None if math.isnan(last) else last
        return floors


class _Detector:
    """What both detectors share: the floor, the level condition, the warm-up, the output."""

    def __init__(self, config: SpeechConfig | None) -> None:
        self._config = config or SpeechConfig()
        self._scale = 1.0  # grid frames per independent level (LevelDetector: coarser)
        self._tracker = NoiseFloorTracker(self._config)
        self._blocks: list[FrameBlock] = []
        self._counts = dict.fromkeys(InputCounters.__dataclass_fields__, 0)
        self._warmup: list[tuple[int, float, bool]] | None = []  # None once warm
        self._warmup_recent: list[float] = []  # the last non-silent levels, oldest first
        self._warmup_peak = -math.inf
        self._warmup_loud = 0
        self._run_until: int | None = None  # a voiced run goes on at this frame index

    @property
    def noise_floor_db(self) -> float | None:
        return self._tracker.floor_db

    @property
    def held_since(self) -> float | None:
        """Start of the oldest input not yet given out as a frame: queued for the next
        batch or held by the warm-up (None: nothing held)."""
        held = [t for t in (self._queued_since(), self._warmup_since()) if t is not None]
        return min(held) if held else None

    def next_deadline(self) -> float | None:
        """When ``on_timer`` would release held input if no more came."""
        deadlines = []
        queued = self._queued_since()
        if queued is not None:
            deadlines.append(queued + self._config.batch)
        warming = self._warmup_since()
        if warming is not None:
            deadlines.append(warming + self._config.warmup_limit)
        return min(deadlines) if deadlines else None

    def on_timer(self, *, now: float) -> None:
        """Release input held too long: a stream that stopped must not hold frames back."""
        queued = self._queued_since()
        if queued is not None and now >= queued + self._config.batch:
            self._process_queue()
        warming = self._warmup_since()
        if warming is not None and now >= warming + self._config.warmup_limit:
            self._release_warmup(self._tracker.floor_db)
            self._warmup = None

    def _warmup_since(self) -> float | None:
        return self._warmup[0][0] * FRAME if self._warmup else None

    def _queued_since(self) -> float | None:
        """Start of the input waiting for the next batch (subclasses queue input)."""
        return None

    def _process_queue(self) -> None:
        """Turn queued input into frames."""

    def counters(self) -> InputCounters:
        return InputCounters(**self._counts)

    def drain_frames(self) -> list[SpeechFrame]:
        """Decided frames, oldest first."""
        return [frame for block in self.drain_blocks() for frame in block.frames()]

    def drain_blocks(self) -> list[FrameBlock]:
        """Decided frames as blocks of consecutive grid indices, oldest first."""
        blocks, self._blocks = self._blocks, []
        return blocks

    def flush(self) -> None:
        """End of input: analyse what is queued, release what the warm-up holds."""
        self._process_queue()
        if self._warmup:
            self._release_warmup(self._tracker.floor_db)
        self._warmup = None

    def _count(self, name: str) -> None:
        self._counts[name] += 1

    def _decide(self, k0: int, levels: Levels, raw: Flags) -> None:
        """Consecutive frames ``k0, k0 + 1, ...``: levels and raw (pre-level) decisions."""
        self._counts["frame_count"] += len(levels)
        floors = self._tracker.track(levels)
        start = 0 if self._warmup is None else self._warm_up(k0, levels, raw, floors)
        if start == len(levels):
            return
        levels, raw, floors = levels[start:], raw[start:], floors[start:]
        voiced = self._level_gate(k0 + start, raw, levels, floors)
        self._blocks.append(
            FrameBlock(
                k0 + start, levels, voiced, np.where(np.isnan(floors), LEVEL_FLOOR_DB, floors)
            )
        )

    def _level_gate(self, k0: int, raw: Flags, levels: Levels, floors: Levels) -> Flags:
        """Frames ``k0, k0 + 1, ...``: raw decisions (webrtcvad, click test) and the level
        condition with hysteresis (module doc, "Voicing")."""
        config = self._config
        with np.errstate(invalid="ignore"):
            usable = raw & (levels >= config.min_speech_level_db)
            onset = usable & (levels >= floors + config.noise_margin_db)
            held = onset | (usable & (levels >= floors + config.continue_margin_db))
        # A run of ``held`` frames is voiced from its first onset on; one that carries on
        # a voiced run of the previous call (no frame missing between) from its start.
        run = np.cumsum(~held)
        last_onset = np.maximum.accumulate(np.where(onset, run, -1))
        voiced: Flags = held & (last_onset == run)
        if self._run_until == k0:
            voiced |= held & (run == 0)
        self._run_until = k0 + len(voiced) if len(voiced) and voiced[-1] else None
        return voiced

    # -- warm-up -------------------------------------------------------------------------

    def _warm_up(self, k0: int, levels: Levels, raw: Flags, floors: Levels) -> int:
        """Hold frames until the floor has been seen; return how many were consumed."""
        assert self._warmup is not None
        silence_db = self._config.digital_silence_db
        for i, (level, raw_voiced) in enumerate(zip(levels.tolist(), raw.tolist(), strict=True)):
            if not self._warmup and level <= silence_db:
                self._warmup_silence(k0 + i, level)
                continue
            self._warmup.append((k0 + i, level, raw_voiced))
            if self._warmed_up(level):
                floor = float(floors[i])
                self._release_warmup(None if math.isnan(floor) else floor)
                self._warmup = None
                return i + 1
        return len(levels)

    def _warmup_silence(self, k: int, level: float) -> None:
        """Digital silence before any sound: nothing to hold back."""
        block = FrameBlock(
            k, np.array([level]), np.zeros(1, dtype=bool), np.array([LEVEL_FLOOR_DB])
        )
        self._blocks.append(block)

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
        held = self._warmup
        start = 0
        for i in range(1, len(held) + 1):  # one block per run of consecutive indices
            if i < len(held) and held[i][0] == held[i - 1][0] + 1:
                continue
            levels = np.array([level for _, level, _ in held[start:i]])
            raw = np.array([voiced for _, _, voiced in held[start:i]], dtype=bool)
            if floor is None:
                voiced = np.zeros(len(levels), dtype=bool)
            else:
                voiced = self._level_gate(held[start][0], raw, levels, np.full(len(levels), floor))
            floors = np.full(len(levels), LEVEL_FLOOR_DB if floor is None else floor)
            self._blocks.append(FrameBlock(held[start][0], levels, voiced, floors))
            start = i
        held.clear()


class VadDetector(_Detector):
    """webrtcvad plus a noise-floor level gate on decoded PCM (see module doc)."""

    def __init__(self, config: SpeechConfig | None = None) -> None:
        super().__init__(config)
        self._vad = webrtcvad.Vad(self._config.vad_mode)
        self._rate: int | None = None
        self._channels: int | None = None
        self._expected_t: float | None = None  # time of the next contiguous input sample
        self._carry = np.empty(0, dtype=np.float64)  # input values not yet decimated
        self._pending: npt.NDArray[np.int16] = np.empty(0, dtype=np.int16)  # not yet a frame
        self._next_k = 0  # grid index of the frame that starts at _pending[0]
        self._queue: list[npt.NDArray[np.float64] | npt.NDArray[np.int16]] = []
        self._queue_since = 0.0  # time of the first queued sample
        self._queued = 0  # samples queued

    def on_pcm(
        self, samples: npt.NDArray[np.generic], *, sample_rate: int, channels: int, t: float
    ) -> None:
        """Feed decoded audio whose first sample is at ``t``; frames go to drain_frames()."""
        data = self._interleaved(samples, sample_rate, channels)
        if data is None or not math.isfinite(t):
            if data is not None:
                self._count("non_finite_count")
            self._restart()
            return
        if (sample_rate, channels) != (self._rate, self._channels):
            self._restart()
            self._rate, self._channels = sample_rate, channels
        data, t = self._align(data, t, sample_rate, channels)
        if len(data) == 0:
            return
        self._expected_t = t + len(data) // channels / sample_rate
        if not self._queue:
            self._queue_since = t
        self._queue.append(data)
        self._queued += len(data) // channels
        if self._queued >= self._config.batch * sample_rate:
            self._process_queue()

    def _queued_since(self) -> float | None:
        return self._queue_since if self._queue else None

    def _process_queue(self) -> None:
        if not self._queue or self._rate is None or self._channels is None:
            return
        data = self._queue[0]
        if len(self._queue) > 1:  # one stretch, one format: a change restarts the stream
            data = cast("npt.NDArray[np.float64]", np.concatenate(self._queue))
        self._queue, self._queued = [], 0
        group = self._rate // VAD_RATE * self._channels  # input values per 16 kHz sample
        step = _BLOCK_FRAMES * FRAME_SAMPLES * group
        for start in range(0, len(data), step):
            self._decimate(data[start : start + step], group)
            self._analyse_complete_frames()

    # -- input conditioning ------------------------------------------------------------

    def _restart(self) -> None:
        self._process_queue()  # it belongs to the stretch that ends here
        self._expected_t = None
        self._carry = self._carry[:0]
        self._pending = self._pending[:0]

    def _interleaved(
        self, samples: npt.NDArray[np.generic], sample_rate: int, channels: int
    ) -> npt.NDArray[np.float64] | npt.NDArray[np.int16] | None:
        """Validate; one flat interleaved array, or None (counted) when unusable."""
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
        if data.ndim == 2 and data.shape[0] == channels and channels > 1:  # planar
            return cast("npt.NDArray[np.float64]", np.ascontiguousarray(data.T).reshape(-1))
        if data.ndim == 2 and data.shape[0] == 1:
            data = data[0]  # packed, as aiortc's to_ndarray() gives it
        if data.ndim != 1 or len(data) % channels:
            self._count("bad_shape_count")
            return None
        return data

    def _align(
        self,
        data: npt.NDArray[np.float64] | npt.NDArray[np.int16],
        t: float,
        rate: int,
        channels: int,
    ) -> tuple[npt.NDArray[np.float64] | npt.NDArray[np.int16], float]:
        """Fit the input to the running clock: continue, skip an overlap, or re-enter the grid."""
        tolerance = self._config.timestamp_tolerance
        expected = self._expected_t
        if expected is not None and abs(t - expected) <= tolerance:
            return data, expected
        if expected is not None and t < expected:
            self._count("overlap_count")
            return data[round((expected - t) * rate) * channels :], expected
        if expected is not None:
            self._count("gap_count")
            self._restart()
        k = math.ceil((t - tolerance) / FRAME)  # a fresh start: the next frame boundary
        skip = max(0, round((k * FRAME - t) * rate))
        self._next_k = k
        return data[skip * channels :], t + skip / rate

    def _decimate(self, data: npt.NDArray[np.float64] | npt.NDArray[np.int16], group: int) -> None:
        """Average each ``group`` of interleaved values (all channels of rate / 16000
        consecutive samples: the boxcar of the module doc) into one 16 kHz sample."""
        out: npt.NDArray[np.int16]
        if group == 1 and len(self._carry) == 0:
            out = (
                data.astype(np.int16, copy=False)
                if data.dtype == np.int16
                else np.rint(data).astype(np.int16)
            )
        else:
            joined = np.concatenate((self._carry, data.astype(np.float64, copy=False)))
            usable = len(joined) - len(joined) % group
            self._carry = joined[usable:]
            out = np.rint(joined[:usable].reshape(-1, group).mean(axis=1)).astype(np.int16)
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
        # webrtcvad sees every frame (it adapts its noise model as it goes), clicks too.
        vad = [
            is_speech(audio[i : i + width], VAD_RATE, FRAME_SAMPLES)
            for i in range(0, used * 2, width)
        ]
        self._decide(self._next_k, levels, np.array(vad, dtype=bool) & ~clicks)
        self._next_k += count


def frame_levels_db(block: npt.NDArray[np.int16]) -> Levels:
    """Level of each whole 30 ms frame of 16 kHz int16 audio, dBov (module doc)."""
    return frame_features(block, click_share_ratio=2.0)[0]


def frame_features(
    block: npt.NDArray[np.int16], *, click_share_ratio: float
) -> tuple[Levels, Flags]:
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
        return levels, np.zeros(len(levels), dtype=bool)
    peak = (energy[:, 1:] + energy[:, :-1]).max(axis=1)
    return levels, peak > click_share_ratio * total


class LevelDetector(_Detector):
    """The same frames from levels alone (RFC 6464 or a browser's audioLevel)."""

    def __init__(self, config: SpeechConfig | None = None) -> None:
        super().__init__(config)
        self._covered_until: float | None = None
        self._cell: int | None = None  # grid index being accumulated
        self._energy = 0.0  # power x seconds in the cell
        self._coverage = 0.0  # seconds of the cell covered
        self._queue: list[tuple[float, float, float]] = []  # (level dBov, start, end)
        self._queue_since = 0.0

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
        if not self._queue:
            self._queue_since = start
        self._queue.append((max(LEVEL_FLOOR_DB, min(0.0, level_dbov)), start, end))
        if end - self._queue_since >= self._config.batch:
            self._process_queue()

    def flush(self) -> None:
        self._process_queue()
        self._emit(self._close_cell())
        super().flush()

    @property
    def held_since(self) -> float | None:
        held = super().held_since
        if self._cell is not None:  # the frame being filled
            return self._cell * FRAME if held is None else min(held, self._cell * FRAME)
        return held

    def on_timer(self, *, now: float) -> None:
        super().on_timer(now=now)
        if self._cell is not None and now >= (self._cell + 1) * FRAME + self._config.batch:
            self._emit(self._close_cell())  # the stream stopped inside this frame

    def _queued_since(self) -> float | None:
        return self._queue_since if self._queue else None

    def _process_queue(self) -> None:
        queue, self._queue = self._queue, []
        completed: list[tuple[int, float]] = []
        for level_db, start, end in queue:
            completed += self._spread(level_db, start, end)
        self._emit(completed)

    def _spread(self, level_db: float, start: float, end: float) -> list[tuple[int, float]]:
        """Add ``[start, end)`` at ``level_db`` to the grid cells it covers; return the
        cells it completed."""
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
        return completed

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
                self._decide(cells[start][0], levels, np.ones(i - start, dtype=bool))
                start = i
