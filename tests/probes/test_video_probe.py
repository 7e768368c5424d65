"""The per-stream video freeze probe (probes/video.py): timing and content merged."""

from __future__ import annotations

import numpy as np
import pytest

from probes.base import Role
from probes.content_freeze import ContentFreezeEnded, ContentFreezeStarted
from probes.freeze import FreezeEnded, FreezeStarted, PauseStarted
from probes.signals import CATALOGUE, SignalType
from probes.video import VideoFreezeProbe, VideoInputMode, VideoInputModeError

PERIOD = 1 / 30


def live_frames(probe: VideoFreezeProbe, seconds: float, start: float = 0.0) -> float:
    """Feed a live, noisy picture at 30 fps; returns the time of the next frame."""
    rng = np.random.default_rng(int(start * 1000) + 1)
    base = rng.uniform(40, 200, (36, 64))
    t = start
    for _ in range(round(seconds * 30)):
        picture = np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
        probe.on_frame(now=t, thumbnail=picture)
        t += PERIOD
    return t


def test_every_signal_is_unknown_before_the_first_frame_and_named_in_the_catalogue() -> None:
    probe = VideoFreezeProbe()
    signals = probe.snapshot(now=5.0).signals(Role.CLIENT)
    assert set(signals) == {
        "client.video.fps",
        "client.video.frozen",
        "client.video.freeze_s",
        "client.video.freeze_count",
        "client.video.freezes_2m_count",
        "client.video.total_freezes_s",
    }
    assert set(signals) <= set(CATALOGUE)
    assert all(value is None for value in signals.values())


def test_signal_values_have_the_catalogue_types() -> None:
    probe = VideoFreezeProbe()
    t = live_frames(probe, 3)
    signals = probe.snapshot(now=t).signals(Role.THERAPIST)
    for name, value in signals.items():
        expected = bool if CATALOGUE[name].type is SignalType.BOOL else float
        assert isinstance(value, expected), name
    assert signals["therapist.video.frozen"] is False
    assert signals["therapist.video.freeze_s"] == 0.0
    assert signals["therapist.video.fps"] == pytest.approx(30, abs=1)


def test_a_timing_freeze_makes_the_video_frozen_with_its_duration() -> None:
    probe = VideoFreezeProbe()
    t = live_frames(probe, 3)
    last = t - PERIOD
    deadline = probe.next_deadline()
    assert deadline is not None
    probe.on_timer(now=deadline)
    assert [type(e) for e in probe.drain_events()] == [FreezeStarted]
    signals = probe.snapshot(now=last + 0.8).signals(Role.CLIENT)
    assert signals["client.video.frozen"] is True
    assert signals["client.video.freeze_s"] == pytest.approx(0.8)
    assert signals["client.video.freezes_2m_count"] == 1.0
    assert signals["client.video.freeze_count"] == 0.0

    live_frames(probe, 1, start=last + 1.0)
    assert isinstance(probe.drain_events()[0], FreezeEnded)
    signals = probe.snapshot(now=last + 2.0).signals(Role.CLIENT)
    assert signals["client.video.frozen"] is False
    assert signals["client.video.freeze_count"] == 1.0
    assert signals["client.video.total_freezes_s"] == pytest.approx(1.0)


def test_a_pause_keeps_the_picture_frozen_but_is_not_a_w3c_freeze() -> None:
    probe = VideoFreezeProbe()
    t = live_frames(probe, 3)
    probe.on_timer(now=t + 6.0)
    assert [type(e) for e in probe.drain_events()] == [FreezeStarted, PauseStarted]
    snapshot = probe.snapshot(now=t + 6.0)
    assert snapshot.frozen is True
    assert snapshot.timing.paused
    assert snapshot.signals(Role.CLIENT)["client.video.freezes_2m_count"] == 0.0


def test_identical_content_makes_the_video_frozen_while_frames_keep_coming() -> None:
    probe = VideoFreezeProbe()
    t = live_frames(probe, 5)
    stuck = np.full((36, 64), 90, np.uint8)
    for _ in range(45):  # 1.5 s of the same picture at full frame rate
        probe.on_frame(now=t, thumbnail=stuck)
        t += PERIOD
    events = probe.drain_events()
    assert [type(e) for e in events] == [ContentFreezeStarted]
    snapshot = probe.snapshot(now=t - PERIOD)
    assert snapshot.frozen is True
    assert not snapshot.timing.frozen
    assert snapshot.freeze_duration == pytest.approx(45 * PERIOD - PERIOD, abs=PERIOD)
    signals = snapshot.signals(Role.CLIENT)
    assert signals["client.video.freezes_2m_count"] == 1.0
    assert signals["client.video.freeze_count"] == 0.0  # the W3C count is timing only
    assert signals["client.video.fps"] == pytest.approx(30, abs=1)

    live_frames(probe, 1, start=t)
    assert [type(e) for e in probe.drain_events()] == [ContentFreezeEnded]
    assert probe.snapshot(now=t + 1).frozen is False


def test_metadata_mode_finds_freezes_from_rtp_packets() -> None:
    probe = VideoFreezeProbe()
    for i in range(60):
        probe.on_rtp_packet(rtp_timestamp=i * 3000, marker=False, now=i * PERIOD)
        probe.on_rtp_packet(rtp_timestamp=i * 3000, marker=True, now=i * PERIOD + 0.001)
    assert probe.mode is VideoInputMode.RTP
    last = 59 * PERIOD + 0.001
    probe.on_timer(now=last + 0.5)
    probe.on_rtp_packet(rtp_timestamp=60 * 3000, marker=True, now=last + 0.7)
    assert [type(e) for e in probe.drain_events()] == [FreezeStarted, FreezeEnded]
    snapshot = probe.snapshot(now=last + 0.7)
    assert snapshot.content is None
    assert snapshot.signals(Role.CLIENT)["client.video.freeze_count"] == 1.0


def test_mixing_frame_and_rtp_input_on_one_probe_is_refused() -> None:
    probe = VideoFreezeProbe()
    probe.on_frame(now=0.0)
    with pytest.raises(VideoInputModeError):
        probe.on_rtp_packet(rtp_timestamp=0, marker=True, now=0.1)


def test_a_frame_the_timing_rule_rejects_does_not_reach_the_content_check() -> None:
    probe = VideoFreezeProbe()
    t = live_frames(probe, 2)
    picture = np.full((36, 64), 50, np.uint8)
    probe.on_frame(now=t, thumbnail=picture, frame_id=7)
    for k in range(60):  # the same frame delivered again and again (same id)
        probe.on_frame(now=t + (k + 1) * PERIOD, thumbnail=picture, frame_id=7)
    snapshot = probe.snapshot(now=t + 2.0)
    assert snapshot.timing.duplicate_frame_count == 60
    assert snapshot.content is not None
    assert snapshot.content.frame_count == 61
    assert not snapshot.content.frozen
