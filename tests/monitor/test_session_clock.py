"""Media placed on the session clock by its timestamps (LAB.md), not by arrival."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.media_clock import MediaClock, RtpTimestampClock


def test_bursty_arrival_is_undone_by_the_pts() -> None:
    clock = MediaClock()
    # frames every 20 ms released in bursts of four (a jitter buffer)
    placed = [clock.place(i * 0.02, 10.0 + (i // 4) * 0.08 + 0.08) for i in range(12)]
    steps = [round(b - a, 6) for a, b in itertools.pairwise(placed)]
    # The first burst teaches the anchor (its frames cannot move back once placed);
    # from then on, frames are evenly spaced whatever the bursts.
    assert steps[3:] == [0.02] * 8


def test_a_frame_is_never_placed_after_it_arrived() -> None:
    clock = MediaClock()
    arrivals = [5.0 + i * 0.02 + (0.03 if i % 3 else 0.0) for i in range(30)]
    for i, arrival in enumerate(arrivals):
        assert clock.place(i * 0.02, arrival) <= arrival + 1e-9


def test_dropped_frames_leave_a_gap_in_media_time() -> None:
    clock = MediaClock()
    first = clock.place(0.0, 1.0)
    later = clock.place(0.1, 1.1)  # frames 1-4 dropped by the jitter buffer under loss
    assert later - first == pytest.approx(0.1)


def test_a_sender_stall_with_continuous_pts_resyncs_to_arrival() -> None:
    clock = MediaClock()
    clock.place(0.0, 1.0)
    assert clock.place(0.02, 2.52) == 2.52  # 1.5 s late: re-anchored


def test_a_new_stream_with_lower_pts_follows_arrival() -> None:
    clock = MediaClock()
    clock.place(50.0, 1.0)
    assert clock.place(0.0, 1.5) == 1.5
    assert clock.place(0.02, 1.52) == pytest.approx(1.52)


def test_rtp_clock_unwraps_32_bit_timestamps_and_skips_late_packets() -> None:
    clock = RtpTimestampClock()
    start = 0xFFFFFFFF - 959
    first = clock.place(start, 48000, 1.0)
    second = clock.place((start + 960) & 0xFFFFFFFF, 48000, 1.02)
    assert first == (1.0, 0.0)
    assert second is not None
    assert second[0] - first[0] == pytest.approx(0.02)
    assert second[1] == pytest.approx(0.02)
    assert clock.place(start, 48000, 1.05) is None  # late duplicate of the first


@given(st.lists(st.floats(0.0, 0.05), min_size=2, max_size=50))
def test_placed_times_never_go_backwards(delays: list[float]) -> None:
    clock = MediaClock()
    placed = [clock.place(i * 0.02, 100.0 + i * 0.02 + d) for i, d in enumerate(delays)]
    assert placed == sorted(placed)
