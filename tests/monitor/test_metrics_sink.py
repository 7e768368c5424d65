"""The live fleet metrics: the per-session sink, and /metrics on the real app.

The sink is driven with synthetic snapshots and events at hand-stepped times; the app
tests run the real app (TestClient) with sessions opened in its loop and real websocket
and WHIP requests, and read /metrics as Prometheus would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from alerts.engine import FlagCleared, FlagRaised, FlagUpdated
from alerts.indicator import IndicatorState, Level
from alerts.model import Audience, Flag, Severity
from monitor.app import create_app
from monitor.beacon import BeaconError
from monitor.config import Mode, Settings
from monitor.metrics import FeltsafeCollector, FleetMetrics
from monitor.metrics_app import MetricsEndpoint
from monitor.metrics_sink import CumulativeTally, IngestCount, MetricsSink
from monitor.participant import Attachment
from monitor.rulefile import load_default_pack
from monitor.session import SessionConfig
from monitor.sessions import SessionRegistry
from monitor.sinks import SessionEvent, SessionInfo
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from probes.conversation import InterruptionDetected
from probes.signals import CATALOGUE, SignalValue

SECRET = "m" * 40
RULES = ("client_video_frozen", "client_sound_poor")

# -- helpers ------------------------------------------------------------------------


def snapshot(**values: SignalValue) -> dict[str, SignalValue]:
    """A snapshot with every catalogue name unknown but ``values`` (dots as ``__``)."""
    out: dict[str, SignalValue] = dict.fromkeys(CATALOGUE)
    for key, value in values.items():
        name = key.replace("__", ".")
        assert name in CATALOGUE, name
        out[name] = value
    return out


def realistic(rng: random.Random, elapsed: float) -> dict[str, SignalValue]:
    """A plausible tick of a two-party A/V session ``elapsed`` seconds in."""
    values: dict[str, SignalValue] = dict.fromkeys(CATALOGUE)
    for role in Role:
        for kind in ("audio", "video"):
            values[f"{role}.{kind}.jitter_ms"] = rng.uniform(1.0, 60.0)
            values[f"{role}.{kind}.loss_ratio"] = rng.choice((0.0, 0.0, 0.004, 0.03, 0.09))
        values[f"{role}.network.rtt_ms"] = rng.uniform(20.0, 600.0)
        values[f"{role}.network.mos"] = rng.uniform(2.5, 4.4)
        values[f"{role}.media.interrupted"] = False
        values[f"{role}.video.freeze_count"] = float(int(elapsed // 40))
        values[f"{role}.video.total_freezes_s"] = 0.4 * int(elapsed // 40)
        values[f"conversation.{role}.talk_time_s"] = elapsed * (0.5 if role is Role.CLIENT else 0.3)
    values["session.elapsed_s"] = elapsed
    return values


def info(mode: str = "full", started_at: float = 0.0) -> SessionInfo:
    return SessionInfo("session-under-test", mode, started_at)


def registry_of(fleet: FleetMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(FeltsafeCollector(fleet, lambda: (), clock=lambda: 0.0))
    return registry


def value(fleet: FleetMetrics, name: str, **labels: str) -> float:
    sample = registry_of(fleet).get_sample_value(name, labels)
    assert sample is not None, (name, labels)
    return sample


def flag(rule: str, severity: Severity = Severity.WARN, start: float = 1.0) -> Flag:
    return Flag(
        rule_id=rule,
        rule_version=1,
        start=start,
        end=None,
        severity=severity,
        audience=frozenset({Audience.OPS}),
        undermines=frozenset(),
        title="t",
        message="m",
    )


# -- stream figures -----------------------------------------------------------------


def test_jitter_is_observed_in_seconds_in_the_bucket_at_or_above_it() -> None:
    fleet = FleetMetrics(rules=RULES)
    MetricsSink(fleet, info()).on_snapshot(0.0, snapshot(client__audio__jitter_ms=30.0))
    labels = {"role": "client", "kind": "audio"}
    jitter = "feltsafe_stream_jitter_seconds"
    assert value(fleet, f"{jitter}_bucket", **labels, le="0.02") == 0.0
    assert value(fleet, f"{jitter}_bucket", **labels, le="0.03") == 1.0
    assert value(fleet, f"{jitter}_sum", **labels) == pytest.approx(0.03)


def test_four_ticks_a_second_give_one_sample_per_stream_second() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info(started_at=100.0))
    for i in range(40):  # 10 s of ticks every 250 ms
        sink.on_snapshot(100.0 + i * 0.25, snapshot(therapist__video__loss_ratio=0.01))
    labels = {"role": "therapist", "kind": "video"}
    assert value(fleet, "feltsafe_stream_loss_ratio_count", **labels) == 10.0
    assert value(fleet, "feltsafe_stream_loss_ratio_count", role="client", kind="video") == 0.0


def test_extra_deadline_ticks_do_not_add_samples() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    times = [0.0, 0.25, 0.31, 0.5, 0.75, 0.99, 1.0, 1.01, 1.2, 2.7]
    for now in times:
        sink.on_snapshot(now, snapshot(client__network__rtt_ms=80.0))
    # samples at 0.0, 1.0 and 2.7: a second must pass between two samples
    assert value(fleet, "feltsafe_path_rtt_seconds_count", role="client") == 3.0


def test_rtt_and_mos_are_observed_per_role_rtt_in_seconds() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_snapshot(0.0, snapshot(client__network__rtt_ms=250.0, client__network__mos=3.4))
    assert value(fleet, "feltsafe_path_rtt_seconds_bucket", role="client", le="0.2") == 0.0
    assert value(fleet, "feltsafe_path_rtt_seconds_bucket", role="client", le="0.3") == 1.0
    assert value(fleet, "feltsafe_audio_mos_bucket", role="client", le="3.1") == 0.0
    assert value(fleet, "feltsafe_audio_mos_bucket", role="client", le="3.6") == 1.0
    assert value(fleet, "feltsafe_audio_mos_count", role="therapist") == 0.0


@pytest.mark.parametrize("unknown", [None, True, math.nan, math.inf, -5.0])
def test_unknown_or_impossible_figures_are_never_observed(unknown: SignalValue) -> None:
    fleet = FleetMetrics(rules=RULES)
    MetricsSink(fleet, info()).on_snapshot(
        0.0, snapshot(client__audio__jitter_ms=unknown, client__audio__loss_ratio=unknown)
    )
    assert value(fleet, "feltsafe_stream_jitter_seconds_count", role="client", kind="audio") == 0
    assert value(fleet, "feltsafe_stream_loss_ratio_count", role="client", kind="audio") == 0


def test_figures_of_an_interrupted_participant_are_stale_and_skipped() -> None:
    fleet = FleetMetrics(rules=RULES)
    MetricsSink(fleet, info()).on_snapshot(
        0.0,
        snapshot(
            client__media__interrupted=True,
            client__audio__jitter_ms=12.0,
            client__network__mos=4.2,
            therapist__media__interrupted=False,
            therapist__audio__jitter_ms=12.0,
        ),
    )
    assert value(fleet, "feltsafe_stream_jitter_seconds_count", role="client", kind="audio") == 0
    assert value(fleet, "feltsafe_audio_mos_count", role="client") == 0
    jitter = value(fleet, "feltsafe_stream_jitter_seconds_count", role="therapist", kind="audio")
    assert jitter == 1


# -- freezes and other cumulative counts ----------------------------------------------


def _feed_freezes(sink: MetricsSink, counts: list[float | None], seconds: list[float | None]):  # type: ignore[no-untyped-def]
    for i, (count, frozen) in enumerate(zip(counts, seconds, strict=True)):
        sink.on_snapshot(
            float(i),
            snapshot(client__video__freeze_count=count, client__video__total_freezes_s=frozen),
        )


def test_freezes_count_by_difference_and_a_gap_in_the_data_counts_nothing_twice() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    _feed_freezes(sink, [0.0, 1.0, 1.0, None, 1.0, 3.0], [0.0, 0.5, 0.5, None, 0.5, 1.75])
    assert value(fleet, "feltsafe_video_freezes_total", role="client") == 3.0
    assert value(fleet, "feltsafe_video_frozen_seconds_total", role="client") == 1.75
    assert value(fleet, "feltsafe_video_freezes_total", role="therapist") == 0.0


def test_a_count_that_went_down_is_a_new_stream_and_counts_whole() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    _feed_freezes(sink, [2.0, 3.0, 1.0, 2.0], [1.0, 1.5, 0.25, 0.5])  # a new publisher at t=2
    assert value(fleet, "feltsafe_video_freezes_total", role="client") == 5.0
    assert value(fleet, "feltsafe_video_frozen_seconds_total", role="client") == 2.0


def test_counters_catch_up_at_the_end_of_the_session() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_snapshot(0.0, snapshot(client__video__freeze_count=0.0))
    sink.on_snapshot(0.5, snapshot(client__video__freeze_count=1.0))  # not a sample tick
    assert value(fleet, "feltsafe_video_freezes_total", role="client") == 0.0
    sink.on_ended(0.6)
    assert value(fleet, "feltsafe_video_freezes_total", role="client") == 1.0


segments = st.lists(
    st.lists(st.one_of(st.none(), st.integers(0, 5)), min_size=1, max_size=12),
    min_size=1,
    max_size=4,
)


@given(segments)
def test_a_tally_counts_each_stream_exactly_once(streams: list[list[int | None]]) -> None:
    """Streams of non-decreasing counts, each from a new source, with unknown gaps."""
    tally = CumulativeTally()
    total = 0.0
    expected = 0.0
    for steps in streams:
        source = object()
        count = 0
        for step in steps:
            if step is None:
                continue  # unknown this tick: nothing is read
            count += step
            total += tally.increment("freezes", count, source=source)
        expected += count
    assert total == expected


def test_ingest_errors_count_by_difference_per_source() -> None:
    fleet = FleetMetrics(rules=RULES)
    first, second = object(), object()
    readings: list[list[IngestCount]] = [
        [IngestCount("bad_rtp", "client-audio", first, 2)],
        [IngestCount("bad_rtp", "client-audio", first, 5)],
        [IngestCount("bad_rtp", "client-audio", second, 1)],  # a new publisher's stream
        [IngestCount("bad_rtp", "client-audio", second, 1), IngestCount("bad_audio", "l", 0, 4)],
    ]
    feed = iter(readings)
    sink = MetricsSink(fleet, info(), read_ingest=lambda: next(feed))
    for second_ in range(4):
        sink.on_snapshot(float(second_), snapshot())
    assert value(fleet, "feltsafe_ingest_errors_total", error="bad_rtp") == 6.0
    assert value(fleet, "feltsafe_ingest_errors_total", error="bad_audio") == 4.0


# -- session-minutes, talk share, interruptions ---------------------------------------


def test_session_minutes_accumulate_by_mode_to_the_end() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info(mode="metadata", started_at=10.0))
    for i in range(361):  # 90 s of ticks
        sink.on_snapshot(10.0 + i * 0.25, snapshot())
    assert value(fleet, "feltsafe_session_minutes_total", mode="metadata") == pytest.approx(1.5)
    sink.on_ended(10.0 + 95.0)
    assert value(fleet, "feltsafe_session_minutes_total", mode="metadata") == pytest.approx(95 / 60)
    assert value(fleet, "feltsafe_session_minutes_total", mode="full") == 0.0


def _talk(therapist: float | None, client: float | None) -> dict[str, SignalValue]:
    return snapshot(
        conversation__therapist__talk_time_s=therapist, conversation__client__talk_time_s=client
    )


def test_talk_share_is_the_share_of_talk_time_within_each_session_minute() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_snapshot(0.0, _talk(0.0, 0.0))
    sink.on_snapshot(30.0, _talk(20.0, 5.0))
    sink.on_snapshot(60.0, _talk(36.0, 12.0))  # minute 1: therapist 36 s, client 12 s
    sink.on_snapshot(120.0, _talk(38.0, 50.0))  # minute 2: therapist 2 s, client 38 s
    share = "feltsafe_talk_share_ratio"
    assert value(fleet, f"{share}_count", role="therapist") == 2.0
    assert value(fleet, f"{share}_sum", role="therapist") == pytest.approx(0.75 + 0.05)
    assert value(fleet, f"{share}_sum", role="client") == pytest.approx(0.25 + 0.95)
    assert value(fleet, f"{share}_bucket", role="therapist", le="0.1") == 1.0


def test_a_silent_minute_or_an_unmeasured_one_gives_no_talk_share() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_snapshot(60.0, _talk(0.0, 0.0))  # nobody spoke in minute 1
    sink.on_snapshot(120.0, _talk(None, 10.0))  # the therapist's speech unknown
    sink.on_snapshot(180.0, _talk(5.0, 20.0))  # minute 3 starts from an unknown figure
    assert value(fleet, "feltsafe_talk_share_ratio_count", role="client") == 0.0
    assert value(fleet, "feltsafe_interruptions_per_minute_count", role="client") == 1.0


def _interruption(by: Role, successful: bool = True) -> SessionEvent:
    event = InterruptionDetected(t=1.0, by=by, of=by.other, overlap=0.4, successful=successful)
    return SessionEvent(1.0, None, None, event)


def test_interruptions_are_counted_per_role_per_session_minute() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_snapshot(0.0, _talk(0.0, 0.0))
    sink.on_events(
        10.0,
        [
            _interruption(Role.THERAPIST),
            _interruption(Role.THERAPIST),
            _interruption(Role.CLIENT, successful=False),
        ],
    )
    sink.on_snapshot(60.0, _talk(20.0, 25.0))
    sink.on_snapshot(120.0, _talk(30.0, 40.0))  # minute 2: no interruption
    rate = "feltsafe_interruptions_per_minute"
    assert value(fleet, f"{rate}_count", role="therapist") == 2.0
    assert value(fleet, f"{rate}_sum", role="therapist") == 2.0
    assert value(fleet, f"{rate}_bucket", role="therapist", le="0.0") == 1.0
    assert value(fleet, f"{rate}_sum", role="client") == 0.0


@pytest.mark.parametrize(("ends_after", "samples"), [(45.0, 1.0), (20.0, 0.0)])
def test_the_last_partial_minute_counts_when_it_lasted_half_a_minute(
    ends_after: float, samples: float
) -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_snapshot(0.0, _talk(0.0, 0.0))
    sink.on_events(5.0, [_interruption(Role.CLIENT)])
    sink.on_snapshot(ends_after, _talk(3.0, 9.0))
    sink.on_ended(ends_after)
    rate = "feltsafe_interruptions_per_minute"
    assert value(fleet, f"{rate}_count", role="client") == samples
    if samples:
        assert value(fleet, f"{rate}_sum", role="client") == pytest.approx(60.0 / ends_after)
        assert value(fleet, "feltsafe_talk_share_ratio_sum", role="client") == 0.75


# -- flags and the indicator ----------------------------------------------------------


def test_flags_count_when_raised_by_rule_and_severity_only() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    raised = flag("client_video_frozen", Severity.WARN)
    sink.on_flag_events(
        [
            FlagRaised(raised),
            FlagUpdated(dataclasses.replace(raised, severity=Severity.ALERT)),
            FlagCleared(dataclasses.replace(raised, end=9.0)),
            FlagRaised(flag("client_sound_poor", Severity.ALERT)),
        ]
    )
    assert value(fleet, "feltsafe_flags_total", rule="client_video_frozen", severity="warn") == 1
    assert value(fleet, "feltsafe_flags_total", rule="client_video_frozen", severity="alert") == 0
    assert value(fleet, "feltsafe_flags_total", rule="client_sound_poor", severity="alert") == 1


def test_a_rule_from_a_reloaded_pack_gets_its_series() -> None:
    fleet = FleetMetrics(rules=RULES)
    MetricsSink(fleet, info()).on_flag_events([FlagRaised(flag("new_rule", Severity.INFO))])
    assert value(fleet, "feltsafe_flags_total", rule="new_rule", severity="info") == 1
    assert value(fleet, "feltsafe_flags_total", rule="new_rule", severity="alert") == 0
    assert value(fleet, "feltsafe_flags_total", rule=RULES[0], severity="warn") == 0


def test_indicator_level_changes_count_by_new_level_not_by_words() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    for level, message in [
        (Level.WARN, "a"),
        (Level.WARN, "b"),  # new words, same level
        (Level.ALERT, "c"),
        (Level.OK, None),
    ]:
        sink.on_indicator_state(IndicatorState(level, message, None, since=1.0))
    changes = "feltsafe_indicator_level_changes_total"
    assert [value(fleet, changes, level=lv) for lv in ("ok", "warn", "alert", "interrupted")] == [
        1.0,
        1.0,
        1.0,
        0.0,
    ]


def test_nothing_is_counted_after_the_session_ended() -> None:
    fleet = FleetMetrics(rules=RULES)
    sink = MetricsSink(fleet, info())
    sink.on_ended(5.0)
    sink.on_snapshot(6.0, snapshot(client__audio__jitter_ms=10.0))
    sink.on_flag_events([FlagRaised(flag("client_sound_poor"))])
    sink.on_indicator_state(IndicatorState(Level.ALERT, "x", None, since=6.0))
    assert value(fleet, "feltsafe_stream_jitter_seconds_count", role="client", kind="audio") == 0
    assert value(fleet, "feltsafe_flags_total", rule="client_sound_poor", severity="warn") == 0
    assert value(fleet, "feltsafe_indicator_level_changes_total", level="alert") == 0


# -- tick lag -------------------------------------------------------------------------


def test_tick_lag_is_how_late_the_timer_ran() -> None:
    endpoint = MetricsEndpoint(SessionRegistry())
    endpoint.observe_tick(10.0, 10.3)
    endpoint.observe_tick(11.0, 10.9999)  # a hair early is on time
    endpoint.observe_tick(float("inf"), 12.0)  # not armed: nothing to measure
    registry = endpoint.collectors
    lag = "feltsafe_tick_lag_seconds"
    assert registry.get_sample_value(f"{lag}_count") == 2.0
    assert registry.get_sample_value(f"{lag}_bucket", {"le": "0.005"}) == 1.0
    assert registry.get_sample_value(f"{lag}_bucket", {"le": "0.25"}) == 1.0
    assert registry.get_sample_value(f"{lag}_bucket", {"le": "0.5"}) == 2.0


async def test_a_live_session_reports_each_timer_firing_with_its_schedule() -> None:
    registry = SessionRegistry(session_config=SessionConfig(tick_interval=0.01))
    endpoint = MetricsEndpoint(registry)
    endpoint.attach()
    fired: asyncio.Queue[tuple[float, float]] = asyncio.Queue()
    registry.tick_observers.append(lambda scheduled, ran: fired.put_nowait((scheduled, ran)))
    live = registry.open("s1")
    try:
        scheduled, ran = await asyncio.wait_for(fired.get(), timeout=5.0)
    finally:
        await registry.aclose()
    assert live.session.started_at < scheduled <= ran
    count = endpoint.collectors.get_sample_value("feltsafe_tick_lag_seconds_count")
    assert count is not None
    assert count >= 1.0


# -- /metrics on the real app -----------------------------------------------------------


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = create_app(Settings(secret=SECRET))
    with TestClient(app, base_url="http://127.0.0.1:8750") as test_client:
        yield test_client


def in_loop(client: TestClient, call: Callable[[], Any]) -> Any:
    assert client.portal is not None
    return client.portal.call(call)


Series = set[tuple[str, tuple[tuple[str, str], ...]]]


Sample = tuple[str, tuple[tuple[str, str], ...]]


def scrape(client: TestClient) -> tuple[str, Series, dict[Sample, float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    return response.text, set(values), values


def run_sessions(client: TestClient, count: int, *, seconds: int = 5) -> list[str]:
    """``count`` live sessions in the app, their sinks fed realistic ticks and events."""
    app = client.app
    ids = [f"room-{i:03d}-secret" for i in range(count)]

    def drive() -> None:
        rng = random.Random(count)
        registry, metrics = app.state.registry, app.state.metrics  # type: ignore[attr-defined]
        for i, session_id in enumerate(ids):
            live = registry.open(session_id, mode=Mode.METADATA if i % 3 else Mode.FULL)
            for role in Role:
                live.session.attach(role, Attachment.BEACON, now=live.clock())
            sink = metrics.sink_of(session_id)
            start = live.session.started_at
            for tick in range(seconds * 4):
                sink.on_snapshot(start + tick * 0.25, realistic(rng, tick * 0.25))
            sink.on_events(start + 1, [_interruption(Role.THERAPIST)])
            sink.on_flag_events([FlagRaised(flag("client_video_frozen"))])
            sink.on_indicator_state(IndicatorState(Level.WARN, "m", None, since=start))

    in_loop(client, drive)
    return ids


def test_one_and_two_hundred_sessions_export_the_same_series(client: TestClient) -> None:
    one_ids = run_sessions(client, 1)
    _, one, one_values = scrape(client)
    in_loop(client, client.app.state.registry.aclose)  # type: ignore[attr-defined]

    app = create_app(Settings(secret=SECRET))
    with TestClient(app, base_url="http://127.0.0.1:8750") as many_client:
        many_ids = run_sessions(many_client, 200)
        text, many, many_values = scrape(many_client)

    assert one == many
    assert len(many) < 1000  # O(series), not O(sessions x series)
    assert all(session_id not in text for session_id in [*one_ids, *many_ids])
    flags = ("feltsafe_flags_total", (("rule", "client_video_frozen"), ("severity", "warn")))
    assert (one_values[flags], many_values[flags]) == (1.0, 200.0)
    active = many_values[("feltsafe_sessions_active", (("mode", "metadata"),))]
    assert active == 133.0  # the values differ with the sessions; the series do not


def _wait_for_no_websocket_clients(client: TestClient) -> None:
    for _ in range(200):  # bounded: 200 scrapes
        _, _, values = scrape(client)
        if not any(
            count for (name, _), count in values.items() if name == "feltsafe_websocket_clients"
        ):
            return
    raise AssertionError("websocket handlers did not finish after their clients closed")


def test_gauges_read_the_live_sessions_and_websocket_clients(client: TestClient) -> None:
    def open_sessions() -> None:
        registry = client.app.state.registry  # type: ignore[attr-defined]
        registry.open("a", mode=Mode.FULL)
        registry.open("b", mode=Mode.FULL)
        live = registry.open("c", mode=Mode.METADATA)
        live.session.attach(Role.CLIENT, Attachment.BEACON, now=live.clock())

    in_loop(client, open_sessions)
    therapist = issue_token(SECRET, role=TokenRole.THERAPIST, session="a")
    publisher = issue_token(SECRET, role=TokenRole.PUBLISHER, session="b", participant=Role.CLIENT)
    with (
        client.websocket_connect("/ws/indicator/a") as indicator,
        client.websocket_connect("/ws/beacon/b/client") as beacon,
    ):
        indicator.send_text(json.dumps({"type": "auth", "token": therapist}))
        assert indicator.receive_json()["type"] == "state"
        beacon.send_text(publisher)
        assert beacon.receive_json()["type"] == "ready"
        _, _, values = scrape(client)
        # Let both handlers finish before the test client cancels their tasks (its
        # cancel can land inside a handler's await and leak out of the portal).
        indicator.close()
        beacon.close()
        _wait_for_no_websocket_clients(client)
    assert values[("feltsafe_sessions_active", (("mode", "full"),))] == 2.0
    assert values[("feltsafe_sessions_active", (("mode", "metadata"),))] == 1.0
    assert values[("feltsafe_participants_connected", (("role", "client"),))] == 2.0
    assert values[("feltsafe_participants_connected", (("role", "therapist"),))] == 0.0
    assert values[("feltsafe_websocket_clients", (("websocket", "indicator"),))] == 1.0
    assert values[("feltsafe_websocket_clients", (("websocket", "beacon"),))] == 1.0
    assert values[("feltsafe_scrape_duration_seconds", ())] >= 0.0


def test_rejected_whip_offers_and_beacon_frames_are_ingest_errors(client: TestClient) -> None:
    publisher = issue_token(SECRET, role=TokenRole.PUBLISHER, session="s", participant=Role.CLIENT)
    sdp = {"Content-Type": "application/sdp"}
    assert client.post("/whip/s/client", content="v=0", headers=sdp).status_code == 401
    forged = {**sdp, "Authorization": "Bearer not-a-token"}
    assert client.post("/whip/s/client", content="v=0", headers=forged).status_code == 401
    good = {"Authorization": f"Bearer {publisher}"}
    assert client.post("/whip/s/client", content="x", headers={**good, **sdp}).status_code == 400
    not_sdp = {**good, "Content-Type": "text/plain"}
    assert client.post("/whip/s/client", content="v=0", headers=not_sdp).status_code == 415
    assert client.post("/whip/s/nobody", content="v=0", headers=sdp).status_code == 404
    with client.websocket_connect("/ws/beacon/s/client") as beacon:
        beacon.send_text(publisher)
        assert beacon.receive_json()["type"] == "ready"
        beacon.send_text("{not json")
        assert beacon.receive_json() == {"type": "error", "error": "malformed_json"}
    counters = client.app.state.beacon.counters  # type: ignore[attr-defined]
    assert counters.rejected[BeaconError.MALFORMED_JSON] == 1
    _, _, values = scrape(client)
    errors = {
        labels[0][1]: count
        for (name, labels), count in values.items()
        if name == "feltsafe_ingest_errors_total" and count
    }
    assert errors == {"bad_token": 2.0, "malformed_sdp": 2.0, "bad_beacon_message": 1.0}
    _, _, again = scrape(client)  # a second scrape adds nothing
    assert again[("feltsafe_ingest_errors_total", (("error", "bad_token"),))] == 2.0


def test_flags_and_level_changes_reach_the_metrics_through_the_sessions_indicator(
    client: TestClient,
) -> None:
    """The rules sink hands the engine's flag events to the indicator sink; the metrics
    sink listens there, and to the indicator channel for the level it shows."""

    def run() -> None:
        live = client.app.state.registry.open("s1")  # type: ignore[attr-defined]
        indicator_sink = client.app.state.indicator.get("s1").sink  # type: ignore[attr-defined]
        start = live.session.started_at
        frozen = dataclasses.replace(
            flag("client_video_frozen", start=start), audience=frozenset({Audience.THERAPIST})
        )
        indicator_sink.on_flag_events([FlagRaised(frozen)])
        for tick in range(1, 41):  # 10 s with the flag up
            calm = snapshot(client__media__interrupted=False, therapist__media__interrupted=False)
            indicator_sink.on_snapshot(start + tick * 0.25, calm)

    in_loop(client, run)
    _, _, values = scrape(client)
    raised = {
        labels: count
        for (name, labels), count in values.items()
        if name == "feltsafe_flags_total" and count
    }
    assert raised == {(("rule", "client_video_frozen"), ("severity", "warn")): 1.0}
    assert values[("feltsafe_indicator_level_changes_total", (("level", "warn"),))] == 1.0
    in_loop(client, client.app.state.registry.aclose)  # type: ignore[attr-defined]
    _, _, after = scrape(client)  # the indicator's reset at the end is not a change seen
    assert after[("feltsafe_indicator_level_changes_total", (("level", "ok"),))] == 0.0


def test_the_loaded_packs_rules_are_series_from_the_start(client: TestClient) -> None:
    _, series, _ = scrape(client)
    pack = load_default_pack()
    rules = {dict(labels)["rule"] for name, labels in series if name == "feltsafe_flags_total"}
    assert rules == {rule.id for rule in pack.rules}
    renamed = dataclasses.replace(pack.rules[0], id="renamed_in_the_new_pack")
    client.app.state.metrics.on_pack_loaded(dataclasses.replace(pack, rules=(renamed,)))  # type: ignore[attr-defined]
    _, after, _ = scrape(client)
    assert after > series  # old rules keep their series; the new one is added
    assert (
        "feltsafe_flags_total",
        (("rule", "renamed_in_the_new_pack"), ("severity", "info")),
    ) in after


def test_a_hot_reloaded_pack_is_followed_at_the_next_scrape() -> None:
    pack = load_default_pack()
    current = [pack]
    endpoint = MetricsEndpoint(SessionRegistry(), current_pack=lambda: current[0])
    flags = {"rule": "added_by_the_reload", "severity": "warn"}
    assert endpoint.collectors.get_sample_value("feltsafe_flags_total", flags) is None
    added = dataclasses.replace(pack.rules[0], id="added_by_the_reload")
    current[0] = dataclasses.replace(pack, rules=(*pack.rules, added))
    assert endpoint.collectors.get_sample_value("feltsafe_flags_total", flags) == 0.0
    kept = {"rule": pack.rules[1].id, "severity": "alert"}
    assert endpoint.collectors.get_sample_value("feltsafe_flags_total", kept) == 0.0
