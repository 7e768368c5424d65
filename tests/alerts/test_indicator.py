"""The therapist's indicator policy: falls fast, recovers slowly, calm words (now by hand)."""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.indicator import (
    Indicator,
    IndicatorConfig,
    IndicatorFlag,
    IndicatorState,
    IndicatorUsageError,
    Level,
    assess,
    therapist_flags,
)
from alerts.model import Audience, Flag, Severity
from probes.base import Role

FROZE = IndicatorFlag(
    "therapist_video_frozen",
    Severity.WARN,
    "Your client may not see you: your picture froze",
    "Pause for a moment, then check your client could follow you",
    since=0.0,
)
FROZE_SHARING = IndicatorFlag(
    "therapist_video_frozen_while_client_speaks",
    Severity.ALERT,
    "Your client may not see you: your picture froze while they were speaking",
    "When your picture is back, tell your client you are still with them and invite them to go on",
    since=0.0,
)
VOICE = IndicatorFlag(
    "client_audio_dropping_while_speaking",
    Severity.ALERT,
    "Your client's voice is breaking up while they speak",
    "Tell your client which part you missed, so they only have to repeat that part",
    since=0.0,
)
TALK_SHARE = IndicatorFlag(
    "therapist_talk_share_high",
    Severity.INFO,
    "You have done most of the talking in the last 10 minutes",
    "Try an open question, then give your client room to answer",
    since=0.0,
)


def at(flag: IndicatorFlag, since: float) -> IndicatorFlag:
    return IndicatorFlag(flag.rule_id, flag.severity, flag.message, flag.hint, since)


# --- levels and words ----------------------------------------------------------------


def test_a_new_indicator_is_ok_with_nothing_to_say() -> None:
    indicator = Indicator(now=3.0)
    assert indicator.state == IndicatorState(Level.OK, None, None, 3.0)
    assert indicator.next_deadline() is None


def test_a_warn_flag_shows_at_once_with_its_own_words() -> None:
    indicator = Indicator(now=0.0)
    state = indicator.update([FROZE], now=4.0)
    assert state == IndicatorState(Level.WARN, FROZE.message, FROZE.hint, since=4.0)


def test_an_alert_right_after_a_warn_is_not_held_back() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE], now=4.0)
    state = indicator.update([FROZE, FROZE_SHARING], now=4.1)
    assert state is not None
    assert (state.level, state.message, state.since) == (
        Level.ALERT,
        FROZE_SHARING.message,
        4.1,
    )


def test_an_interruption_outranks_every_flag_and_says_who_dropped() -> None:
    indicator = Indicator(now=0.0)
    state = indicator.update([VOICE], interrupted=[Role.CLIENT], now=1.0)
    assert state is not None
    assert state.level is Level.INTERRUPTED
    assert state.message == "Your client's connection dropped"

    state = indicator.update([VOICE], interrupted=[Role.CLIENT, Role.THERAPIST], now=1.5)
    assert state is not None
    assert state.level is Level.INTERRUPTED
    assert state.message == "The call dropped on both sides"
    assert state.since == 1.0  # the same level: new words, not a new change
    assert indicator.changes == 1


def test_info_flags_never_move_the_live_indicator() -> None:
    indicator = Indicator(now=0.0)
    assert indicator.update([TALK_SHARE], now=1.0) is None
    assert indicator.state.level is Level.OK


def test_only_open_flags_meant_for_the_therapist_reach_the_indicator() -> None:
    def flag(rule: str, audience: set[Audience], end: float | None = None) -> Flag:
        return Flag(
            rule_id=rule, rule_version=1, start=2.0, end=end, severity=Severity.WARN,
            audience=frozenset(audience), undermines=frozenset(), title=rule,
            message="m", hint="h",
        )  # fmt: skip

    flags = [
        flag("for_therapist", {Audience.THERAPIST, Audience.SUPERVISOR}),
        flag("for_ops_only", {Audience.OPS, Audience.SUPERVISOR}),
        flag("cleared", {Audience.THERAPIST}, end=3.0),
    ]
    assert [f.rule_id for f in therapist_flags(flags)] == ["for_therapist"]
    assert therapist_flags(flags)[0].since == 2.0


def test_a_flag_without_wording_gets_plain_default_words() -> None:
    bare = IndicatorFlag("x", Severity.ALERT, None, None, 0.0)
    reading = assess([bare])
    assert reading.level is Level.ALERT
    assert reading.message == IndicatorConfig().alert_message
    assert reading.hint == IndicatorConfig().alert_hint


def test_the_indicators_own_words_speak_in_absolute_terms_never_a_score() -> None:
    config = IndicatorConfig()
    texts = [config.warn_message, config.warn_hint, config.alert_message, config.alert_hint]
    texts += [t for pair in config.interrupted_messages.values() for t in pair]
    for text in texts:
        assert not re.search(r"\d|%|score|/", text), text


def test_among_new_flags_at_one_level_the_most_recent_onset_speaks() -> None:
    reading = assess([at(FROZE_SHARING, 5.0), at(VOICE, 7.0)])
    assert reading.message == VOICE.message
    reading = assess([at(FROZE_SHARING, 7.0), at(VOICE, 5.0)])
    assert reading.message == FROZE_SHARING.message


def test_the_shown_message_stays_while_its_flag_is_up_then_the_other_takes_over() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([at(FROZE_SHARING, 1.0)], now=1.0)
    # A newer alert arrives: the therapist keeps reading the same message.
    assert indicator.update([at(FROZE_SHARING, 1.0), at(VOICE, 2.0)], now=2.0) is None
    assert indicator.state.message == FROZE_SHARING.message
    # The shown one clears while the other stays: new words, same level, same since.
    state = indicator.update([at(VOICE, 2.0)], now=3.0)
    assert state == IndicatorState(Level.ALERT, VOICE.message, VOICE.hint, since=1.0)
    assert indicator.changes == 1


# --- recovery ------------------------------------------------------------------------


def test_ok_comes_back_only_after_five_seconds_good() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE], now=0.0)
    assert indicator.update([], now=20.0) is None  # the flag cleared at t = 20
    assert indicator.state.level is Level.WARN
    assert indicator.next_deadline() == pytest.approx(25.0)
    assert indicator.on_timer(now=24.99) is None
    state = indicator.on_timer(now=25.0)
    assert state == IndicatorState(Level.OK, None, None, since=25.0)
    assert indicator.next_deadline() is None


def test_recovery_waits_ten_seconds_after_the_previous_change() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE_SHARING], now=0.0)
    indicator.update([], now=1.0)  # a one-second blip
    assert indicator.next_deadline() == pytest.approx(10.0)  # not 6.0
    assert indicator.on_timer(now=6.0) is None
    assert indicator.on_timer(now=9.9) is None
    state = indicator.on_timer(now=10.0)
    assert state is not None
    assert state.level is Level.OK


def test_a_fault_returning_within_the_hold_keeps_the_level_and_restarts_the_hold() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE], now=0.0)
    indicator.update([], now=12.0)
    assert indicator.update([FROZE], now=15.0) is None  # back before 17: nothing changes
    indicator.update([], now=16.0)
    assert indicator.next_deadline() == pytest.approx(21.0)
    assert indicator.on_timer(now=17.0) is None
    state = indicator.on_timer(now=21.0)
    assert state is not None
    assert state.level is Level.OK
    assert indicator.changes == 2


def test_recovery_goes_to_the_worst_level_seen_during_the_hold() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE_SHARING], now=0.0)
    indicator.update([FROZE], now=12.0)  # alert -> warn
    indicator.update([], now=14.0)  # warn -> ok
    assert indicator.next_deadline() == pytest.approx(17.0)
    state = indicator.on_timer(now=17.0)
    assert state == IndicatorState(Level.WARN, FROZE.message, FROZE.hint, since=17.0)
    # ok has held since 14, but the last change was at 17: ok at 27.
    assert indicator.next_deadline() == pytest.approx(27.0)
    state = indicator.on_timer(now=27.0)
    assert state is not None
    assert state.level is Level.OK


def test_while_a_recovery_is_held_back_the_fault_just_passed_keeps_its_words() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE_SHARING], now=0.0)
    indicator.update([], now=2.0)
    assert indicator.state.message == FROZE_SHARING.message
    assert indicator.state.hint == FROZE_SHARING.hint


def test_a_worse_level_during_a_held_recovery_shows_at_once() -> None:
    indicator = Indicator(now=0.0)
    indicator.update([FROZE], now=0.0)
    indicator.update([], now=11.0)
    indicator.on_timer(now=16.0)  # ok again
    state = indicator.update([], interrupted=[Role.THERAPIST], now=16.2)
    assert state is not None
    assert state.level is Level.INTERRUPTED
    assert state.since == 16.2


def test_the_hold_and_interval_are_configurable() -> None:
    indicator = Indicator(
        now=0.0, config=IndicatorConfig(recovery_hold=1.0, min_change_interval=2.0)
    )
    indicator.update([FROZE], now=0.0)
    indicator.update([], now=0.5)
    assert indicator.next_deadline() == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_nonsense_hold_is_refused(bad: float) -> None:
    with pytest.raises(IndicatorUsageError):
        IndicatorConfig(recovery_hold=bad)


def test_time_going_backwards_is_misuse() -> None:
    indicator = Indicator(now=5.0)
    with pytest.raises(IndicatorUsageError, match="backwards"):
        indicator.update([], now=4.0)
    with pytest.raises(IndicatorUsageError, match="finite"):
        indicator.on_timer(now=math.nan)


# --- invariants (Hypothesis) -----------------------------------------------------------

INPUTS: dict[str, tuple[list[IndicatorFlag], list[Role]]] = {
    "ok": ([], []),
    "info": ([TALK_SHARE], []),
    "warn": ([FROZE], []),
    "alert": ([FROZE_SHARING], []),
    "alert2": ([VOICE], []),
    "interrupted": ([], [Role.CLIENT]),
}
RANK = {"ok": 0, "info": 0, "warn": 1, "alert": 2, "alert2": 2, "interrupted": 3}
HOLD, INTERVAL = IndicatorConfig().recovery_hold, IndicatorConfig().min_change_interval


@dataclass
class Run:
    inputs: list[tuple[float, str]]  # (from, input name), a step lasts until the next
    changes: list[tuple[float, Level, Level]]  # (at, old level, new level)
    after_update: list[tuple[float, Level, str]]  # shown level right after each update
    final: IndicatorState
    final_input: str


def drive(steps: list[tuple[float, str]], *, settle: bool = True) -> Run:
    """Feed (gap, input) steps, calling on_timer at every deadline as a driver would."""
    indicator = Indicator(now=0.0)
    run = Run([], [], [], indicator.state, "ok")

    def record(now: float, state: IndicatorState | None, before: Level) -> None:
        if state is not None and state.level is not before:
            run.changes.append((now, before, state.level))

    def timers_until(limit: float) -> None:
        while (deadline := indicator.next_deadline()) is not None and deadline < limit:
            before = indicator.state.level
            state = indicator.on_timer(now=deadline)
            assert state is not None, "a deadline passed and nothing changed"
            record(deadline, state, before)

    now = 0.0
    for gap, name in steps:
        now += gap
        timers_until(now)
        flags, roles = INPUTS[name]
        before = indicator.state.level
        record(now, indicator.update(flags, interrupted=roles, now=now), before)
        run.inputs.append((now, name))
        run.after_update.append((now, indicator.state.level, name))
    if settle:
        timers_until(math.inf)
    run.final = indicator.state
    run.final_input = steps[-1][1] if steps else "ok"
    return run


def rank_of_input_during(run: Run, start: float, end: float) -> int:
    """The worst input rank in force at some time in [start, end]."""
    worst = 0
    for index, (begin, name) in enumerate(run.inputs):
        until = run.inputs[index + 1][0] if index + 1 < len(run.inputs) else math.inf
        if until > start + 1e-6 and begin <= end:
            worst = max(worst, RANK[name])
    return worst


steps_strategy = st.lists(
    st.tuples(
        st.floats(min_value=0.05, max_value=14.0, allow_nan=False),
        st.sampled_from(sorted(INPUTS)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps_strategy)
def test_a_worsening_is_never_delayed(steps: list[tuple[float, str]]) -> None:
    run = drive(steps)
    for _now, shown, name in run.after_update:
        assert shown.rank >= RANK[name]  # the shown level is never better than the input


@settings(max_examples=300, deadline=None)
@given(steps_strategy)
def test_every_improvement_comes_after_the_hold_and_ten_seconds_after_the_last_change(
    steps: list[tuple[float, str]],
) -> None:
    run = drive(steps)
    previous_change = -math.inf
    for when, old, new in run.changes:
        if new.rank < old.rank:
            assert when - previous_change >= INTERVAL - 1e-6
            # The input was below the old level for the whole hold before it.
            assert rank_of_input_during(run, when - HOLD, when) < old.rank
        previous_change = when


@settings(max_examples=300, deadline=None)
@given(steps_strategy)
def test_ok_is_reached_only_after_the_recovery_hold_of_good_input(
    steps: list[tuple[float, str]],
) -> None:
    run = drive(steps)
    for when, _old, new in run.changes:
        if new is Level.OK:
            assert rank_of_input_during(run, when - HOLD, when) == 0


@settings(max_examples=300, deadline=None)
@given(
    steps_strategy,
    st.lists(
        st.tuples(st.floats(min_value=0.05, max_value=14.0), st.sampled_from(sorted(INPUTS))),
        min_size=1,
        max_size=20,
    ),
)
def test_never_more_than_one_change_per_ten_seconds_while_the_input_only_improves(
    prefix: list[tuple[float, str]], tail: list[tuple[float, str]]
) -> None:
    # Make the tail steady or improving: each step no worse than the one before.
    improving: list[tuple[float, str]] = []
    for gap, name in tail:
        no_worse = name
        if improving and RANK[name] > RANK[improving[-1][1]]:
            no_worse = improving[-1][1]
        improving.append((gap, no_worse))
    run = drive(prefix + improving)
    tail_start = run.inputs[len(prefix)][0]
    times = [when for when, _old, _new in run.changes if when >= tail_start]
    for earlier, later in itertools.pairwise(times):
        assert later - earlier >= INTERVAL - 1e-6


@settings(max_examples=200, deadline=None)
@given(steps_strategy)
def test_a_steady_input_is_shown_in_the_end_with_its_own_words(
    steps: list[tuple[float, str]],
) -> None:
    run = drive(steps)
    flags, roles = INPUTS[run.final_input]
    expected = assess(flags, interrupted=roles)
    assert run.final.level is expected.level
    assert (run.final.message, run.final.hint) == expected.words
