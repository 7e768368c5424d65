"""Conversation dynamics on scripted voice-edge timelines (no audio, ``now`` stepped by hand)."""

from __future__ import annotations

import json
from typing import TypeVar

import pytest

from probes.base import ConfigError, Role
from probes.conversation import (
    BackchannelDetected,
    ConversationConfig,
    ConversationEvent,
    ConversationSnapshot,
    ConversationTracker,
    DisclosureClosed,
    DisclosureOpened,
    DisclosureReason,
    InterruptionDetected,
    PauseMeasured,
    TurnTaken,
    edges_from_intervals,
    summarize,
)
from probes.signals import is_known

T, C = Role.THERAPIST, Role.CLIENT
OFFLINE = ConversationConfig(edge_latency=0.0)

Intervals = list[tuple[float, float]]
E = TypeVar("E")


def run(
    therapist: Intervals,
    client: Intervals,
    *,
    end: float,
    delay: float | None = None,
    config: ConversationConfig = OFFLINE,
) -> tuple[list[ConversationEvent], ConversationSnapshot]:
    """Feed both roles' talkspurts in time order, finish at ``end``, snapshot there."""
    tracker = ConversationTracker(config, start=0.0)
    tracker.set_one_way_delay(delay)
    edges = sorted(
        (t, active, role.value, role)
        for role, spurts in ((T, therapist), (C, client))
        for t, active in edges_from_intervals(spurts)
    )
    for t, active, _, role in edges:
        tracker.on_voice(role, active, t=t)
    tracker.finish(now=end)
    snapshot = tracker.snapshot(now=end)
    return tracker.drain_events(), snapshot


def of_type(events: list[ConversationEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


# -- turns, gaps, pauses, talk share -------------------------------------------------------


def test_a_clean_exchange_gives_three_turns_two_gaps_and_the_talk_shares() -> None:
    events, snap = run([(0, 5), (10.5, 14)], [(5.3, 10)], end=15)

    turns = of_type(events, TurnTaken)
    assert [(e.t, e.by, e.previous) for e in turns] == [
        (0, T, None),
        (5.3, C, T),
        (10.5, T, C),
    ]
    assert [e.gap for e in turns] == [None, pytest.approx(0.3), pytest.approx(0.5)]
    assert snap.turns == 3
    assert snap.gaps.count == 2
    assert snap.gaps.median == pytest.approx(0.4)
    assert snap.pauses.count == 0
    assert snap.therapist.talk_time == pytest.approx(8.5)
    assert snap.client.talk_time == pytest.approx(4.7)
    assert snap.therapist.talk_share == pytest.approx(8.5 / 13.2)
    assert snap.client.talk_share == pytest.approx(4.7 / 13.2)
    assert snap.overlap_total == 0
    assert of_type(events, InterruptionDetected) == []
    assert of_type(events, BackchannelDetected) == []


def test_a_silence_of_the_same_speaker_is_a_pause_and_of_a_speaker_change_a_gap() -> None:
    events, snap = run([(0, 3), (3.7, 6)], [(6.4, 9)], end=10)

    assert [(e.t, e.by, e.duration) for e in of_type(events, PauseMeasured)] == [
        (3, T, pytest.approx(0.7))
    ]
    assert [e.gap for e in of_type(events, TurnTaken)] == [None, pytest.approx(0.4)]
    assert snap.pauses.median == pytest.approx(0.7)
    assert snap.gaps.median == pytest.approx(0.4)


def test_a_backchannel_in_the_speakers_pause_leaves_it_a_pause_of_the_speaker() -> None:
    events, snap = run([(0, 4), (5, 9)], [(4.3, 4.7)], end=10)

    assert of_type(events, BackchannelDetected) == [BackchannelDetected(4.3, C)]
    assert [e.duration for e in of_type(events, PauseMeasured)] == [pytest.approx(1.0)]
    assert snap.gaps.count == 0
    assert snap.turns == 1


def test_gap_summary_gives_median_and_p90_over_many_gaps() -> None:
    therapist, client, t = [], [], 0.0
    gaps = [0.1 * k for k in range(1, 11)]  # 0.1 .. 1.0
    for i, gap in enumerate(gaps):
        (therapist if i % 2 == 0 else client).append((t, t + 3))
        t += 3 + gap
    events, _ = run(therapist, client, end=t + 1)

    summary = summarize(
        {T: edges_from_intervals(therapist), C: edges_from_intervals(client)}, t + 1
    )
    measured = sorted(e.gap for e in of_type(events, TurnTaken) if e.gap is not None)
    assert measured == pytest.approx(gaps[:-1])  # the last gap is followed by nobody
    assert summary.gaps.median == pytest.approx(0.5)
    assert summary.gaps.p90 == pytest.approx(0.82)


# -- backchannels and interruptions --------------------------------------------------------


def test_a_short_listener_utterance_inside_the_speakers_talk_is_a_backchannel() -> None:
    events, snap = run([(0, 10)], [(4.0, 4.5)], end=10)

    assert of_type(events, BackchannelDetected) == [BackchannelDetected(4.0, C)]
    assert of_type(events, InterruptionDetected) == []
    assert snap.backchannels_total == 1
    assert snap.interruptions_total == snap.failed_interruptions_total == 0
    assert snap.floor_holder is T
    assert snap.turns == 1


def test_a_long_listener_utterance_that_does_not_take_the_floor_is_a_failed_interruption() -> None:
    events, snap = run([(0, 10)], [(4.0, 5.2)], end=10)

    assert of_type(events, BackchannelDetected) == []
    assert of_type(events, InterruptionDetected) == [
        InterruptionDetected(4.0, C, T, pytest.approx(1.2), successful=False)
    ]
    assert snap.interruptions_total == 0
    assert snap.failed_interruptions_total == 1
    assert snap.floor_holder is T


def test_an_intruder_who_makes_the_speaker_stop_and_keeps_talking_interrupts() -> None:
    # The client comes in at 5.0 over the therapist, who stops 0.5 s later; the client
    # talks on for 3 s.
    events, snap = run([(0, 5.5)], [(5.0, 8.5)], end=10)

    assert of_type(events, InterruptionDetected) == [
        InterruptionDetected(5.0, C, T, pytest.approx(0.5), successful=True)
    ]
    turns = of_type(events, TurnTaken)
    assert [(e.t, e.by, e.previous, e.gap) for e in turns[1:]] == [(5.5, C, T, None)]
    assert snap.interruptions_total == 1
    assert snap.client.interruptions_5m == 1
    assert snap.therapist.interruptions_5m == 0
    assert snap.overlap_total == pytest.approx(0.5)
    assert snap.floor_holder is C


def test_an_intruder_who_stops_while_the_speaker_goes_on_has_failed() -> None:
    events, snap = run([(0, 10)], [(5.0, 6.5)], end=10)

    assert of_type(events, InterruptionDetected) == [
        InterruptionDetected(5.0, C, T, pytest.approx(1.5), successful=False)
    ]
    assert snap.floor_holder is T
    assert snap.interruptions_total == 0


def test_a_short_attempt_over_a_speaker_who_goes_on_is_a_backchannel_not_an_interruption() -> None:
    # 0.6 s over the speaker fits both "failed interruption" and "backchannel" (<= 1 s,
    # speaker keeps the floor); timing cannot tell them apart, so the shorter wins.
    events, _ = run([(0, 10)], [(5.0, 5.6)], end=10)

    assert of_type(events, InterruptionDetected) == []
    assert of_type(events, BackchannelDetected) == [BackchannelDetected(5.0, C)]


def test_an_overlap_under_200_ms_at_a_turn_change_is_not_an_interruption() -> None:
    events, snap = run([(0, 5.15)], [(5.0, 9)], end=10)

    assert of_type(events, InterruptionDetected) == []
    assert [(e.t, e.by, e.gap) for e in of_type(events, TurnTaken)][1:] == [(5.15, C, None)]
    assert snap.overlap_total == pytest.approx(0.15)


def test_an_overlap_of_exactly_200_ms_is_enough() -> None:
    events, _ = run([(0, 5.2)], [(5.0, 9)], end=10)

    assert len(of_type(events, InterruptionDetected)) == 1


def test_a_speaker_who_talks_on_for_more_than_2_s_was_not_interrupted_when_they_stop() -> None:
    events, snap = run([(0, 7.5)], [(5.0, 11)], end=12)

    assert of_type(events, InterruptionDetected) == []
    assert snap.floor_holder is C
    assert of_type(events, TurnTaken)[-1].t == 7.5


def test_the_intruder_must_hold_the_floor_a_second_alone() -> None:
    # The therapist yields at 5.5, the client stops at 6.2 (0.7 s alone): no floor taken,
    # then the therapist resumes: the client's 1.2 s attempt failed.
    events, snap = run([(0, 5.5), (6.6, 10)], [(5.0, 6.2)], end=10)

    interruptions = of_type(events, InterruptionDetected)
    assert [(i.by, i.successful) for i in interruptions] == [(C, False)]
    assert snap.floor_holder is T
    assert snap.turns == 1


def test_the_therapist_interrupting_the_client_is_counted_for_the_therapist() -> None:
    events, snap = run([(5.0, 9)], [(0, 5.4)], end=10)

    assert [(i.t, i.by, i.of, i.successful) for i in of_type(events, InterruptionDetected)] == [
        (5.0, T, C, True)
    ]
    assert snap.therapist.interruptions_5m == 1
    assert snap.to_signals()["conversation.interruptions_by_therapist_5m"] == 1
    assert snap.to_signals()["conversation.interruptions_by_client_5m"] == 0


# -- delay guard ---------------------------------------------------------------------------


def test_an_overlap_shorter_than_the_one_way_delay_is_blamed_on_nobody() -> None:
    timeline = ([(0, 5.0)], [(4.8, 9)])

    without_guard, snap_without = run(*timeline, end=10)
    with_guard, snap_with = run(*timeline, end=10, delay=0.25)

    assert len(of_type(without_guard, InterruptionDetected)) == 1
    assert snap_without.overlap_total == pytest.approx(0.2)
    assert of_type(with_guard, InterruptionDetected) == []
    assert snap_with.overlap_total == 0
    assert snap_with.overlap_ratio_1m == 0
    assert snap_with.one_way_delay == 0.25
    assert snap_with.floor_holder is C  # the turn still changed hands


def test_the_delay_is_subtracted_from_a_longer_overlap_before_blaming() -> None:
    events, snap = run([(0, 5.5)], [(5.0, 9)], end=10, delay=0.25)

    [interruption] = of_type(events, InterruptionDetected)
    assert interruption.overlap == pytest.approx(0.25)
    assert snap.overlap_total == pytest.approx(0.25)


def test_an_overlap_left_under_200_ms_by_the_delay_is_not_an_interruption() -> None:
    events, _ = run([(0, 5.4)], [(5.0, 9)], end=10, delay=0.25)

    assert of_type(events, InterruptionDetected) == []


# -- floor -----------------------------------------------------------------------------------


def test_the_floor_changes_hands_after_a_second_alone_dated_where_it_began() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(T, True, t=0.0)
    assert tracker.snapshot(now=0.5).floor_holder is None
    snap = tracker.snapshot(now=1.0)
    assert (snap.floor_holder, snap.floor_held) == (T, 1.0)
    assert snap.therapist.holds_floor
    assert snap.client.floor_held == 0
    tracker.on_voice(T, False, t=5.0)
    tracker.on_voice(C, True, t=5.4)
    snap = tracker.snapshot(now=6.0)
    assert (snap.floor_holder, snap.floor_held) == (T, 6.0)  # 0.6 s alone: not yet
    snap = tracker.snapshot(now=6.4)
    assert (snap.floor_holder, snap.floor_held) == (C, pytest.approx(1.0))
    assert snap.therapist.floor_held == 0
    assert snap.client.floor_held == pytest.approx(1.0)
    assert snap.to_signals()["conversation.client.floor_s"] == pytest.approx(1.0)


def test_the_floor_stays_with_the_speaker_through_their_silence() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(C, True, t=0.0)
    tracker.on_voice(C, False, t=3.0)
    snap = tracker.snapshot(now=8.0)
    assert (snap.floor_holder, snap.floor_held) == (C, 8.0)
    assert snap.client.longest_monologue == 3.0  # trailing silence is not monologue


def test_a_slow_speaker_in_short_bursts_takes_the_floor_rather_than_backchanneling() -> None:
    # 0.6 s bursts with 0.4 s pauses after the therapist stopped: 1.2 s alone in total.
    events, snap = run([(0, 5)], [(5.5, 6.1), (6.5, 7.1), (7.5, 8.1)], end=10)

    assert of_type(events, BackchannelDetected) == []
    assert snap.floor_holder is C
    assert [(e.t, e.by, e.gap) for e in of_type(events, TurnTaken)][1:] == [
        (5.5, C, pytest.approx(0.5))
    ]


def test_longest_monologue_per_role_allows_the_listeners_backchannels() -> None:
    _, snap = run([(0, 12), (30, 33)], [(4, 4.4), (8, 8.3), (12.5, 29)], end=35)

    assert snap.therapist.longest_monologue == pytest.approx(12)
    assert snap.client.longest_monologue == pytest.approx(16.5)
    assert snap.backchannels_total == 2


def test_when_both_start_together_the_first_to_speak_a_second_alone_holds_the_floor() -> None:
    events, snap = run([(0, 0.5), (3, 4)], [(0, 2.5)], end=5)

    assert [(e.t, e.by) for e in of_type(events, TurnTaken)] == [(0.5, C), (3, T)]
    assert of_type(events, BackchannelDetected) == []  # nobody held the floor yet
    assert snap.floor_holder is T


# -- disclosure window -----------------------------------------------------------------------


def test_disclosure_opens_after_20_s_of_client_floor_and_closes_on_a_therapist_turn() -> None:
    therapist = [(0, 4), (7, 7.5), (15, 15.4), (40, 45)]  # two backchannels inside
    client = [(4.5, 38)]
    tracker = ConversationTracker(OFFLINE, start=0.0)
    edges = sorted(
        (t, active, role.value, role)
        for role, spurts in ((T, therapist), (C, client))
        for t, active in edges_from_intervals(spurts)
    )
    timeline = {}
    for now in (24.0, 24.5, 30.0, 40.5, 41.0):
        while edges and edges[0][0] <= now:
            t, active, _, role = edges.pop(0)
            tracker.on_voice(role, active, t=t)
        timeline[now] = tracker.snapshot(now=now).disclosure_open

    assert timeline == {24.0: False, 24.5: True, 30.0: True, 40.5: True, 41.0: False}
    events = tracker.drain_events()
    assert [e for e in events if isinstance(e, DisclosureOpened | DisclosureClosed)] == [
        DisclosureOpened(24.5, DisclosureReason.FLOOR),
        DisclosureClosed(40.0),
    ]
    assert tracker.snapshot(now=41.0).to_signals()["session.disclosure"] is False


def test_the_disclosure_window_stays_shut_when_the_therapist_takes_the_floor_first() -> None:
    events, snap = run([(0, 4), (20, 30)], [(4.5, 19)], end=30)

    assert [e for e in events if isinstance(e, DisclosureOpened | DisclosureClosed)] == []
    assert not snap.disclosure_open


def test_a_therapist_turn_begun_just_before_the_20_s_mark_keeps_the_window_shut() -> None:
    # Client floor from 4.5 (the mark is 24.5); the therapist starts at 24.0, which is
    # known to be a turn only at 25.0, after the mark.
    events, snap = run([(0, 4), (24.0, 30)], [(4.5, 23.8)], end=30)

    assert [e for e in events if isinstance(e, DisclosureOpened | DisclosureClosed)] == []
    assert [(e.t, e.by) for e in of_type(events, TurnTaken)][-1] == (24.0, T)
    assert not snap.disclosure_open


def test_a_therapist_backchannel_before_a_silence_delays_but_does_not_cancel_the_window() -> None:
    # The client holds the floor from 4.5, stops at 20; the therapist says "mm" (their
    # floor is undecided), the 24.5 s mark passes in silence, then the client speaks on.
    events, _ = run([(0, 4), (21, 21.4)], [(4.5, 20), (26, 40)], end=40)

    assert of_type(events, BackchannelDetected) == [BackchannelDetected(21, T)]
    opened = of_type(events, DisclosureOpened)
    assert opened == [DisclosureOpened(24.5, DisclosureReason.FLOOR)]


def test_the_therapists_marker_opens_and_closes_the_disclosure_window() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(T, True, t=0.0)
    tracker.mark_sensitive(True, now=3.0)
    snap = tracker.snapshot(now=3.5)
    assert snap.disclosure_open
    assert snap.marker
    assert snap.to_signals()["session.marker"] is True
    tracker.mark_sensitive(False, now=8.0)
    assert not tracker.snapshot(now=8.0).disclosure_open
    events = tracker.drain_events()
    assert [e for e in events if isinstance(e, DisclosureOpened | DisclosureClosed)] == [
        DisclosureOpened(3.0, DisclosureReason.MARKER),
        DisclosureClosed(8.0),
    ]


def test_turning_the_marker_off_leaves_a_floor_window_open() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(C, True, t=0.0)
    tracker.mark_sensitive(True, now=5.0)
    tracker.advance(now=25.0)
    tracker.mark_sensitive(False, now=26.0)

    assert tracker.snapshot(now=26.0).disclosure_open
    assert [type(e) for e in tracker.drain_events() if "Disclosure" in type(e).__name__] == [
        DisclosureOpened
    ]


# -- windows -----------------------------------------------------------------------------------


def test_windowed_talk_shares_forget_talk_older_than_the_window() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(T, True, t=0.0)
    tracker.on_voice(T, False, t=60.0)
    tracker.on_voice(C, True, t=60.5)
    tracker.on_voice(C, False, t=400.0)

    at_400 = tracker.snapshot(now=400.0)
    assert at_400.therapist.talk_share_5m == 0
    assert at_400.client.talk_share_5m == 1
    assert at_400.therapist.talk_share_10m == pytest.approx(60 / 399.5)
    assert at_400.therapist.talk_share == pytest.approx(60 / 399.5)

    at_700 = tracker.snapshot(now=700.0)
    assert at_700.therapist.talk_share_10m == 0
    assert at_700.therapist.talk_share_5m is None  # nobody spoke in the last 5 minutes
    assert at_700.client.talk_share_5m is None
    assert at_700.therapist.talk_share == pytest.approx(60 / 399.5)

    at_1100 = tracker.snapshot(now=1100.0)
    assert at_1100.client.talk_share_10m is None
    assert at_1100.to_signals()["conversation.client.talk_share_10m"] is None


def test_overlap_ratio_covers_the_last_minute() -> None:
    _, snap = run([(0, 100)], [(30, 32), (90, 93)], end=100)

    assert snap.overlap_total == pytest.approx(5.0)
    assert snap.overlap_ratio_1m == pytest.approx(3 / 60)
    assert snap.overlap_ratio_5m == pytest.approx(5 / 100)  # the session is younger


def test_live_overlap_grows_only_after_the_one_way_delay() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.set_one_way_delay(0.25)
    tracker.on_voice(T, True, t=0.0)
    tracker.on_voice(C, True, t=5.0)

    assert tracker.snapshot(now=5.2).overlap_total == 0
    assert tracker.snapshot(now=5.5).overlap_total == pytest.approx(0.25)
    assert tracker.snapshot(now=5.5).therapist.talk_time == pytest.approx(5.5)
    assert tracker.snapshot(now=5.5).client.talk_time == pytest.approx(0.5)


def test_a_window_edge_inside_a_second_of_steady_talk_is_exact() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(T, True, t=0.0)
    tracker.on_voice(C, True, t=200.0)
    tracker.on_voice(T, False, t=200.0)
    tracker.on_voice(C, False, t=320.0)

    snap = tracker.snapshot(now=350.5)  # 5-minute window from 50.5: 149.5 s vs 120 s
    assert snap.therapist.talk_share_5m == pytest.approx(149.5 / 269.5)


def test_interruptions_leave_the_5_minute_count_after_5_minutes() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    for role, active, t in [(T, True, 0.0), (C, True, 5.0), (T, False, 5.5), (C, False, 9.0)]:
        tracker.on_voice(role, active, t=t)

    assert tracker.snapshot(now=300.0).client.interruptions_5m == 1
    later = tracker.snapshot(now=306.0)
    assert later.client.interruptions_5m == 0
    assert later.interruptions_total == 1


def test_gap_and_pause_summaries_cover_the_last_5_minutes() -> None:
    _, snap = run([(0, 5)], [(5.5, 10)], end=10)
    tracker = ConversationTracker(OFFLINE, start=0.0)
    for role, active, t in [(T, True, 0.0), (T, False, 5.0), (C, True, 5.5), (C, False, 10.0)]:
        tracker.on_voice(role, active, t=t)

    assert tracker.snapshot(now=200.0).gaps.median == pytest.approx(0.5)
    later = tracker.snapshot(now=400.0)
    assert later.gaps.count == 0
    assert later.gaps.median is None
    assert later.gaps.total_count == 1
    assert snap.gaps.count == 1


# -- live timing: latency, deadlines --------------------------------------------------------


def test_live_decisions_wait_for_the_edge_latency() -> None:
    tracker = ConversationTracker(ConversationConfig(edge_latency=0.3), start=0.0)
    tracker.on_voice(T, True, t=0.0)
    assert tracker.next_deadline() == pytest.approx(1.3)
    tracker.on_timer(now=1.2)
    assert tracker.drain_events() == []
    tracker.on_timer(now=1.3)
    assert tracker.drain_events() == [TurnTaken(0.0, T, None, None)]
    assert tracker.next_deadline() is None


def test_a_stop_edge_arriving_within_the_latency_prevents_a_wrong_floor_change() -> None:
    tracker = ConversationTracker(ConversationConfig(edge_latency=0.3), start=0.0)
    tracker.on_voice(T, True, t=0.0)
    tracker.on_voice(T, False, t=5.0)
    tracker.on_voice(C, True, t=5.2)
    tracker.advance(now=6.25)  # past the 6.2 s take deadline; the 6.0 s stop may lag
    tracker.on_voice(C, False, t=6.0)  # 0.8 s: a backchannel
    tracker.on_voice(T, True, t=6.3)
    tracker.advance(now=7.0)

    events = tracker.drain_events()
    assert of_type(events, BackchannelDetected) == [BackchannelDetected(5.2, C)]
    assert [e.by for e in of_type(events, TurnTaken)] == [T]
    assert tracker.snapshot(now=7.0).bad_input.late == 0


def test_a_disclosure_deadline_is_announced() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(C, True, t=2.0)
    tracker.advance(now=3.0)
    assert tracker.next_deadline() == pytest.approx(22.0)
    tracker.on_timer(now=22.0)
    assert tracker.drain_events()[-1] == DisclosureOpened(22.0, DisclosureReason.FLOOR)


# -- bad input ---------------------------------------------------------------------------------


def test_out_of_order_duplicate_and_invalid_edges_are_counted_not_raised() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.on_voice(T, True, t=2.0)
    tracker.on_voice(C, True, t=1.0)  # earlier than the previous edge
    tracker.on_voice(T, True, t=3.0)  # the therapist is already speaking
    tracker.on_voice(C, True, t=float("nan"))
    tracker.on_voice(C, False, t=-1.0)
    tracker.set_one_way_delay(-0.1)
    tracker.set_one_way_delay(float("inf"))
    snap = tracker.snapshot(now=4.0)

    assert snap.bad_input.out_of_order == 2
    assert snap.bad_input.duplicate == 1
    assert snap.bad_input.invalid == 1
    assert snap.bad_input.rejected_delay == 2
    assert snap.bad_input.total == 6
    assert snap.therapist.talk_time == 2.0
    assert snap.client.talk_time == 0
    assert snap.one_way_delay is None


def test_an_edge_older_than_a_decision_is_counted_late_and_still_counted_as_talk() -> None:
    tracker = ConversationTracker(ConversationConfig(edge_latency=0.1), start=0.0)
    tracker.on_voice(T, True, t=0.0)
    tracker.advance(now=5.0)  # promises every edge up to 4.9 has been seen
    tracker.on_voice(T, False, t=3.0)
    snap = tracker.snapshot(now=5.0)

    assert snap.bad_input.late == 1
    assert snap.therapist.talk_time == 3.0


def test_edges_after_finish_are_counted_as_invalid() -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.finish(now=1.0)
    tracker.on_voice(T, True, t=2.0)

    assert tracker.snapshot(now=2.0).bad_input.invalid == 1


def test_a_config_with_a_negative_threshold_is_refused() -> None:
    with pytest.raises(ConfigError, match="backchannel_max"):
        ConversationConfig(backchannel_max=-1)
    with pytest.raises(ConfigError, match="share_window_short"):
        ConversationConfig(share_window_short=0)


# -- outputs -----------------------------------------------------------------------------------


def test_every_signal_of_the_snapshot_is_in_the_catalogue() -> None:
    _, snap = run([(0, 5)], [(5.5, 10)], end=10)

    signals = snap.to_signals()
    assert [name for name in signals if not is_known(name)] == []
    assert signals["conversation.turns_total"] == 2
    assert signals["conversation.therapist.talk_time_s"] == pytest.approx(5.0)
    assert signals["conversation.gap_median_s"] == pytest.approx(0.5)


def test_the_json_summary_has_the_documented_keys_and_values() -> None:
    summary = summarize(
        {
            T: edges_from_intervals([(0, 5.5), (12, 14)]),
            C: edges_from_intervals([(2, 2.4), (5.0, 11.5)]),
        },
        15,
    )
    document = json.loads(json.dumps(summary.to_json_dict()))

    assert list(document) == [
        "duration_s",
        "talk_time_s",
        "talk_share",
        "overlap_s",
        "turns",
        "interruptions",
        "backchannels",
        "longest_monologue_s",
        "gaps",
        "pauses",
        "disclosure_windows",
    ]
    assert document["duration_s"] == 15.0
    assert document["talk_time_s"] == {"therapist": 7.5, "client": 6.9}
    assert document["talk_share"] == {"therapist": round(7.5 / 14.4, 4), "client": 0.4792}
    assert document["overlap_s"] == pytest.approx(0.9)
    assert document["turns"] == 3
    assert document["interruptions"] == [
        {"t": 5.0, "by": "client", "of": "therapist", "overlap_s": 0.5, "successful": True}
    ]
    assert document["backchannels"] == [{"t": 2.0, "by": "client"}]
    assert document["longest_monologue_s"] == {"therapist": 5.5, "client": 6.0}
    assert document["gaps"] == {"count": 1, "median_s": 0.5, "p90_s": 0.5}
    assert document["disclosure_windows"] == []


def test_summarize_closes_talk_still_open_at_the_end_and_clamps_late_edges() -> None:
    summary = summarize({T: [(0.0, True)], C: [(3.0, True), (12.0, False)]}, 10.0)

    assert summary.talk_time.therapist == 10.0
    assert summary.talk_time.client == 7.0
    assert summary.duration == 10.0


def test_summarize_reports_a_disclosure_window() -> None:
    summary = summarize(
        {T: edges_from_intervals([(0, 3), (40, 45)]), C: edges_from_intervals([(3.5, 39)])},
        50,
    )

    assert summary.disclosure_windows == ((23.5, 40.0),)


def test_fifty_minutes_of_scripted_turns_run_through_the_tracker() -> None:
    therapist, client, t = [], [], 0.0
    for i in range(600):  # 600 turns of 4.5 s with 0.5 s gaps: 50 minutes
        (therapist if i % 2 == 0 else client).append((t, t + 4.5))
        if i % 2 == 0:
            client.append((t + 2.0, t + 2.3))  # a backchannel in every therapist turn
        t += 5.0
    summary = summarize({T: edges_from_intervals(therapist), C: edges_from_intervals(client)}, t)

    assert summary.turns == 600
    assert len(summary.backchannels) == 300
    assert summary.interruptions == ()
    assert summary.gaps.median == pytest.approx(0.5)
    assert summary.talk_time.therapist == pytest.approx(300 * 4.5)
