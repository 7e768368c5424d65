"""Windowed figures from a browser's cumulative inbound-rtp counters."""

from __future__ import annotations

import pytest

from monitor.beacon_view import BeaconInboundView
from monitor.observations import InboundStreamStats
from probes.base import MediaKind


def audio(received: int, lost: int, concealed: int = 0, total: int = 0) -> InboundStreamStats:
    return InboundStreamStats(
        MediaKind.AUDIO,
        jitter=0.01,
        packets_received=received,
        packets_lost=lost,
        concealed_samples=concealed,
        total_samples_received=total,
    )


def test_loss_is_over_the_last_five_seconds_only() -> None:
    view = BeaconInboundView(MediaKind.AUDIO)
    for second in range(20):  # 10 s clean, then 10 % loss
        lost = 0 if second <= 10 else 5 * (second - 10)
        view.on_stats(audio(45 * second if second > 10 else 50 * second, lost), now=second)
    signals = view.signals(now=19.0)
    assert signals.loss_ratio == pytest.approx(25 / (25 + 225))
    assert signals.loss_ratio_total is not None
    assert signals.loss_ratio_total < signals.loss_ratio


def test_one_report_gives_no_window_figure() -> None:
    view = BeaconInboundView(MediaKind.AUDIO)
    view.on_stats(audio(100, 10), now=0.0)
    signals = view.signals(now=0.5)
    assert signals.loss_ratio is None
    assert signals.loss_ratio_total == pytest.approx(10 / 110)


def test_concealment_is_over_fifteen_seconds() -> None:
    view = BeaconInboundView(MediaKind.AUDIO)
    for second in range(30):
        concealed = 0 if second < 15 else 4800 * (second - 15)
        view.on_stats(audio(50 * second, 0, concealed, 48000 * second), now=second)
    assert view.signals(now=29.0).concealment_ratio == pytest.approx(0.1 * 14 / 15)


def test_negative_cumulative_loss_is_clamped() -> None:
    view = BeaconInboundView(MediaKind.AUDIO)
    view.on_stats(audio(100, 2), now=0.0)
    view.on_stats(audio(200, -3), now=1.0)  # duplicates make RFC 3550 loss negative
    assert view.signals(now=1.0).loss_ratio == 0.0


def test_a_counter_going_down_restarts_the_history() -> None:
    view = BeaconInboundView(MediaKind.AUDIO)
    view.on_stats(audio(1000, 100), now=0.0)
    view.on_stats(audio(10, 0), now=1.0)  # the page reloaded: a new stream
    view.on_stats(audio(60, 0), now=2.0)
    assert view.signals(now=2.0).loss_ratio == 0.0


def test_reports_of_another_kind_are_ignored() -> None:
    view = BeaconInboundView(MediaKind.VIDEO)
    view.on_stats(audio(100, 50), now=0.0)
    assert view.signals(now=0.0).loss_ratio_total is None


def test_a_stopped_beacon_is_unknown() -> None:
    view = BeaconInboundView(MediaKind.AUDIO)
    view.on_stats(audio(100, 0), now=0.0)
    assert view.signals(now=4.0).jitter_ms == pytest.approx(10.0)
    assert view.signals(now=6.0).jitter_ms is None
