"""RTP receive statistics: jitter, loss, bursts, RTX, windows, junk."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.rtp import RtpDropReason, RtpHeader, RtpReceiveStats, RtpStreamSnapshot

OPUS, VP8, RTX = 111, 96, 97
AUDIO_RATE, VIDEO_RATE = 48000, 90000

# (sequence number, RTP timestamp, arrival seconds); ssrc 1, Opus, 100 bytes by default
Packet = tuple[int, int, float]


def audio_stats(**kwargs: object) -> RtpReceiveStats:
    return RtpReceiveStats(clock_rates={OPUS: AUDIO_RATE}, **kwargs)  # type: ignore[arg-type]


def video_stats() -> RtpReceiveStats:
    return RtpReceiveStats(clock_rates={VP8: VIDEO_RATE}, rtx_payload_types={RTX: VP8})


def feed(
    stats: RtpReceiveStats,
    packets: Iterable[Packet],
    *,
    ssrc: int = 1,
    payload_type: int = OPUS,
    size: int = 100,
) -> None:
    for seq, timestamp, arrival in packets:
        header = RtpHeader(
            ssrc, seq & 0xFFFF, timestamp & 0xFFFFFFFF, payload_type, False, size, None
        )
        stats.on_packet(header, now=arrival)


def only_stream(stats: RtpReceiveStats, now: float) -> RtpStreamSnapshot:
    snapshot = stats.snapshot(now=now)
    assert len(snapshot.streams) == 1
    return snapshot.streams[0]


def reference_jitter_ms(packets: list[tuple[float, int]], clock_rate: int) -> float:
    """RFC 3550 A.8 as written: transit = arrival (in clock units) - timestamp.

    ``packets``: (arrival seconds, *unwrapped* RTP timestamp), in arrival order.
    """
    jitter = 0.0
    previous_transit = None
    for arrival, timestamp in packets:
        transit = arrival * clock_rate - timestamp
        if previous_transit is not None:
            d = abs(transit - previous_transit)
            jitter += (d - jitter) / 16
        previous_transit = transit
    return jitter / clock_rate * 1000


def random_trace(
    seed: int, *, clock_rate: int, packets_per_frame: int, count: int = 2000
) -> list[tuple[int, int, float]]:
    """(seq, unwrapped timestamp, arrival), sorted by arrival: delays vary, so some reorder.

    Timestamps and sequence numbers start just below their wraparound.
    """
    rng = random.Random(seed)
    frame_interval = 0.02 if clock_rate == AUDIO_RATE else 1 / 30
    ts_start = 2**32 - 50 * round(frame_interval * clock_rate)
    seq_start = 65536 - 700
    trace = []
    for i in range(count):
        if rng.random() < 0.02:
            continue  # lost
        frame, part = divmod(i, packets_per_frame)
        send = frame * frame_interval + part * 0.0004
        delay = 0.04 + rng.expovariate(1 / 0.006) + (0.15 if rng.random() < 0.01 else 0.0)
        timestamp = ts_start + frame * round(frame_interval * clock_rate)
        trace.append((seq_start + i, timestamp, 1000.0 + send + delay))
    trace.sort(key=lambda p: p[2])
    return trace


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("clock_rate", "payload_type", "packets_per_frame"),
    [(AUDIO_RATE, OPUS, 1), (VIDEO_RATE, VP8, 5)],
)
def test_jitter_equals_a_plain_rfc3550_reference_on_random_traces(
    seed: int, clock_rate: int, payload_type: int, packets_per_frame: int
) -> None:
    trace = random_trace(seed, clock_rate=clock_rate, packets_per_frame=packets_per_frame)
    stats = RtpReceiveStats(clock_rates={payload_type: clock_rate})
    feed(stats, trace, payload_type=payload_type)
    expected = reference_jitter_ms([(a, ts) for _, ts, a in trace], clock_rate)
    measured = only_stream(stats, trace[-1][2]).jitter_ms
    assert expected > 1.0  # the trace really has jitter to measure
    assert measured == pytest.approx(expected, rel=0.01)


def test_jitter_is_reported_in_ms_for_the_stream_clock_rate() -> None:
    # Video packets every 1/30 s, alternately 0 and 9 ms late: |D| = 9 ms each time.
    trace = [(i, i * 3000, i / 30 + (0.009 if i % 2 else 0.0)) for i in range(400)]
    stats = RtpReceiveStats(clock_rates={VP8: VIDEO_RATE})
    feed(stats, trace, payload_type=VP8)
    assert only_stream(stats, 14.0).jitter_ms == pytest.approx(9.0, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.integers(1, 5), st.floats(0.0, 0.2)),  # frames since last, network delay
        min_size=2,
        max_size=80,
    ),
    constant=st.floats(0.0, 100_000.0),
)
def test_jitter_is_unchanged_by_a_constant_added_delay(
    steps: list[tuple[int, float]], constant: float
) -> None:
    trace = []
    frame = 0
    for seq, (frames, delay) in enumerate(steps):
        frame += frames
        trace.append((seq, frame * 960, frame * 0.02 + delay))
    trace.sort(key=lambda p: p[2])
    plain, delayed = audio_stats(), audio_stats()
    feed(plain, trace)
    feed(delayed, [(s, ts, a + constant) for s, ts, a in trace])
    end = trace[-1][2]
    jitter = only_stream(plain, end).jitter_ms
    assert jitter is not None
    assert only_stream(delayed, end + constant).jitter_ms == pytest.approx(
        jitter, rel=1e-6, abs=1e-6
    )


def test_jitter_is_unknown_until_two_packets_have_arrived() -> None:
    stats = audio_stats()
    feed(stats, [(0, 0, 0.0)])
    assert only_stream(stats, 0.1).jitter_ms is None
    feed(stats, [(1, 960, 0.02)])
    assert only_stream(stats, 0.1).jitter_ms == pytest.approx(0.0, abs=1e-9)


def test_wraparound_at_65535_adds_no_loss() -> None:
    stats = audio_stats()
    feed(stats, [(65000 + i, 2**32 - 960 * 300 + 960 * i, i * 0.02) for i in range(3000)])
    stream = only_stream(stats, 60.0)
    assert stream.packets_expected == stream.packets_received == 3000
    assert stream.packets_lost == 0
    assert stream.loss_ratio_total == 0.0
    assert stream.loss_burst_count == 0
    assert stream.jitter_ms == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 65535), count=st.integers(1, 1500))
def test_any_start_and_length_without_drops_shows_no_loss(start: int, count: int) -> None:
    stats = audio_stats()
    feed(stats, [(start + i, 960 * i, i * 0.02) for i in range(count)])
    stream = only_stream(stats, count * 0.02)
    assert stream.packets_lost == 0
    assert stream.packets_expected == count


def bursts_of(dropped: set[int]) -> tuple[int, int]:
    """(number of runs of consecutive dropped numbers, longest run), counted plainly."""
    runs = []
    for number in sorted(dropped):
        if runs and runs[-1][1] == number - 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return len(runs), max((b - a + 1 for a, b in runs), default=0)


@pytest.mark.parametrize("seed", range(8))
def test_loss_counts_are_exact_with_bursts_reordering_and_duplicates(seed: int) -> None:
    rng = random.Random(seed)
    count = 4000
    start = rng.randrange(65536)
    dropped: set[int] = set()
    i = 1
    while i < count - 200:  # the last 200 arrive, so every gap leaves the reorder horizon
        if rng.random() < 0.02:
            dropped.add(i)
        if rng.random() < 0.004:
            burst = rng.randrange(2, 25)
            dropped.update(range(i, i + burst))
            i += burst
        i += 1
    order = [n for n in range(count) if n not in dropped]
    for _ in range(150):  # displace some packets up to 10 places later
        at = rng.randrange(len(order) - 20)
        order.insert(at + rng.randrange(1, 10), order.pop(at))
    duplicated = 0
    for _ in range(60):  # a copy of a packet arrives a few places after it
        at = rng.randrange(len(order) - 20)
        order.insert(at + rng.randrange(1, 5), order[at])
        duplicated += 1
    stats = audio_stats()
    feed(stats, [(start + n, 960 * n, k * 0.02) for k, n in enumerate(order)])
    stream = only_stream(stats, len(order) * 0.02)
    assert stream.packets_expected == count
    assert stream.packets_lost == len(dropped)
    assert stream.packets_received == count - len(dropped)
    assert stream.packets_duplicated == duplicated
    burst_count, longest = bursts_of(dropped)
    assert (stream.loss_burst_count, stream.longest_loss_burst_packets) == (burst_count, longest)
    assert stream.loss_ratio_total == pytest.approx(len(dropped) / count)


def test_duplicates_do_not_hide_loss() -> None:
    # RFC 3550's received count would include the 10 copies and report 0 lost.
    numbers = [n for n in range(200) if n % 20 != 7]
    numbers += numbers[-10:]
    stats = audio_stats()
    feed(stats, [(n, 960 * n, k * 0.02) for k, n in enumerate(numbers)])
    stream = only_stream(stats, 5.0)
    assert stream.packets_lost == 10
    assert stream.packets_duplicated == 0 + 10 - sum(1 for n in numbers[-10:] if n < 100)


def test_a_late_packet_repairs_the_gap_instead_of_splitting_a_burst() -> None:
    numbers = [*range(10), *range(12, 20), 10, *range(20, 300)]  # 11 is lost, 10 is late
    stats = audio_stats()
    feed(stats, [(n, 960 * n, k * 0.02) for k, n in enumerate(numbers)])
    stream = only_stream(stats, 6.0)
    assert stream.packets_lost == 1
    assert (stream.loss_burst_count, stream.longest_loss_burst_packets) == (1, 1)


def test_a_long_outage_is_one_burst_and_a_late_packet_inside_it_splits_it() -> None:
    numbers = [*range(100), *range(1100, 1121), 1050, *range(1121, 1400)]
    stats = audio_stats()
    feed(stats, [(n, 960 * n, k * 0.02) for k, n in enumerate(numbers)])
    stream = only_stream(stats, 10.0)
    assert stream.packets_lost == 999
    assert (stream.loss_burst_count, stream.longest_loss_burst_packets) == (2, 950)
    assert stream.packets_duplicated == 0


def test_a_burst_is_decided_once_it_is_older_than_the_reorder_horizon() -> None:
    stats = audio_stats(max_misorder=50)
    numbers = [*range(10), *range(15, 60)]  # 10..14 missing; 59 is 49 past 10
    feed(stats, [(n, 960 * n, k * 0.02) for k, n in enumerate(numbers)])
    stream = only_stream(stats, 2.0)
    assert stream.packets_lost == 5  # counted as lost at once ...
    assert stream.loss_burst_count == 0  # ... but a late arrival could still split the run
    feed(stats, [(n, 960 * n, 2.0) for n in range(60, 65)])  # 64 is 50 past 14
    stream = only_stream(stats, 2.0)
    assert (stream.loss_burst_count, stream.longest_loss_burst_packets) == (1, 5)


def test_a_packet_beyond_the_reorder_horizon_is_too_late_and_stays_lost() -> None:
    numbers = [*range(5), *range(6, 300), 5]
    stats = audio_stats()
    feed(stats, [(n, 960 * n, k * 0.02) for k, n in enumerate(numbers)])
    stream = only_stream(stats, 7.0)
    assert stream.packets_lost == 1
    assert stream.packets_too_late == 1
    assert stream.loss_burst_count == 1


def test_a_late_packet_older_than_the_first_counts_as_expected_and_received() -> None:
    numbers = [3, 4, 1, 2, *range(5, 50)]  # 0 never arrives; it is not known to exist
    stats = audio_stats()
    feed(stats, [(n, 960 * n, k * 0.02) for k, n in enumerate(numbers)])
    stream = only_stream(stats, 1.0)
    assert stream.packets_expected == stream.packets_received == 49
    assert stream.packets_lost == 0


def test_one_stray_sequence_number_is_dropped_and_a_renumbered_sender_resyncs() -> None:
    stats = audio_stats()
    feed(stats, [(n, 960 * n, n * 0.02) for n in range(100)])
    feed(stats, [(30000, 0, 2.0)])  # a single jump: dropped, no loss
    stream = only_stream(stats, 2.0)
    assert (stream.packets_lost, stream.packets_received) == (0, 100)
    assert stats.drops[RtpDropReason.SEQUENCE_JUMP] == 1
    feed(stats, [(100 + n, 960 * (100 + n), 2.0 + n * 0.02) for n in range(10)])
    feed(stats, [(40000 + n, 960 * n, 3.0 + n * 0.02) for n in range(50)])  # restart
    stream = only_stream(stats, 4.0)
    assert stream.packets_lost == 0
    assert stream.packets_expected == stream.packets_received == 100 + 10 + 49
    assert stats.drops[RtpDropReason.SEQUENCE_JUMP] == 2


@settings(max_examples=200, deadline=None)
@given(
    numbers=st.lists(st.integers(0, 65535), min_size=1, max_size=300),
    horizon=st.sampled_from([5, 100]),
)
def test_loss_ratios_stay_within_0_and_1_whatever_arrives(numbers: list[int], horizon: int) -> None:
    stats = audio_stats(max_misorder=horizon, max_dropout=horizon * 30)
    for k, n in enumerate(numbers):
        feed(stats, [(n, 960 * n, k * 0.02)])
        stream = only_stream(stats, k * 0.02)
        for ratio in (stream.loss_ratio, stream.loss_ratio_total):
            assert ratio is None or 0.0 <= ratio <= 1.0
        assert stream.packets_lost >= 0
        assert stream.packets_received <= stream.packets_expected
        assert stream.longest_loss_burst_packets <= stream.packets_lost


def test_windowed_loss_forgets_old_loss_after_the_window() -> None:
    stats = audio_stats()
    packets = [(n, 960 * n, n * 0.02) for n in range(550) if n >= 250 or n % 5 != 2]
    feed(stats, packets[:200])  # 0-5 s: every 5th packet lost (20 %)
    assert only_stream(stats, 4.99).loss_ratio == pytest.approx(0.2, abs=0.02)
    feed(stats, packets[200:])  # 5-11 s: none lost
    late = only_stream(stats, 10.99)
    assert late.loss_ratio == 0.0
    assert late.loss_ratio_total == pytest.approx(50 / 550, abs=0.005)


def test_a_late_repair_never_makes_the_windowed_loss_negative() -> None:
    stats = audio_stats(window=1.0)
    feed(stats, [(n, 960 * n, n * 0.02) for n in range(100) if n != 25])  # 25 missing at 0.5 s
    # ... repaired 1.5 s later: in the last second, one more received than expected
    feed(stats, [(25, 960 * 25, 1.99)])
    assert only_stream(stats, 1.99).loss_ratio == 0.0
    assert only_stream(stats, 1.99).packets_lost == 0


def test_windowed_loss_is_unknown_when_nothing_arrived_in_the_window() -> None:
    stats = audio_stats()
    feed(stats, [(n, 960 * n, n * 0.02) for n in range(100) if n != 50])
    stream = only_stream(stats, 20.0)
    assert stream.loss_ratio is None
    assert stream.loss_ratio_total == pytest.approx(0.01)
    assert stream.packet_rate_pps == 0.0
    assert stream.bitrate_bps == 0.0


def test_packet_and_bit_rates_over_the_window() -> None:
    stats = audio_stats(window=2.0)
    feed(stats, [(n, 960 * n, n * 0.02) for n in range(500)], size=125)
    stream = only_stream(stats, 10.0)
    assert stream.packet_rate_pps == pytest.approx(50.0, rel=0.03)
    assert stream.bitrate_bps == pytest.approx(50 * 125 * 8, rel=0.03)
    assert stream.bytes_received == 500 * 125


def test_rtx_packets_count_as_retransmissions_of_their_media_stream() -> None:
    media = [(n, 3000 * (n // 3), n / 90) for n in range(300) if n % 25 != 4]
    plain, with_rtx = video_stats(), video_stats()
    feed(plain, media, payload_type=VP8, ssrc=10, size=1000)
    feed(with_rtx, media[:100], payload_type=VP8, ssrc=10, size=1000)
    feed(with_rtx, [(500, 0, media[99][2] + 0.001)], payload_type=RTX, ssrc=20, size=1002)
    feed(with_rtx, media[100:], payload_type=VP8, ssrc=10, size=1000)
    feed(with_rtx, [(501, 0, media[-1][2] + 0.001)], payload_type=RTX, ssrc=20, size=1002)
    end = media[-1][2] + 0.01
    expected, stream = only_stream(plain, end), only_stream(with_rtx, end)
    assert stream.ssrc == 10
    assert (stream.retransmitted_packets, stream.retransmitted_bytes) == (2, 2004)
    assert stream.packets_lost == expected.packets_lost == 12
    assert stream.packets_received == expected.packets_received
    assert stream.jitter_ms == expected.jitter_ms
    assert stream.bytes_received == expected.bytes_received + 2004


def test_rtx_goes_to_the_stream_the_sdp_associates() -> None:
    stats = video_stats()
    feed(stats, [(n, 3000 * n, n / 30) for n in range(10)], payload_type=VP8, ssrc=10)
    feed(stats, [(n, 3000 * n, 0.4 + n / 30) for n in range(10)], payload_type=VP8, ssrc=11)
    stats.associate_rtx(rtx_ssrc=20, media_ssrc=10)
    feed(stats, [(0, 0, 1.0)], payload_type=RTX, ssrc=20)  # 11 is the more recent stream
    feed(stats, [(0, 0, 1.1)], payload_type=RTX, ssrc=21)  # no association: the recent one
    streams = {s.ssrc: s for s in stats.snapshot(now=1.2).streams}
    assert set(streams) == {10, 11}
    assert streams[10].retransmitted_packets == 1
    assert streams[11].retransmitted_packets == 1


def test_rtx_before_any_media_is_counted_as_a_drop() -> None:
    stats = video_stats()
    feed(stats, [(0, 0, 0.0)], payload_type=RTX, ssrc=20)
    assert stats.snapshot(now=0.1).streams == ()
    assert stats.drops == {RtpDropReason.RTX_WITHOUT_MEDIA: 1}


def test_junk_is_counted_per_reason_and_never_raised() -> None:
    stats = audio_stats()
    feed(stats, [(n, 960 * n, n * 0.02) for n in range(10)])
    junk = [
        (RtpHeader(1, 10, 9600, 42, False, 100), RtpDropReason.UNKNOWN_PAYLOAD_TYPE),
        (RtpHeader(1, 70000, 9600, OPUS, False, 100), RtpDropReason.BAD_SEQUENCE_NUMBER),
        (RtpHeader(1, -1, 9600, OPUS, False, 100), RtpDropReason.BAD_SEQUENCE_NUMBER),
        (RtpHeader(1, 10, 2**32, OPUS, False, 100), RtpDropReason.BAD_TIMESTAMP),
        (RtpHeader(1, 10, 9600, OPUS, False, -5), RtpDropReason.BAD_SIZE),
        (RtpHeader(-1, 10, 9600, OPUS, False, 100), RtpDropReason.BAD_SSRC),
    ]
    for header, _ in junk:
        stats.on_packet(header, now=0.5)
    stats.on_packet(RtpHeader(1, 10, 9600, OPUS, False, 100), now=0.1)  # time went back
    stats.on_packet(RtpHeader(1, 10, 9600, OPUS, False, 100), now=float("nan"))
    stats.on_packet(RtpHeader(1, 10, 9600, OPUS, False, 100, audio_level_dbov=200), now=0.5)
    assert dict(stats.drops) == {
        RtpDropReason.UNKNOWN_PAYLOAD_TYPE: 1,
        RtpDropReason.BAD_SEQUENCE_NUMBER: 2,
        RtpDropReason.BAD_TIMESTAMP: 1,
        RtpDropReason.BAD_SIZE: 1,
        RtpDropReason.BAD_SSRC: 1,
        RtpDropReason.BAD_ARRIVAL_TIME: 2,
        RtpDropReason.BAD_AUDIO_LEVEL: 1,
    }
    snapshot = stats.snapshot(now=0.5)
    assert snapshot.drops["bad_size"] == 1
    stream = snapshot.streams[0]
    assert (stream.packets_received, stream.packets_lost) == (11, 0)  # the last one counts
    assert stream.audio_level_dbov is None


def test_the_last_audio_level_is_reported() -> None:
    stats = audio_stats()
    stats.on_packet(RtpHeader(1, 0, 0, OPUS, False, 90, audio_level_dbov=30), now=0.0)
    stats.on_packet(RtpHeader(1, 1, 960, OPUS, False, 90, audio_level_dbov=127), now=0.02)
    assert only_stream(stats, 0.03).audio_level_dbov == 127


def test_nothing_is_known_before_the_first_packet() -> None:
    stats = audio_stats()
    snapshot = stats.snapshot(now=3.0)
    assert snapshot.streams == ()
    assert snapshot.primary is None
    assert snapshot.since_last_packet is None
    assert stats.next_deadline() is None
    assert stats.interrupted(now=3.0) is None


def test_time_since_the_last_packet_and_the_no_media_deadline() -> None:
    stats = audio_stats()
    feed(stats, [(n, 960 * n, 10 + n * 0.02) for n in range(50)])  # last at 10.98
    assert stats.since_last_packet(now=11.5) == pytest.approx(0.52)
    assert stats.next_deadline() == pytest.approx(12.98)
    assert stats.interrupted(now=12.9) is False
    stats.on_timer(now=12.5)
    assert stats.next_deadline() == pytest.approx(12.98)  # not due yet
    stats.on_timer(now=13.0)
    assert stats.next_deadline() is None  # fired; nothing more to wake for
    assert stats.interrupted(now=13.0) is True
    assert only_stream(stats, 13.0).since_last_packet == pytest.approx(2.02)
    feed(stats, [(50, 960 * 50, 14.0)])
    assert stats.next_deadline() == pytest.approx(16.0)
    assert stats.interrupted(now=14.5) is False


def test_primary_is_the_stream_heard_from_last() -> None:
    stats = video_stats()
    feed(stats, [(0, 0, 0.0)], payload_type=VP8, ssrc=10)
    feed(stats, [(0, 0, 0.5)], payload_type=VP8, ssrc=11)
    primary = stats.snapshot(now=1.0).primary
    assert primary is not None
    assert primary.ssrc == 11
