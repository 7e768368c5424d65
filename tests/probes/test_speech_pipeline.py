"""SpeechPipeline and analyze_tracks: detector -> crosstalk gate -> smoother, two roles."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from probes.base import Role
from probes.speech import FRAME, VoiceEvent, VoiceStarted, VoiceStopped, dbov_from_rfc6464
from probes.speech_pipeline import (
    Segment,
    SpeechInputError,
    SpeechPipeline,
    TrackAnalysis,
    analyze_tracks,
    segments_from_events,
)
from tests.probes.synthetic_voice import Floats, Segments, to_int16, voice, with_echo

T, C = Role.THERAPIST, Role.CLIENT
RATE = 16000
DURATION = 40.0


@cache
def conversation() -> tuple[Floats, Floats, dict[Role, Segments]]:
    """Turns with gaps, one overlap; each track carries the other at -20 dB, 40 ms late."""
    truth = {
        T: [(0.5, 3.0), (3.4, 6.0), (12.0, 15.0), (20.0, 22.5), (30.0, 34.0)],
        C: [(6.6, 9.0), (9.3, 11.4), (15.6, 19.4), (22.0, 26.0), (34.8, 38.0)],
    }
    therapist, _ = voice(DURATION, f0=115.0, seed=51, segments=truth[T])
    client, _ = voice(DURATION, f0=210.0, seed=52, segments=truth[C])
    return (
        with_echo(therapist, client, leak_db=20.0, seed=53),
        with_echo(client, therapist, leak_db=20.0, seed=54),
        truth,
    )


@cache
def offline() -> TrackAnalysis:
    therapist, client, _ = conversation()
    return analyze_tracks(to_int16(therapist), to_int16(client), sample_rate=RATE)


def covered(segments: tuple[Segment, ...], start: float, end: float) -> float:
    return sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in segments)


def test_offline_analysis_finds_each_turn_of_each_role() -> None:
    found = offline()
    _, _, truth = conversation()
    for role in (T, C):
        assert len(found.segments[role]) == len(truth[role])
        for (start, end), segment in zip(truth[role], found.segments[role], strict=True):
            assert segment.start == pytest.approx(start, abs=0.1)
            assert segment.end == pytest.approx(end, abs=0.1)
    assert found.duration == pytest.approx(DURATION)
    assert covered(found.segments[T], 22.0, 22.5) > 0.4  # the overlap, for both
    assert covered(found.segments[C], 22.0, 22.5) > 0.4


def test_events_come_in_time_order_across_roles_and_pair_up_per_role() -> None:
    events = offline().events
    assert [e.t for e in events] == sorted(e.t for e in events)
    for role in (T, C):
        own = [type(e) for e in events if e.role is role]
        assert own == [VoiceStarted, VoiceStopped] * (len(own) // 2)
        assert segments_from_events(events, role) == offline().segments[role]


def test_live_48k_stereo_packets_with_ticks_match_the_offline_analysis() -> None:
    therapist, client, _ = conversation()
    packets = {
        role: np.repeat(to_int16(voice_track), 2)  # what aiortc decodes: 48 kHz stereo
        for role, voice_track in ((T, np.repeat(therapist, 3)), (C, np.repeat(client, 3)))
    }
    pipeline = SpeechPipeline()
    events: list[VoiceEvent] = []
    size = 1920  # 20 ms
    for index, start in enumerate(range(0, len(packets[T]), size)):
        t = start / 96000
        for role in (T, C) if index % 2 else (C, T):
            pipeline.on_pcm(
                role, packets[role][start : start + size], sample_rate=48000, channels=2, t=t
            )
        if index % 12 == 0:  # a session tick every 240 ms
            pipeline.on_timer(now=t + 0.02)
        events += pipeline.drain_events()
        assert [e.t for e in events] == sorted(e.t for e in events)
    pipeline.flush()
    events += pipeline.drain_events()
    for role in (T, C):
        live = segments_from_events(events, role)
        reference = offline().segments[role]
        assert len(live) == len(reference)
        for a, b in zip(live, reference, strict=True):
            assert a.start == pytest.approx(b.start, abs=2 * FRAME)
            assert a.end == pytest.approx(b.end, abs=2 * FRAME)
    assert pipeline.echo_leak_db(C) == pytest.approx(20.0, abs=3.0)


def test_when_a_role_falls_silent_the_clock_closes_its_spurt() -> None:
    therapist, _, _ = conversation()
    pipeline = SpeechPipeline()
    pcm = to_int16(therapist[: 5 * RATE])  # the therapist mid-phrase at 5 s; client absent
    for start in range(0, len(pcm), 320):
        pipeline.on_pcm(T, pcm[start : start + 320], sample_rate=RATE, channels=1, t=start / RATE)
        pipeline.on_timer(now=(start + 320) / RATE)
    assert pipeline.active(T)
    assert pipeline.level_db(T) is not None
    events = pipeline.drain_events()
    assert [type(e) for e in events] == [VoiceStarted, VoiceStopped, VoiceStarted]
    now = 5.0
    for _ in range(50):  # deadlines must make progress and run out
        deadline = pipeline.next_deadline()
        if deadline is None:
            break
        assert deadline > now - 1e-9
        now = deadline
        pipeline.on_timer(now=now)
    assert pipeline.next_deadline() is None
    stop = pipeline.drain_events()
    assert stop == [VoiceStopped(T, pytest.approx(5.0, abs=FRAME))]
    assert not pipeline.active(T)
    assert now < 5.0 + 0.5 + 0.2 + 3 * FRAME  # skew + fill + grid


def test_a_role_that_stops_in_its_warm_up_holds_the_other_back_only_so_long() -> None:
    therapist, client, _ = conversation()
    pipeline = SpeechPipeline()
    released: dict[float, float] = {}  # event time -> clock when it came out
    for start in range(0, 12 * RATE, 320):
        t = start / RATE
        pipeline.on_pcm(
            T, to_int16(therapist[start : start + 320]), sample_rate=RATE, channels=1, t=t
        )
        if t < 0.6:  # the client's stream stops while its warm-up still holds it
            pipeline.on_pcm(
                C, to_int16(client[start : start + 320]), sample_rate=RATE, channels=1, t=t
            )
        pipeline.on_timer(now=t + 0.02)
        for event in pipeline.drain_events():
            released[round(event.t, 2)] = t + 0.02
    assert 3.0 in released  # the therapist's first stop
    # Held while the client's first frames might still come: up to the warm-up limit (5 s
    # of its stream), then the gate's skew, the fill and a batch.
    assert 5.0 <= released[3.0] <= 5.0 + 0.5 + 0.2 + 0.12 + 0.1


def test_levels_drive_a_role_in_metadata_mode() -> None:
    therapist, client, truth = conversation()
    pipeline = SpeechPipeline()
    size = round(0.02 * RATE)
    for role, track in ((T, therapist), (C, client)):
        pcm = to_int16(track).astype(np.float64)
        for i, start in enumerate(range(0, len(pcm) - size + 1, size)):
            power = np.mean(np.square(pcm[start : start + size])) / 32768.0**2
            level = 127 if power == 0 else min(127, round(-10 * np.log10(power)))
            pipeline.on_level(role, dbov_from_rfc6464(level), now=(i + 1) * 0.02, duration=0.02)
    pipeline.flush()
    events = pipeline.drain_events()
    for role in (T, C):
        found = segments_from_events(events, role)
        assert len(found) == len(truth[role])
        talk = sum(s.duration for s in found)
        assert talk == pytest.approx(sum(b - a for a, b in truth[role]), rel=0.06)


def test_one_role_cannot_take_both_pcm_and_levels() -> None:
    pipeline = SpeechPipeline()
    pipeline.on_pcm(T, np.zeros(480, dtype=np.int16), sample_rate=RATE, channels=1, t=0.0)
    pipeline.on_level(C, -40.0, now=0.02, duration=0.02)  # the other role may differ
    with pytest.raises(SpeechInputError):
        pipeline.on_level(T, -40.0, now=0.04, duration=0.02)


def test_analyze_tracks_reports_progress_up_to_one() -> None:
    therapist, client, _ = conversation()
    seen: list[float] = []
    analyze_tracks(
        to_int16(therapist), to_int16(client), sample_rate=RATE, chunk=7.0, on_progress=seen.append
    )
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert len(seen) == 6


def test_analyze_tracks_counts_bad_input_per_role() -> None:
    quiet = np.zeros(RATE, dtype=np.int16)
    found = analyze_tracks(quiet, quiet.astype(np.int32), sample_rate=RATE)
    assert found.input_counters[C].bad_dtype_count >= 1
    assert found.input_counters[T].bad_input_count == 0
    assert found.segments == {T: (), C: ()}
    assert found.events == ()
