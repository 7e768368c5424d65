"""The beacon's wire format: what is accepted, what is rejected and counted, the limits."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.beacon import (
    BURST,
    MAX_MESSAGE_BYTES,
    BeaconCounters,
    BeaconError,
    BeaconInput,
    BeaconLimits,
    BeaconRefusal,
    LevelSample,
    Rejected,
    TokenBucket,
    parse_message,
)
from monitor.observations import SILENCE_DB, BeaconReport, InboundStreamStats
from probes.base import FeltsafeError, MediaKind

AUDIO = {
    "kind": "audio",
    "jitter": 0.004,
    "packetsReceived": 1200,
    "packetsLost": 3,
    "concealedSamples": 960,
    "totalSamplesReceived": 576000,
}
VIDEO = {
    "kind": "video",
    "jitter": 0.011,
    "packetsReceived": 4000,
    "packetsLost": -2,
    "framesPerSecond": 29.5,
    "freezeCount": 1,
    "totalFreezesDuration": 1.62,
}


def stats(**fields: Any) -> str:
    return json.dumps({"type": "stats", "v": 1, "inbound": [AUDIO, VIDEO], **fields})


def level(rms: Any = 0.1, duration: Any = 0.1, **fields: Any) -> str:
    return json.dumps({"type": "level", "v": 1, "rms": rms, "duration": duration, **fields})


# --- schema ----------------------------------------------------------------------------


def test_a_stats_message_becomes_a_typed_report_in_w3c_units() -> None:
    report = parse_message(stats(roundTripTime=0.031))
    assert report == BeaconReport(
        inbound=(
            InboundStreamStats(
                kind=MediaKind.AUDIO,
                jitter=0.004,
                packets_received=1200,
                packets_lost=3,
                concealed_samples=960,
                total_samples_received=576000,
            ),
            InboundStreamStats(
                kind=MediaKind.VIDEO,
                jitter=0.011,
                packets_received=4000,
                packets_lost=-2,
                frames_per_second=29.5,
                freeze_count=1,
                total_freezes_duration=1.62,
            ),
        ),
        round_trip_time=0.031,
    )


def test_every_inbound_field_but_kind_is_optional_and_stays_unknown() -> None:
    report = parse_message('{"type": "stats", "v": 1, "inbound": [{"kind": "video"}]}')
    assert report == BeaconReport(inbound=(InboundStreamStats(kind=MediaKind.VIDEO),))
    assert parse_message('{"type": "stats", "v": 1}') == BeaconReport()


def test_a_level_is_the_rms_in_dbov_over_its_duration() -> None:
    half = parse_message(level(rms=0.5, duration=0.1))
    assert isinstance(half, LevelSample)
    assert half.level_db == pytest.approx(20 * math.log10(0.5))
    assert half.duration == pytest.approx(0.1)
    assert parse_message(level(rms=0, duration=0.1)) == LevelSample(SILENCE_DB, 0.1)
    assert parse_message(level(rms=1, duration=1)) == LevelSample(0.0, 1.0)


@pytest.mark.parametrize(
    "stream",
    [
        {**AUDIO, "packetsLost": 3.0},  # a count is a JSON integer
        {**AUDIO, "packetsReceived": True},
        {**AUDIO, "packetsReceived": "1200"},
        {**AUDIO, "packetsReceived": -1},
        {**AUDIO, "packetsReceived": 2**60},
        {**AUDIO, "jitter": -0.001},
        {**AUDIO, "jitter": 61.0},
        {**VIDEO, "framesPerSecond": 5000},
        {**VIDEO, "totalFreezesDuration": -1},
        {**AUDIO, "framesPerSecond": 30},  # a video field on an audio stream
        {**VIDEO, "concealedSamples": 10},
        {**AUDIO, "transcript": "hello"},  # nowhere to put content
        {**AUDIO, "kind": "data"},
        {"jitter": 0.01},
    ],
)
def test_wrong_types_ranges_and_unknown_fields_are_schema_errors(stream: dict[str, Any]) -> None:
    text = json.dumps({"type": "stats", "v": 1, "inbound": [stream]})
    assert parse_message(text) is BeaconError.SCHEMA


@pytest.mark.parametrize(
    "text",
    [
        stats(roundTripTime=-0.1),
        stats(roundTripTime=120.0),
        stats(roundTripTime=None, extra=1),
        json.dumps({"type": "stats", "v": 1, "inbound": [AUDIO, AUDIO]}),
        json.dumps({"type": "stats", "v": 1, "inbound": [AUDIO, VIDEO, VIDEO]}),
        json.dumps({"type": "stats", "v": 2, "inbound": []}),
        json.dumps({"type": "stats", "inbound": []}),
        json.dumps({"type": "hello", "v": 1}),
        json.dumps({"v": 1}),
        json.dumps([1, 2, 3]),
        json.dumps("stats"),
        "null",
        level(rms=1.01),
        level(rms=-0.1),
        level(duration=0),
        level(duration=1.5),
        level(rms=True),
        '{"type": "level", "v": 1, "rms": NaN, "duration": 0.1}',
        '{"type": "level", "v": 1, "rms": 0.1, "duration": Infinity}',
        '{"type": "stats", "v": 1, "roundTripTime": 1e999}',
    ],
)
def test_messages_outside_the_schema_are_schema_errors(text: str) -> None:
    assert parse_message(text) is BeaconError.SCHEMA


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "{", '{"type": "stats",', "[" * 3000, "\x00\x01", '{"a": 1} trailing'],
)
def test_text_that_is_not_json_is_malformed_json(text: str) -> None:
    assert parse_message(text) is BeaconError.MALFORMED_JSON


# --- per connection ----------------------------------------------------------------------


def test_a_frame_over_the_size_limit_is_rejected_before_it_is_parsed() -> None:
    beacon = BeaconInput(now=0.0)
    padding = " " * (MAX_MESSAGE_BYTES - len(level()))
    assert isinstance(beacon.receive_text(level() + padding, now=0.0), LevelSample)
    assert beacon.receive_text(level() + padding + " ", now=0.0) == Rejected(BeaconError.OVERSIZED)
    # The limit is in bytes: 2000 three-byte characters are 6000 bytes.
    assert beacon.receive_text("\u20ac" * 2000, now=0.0) == Rejected(BeaconError.OVERSIZED)
    assert beacon.counters.rejected[BeaconError.OVERSIZED] == 2


def test_binary_frames_are_rejected_and_counted() -> None:
    beacon = BeaconInput(now=0.0)
    assert beacon.receive_bytes(stats().encode(), now=0.0) == Rejected(BeaconError.BINARY)
    assert beacon.counters.rejected[BeaconError.BINARY] == 1


def test_a_connection_gets_a_burst_then_the_sustained_rate() -> None:
    beacon = BeaconInput(now=0.0, limits=BeaconLimits(rate_per_s=15, burst=30))
    results = [beacon.receive_text(level(), now=0.0) for _ in range(31)]
    assert all(isinstance(r, LevelSample) for r in results[:30])
    assert results[30] == Rejected(BeaconError.RATE_LIMITED, reply=True)
    # One second later: 15 more, not 30.
    later = [beacon.receive_text(level(), now=1.0) for _ in range(16)]
    assert sum(isinstance(r, LevelSample) for r in later) == 15
    assert beacon.counters.levels == 45
    assert beacon.counters.rejected[BeaconError.RATE_LIMITED] == 2


def test_the_beacons_own_pace_never_hits_the_rate_limit() -> None:
    beacon = BeaconInput(now=0.0)
    now, accepted = 0.0, 0
    for tick in range(600):  # one minute: a level every 100 ms, stats every second
        now = tick * 0.1
        accepted += isinstance(beacon.receive_text(level(), now=now), LevelSample)
        if tick % 10 == 0:
            accepted += isinstance(beacon.receive_text(stats(), now=now), BeaconReport)
    assert accepted == 660
    assert beacon.counters.rejected[BeaconError.RATE_LIMITED] == 0


def test_a_flood_is_answered_once_per_throttled_run_not_once_per_frame() -> None:
    beacon = BeaconInput(now=0.0, limits=BeaconLimits(rate_per_s=1, burst=1))
    assert isinstance(beacon.receive_text(level(), now=0.0), LevelSample)
    flood = [beacon.receive_text(level(), now=0.0) for _ in range(100)]
    assert [r for r in flood if isinstance(r, Rejected) and r.reply] == [
        Rejected(BeaconError.RATE_LIMITED)
    ]
    assert isinstance(beacon.receive_text(level(), now=1.0), LevelSample)
    again = beacon.receive_text(level(), now=1.0)
    assert again == Rejected(BeaconError.RATE_LIMITED, reply=True)


def test_bad_frames_spend_the_rate_budget_too() -> None:
    beacon = BeaconInput(now=0.0, limits=BeaconLimits(rate_per_s=1, burst=BURST))
    for _ in range(BURST):
        beacon.receive_text("garbage", now=0.0)
    assert beacon.receive_text(level(), now=0.0) == Rejected(BeaconError.RATE_LIMITED)
    assert beacon.counters.rejected[BeaconError.MALFORMED_JSON] == BURST


def test_a_token_bucket_refills_nothing_when_the_clock_steps_back() -> None:
    bucket = TokenBucket(rate=10, burst=1, now=5.0)
    assert bucket.take(now=5.0)
    assert not bucket.take(now=1.0)
    assert not bucket.take(now=5.0)
    assert bucket.take(now=5.2)


def test_limits_that_would_disable_the_limits_are_refused() -> None:
    for limits in ({"burst": 0}, {"rate_per_s": 0}, {"max_message_bytes": 10}):
        with pytest.raises(FeltsafeError):
            BeaconLimits(**limits)


def test_counters_list_every_kind_by_its_closed_name() -> None:
    counters = BeaconCounters()
    beacon = BeaconInput(now=0.0, counters=counters)
    beacon.receive_text(stats(), now=0.0)
    beacon.receive_text("nope", now=0.0)
    counters.refused[BeaconRefusal.ORIGIN] += 1
    view = counters.as_dict()
    assert view["reports"] == 1
    assert view["rejected"] == {e.value: int(e is BeaconError.MALFORMED_JSON) for e in BeaconError}
    assert view["refused"] == {r.value: int(r is BeaconRefusal.ORIGIN) for r in BeaconRefusal}


# --- properties ---------------------------------------------------------------------------

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
stream_fields = st.sampled_from(
    ["kind", "jitter", "packetsLost", "packetsReceived", "framesPerSecond", "freezeCount",
     "totalFreezesDuration", "concealedSamples", "totalSamplesReceived"]
)  # fmt: skip
streams = st.dictionaries(stream_fields, scalars | st.sampled_from(["audio", "video"]))
near_messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["stats", "level", "x"]), "v": st.sampled_from([1, 1.0, 2, "1"])},
    optional={
        "inbound": st.lists(streams, max_size=3),
        "roundTripTime": scalars,
        "rms": scalars,
        "duration": scalars,
    },
)


def _finite_report(report: BeaconReport) -> bool:
    numbers = [report.round_trip_time]
    for s in report.inbound:
        numbers += [s.jitter, s.frames_per_second, s.total_freezes_duration]
    return all(n is None or (math.isfinite(n) and n >= 0) for n in numbers)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=300), json_values.map(json.dumps), near_messages.map(json.dumps)))
def test_any_text_parses_to_a_sane_input_or_a_counted_error(text: str) -> None:
    result = parse_message(text)
    if isinstance(result, BeaconReport):
        assert _finite_report(result)
        assert len({s.kind for s in result.inbound}) == len(result.inbound)
    elif isinstance(result, LevelSample):
        assert SILENCE_DB <= result.level_db <= 0.0
        assert 0.0 < result.duration <= 1.0
    else:
        assert result in (BeaconError.MALFORMED_JSON, BeaconError.SCHEMA)


frames = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(MAX_MESSAGE_BYTES - 8, 3 * MAX_MESSAGE_BYTES).map(lambda n: "x" * n),
    st.just(stats()),
    st.just(level()),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(frames, st.floats(0, 0.5)), max_size=60))
def test_a_connection_survives_any_stream_of_frames_and_counts_every_one(
    stream: list[tuple[str | bytes, float]],
) -> None:
    counters = BeaconCounters()
    beacon = BeaconInput(now=0.0, counters=counters)
    now = 0.0
    for frame, step in stream:
        now += step
        if isinstance(frame, bytes):
            beacon.receive_bytes(frame, now=now)
        else:
            beacon.receive_text(frame, now=now)
    assert counters.reports + counters.levels + sum(counters.rejected.values()) == len(stream)
    # Afterwards a good message is accepted again, once the bucket had time to refill.
    assert isinstance(beacon.receive_text(level(), now=now + 1.0), LevelSample)


counts = st.integers(0, 2**53)
seconds = st.floats(0, 60, allow_nan=False)
valid_audio = st.fixed_dictionaries(
    {"kind": st.just("audio")},
    optional={"jitter": seconds, "packetsReceived": counts, "packetsLost": st.integers(-5, 99),
              "concealedSamples": counts, "totalSamplesReceived": counts},
)  # fmt: skip
valid_video = st.fixed_dictionaries(
    {"kind": st.just("video")},
    optional={"jitter": seconds, "packetsReceived": counts, "framesPerSecond": st.floats(0, 240),
              "freezeCount": counts, "totalFreezesDuration": st.floats(0, 1e6)},
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(valid_audio, valid_video), max_size=2).filter(
        lambda streams: len({s["kind"] for s in streams}) == len(streams)
    ),
    st.none() | seconds,
)
def test_every_valid_report_is_accepted_with_its_numbers_intact(
    streams: list[dict[str, Any]], rtt: float | None
) -> None:
    message: dict[str, Any] = {"type": "stats", "v": 1, "inbound": streams}
    if rtt is not None:
        message["roundTripTime"] = rtt
    report = parse_message(json.dumps(message))
    assert isinstance(report, BeaconReport)
    assert report.round_trip_time == rtt
    for sent, got in zip(streams, report.inbound, strict=True):
        assert got.kind == sent["kind"]
        assert got.jitter == sent.get("jitter")
        assert got.packets_received == sent.get("packetsReceived")
        assert got.frames_per_second == sent.get("framesPerSecond")
        assert got.concealed_samples == sent.get("concealedSamples")
