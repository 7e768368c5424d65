"""Synthetic voices and noises for the speech probe tests (numpy only, no files).

A voice is a harmonic complex (glottal-like 1/h^0.7 harmonics up to 3.8 kHz) under a
slowly moving pitch contour, shaped by two moving formants, and amplitude-modulated at
syllable rate (120-300 ms syllables, grouped into phrases separated by pauses). webrtcvad
calls it speech (tests/probes/test_speech_detector.py checks that). It is defined in
continuous time, so the same voice can be rendered at 16 and 48 kHz.

Ground truth is the list of phrases ``(start, end)``: the voice is on inside them and
digitally silent outside. Levels are set on the active part (dBov, RMS over the phrases).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Segments = list[tuple[float, float]]

FULL_SCALE = 32768.0


def db_to_amplitude(level_db: float) -> float:
    return float(10.0 ** (level_db / 20.0) * FULL_SCALE)


def rms_db(x: Floats) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x)) / FULL_SCALE**2))


def plan_phrases(
    duration: float,
    *,
    seed: int,
    phrase: tuple[float, float] = (1.0, 3.0),
    pause: tuple[float, float] = (0.4, 0.9),
    start: float = 0.0,
) -> Segments:
    """Phrases separated by pauses, from ``start`` to ``duration``."""
    rng = np.random.default_rng(seed)
    segments: Segments = []
    position = start
    while position < duration - 0.3:
        end = min(duration, position + rng.uniform(*phrase))
        segments.append((position, end))
        position = end + rng.uniform(*pause)
    return segments


def voice(
    duration: float,
    *,
    rate: int = 16000,
    f0: float = 120.0,
    seed: int = 0,
    level_db: float = -26.0,
    segments: Segments | None = None,
    dip_db: float = 40.0,
    fmax: float = 3800.0,
) -> tuple[Floats, Segments]:
    """Render a voice speaking in ``segments`` (planned from ``seed`` when None).

    ``dip_db`` is how far the envelope falls between syllables: 40 dB is a clear dip,
    15 dB a continuous, legato delivery that never falls to the noise.
    """
    if segments is None:
        segments = plan_phrases(duration, seed=seed)
    rng = np.random.default_rng(seed + 1000)
    n = round(duration * rate)
    t = np.arange(n) / rate
    contour = 1.0 + 0.12 * np.sin(2 * np.pi * 0.35 * t + rng.uniform(0, 2 * np.pi))
    contour += 0.04 * np.sin(2 * np.pi * 2.1 * t)
    pitch = f0 * contour
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    envelope = np.zeros(n)
    vowel = np.zeros(n)
    floor = 10.0 ** (-dip_db / 20.0)
    for start, end in segments:
        s = start
        while s < end - 1e-9:
            e = min(end, s + rng.uniform(0.12, 0.3))
            i0, i1 = round(s * rate), round(e * rate)
            shape = np.sin(np.pi * np.linspace(0.0, 1.0, i1 - i0)) ** 0.6
            envelope[i0:i1] = floor + (1.0 - floor) * shape * rng.uniform(0.6, 1.0)
            vowel[i0:i1] = rng.uniform(0.0, 1.0)
            s = e
    f1 = 400.0 + 400.0 * vowel
    f2 = 1100.0 + 900.0 * (1.0 - vowel)
    x = np.zeros(n)
    for h in range(1, int(fmax // (f0 * 0.85)) + 1):
        fh = h * pitch
        gain = 1.0 / (1.0 + ((fh - f1) / 150.0) ** 2)
        gain += 0.6 / (1.0 + ((fh - f2) / 200.0) ** 2)
        gain += 0.25 / (1.0 + ((fh - 2600.0) / 300.0) ** 2) + 0.02
        gain *= np.where(fh < fmax, h**-0.7, 0.0)
        x += gain * np.sin(h * phase)
    x *= envelope
    active = envelope > 0
    if active.any():
        x *= db_to_amplitude(level_db) / np.sqrt(np.mean(np.square(x[active])))
    return x, segments


def white_noise(duration: float, level_db: float, *, rate: int = 16000, seed: int = 1) -> Floats:
    x = np.random.default_rng(seed).normal(size=round(duration * rate))
    return x * db_to_amplitude(level_db) / np.sqrt(np.mean(np.square(x)))


def pink_noise(duration: float, level_db: float, *, rate: int = 16000, seed: int = 2) -> Floats:
    """1/f noise from 40 Hz up (a room's rumble, not DC drift)."""
    n = round(duration * rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=n))
    f = np.fft.rfftfreq(n, 1.0 / rate)
    spectrum *= np.where(f >= 40.0, 1.0 / np.sqrt(np.maximum(f, 40.0)), 0.0)
    x = np.fft.irfft(spectrum, n)
    return x * db_to_amplitude(level_db) / np.sqrt(np.mean(np.square(x)))


def hum(duration: float, level_db: float, *, rate: int = 16000, mains: float = 50.0) -> Floats:
    t = np.arange(round(duration * rate)) / rate
    x = np.sin(2 * np.pi * mains * t) + 0.5 * np.sin(2 * np.pi * 3 * mains * t)
    x += 0.3 * np.sin(2 * np.pi * 5 * mains * t)
    return x * db_to_amplitude(level_db) / np.sqrt(np.mean(np.square(x)))


def keyboard_clicks(
    duration: float,
    *,
    per_second: float = 5.0,
    peak_db: float = -10.0,
    rate: int = 16000,
    seed: int = 3,
) -> Floats:
    """5 ms decaying noise bursts at Poisson-random times."""
    rng = np.random.default_rng(seed)
    x = np.zeros(round(duration * rate))
    width = round(0.005 * rate)
    decay = np.exp(-np.arange(width) / (width / 4.0))
    times = np.cumsum(rng.exponential(1.0 / per_second, size=int(duration * per_second * 3)))
    for t in times[times < duration - 0.01]:
        i = round(t * rate)
        x[i : i + width] += rng.normal(size=width) * decay * db_to_amplitude(peak_db)
    return x


def delayed(x: Floats, delay: float, gain_db: float, *, rate: int = 16000) -> Floats:
    """``x`` later by ``delay`` and quieter by ``-gain_db``: an echo path."""
    shift = round(delay * rate)
    out = np.zeros_like(x)
    out[shift:] = x[: len(x) - shift]
    return out * 10.0 ** (gain_db / 20.0)


def to_int16(x: Floats) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def frame_mask(segments: Segments, duration: float, frame: float = 0.03) -> npt.NDArray[np.bool_]:
    """True for grid frames that lie mostly inside a segment."""
    centres = (np.arange(round(duration / frame)) + 0.5) * frame
    mask = np.zeros(len(centres), dtype=bool)
    for start, end in segments:
        mask |= (centres >= start) & (centres < end)
    return mask


def with_echo(
    own: Floats,
    other: Floats,
    *,
    leak_db: float,
    delay: float = 0.04,
    noise_db: float = -65.0,
    seed: int = 0,
    rate: int = 16000,
) -> Floats:
    """One participant's track: their voice, the other's voice ``leak_db`` down and
    ``delay`` late (the loudspeaker-to-microphone echo), and pink room noise."""
    noise = pink_noise(len(own) / rate, noise_db, rate=rate, seed=seed)
    return own + delayed(other, delay, -leak_db, rate=rate) + noise
