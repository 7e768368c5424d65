"""RTT from RTCP report blocks (RFC 3550 section 6.4.1) and from outside reports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.rtt import (
    RttConfigError,
    RttEstimator,
    RttRejectReason,
    ntp_short_from_ntp64,
    rtt_from_report_block,
)

UNIT = 65536  # NTP short units per second


def short(seconds: float) -> int:
    return round(seconds * UNIT) % 2**32


def test_rtt_is_arrival_minus_lsr_minus_dlsr() -> None:
    # RFC 3550's own example: A = 0xb710:8000 (46864.5 s), LSR = 0xb705:2000 (46853.125 s),
    # DLSR = 0x0005:4000 (5.25 s): RTT = 6.125 s.
    rtt = rtt_from_report_block(lsr=0xB7052000, dlsr=0x00054000, arrival_ntp_short=0xB7108000)
    assert rtt == 6.125


@given(
    sent=st.integers(1, 2**32 - 1),
    rtt=st.floats(0.0, 30.0),
    hold=st.floats(0.0, 10.0),
)
def test_rtt_survives_the_wraparound_of_the_ntp_short_clock(
    sent: int, rtt: float, hold: float
) -> None:
    arrival = (sent + short(rtt) + short(hold)) % 2**32
    measured = rtt_from_report_block(lsr=sent, dlsr=short(hold), arrival_ntp_short=arrival)
    assert measured == pytest.approx(rtt, abs=2 / UNIT)


def test_a_report_just_after_the_wrap_gives_the_small_rtt() -> None:
    lsr = 2**32 - short(0.05)  # our report left 50 ms before the clock wrapped
    arrival = short(0.07)  # the reply came back 120 ms after it, past the wrap
    measured = rtt_from_report_block(lsr=lsr, dlsr=short(0.02), arrival_ntp_short=arrival)
    assert measured == pytest.approx(0.1, abs=2 / UNIT)


def test_lsr_zero_and_negative_rtts_are_ignored_and_counted() -> None:
    rtt = RttEstimator()
    assert rtt.on_report_block(lsr=0, dlsr=0, arrival_ntp_short=short(100), now=1.0) is None
    assert (
        rtt.on_report_block(lsr=short(100), dlsr=short(5), arrival_ntp_short=short(101), now=1.0)
        is None
    )
    assert rtt.on_report_block(lsr=-1, dlsr=0, arrival_ntp_short=0, now=1.0) is None
    assert rtt.on_report_block(lsr=1, dlsr=0, arrival_ntp_short=short(90) + 1, now=1.0) is None
    assert rtt.rtt_ms(now=1.0) is None
    assert dict(rtt.rejects) == {
        RttRejectReason.NO_SENDER_REPORT: 1,
        RttRejectReason.NEGATIVE: 1,
        RttRejectReason.BAD_FIELD: 1,
        RttRejectReason.IMPLAUSIBLE: 1,
    }
    assert rtt.snapshot(now=1.0).rejects["negative"] == 1


def test_a_report_block_gives_the_rtt_in_ms() -> None:
    rtt = RttEstimator()
    used = rtt.on_report_block(
        lsr=short(1000.0), dlsr=short(0.5), arrival_ntp_short=short(1000.62), now=3.0
    )
    assert used == pytest.approx(120.0, abs=0.05)
    assert rtt.rtt_ms(now=3.0) == pytest.approx(120.0, abs=0.05)


def test_the_estimate_is_an_ewma_of_the_samples() -> None:
    rtt = RttEstimator(ewma_weight=0.25)
    rtt.on_external_rtt(100.0, now=0.0)
    rtt.on_external_rtt(200.0, now=1.0)
    assert rtt.rtt_ms(now=1.0) == pytest.approx(125.0)
    for second in range(2, 40):
        rtt.on_external_rtt(200.0, now=float(second))
    assert rtt.rtt_ms(now=40.0) == pytest.approx(200.0, abs=0.1)
    snapshot = rtt.snapshot(now=40.0)
    assert (snapshot.last_sample_ms, snapshot.sample_count) == (200.0, 40)


def test_rtcp_and_browser_samples_feed_the_same_estimate() -> None:
    rtt = RttEstimator(ewma_weight=0.5)
    rtt.on_report_block(lsr=short(50.0), dlsr=0, arrival_ntp_short=short(50.1), now=0.0)
    rtt.on_external_rtt(200.0, now=0.5)
    assert rtt.rtt_ms(now=0.5) == pytest.approx(150.0, abs=0.05)


def test_a_stale_estimate_is_unknown_and_the_next_sample_starts_afresh() -> None:
    rtt = RttEstimator(max_age=10.0)
    rtt.on_external_rtt(400.0, now=0.0)
    assert rtt.rtt_ms(now=10.0) == 400.0
    assert rtt.rtt_ms(now=10.5) is None
    rtt.on_external_rtt(80.0, now=11.0)
    assert rtt.rtt_ms(now=11.0) == 80.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -3.0])
def test_impossible_external_rtts_are_counted_not_used(bad: float) -> None:
    rtt = RttEstimator()
    assert rtt.on_external_rtt(bad, now=0.0) is None
    assert rtt.rtt_ms(now=0.0) is None
    assert sum(rtt.rejects.values()) == 1


def test_ntp64_to_ntp_short_takes_the_middle_32_bits() -> None:
    assert ntp_short_from_ntp64(0xB7108000_12345678) == 0x80001234
    seconds, fraction = 3_900_000_000, 0.75
    ntp64 = (seconds << 32) | int(fraction * 2**32)
    assert ntp_short_from_ntp64(ntp64) == ((seconds & 0xFFFF) << 16) | int(fraction * UNIT)


def test_a_misconfigured_estimator_is_refused() -> None:
    with pytest.raises(RttConfigError):
        RttEstimator(ewma_weight=0.0)
