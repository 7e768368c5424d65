"""LevelDetector: the same frames from RFC 6464 levels or a browser's audioLevel alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from probes.base import Role
from probes.speech import (
    FRAME,
    LEVEL_FLOOR_DB,
    LevelDetector,
    Smoother,
    SpeechConfig,
    SpeechFrame,
    VadDetector,
    VoiceStarted,
    VoiceStopped,
    dbov_from_audio_level,
    dbov_from_rfc6464,
)
from tests.probes.synthetic_voice import (
    FULL_SCALE,
    Floats,
    Segments,
    pink_noise,
    to_int16,
    voice,
    white_noise,
)

RATE = 16000


def spurts(frames: list[SpeechFrame]) -> Segments:
    smoother = Smoother(Role.CLIENT)
    for frame in frames:
        smoother.on_frame(frame.t, frame.voiced)
    smoother.advance(now=math.inf)
    events = smoother.drain_events()
    starts = [e.t for e in events if isinstance(e, VoiceStarted)]
    stops = [e.t for e in events if isinstance(e, VoiceStopped)]
    return list(zip(starts, stops, strict=True))


def rfc6464_levels(audio: Floats, packet: float = 0.02) -> list[int]:
    """What a sender puts in the RTP header: -dBov of each packet's RMS, 0..127."""
    size = round(packet * RATE)
    pcm = to_int16(audio).astype(np.float64)
    levels = []
    for start in range(0, len(pcm) - size + 1, size):
        power = np.mean(np.square(pcm[start : start + size])) / FULL_SCALE**2
        levels.append(127 if power == 0 else min(127, max(0, round(-10 * math.log10(power)))))
    return levels


def from_levels(levels: list[float], packet: float) -> list[SpeechFrame]:
    detector = LevelDetector()
    for i, level in enumerate(levels):
        detector.on_level(level, now=(i + 1) * packet, duration=packet)
    detector.flush()
    return detector.drain_frames()


def from_pcm(audio: Floats) -> list[SpeechFrame]:
    detector = VadDetector()
    detector.on_pcm(to_int16(audio), sample_rate=RATE, channels=1, t=0.0)
    detector.flush()
    return detector.drain_frames()


@pytest.mark.parametrize("f0", [100.0, 250.0])
def test_rfc6464_levels_give_the_segments_the_vad_gives_on_the_same_audio(f0: float) -> None:
    speech, _ = voice(30.0, f0=f0, seed=int(f0))
    audio = speech + pink_noise(30.0, -60.0, seed=2)
    levels = [dbov_from_rfc6464(level) for level in rfc6464_levels(audio)]
    by_level = spurts(from_levels(levels, 0.02))
    by_vad = spurts(from_pcm(audio))
    assert len(by_level) == len(by_vad)
    for (a0, a1), (b0, b1) in zip(by_level, by_vad, strict=True):
        assert a0 == pytest.approx(b0, abs=2 * FRAME)
        assert a1 == pytest.approx(b1, abs=2 * FRAME)


def test_a_browser_audio_level_every_100ms_finds_the_same_phrases() -> None:
    speech, segments = voice(30.0, f0=180.0, seed=8)
    audio = speech + white_noise(30.0, -60.0)
    size = round(0.1 * RATE)
    pcm = to_int16(audio).astype(np.float64) / FULL_SCALE
    linear = [
        float(np.sqrt(np.mean(np.square(pcm[i : i + size]))))
        for i in range(0, len(pcm) - size + 1, size)
    ]
    found = spurts(from_levels([dbov_from_audio_level(a) for a in linear], 0.1))
    assert len(found) == len(segments)
    for (a0, a1), (b0, b1) in zip(found, segments, strict=True):
        assert a0 == pytest.approx(b0, abs=0.13)
        assert a1 == pytest.approx(b1, abs=0.13)


def test_steady_noise_levels_are_never_voiced() -> None:
    levels = [dbov_from_rfc6464(v) for v in rfc6464_levels(pink_noise(20.0, -35.0))]
    assert not any(f.voiced for f in from_levels(levels, 0.02))


def test_levels_are_spread_onto_the_30ms_grid_by_power() -> None:
    detector = LevelDetector()
    detector.on_level(-20.0, now=0.02, duration=0.02)
    detector.on_level(-30.0, now=0.04, duration=0.02)  # [0.02, 0.04): half in frame 0
    detector.on_level(-30.0, now=0.06, duration=0.02)
    frames = detector.drain_frames()
    detector.flush()
    frames += detector.drain_frames()
    assert [f.t for f in frames] == [0.0, pytest.approx(0.03)]
    expected = 10 * math.log10((2 * 10**-2 + 10**-3) / 3)  # 20 ms at -20, 10 ms at -30
    assert frames[0].level_db == pytest.approx(expected)
    assert frames[1].level_db == pytest.approx(-30.0)


def test_conversions_follow_rfc6464_and_webrtc_stats() -> None:
    assert dbov_from_rfc6464(0) == 0.0
    assert dbov_from_rfc6464(127) == LEVEL_FLOOR_DB
    assert dbov_from_audio_level(1.0) == 0.0
    assert dbov_from_audio_level(0.5) == pytest.approx(-6.02, abs=0.01)
    assert dbov_from_audio_level(0.0) == LEVEL_FLOOR_DB
    assert dbov_from_audio_level(math.nan) == LEVEL_FLOOR_DB


def test_bad_levels_are_counted_never_raised() -> None:
    detector = LevelDetector()
    detector.on_level(-30.0, now=1.0, duration=0.02)
    detector.on_level(math.nan, now=1.02, duration=0.02)
    detector.on_level(45.0, now=1.02, duration=0.02)  # a raw RFC 6464 value, not dBov
    detector.on_level(-30.0, now=1.02, duration=0.0)
    detector.on_level(-30.0, now=1.01, duration=0.02)  # overlaps what was covered
    detector.on_level(-30.0, now=2.0, duration=0.02)  # a gap
    detector.on_level(-200.0, now=2.02, duration=0.02)  # below digital silence: clamped
    counters = detector.counters()
    assert counters.non_finite_count == 1
    assert counters.bad_shape_count == 2
    assert (counters.overlap_count, counters.gap_count) == (1, 1)
    detector.flush()
    assert min(f.level_db for f in detector.drain_frames()) >= LEVEL_FLOOR_DB


def test_a_level_stream_that_stops_inside_a_frame_is_closed_by_the_clock() -> None:
    detector = LevelDetector()
    for i in range(100):  # 2 s of steady room at 20 ms: the warm-up ends at 1.5 s
        detector.on_level(-50.0, now=(i + 1) * 0.02, duration=0.02)
    batch = SpeechConfig().batch
    detector.on_timer(now=2.0 + batch)
    frames = detector.drain_frames()
    assert len(frames) == 66  # up to 1.98 s
    assert detector.held_since == pytest.approx(1.98)  # [1.98, 2.01) is two thirds full
    detector.on_timer(now=2.01 + batch)
    last = detector.drain_frames()
    assert [f.t for f in last] == [pytest.approx(1.98)]
    assert last[0].level_db == pytest.approx(-50.0)
    assert detector.held_since is None
