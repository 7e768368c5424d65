"""VadDetector: webrtcvad plus the noise-floor level gate, on synthetic audio."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import numpy.typing as npt
import pytest
import webrtcvad

from probes.base import ConfigError, Role
from probes.speech import (
    FRAME,
    LEVEL_FLOOR_DB,
    Smoother,
    SpeechConfig,
    SpeechFrame,
    VadDetector,
    VoiceStarted,
    VoiceStopped,
    frame_levels_db,
)
from tests.probes.synthetic_voice import (
    Floats,
    Segments,
    frame_mask,
    hum,
    keyboard_clicks,
    pink_noise,
    plan_phrases,
    to_int16,
    voice,
    white_noise,
)

RATE = 16000


def detect(
    pcm: npt.NDArray[np.generic],
    *,
    rate: int = RATE,
    channels: int = 1,
    config: SpeechConfig | None = None,
    chunk: int | None = None,
) -> list[SpeechFrame]:
    detector = VadDetector(config)
    step = chunk or len(pcm)
    for start in range(0, len(pcm), step):
        t = start / (rate * channels)
        detector.on_pcm(pcm[start : start + step], sample_rate=rate, channels=channels, t=t)
    detector.flush()
    return detector.drain_frames()


def spurts(frames: list[SpeechFrame], config: SpeechConfig | None = None) -> Segments:
    smoother = Smoother(Role.CLIENT, config)
    for frame in frames:
        smoother.on_frame(frame.t, frame.voiced)
    smoother.advance(now=math.inf)
    events = smoother.drain_events()
    starts = [e.t for e in events if isinstance(e, VoiceStarted)]
    stops = [e.t for e in events if isinstance(e, VoiceStopped)]
    return list(zip(starts, stops, strict=True))


def talk_time(frames: list[SpeechFrame]) -> float:
    return sum(end - start for start, end in spurts(frames))


@cache
def speaker(f0: float, duration: float = 30.0, snr_db: float = 30.0) -> tuple[Floats, Segments]:
    speech, segments = voice(duration, f0=f0, seed=int(f0))
    return speech + pink_noise(duration, -26.0 - snr_db, seed=int(f0) + 1), segments


# -- what webrtcvad makes of the synthetic voice ------------------------------------------


@pytest.mark.parametrize("f0", [90.0, 220.0, 300.0])
def test_webrtcvad_alone_calls_the_synthetic_voice_speech(f0: float) -> None:
    audio, segments = speaker(f0)
    pcm = to_int16(audio).tobytes()
    vad = webrtcvad.Vad(3)
    truth = frame_mask(segments, len(audio) / RATE)
    decisions = np.array(
        [vad.is_speech(pcm[i * 960 : (i + 1) * 960], RATE) for i in range(len(truth))]
    )
    assert decisions[truth].mean() > 0.95
    assert decisions[~truth].mean() < 0.3  # its hangover after each phrase


@pytest.mark.parametrize(("f0", "snr_db"), [(90.0, 30.0), (220.0, 30.0), (300.0, 15.0)])
def test_talk_time_of_a_voice_in_noise_is_within_5_percent(f0: float, snr_db: float) -> None:
    audio, segments = speaker(f0, snr_db=snr_db)
    truth = sum(end - start for start, end in segments)
    assert talk_time(detect(to_int16(audio))) == pytest.approx(truth, rel=0.05)


def raw_decisions(pcm: npt.NDArray[np.int16], mode: int) -> npt.NDArray[np.bool_]:
    vad, data = webrtcvad.Vad(mode), pcm.tobytes()
    return np.array(
        [vad.is_speech(data[i : i + 960], RATE) for i in range(0, len(data) - 959, 960)]
    )


@pytest.mark.parametrize("f0", [110.0, 220.0])
def test_mode_2_keeps_a_quiet_talker_that_mode_3_loses(f0: float) -> None:
    speech, segments = voice(20.0, f0=f0, seed=3, level_db=-48.0)
    pcm = to_int16(speech + pink_noise(20.0, -75.0))
    truth = frame_mask(segments, 20.0)[:666]
    assert raw_decisions(pcm, 2)[truth].mean() > 0.85
    assert raw_decisions(pcm, 3)[truth].mean() < 0.5
    frames = detect(pcm)  # the default: mode 2
    assert talk_time(frames) == pytest.approx(sum(b - a for a, b in segments), rel=0.1)


# -- input paths ------------------------------------------------------------------------


def test_48k_stereo_in_20ms_packets_decides_like_16k_mono() -> None:
    segments = plan_phrases(20.0, seed=7)
    mono16 = to_int16(voice(20.0, f0=160.0, seed=7, segments=segments)[0] + white_noise(20.0, -55))
    mono48 = to_int16(
        voice(20.0, f0=160.0, seed=7, segments=segments, rate=48000)[0]
        + white_noise(20.0, -55, rate=48000)
    )
    stereo = np.repeat(mono48, 2).reshape(1, -1)  # aiortc's packed s16 frame shape
    direct = detect(mono16)
    packets = VadDetector()
    for start in range(0, stereo.shape[1], 1920):  # 20 ms of 48 kHz stereo
        piece = stereo[:, start : start + 1920]
        packets.on_pcm(piece, sample_rate=48000, channels=2, t=start / 96000)
    packets.flush()
    decimated = packets.drain_frames()
    assert [f.t for f in decimated] == [f.t for f in direct]
    agree = np.mean([a.voiced == b.voiced for a, b in zip(direct, decimated, strict=True)])
    assert agree > 0.97
    assert talk_time(decimated) == pytest.approx(talk_time(direct), rel=0.03)
    loud = [(a.level_db, b.level_db) for a, b in zip(direct, decimated, strict=True)]
    speech_levels = np.array([(a, b) for a, b in loud if a > -40])
    assert np.median(np.abs(speech_levels[:, 0] - speech_levels[:, 1])) < 0.5


def test_planar_float_input_decides_like_int16() -> None:
    audio, _ = speaker(220.0, duration=10.0)
    pcm = to_int16(audio)
    planar = np.vstack([pcm, pcm]).astype(np.float32) / 32767.0
    as_float = detect(planar, channels=2)
    as_int = detect(pcm)
    assert [f.voiced for f in as_float] == [f.voiced for f in as_int]


def test_chunked_input_gives_the_same_frames_as_one_call() -> None:
    audio, _ = speaker(150.0, duration=10.0)
    pcm = to_int16(audio)
    assert detect(pcm, chunk=333) == detect(pcm)


def test_frames_start_on_the_30ms_grid_of_the_callers_clock() -> None:
    pcm = to_int16(white_noise(1.0, -50.0))
    detector = VadDetector()
    detector.on_pcm(pcm, sample_rate=RATE, channels=1, t=100.0123)
    detector.flush()
    times = [f.t for f in detector.drain_frames()]
    assert times[0] == pytest.approx(100.02)  # the first boundary after 100.0123
    assert all(round(t / FRAME) * FRAME == pytest.approx(t) for t in times)
    assert np.allclose(np.diff(times), FRAME)


def test_level_is_dbov_full_scale_square_0_sine_minus_3() -> None:
    square = np.full(480, 32767, dtype=np.int16) * np.where(np.arange(480) % 2, 1, -1)
    sine = to_int16(32767 * np.sin(2 * np.pi * 1000 * np.arange(480) / RATE))
    silence = np.zeros(480, dtype=np.int16)
    levels = frame_levels_db(np.concatenate([square.astype(np.int16), sine, silence]))
    assert levels[0] == pytest.approx(0.0, abs=0.01)
    assert levels[1] == pytest.approx(-3.01, abs=0.02)
    assert levels[2] == LEVEL_FLOOR_DB


# -- noise, clicks and the floor ----------------------------------------------------------


NOISES = {"white": white_noise, "pink": pink_noise, "hum": hum}


@pytest.mark.parametrize("kind", sorted(NOISES))
@pytest.mark.parametrize("level_db", [-60.0, -40.0, -30.0, -20.0, -10.0])
def test_steady_noise_is_never_talk(kind: str, level_db: float) -> None:
    pcm = to_int16(NOISES[kind](20.0, level_db))
    frames = detect(pcm)
    assert talk_time(frames) == 0.0
    assert sum(f.voiced for f in frames) <= 2


@pytest.mark.parametrize(("kind", "level_db"), [("hum", -30.0), ("white", -20.0)])
def test_webrtcvad_alone_would_call_loud_steady_noise_speech(kind: str, level_db: float) -> None:
    pcm = to_int16(NOISES[kind](5.0, level_db)).tobytes()
    vad = webrtcvad.Vad(3)
    raw = [vad.is_speech(pcm[i : i + 960], RATE) for i in range(0, len(pcm) - 959, 960)]
    assert np.mean(raw) > 0.9  # so the level gate is what keeps steady noise out


@pytest.mark.parametrize(("peak_db", "room_db"), [(-30, -70), (-20, -50), (-10, -70), (-3, -50)])
def test_keyboard_clicks_are_not_talk(peak_db: float, room_db: float) -> None:
    pcm = to_int16(keyboard_clicks(30.0, peak_db=peak_db, seed=peak_db + 100))
    frames = detect(pcm + to_int16(white_noise(30.0, room_db)))
    assert talk_time(frames) == 0.0


def test_without_the_click_test_clicks_would_become_talk() -> None:
    pcm = to_int16(keyboard_clicks(30.0, peak_db=-20.0, seed=80) + white_noise(30.0, -70))
    frames = detect(pcm, config=SpeechConfig(click_share_ratio=2.0))
    assert talk_time(frames) > 0.1


def test_speech_after_a_minute_of_loud_noise_is_detected() -> None:
    noise = pink_noise(70.0, -40.0, seed=5)
    speech, segments = voice(10.0, f0=200.0, seed=5, level_db=-20.0)
    audio = noise.copy()
    audio[60 * RATE :] += speech
    found = spurts(detect(to_int16(audio)))
    assert all(start >= 60.0 - FRAME for start, _ in found)
    truth = sum(end - start for start, end in segments)
    assert sum(end - start for start, end in found) == pytest.approx(truth, rel=0.1)


def floor_at(frames: list[SpeechFrame], t: float) -> float:
    return next(f.noise_floor_db for f in frames if f.t >= t)


@pytest.mark.parametrize(("before_db", "after_db"), [(-60.0, -35.0), (-35.0, -60.0)])
def test_noise_floor_follows_a_step_in_noise_within_two_seconds(
    before_db: float, after_db: float
) -> None:
    audio = np.concatenate(
        [white_noise(10.0, before_db, seed=1), white_noise(10.0, after_db, seed=2)]
    )
    frames = detect(to_int16(audio))
    assert floor_at(frames, 9.9) == pytest.approx(before_db, abs=2.0)
    assert floor_at(frames, 12.0) == pytest.approx(after_db, abs=2.0)
    # Until a louder noise is learnt (0.5 s for white noise) webrtcvad alone decides.
    louder = after_db > before_db
    assert talk_time(frames) <= (0.5 + FRAME if louder else 0.0)
    assert all(start >= 10.0 - FRAME and end <= 10.6 for start, end in spurts(frames))


def test_noise_floor_does_not_creep_up_during_a_minute_of_continuous_speech() -> None:
    room = pink_noise(65.0, -60.0, seed=9)
    speech, _ = voice(60.0, f0=130.0, seed=9, segments=[(0.0, 60.0)], dip_db=15.0)
    audio = room.copy()
    audio[5 * RATE :] += speech  # legato: the envelope dips only 15 dB between syllables
    frames = detect(to_int16(audio))
    floors = [f.noise_floor_db for f in frames if f.t > 5.5]
    assert max(floors) < -60.0 + 3.0
    during = [f.voiced for f in frames if 6.0 < f.t < 64.0]
    assert np.mean(during) > 0.85


def test_a_stream_that_opens_with_speech_is_still_detected_from_the_first_phrase() -> None:
    speech, segments = voice(12.0, f0=110.0, seed=4)  # speech from t = 0, no lead-in
    frames = detect(to_int16(speech + white_noise(12.0, -60.0)))
    found = spurts(frames)
    assert found[0][0] == pytest.approx(segments[0][0], abs=2 * FRAME)
    assert found[0][1] == pytest.approx(segments[0][1], abs=3 * FRAME)


# -- bad input is counted, never raised ------------------------------------------------------


def test_bad_input_is_counted_and_the_stream_carries_on() -> None:
    good = to_int16(white_noise(1.0, -50.0))
    detector = VadDetector()
    detector.on_pcm(good[:8000], sample_rate=RATE, channels=1, t=0.0)
    detector.on_pcm(good.astype(np.int32), sample_rate=RATE, channels=1, t=0.5)
    detector.on_pcm(np.array([0.1, np.nan], dtype=np.float32), sample_rate=RATE, channels=1, t=0.5)
    detector.on_pcm(good[:101], sample_rate=RATE, channels=2, t=0.5)  # odd interleaved
    detector.on_pcm(good, sample_rate=44100, channels=1, t=0.5)
    detector.on_pcm(good.reshape(4, -1), sample_rate=RATE, channels=1, t=0.5)
    detector.on_pcm([1, 2, 3], sample_rate=RATE, channels=1, t=0.5)  # type: ignore[arg-type]
    counters = detector.counters()
    assert counters.bad_dtype_count == 2
    assert counters.non_finite_count == 1
    assert counters.bad_shape_count == 2
    assert counters.unsupported_rate_count == 1
    assert counters.bad_input_count == 6
    detector.on_pcm(good, sample_rate=RATE, channels=1, t=2.0)
    detector.flush()
    assert detector.drain_frames()[-1].t == pytest.approx(2.97)


def test_gaps_and_overlaps_in_time_are_counted_and_keep_the_grid() -> None:
    pcm = to_int16(white_noise(3.0, -50.0))
    detector = VadDetector()
    detector.on_pcm(pcm[:16000], sample_rate=RATE, channels=1, t=0.0)
    detector.on_pcm(pcm[16000:24000], sample_rate=RATE, channels=1, t=1.5)  # a gap
    detector.on_pcm(pcm[24000:32000], sample_rate=RATE, channels=1, t=1.75)  # overlap
    detector.on_pcm(pcm[32000:], sample_rate=RATE, channels=1, t=2.25 + 0.001)  # jitter
    detector.flush()
    frames = detector.drain_frames()
    counters = detector.counters()
    assert (counters.gap_count, counters.overlap_count) == (1, 1)
    times = [f.t for f in frames]
    assert times == sorted(set(times))
    assert not [t for t in times if 1.0 <= t < 1.5]  # nothing invented in the gap
    assert times[-1] == pytest.approx(3.21)
    assert all(abs(t / FRAME - round(t / FRAME)) < 1e-6 for t in times)


def test_a_bad_config_fails_fast() -> None:
    with pytest.raises(ConfigError):
        SpeechConfig(vad_mode=4)
    with pytest.raises(ConfigError):
        SpeechConfig(fill_gap=-0.1)


# -- held input is bounded in time --------------------------------------------------------------


def feed_in_packets(detector: VadDetector, pcm: npt.NDArray[np.int16], size: int = 320) -> None:
    for start in range(0, len(pcm), size):
        detector.on_pcm(pcm[start : start + size], sample_rate=RATE, channels=1, t=start / RATE)


def test_a_stream_that_stops_inside_a_batch_is_released_by_the_clock() -> None:
    detector = VadDetector()
    feed_in_packets(detector, to_int16(white_noise(2.0, -50.0)))
    held = detector.held_since
    assert held is not None
    assert 2.0 - SpeechConfig().batch <= held < 2.0
    deadline = detector.next_deadline()
    assert deadline == pytest.approx(held + SpeechConfig().batch)
    count = len(detector.drain_frames())
    detector.on_timer(now=deadline - 0.01)
    assert detector.drain_frames() == []
    detector.on_timer(now=deadline)
    count += len(detector.drain_frames())
    assert count == 66  # every whole frame of the 2 s
    assert detector.held_since is None
    assert detector.next_deadline() is None


def test_a_stream_that_stops_during_its_warm_up_is_released_after_the_limit() -> None:
    speech, _ = voice(1.0, f0=140.0, seed=6, segments=[(0.0, 1.0)])  # no pause, no room
    detector = VadDetector()
    feed_in_packets(detector, to_int16(speech + white_noise(1.0, -65.0)))
    detector.on_timer(now=2.0)  # the batch is released into the warm-up
    assert detector.drain_frames() == []
    assert detector.held_since == 0.0
    limit = SpeechConfig().warmup_limit
    assert detector.next_deadline() == pytest.approx(limit)
    detector.on_timer(now=limit)
    frames = detector.drain_frames()
    assert len(frames) == 33
    assert detector.held_since is None
