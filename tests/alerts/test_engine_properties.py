"""Invariants of the engine, over inputs Hypothesis makes up."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.engine import Engine, FlagCleared, FlagRaised, replay
from alerts.pack import parse_pack
from probes.signals import SignalValue
from tests.alerts.scenario import HEALTHY, default_pack, run

FROZEN = "client.video.frozen"

# Tick spacing as the runtime produces it: 250 ms, and deadline ticks in between.
gaps = st.sampled_from([0.25, 0.25, 0.25, 0.05, 0.1, 0.2, 0.5, 1.0])


def _for_pack(hold: float, keep: float) -> str:
    return f"""\
pack: p
version: 1
rules:
  - id: r
    version: 1
    title: r
    when: {FROZEN}
    for: {hold}
    keep_firing_for: {keep}
    severity: warn
    audience: [ops]
    undermines: [trust]
    source: test
"""


@settings(max_examples=150, deadline=None)
@given(
    hold=st.sampled_from([0.0, 0.25, 0.5, 1.0, 1.3, 2.0, 5.0]),
    keep=st.sampled_from([0.0, 0.5, 2.0]),
    steps=st.lists(st.tuples(gaps, st.sampled_from([True, False, None])), max_size=80),
)
def test_no_rule_fires_before_its_condition_has_held_for_for(
    hold: float, keep: float, steps: list[tuple[float, bool | None]]
) -> None:
    engine = Engine(parse_pack(_for_pack(hold, keep), source="p.yaml"))
    now = 0.0
    history: list[tuple[float, bool | None]] = []
    for gap, frozen in steps:
        now += gap
        history.append((now, frozen))
        for event in engine.evaluate({FROZEN: frozen}, now=now):
            if isinstance(event, FlagRaised):
                start = event.flag.start
                # Held at every tick from the onset to now, for at least `hold`...
                assert all(v is True for t, v in history if start <= t <= now)
                assert now - start >= hold - 1e-9
                # ...and the onset is the first tick of that run of true ticks.
                before = [v for t, v in history if t < start]
                assert not before or before[-1] is not True
                # Not one tick late either: the tick before did not qualify yet.
                earlier = [t for t, _ in history if start <= t < now]
                assert not earlier or earlier[-1] - start < hold - 1e-9


# Signals the default pack reads, each with values around its thresholds.
_AROUND: dict[str, list[SignalValue]] = {
    "client.network.mos": [4.3, 3.6, 3.3, 3.0, None],
    "client.audio.loss_ratio": [0.0, 0.025, 0.05, 0.1, None],
    "client.video.frozen": [False, True, None],
    "client.video.freeze_s": [0.0, 0.5, 1.5],
    "therapist.video.frozen": [False, True],
    "conversation.client.holds_floor": [False, True, None],
    "session.disclosure": [False, True],
    "client.network.rtt_ms": [80.0, 350.0, 450.0, None],
    "conversation.overlap_ratio_1m": [0.01, 0.05, 0.1],
    "conversation.interruptions_by_therapist_5m": [0.0, 2.0, 3.0, 5.0],
    "client.speech.active": [False, True],
}

snapshots = st.fixed_dictionaries(
    {name: st.sampled_from(values) for name, values in _AROUND.items()}
).map(lambda changes: {**HEALTHY, **changes})


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(gaps, snapshots), min_size=1, max_size=60))
def test_no_default_rule_fires_before_its_for(
    steps: list[tuple[float, dict[str, SignalValue]]],
) -> None:
    pack = default_pack()
    engine = Engine(pack, profile="individual")
    now = 0.0
    for gap, snapshot in steps:
        now += gap
        for event in engine.evaluate(snapshot, now=now):
            if isinstance(event, FlagRaised):
                hold = pack.rule(event.flag.rule_id).hold
                assert now - event.flag.start >= hold - 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 12), st.floats(0.0251, 0.2), st.integers(1, 40), st.floats(0.0101, 0.025)
        ),
        min_size=2,
        max_size=10,
    )
)
def test_loss_oscillating_around_the_raise_threshold_never_flaps(
    runs: list[tuple[int, float, int, float]],
) -> None:
    # Spells above 2.5 % and spells of any length between 1 % and 2.5 %: once raised,
    # the flag stays up, because it clears only below 1 %.
    values: list[float] = []
    for high_ticks, high, between_ticks, between in runs:
        values += [high] * high_ticks + [between] * between_ticks
    ticks = [(i * 0.25, {**HEALTHY, "client.audio.loss_ratio": v}) for i, v in enumerate(values)]
    recording = run(Engine(default_pack()), ticks)
    assert len(recording.raised("client_audio_loss")) <= 1
    assert recording.cleared("client_audio_loss") == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 19), st.floats(3.61, 4.5), st.integers(1, 12), st.floats(2.5, 3.59)
        ),
        min_size=2,
        max_size=12,
    )
)
def test_mos_oscillating_around_3_6_faster_than_5_s_never_flaps(
    runs: list[tuple[int, float, int, float]],
) -> None:
    # Good spells shorter than 5 s (20 ticks) never clear a raised flag.
    values: list[float] = []
    for good_ticks, good, bad_ticks, bad in runs:
        values += [bad] * bad_ticks + [good] * good_ticks
    ticks = [(i * 0.25, {**HEALTHY, "client.network.mos": v}) for i, v in enumerate(values)]
    recording = run(Engine(default_pack()), ticks)
    assert len(recording.raised("client_sound_poor")) <= 1
    assert recording.cleared("client_sound_poor") == []


@settings(max_examples=25, deadline=None)
@given(steps=st.lists(st.tuples(gaps, snapshots), min_size=1, max_size=60))
def test_replaying_the_same_snapshots_gives_byte_identical_flags(
    steps: list[tuple[float, dict[str, SignalValue]]],
) -> None:
    now = 0.0
    ticks = []
    for gap, snapshot in steps:
        now += gap
        ticks.append((now, snapshot))
    # The second run reads the snapshots back from JSON, as a trace replay does.
    reread = [(t, json.loads(json.dumps(s))) for t, s in ticks]
    first = json.dumps([f.as_dict() for f in replay(default_pack(), ticks, end=now + 1)])
    second = json.dumps([f.as_dict() for f in replay(default_pack(), reread, end=now + 1)])
    assert first == second


def test_every_raised_flag_is_cleared_exactly_once_by_the_end() -> None:
    ticks = [
        (i * 0.25, {**HEALTHY, "client.video.frozen": i % 9 < 4, "client.network.mos": 3.0})
        for i in range(200)
    ]
    engine = Engine(default_pack())
    raised: list[tuple[str, float]] = []
    cleared: list[tuple[str, float]] = []
    for now, snapshot in ticks:
        for event in engine.evaluate(snapshot, now=now):
            if isinstance(event, FlagRaised):
                raised.append((event.flag.rule_id, event.flag.start))
            elif isinstance(event, FlagCleared):
                cleared.append((event.flag.rule_id, event.flag.start))
    for event in engine.finish(now=60.0):
        if isinstance(event, FlagCleared):
            cleared.append((event.flag.rule_id, event.flag.start))
    assert sorted(raised) == sorted(cleared)
    assert len(set(raised)) == len(raised)
