"""Invariants of the conversation probe on random two-voice timelines (Hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from probes.base import Role
from probes.conversation import (
    BackchannelDetected,
    ConversationConfig,
    ConversationSnapshot,
    ConversationTracker,
    InterruptionDetected,
    edges_from_intervals,
)
from probes.talk_windows import TalkLedger

T, C = Role.THERAPIST, Role.CLIENT
OFFLINE = ConversationConfig(edge_latency=0.0)
EPS = 1e-6

Intervals = list[tuple[float, float]]


@st.composite
def talkspurts(draw: st.DrawFn, *, max_count: int = 25) -> Intervals:
    """Alternating silence and talk, in centiseconds, as voice-activity smoothing yields."""
    spurts, t = [], 0.0
    for _ in range(draw(st.integers(0, max_count))):
        t += draw(st.integers(1, 800)) / 100
        length = draw(st.integers(10, 1200)) / 100
        spurts.append((t, t + length))
        t += length
    return spurts


def talk_between(spurts: Intervals, a: float, b: float) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for start, end in spurts)


def overlap_after(first: Intervals, second: Intervals, t: float) -> float:
    return sum(max(0.0, min(e1, e2) - max(s1, s2, t)) for s1, e1 in first for s2, e2 in second)


def ordered_edges(therapist: Intervals, client: Intervals) -> list[tuple[float, Role, bool]]:
    edges = sorted(
        (t, active, role.value, role)
        for role, spurts in ((T, therapist), (C, client))
        for t, active in edges_from_intervals(spurts)
    )
    return [(t, role, active) for t, active, _, role in edges]


def blamed_overlap(therapist: Intervals, client: Intervals, now: float, delay: float) -> float:
    """Each stretch of simultaneous speech up to ``now``, less the delay, floored at 0."""
    return sum(
        max(0.0, min(e1, e2, now) - max(s1, s2) - delay)
        for s1, e1 in therapist
        for s2, e2 in client
        if min(e1, e2) > max(s1, s2)
    )


def check_snapshot(
    snap: ConversationSnapshot, therapist: Intervals, client: Intervals, delay: float | None
) -> None:
    for figures, spurts in ((snap.therapist, therapist), (snap.client, client)):
        assert math.isclose(figures.talk_time, talk_between(spurts, 0, snap.t), abs_tol=EPS)
    expected = blamed_overlap(therapist, client, snap.t, delay or 0.0)
    assert math.isclose(snap.overlap_total, expected, abs_tol=EPS)
    check_bounds(snap)


def check_bounds(snap: ConversationSnapshot) -> None:
    for figures in (snap.therapist, snap.client):
        assert 0 <= figures.talk_time <= snap.elapsed + EPS
        assert figures.longest_monologue <= snap.elapsed + EPS
        assert figures.floor_held <= snap.elapsed + EPS
    for attribute in ("talk_share", "talk_share_5m", "talk_share_10m"):
        shares = [getattr(snap.therapist, attribute), getattr(snap.client, attribute)]
        if shares[0] is None:
            assert shares[1] is None
            continue
        assert shares[1] is not None
        assert all(-EPS <= share <= 1 + EPS for share in shares)
        assert shares[0] + shares[1] <= 1 + EPS
    for ratio in (snap.overlap_ratio_1m, snap.overlap_ratio_5m):
        assert ratio is None or 0 <= ratio <= 1
    assert snap.overlap_total <= min(snap.therapist.talk_time, snap.client.talk_time) + EPS


@settings(max_examples=150, deadline=None)
@given(
    therapist=talkspurts(),
    client=talkspurts(),
    delay=st.one_of(st.none(), st.integers(0, 40).map(lambda ms: ms / 100)),
    ticks=st.lists(st.integers(0, 40000).map(lambda cs: cs / 100), max_size=12),
)
def test_live_snapshots_keep_shares_talk_time_and_overlap_within_bounds(
    therapist: Intervals, client: Intervals, delay: float | None, ticks: list[float]
) -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.set_one_way_delay(delay)
    edges = ordered_edges(therapist, client)
    for now in sorted(ticks):
        while edges and edges[0][0] <= now:
            t, role, active = edges.pop(0)
            tracker.on_voice(role, active, t=t)
        check_snapshot(tracker.snapshot(now=now), therapist, client, delay)
    for t, role, active in edges:
        tracker.on_voice(role, active, t=t)
    end = max([0.0] + [e for _, e in therapist + client]) + 1
    tracker.finish(now=end)
    final = tracker.snapshot(now=end)
    check_snapshot(final, therapist, client, delay)
    assert final.bad_input.total == 0


@settings(max_examples=150, deadline=None)
@given(
    therapist=talkspurts(),
    client=talkspurts(),
    delay=st.one_of(st.none(), st.integers(0, 40).map(lambda ms: ms / 100)),
)
def test_interruptions_need_200_ms_of_real_overlap_and_backchannels_are_never_interruptions(
    therapist: Intervals, client: Intervals, delay: float | None
) -> None:
    tracker = ConversationTracker(OFFLINE, start=0.0)
    tracker.set_one_way_delay(delay)
    for t, role, active in ordered_edges(therapist, client):
        tracker.on_voice(role, active, t=t)
    tracker.finish(now=max([0.0] + [e for _, e in therapist + client]) + 1)
    events = tracker.drain_events()

    spurts = {T: therapist, C: client}
    interruptions = [e for e in events if isinstance(e, InterruptionDetected)]
    backchannels = [e for e in events if isinstance(e, BackchannelDetected)]
    for event in interruptions:
        assert event.by is not event.of
        assert event.overlap >= 0.2 - EPS
        assert overlap_after(spurts[event.by], spurts[event.of], event.t) >= event.overlap - EPS
        if delay is not None:
            assert overlap_after(spurts[event.by], spurts[event.of], event.t) > delay
    for event in backchannels:
        [(start, end)] = [(s, e) for s, e in spurts[event.by] if s == event.t]
        assert end - start <= 1.0 + EPS
    assert not {(e.t, e.by) for e in interruptions} & {(e.t, e.by) for e in backchannels}


@settings(max_examples=150, deadline=None)
@given(
    therapist=talkspurts(max_count=60),
    client=talkspurts(max_count=60),
    ticks=st.lists(st.integers(0, 100000).map(lambda cs: cs / 100), min_size=1, max_size=8),
    window=st.sampled_from([60.0, 300.0, 600.0]),
)
def test_windowed_talk_is_within_a_second_of_the_exact_figure(
    therapist: Intervals, client: Intervals, ticks: list[float], window: float
) -> None:
    ledger = TalkLedger(start=0.0, span=600.0)
    edges = ordered_edges(therapist, client)
    active = {T: False, C: False}
    for now in sorted(ticks):
        while edges and edges[0][0] <= now:
            t, role, is_active = edges.pop(0)
            ledger.commit(t)
            active[role] = is_active
            ledger.set_state(therapist=active[T], client=active[C], blamed_from=None)
        talk_t, talk_c, _ = ledger.window(now, window)
        assert abs(talk_t - talk_between(therapist, now - window, now)) <= 1.0 + EPS
        assert abs(talk_c - talk_between(client, now - window, now)) <= 1.0 + EPS
        assert math.isclose(ledger.total(T, now), talk_between(therapist, 0, now), abs_tol=EPS)


@settings(max_examples=200, deadline=None)
@given(
    edges=st.lists(
        st.tuples(
            st.sampled_from([T, C]),
            st.booleans(),
            st.one_of(
                st.floats(-10, 1000, allow_nan=False),
                st.sampled_from([math.nan, math.inf, -math.inf]),
            ),
        ),
        max_size=60,
    ),
    ticks=st.lists(st.floats(-10, 1000, allow_nan=False), max_size=5),
)
def test_any_input_is_accepted_or_counted_and_never_raises(
    edges: list[tuple[Role, bool, float]], ticks: list[float]
) -> None:
    tracker = ConversationTracker(ConversationConfig(edge_latency=0.2), start=0.0)
    state, last, accepted = {T: False, C: False}, 0.0, 0
    for i, (role, active, t) in enumerate(edges):
        tracker.on_voice(role, active, t=t)
        if math.isfinite(t) and t >= last and active != state[role]:
            state[role], last, accepted = active, t, accepted + 1
        if i < len(ticks):
            tracker.advance(now=ticks[i])
    snap = tracker.snapshot(now=1000.0)

    counts = snap.bad_input
    assert counts.invalid + counts.out_of_order + counts.duplicate + accepted == len(edges)
    check_bounds(snap)
