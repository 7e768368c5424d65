"""Frames from RTP timestamps and marker bits (probes/rtp_frames.py) feed the W3C rule."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.freeze import FreezeDetector, FreezeEnded, FreezeEvent, FreezeStarted
from probes.rtp_frames import RtpFrameTracker, rtp_timestamp_newer
from tests.probes.test_freeze_timing import drive, stream_with_gaps


class Recorder:
    def __init__(self) -> None:
        self.frames: list[float] = []

    def on_frame(self, *, now: float) -> None:
        self.frames.append(now)


Packet = tuple[int, bool, float]  # rtp timestamp, marker, arrival


def packetize(
    rng: np.random.Generator,
    frame_times: list[float],
    *,
    first_timestamp: int = 0,
    reorder: bool = True,
    retransmit: bool = True,
) -> tuple[list[Packet], list[float]]:
    """Packets of a 90 kHz video stream; returns them and each frame's completion time
    (the arrival of its marker packet), which is what the tracker must report."""
    packets: list[Packet] = []
    completions: list[float] = []
    for index, t in enumerate(frame_times):
        timestamp = (first_timestamp + index * 3000) % 2**32
        count = int(rng.integers(1, 6))
        arrivals = [t + k * 0.0005 for k in range(count)]
        markers = [k == count - 1 for k in range(count)]
        order = list(range(count))
        if reorder and count > 1 and rng.random() < 0.3:
            rng.shuffle(order)  # reordering inside the frame, marker possibly first
        for slot, k in enumerate(order):
            packets.append((timestamp, markers[k], arrivals[slot]))
        completions.append(arrivals[order.index(count - 1)])
        if retransmit and index > 3 and rng.random() < 0.1:
            # an RTX of a packet from a few frames back, arriving now
            old = (first_timestamp + (index - int(rng.integers(1, 4))) * 3000) % 2**32
            packets.append((old, bool(rng.random() < 0.5), arrivals[-1] + 0.0001))
    return packets, completions


def feed(packets: list[Packet]) -> tuple[FreezeDetector, RtpFrameTracker, list[FreezeEvent]]:
    detector = FreezeDetector()
    tracker = RtpFrameTracker(detector)
    for timestamp, marker, now in packets:
        while (deadline := detector.next_deadline()) is not None and deadline <= now:
            detector.on_timer(now=deadline)
        tracker.on_packet(rtp_timestamp=timestamp, marker=marker, now=now)
    return detector, tracker, detector.drain_events()


@pytest.mark.parametrize("fps", [30.0, 15.0, 10.0])
@pytest.mark.parametrize("first_timestamp", [0, 2**32 - 3000 * 50])
def test_rtp_framing_finds_the_same_freezes_as_frame_level_input(
    fps: float, first_timestamp: int
) -> None:
    rng = np.random.default_rng(int(fps) + first_timestamp % 97)
    frame_times, _ = stream_with_gaps(rng, fps, gap_count=25)
    packets, completions = packetize(rng, frame_times, first_timestamp=first_timestamp)
    _, tracker, from_rtp = feed(packets)
    from_frames = drive(FreezeDetector(), completions)

    assert tracker.frame_count == len(frame_times)
    assert tracker.late_packet_count > 0  # the trace did hold retransmissions
    assert len([e for e in from_frames if isinstance(e, FreezeEnded)]) >= 5
    assert [type(e) for e in from_rtp] == [type(e) for e in from_frames]
    for rtp_event, frame_event in zip(from_rtp, from_frames, strict=True):
        assert rtp_event.start == pytest.approx(frame_event.start, abs=1e-9)


def test_a_late_retransmission_of_an_old_frame_does_not_end_a_freeze() -> None:
    detector = FreezeDetector()
    tracker = RtpFrameTracker(detector)
    for i in range(60):
        tracker.on_packet(rtp_timestamp=i * 3000, marker=True, now=i / 30)
    last = 59 / 30
    detector.on_timer(now=last + 0.3)
    assert [type(e) for e in detector.drain_events()] == [FreezeStarted]
    tracker.on_packet(rtp_timestamp=57 * 3000, marker=True, now=last + 0.6)  # RTX, old
    tracker.on_packet(rtp_timestamp=59 * 3000, marker=False, now=last + 0.7)  # RTX, current
    assert detector.snapshot(now=last + 0.8).frozen
    assert tracker.frame_count == 60
    assert tracker.late_packet_count == 1
    tracker.on_packet(rtp_timestamp=60 * 3000, marker=True, now=last + 1.0)
    (ended,) = detector.drain_events()
    assert isinstance(ended, FreezeEnded)
    assert (ended.start, ended.end) == (last, last + 1.0)
    assert ended.duration == pytest.approx(1.0)


def test_timestamps_across_the_32_bit_wrap_are_new_frames() -> None:
    recorder = Recorder()
    tracker = RtpFrameTracker(recorder)
    start = 2**32 - 6000
    for i in range(5):
        tracker.on_packet(rtp_timestamp=(start + i * 3000) % 2**32, marker=True, now=i * 0.033)
    tracker.on_packet(rtp_timestamp=start + 3000, marker=True, now=0.2)  # old, before wrap
    assert tracker.frame_count == 5
    assert tracker.late_packet_count == 1
    assert recorder.frames == pytest.approx([0.0, 0.033, 0.066, 0.099, 0.132])


def test_a_frame_whose_marker_is_lost_is_reported_when_the_next_frame_begins() -> None:
    recorder = Recorder()
    tracker = RtpFrameTracker(recorder)
    tracker.on_packet(rtp_timestamp=0, marker=True, now=0.0)
    tracker.on_packet(rtp_timestamp=3000, marker=False, now=0.033)  # marker packet lost
    tracker.on_packet(rtp_timestamp=6000, marker=False, now=0.066)
    tracker.on_packet(rtp_timestamp=6000, marker=True, now=0.067)
    assert recorder.frames == [0.0, 0.066, 0.067]
    assert tracker.marker_missing_count == 1


def test_packets_of_a_frame_after_its_marker_add_no_frame() -> None:
    recorder = Recorder()
    tracker = RtpFrameTracker(recorder)
    tracker.on_packet(rtp_timestamp=100, marker=True, now=0.0)  # marker first (reordered)
    tracker.on_packet(rtp_timestamp=100, marker=False, now=0.001)
    tracker.on_packet(rtp_timestamp=100, marker=True, now=0.002)  # duplicate marker packet
    assert recorder.frames == [0.0]
    assert tracker.packet_count == 3


@given(st.integers(0, 2**32 - 1), st.integers(1, 2**31 - 1))
def test_a_forward_step_under_half_the_space_is_newer_whatever_the_wrap(
    base: int, step: int
) -> None:
    ahead = (base + step) % 2**32
    assert rtp_timestamp_newer(ahead, base)
    assert not rtp_timestamp_newer(base, ahead)
    assert not rtp_timestamp_newer(base, base)
