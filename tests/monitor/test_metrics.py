from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitor.metrics import (
    CATALOGUE,
    LABEL_VALUES,
    FeltsafeCollector,
    FleetMetrics,
    LabelKey,
    MetricType,
)

RULES = ("frozen_video_during_disclosure", "poor_network_mos")


def _registry(metrics: FleetMetrics, sessions: int) -> CollectorRegistry:
    def gauges() -> Iterable[tuple[str, LabelKey, float]]:
        for i in range(sessions):
            yield "feltsafe_sessions_active", ("full" if i % 2 else "metadata",), 1.0
            yield "feltsafe_participants_connected", ("therapist",), 1.0

    registry = CollectorRegistry()
    registry.register(FeltsafeCollector(metrics, gauges, clock=lambda: 0.0))
    return registry


def _series(registry: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {
        (sample.name, tuple(sorted(sample.labels.items())))
        for family in registry.collect()
        for sample in family.samples
    }


def _simulate_sessions(metrics: FleetMetrics, sessions: int) -> None:
    for i in range(sessions):
        metrics.observe("feltsafe_stream_loss_ratio", 0.01 * (i % 7), role="client", kind="audio")
        metrics.observe("feltsafe_audio_mos", 4.1, role="therapist")
        metrics.inc("feltsafe_flags", rule=RULES[i % 2], severity="warn")
        metrics.inc("feltsafe_video_freezes", role="client")


def test_the_series_set_does_not_grow_with_the_number_of_sessions() -> None:
    one, many = FleetMetrics(rules=RULES), FleetMetrics(rules=RULES)
    _simulate_sessions(one, 1)
    _simulate_sessions(many, 200)
    assert _series(_registry(one, 1)) == _series(_registry(many, 200))


def test_gauges_sum_over_live_sessions_and_absent_ones_read_zero() -> None:
    registry = _registry(FleetMetrics(rules=RULES), sessions=5)
    assert registry.get_sample_value("feltsafe_sessions_active", {"mode": "full"}) == 2.0
    assert registry.get_sample_value("feltsafe_sessions_active", {"mode": "metadata"}) == 3.0
    assert registry.get_sample_value("feltsafe_participants_connected", {"role": "client"}) == 0


def test_a_loss_sample_lands_in_the_first_bucket_at_or_above_it() -> None:
    metrics = FleetMetrics(rules=RULES)
    metrics.observe("feltsafe_stream_loss_ratio", 0.03, role="client", kind="audio")
    registry = _registry(metrics, 0)
    labels = {"role": "client", "kind": "audio"}
    below = registry.get_sample_value(
        "feltsafe_stream_loss_ratio_bucket", {**labels, "le": "0.025"}
    )
    at = registry.get_sample_value("feltsafe_stream_loss_ratio_bucket", {**labels, "le": "0.05"})
    assert (below, at) == (0.0, 1.0)
    assert registry.get_sample_value("feltsafe_stream_loss_ratio_sum", labels) == 0.03
    assert registry.get_sample_value("feltsafe_stream_loss_ratio_count", labels) == 1.0


def test_counters_export_with_total_suffix() -> None:
    metrics = FleetMetrics(rules=RULES)
    metrics.inc("feltsafe_flags", rule=RULES[0], severity="alert")
    text = generate_latest(_registry(metrics, 0)).decode()
    expected = f'feltsafe_flags_total{{rule="{RULES[0]}",severity="alert"}} 1.0'
    assert expected in text


@pytest.mark.parametrize(
    ("labels", "error"),
    [
        ({"role": "client", "kind": "audio", "session": "abc"}, ValueError),
        ({"role": "alice", "kind": "audio"}, ValueError),
    ],
)
def test_labels_outside_the_closed_sets_are_refused(labels: dict[str, str], error: type) -> None:
    with pytest.raises(error):
        FleetMetrics(rules=RULES).observe("feltsafe_stream_loss_ratio", 0.1, **labels)


def test_an_unknown_rule_is_refused_as_a_label_value() -> None:
    with pytest.raises(ValueError, match="closed set"):
        FleetMetrics(rules=RULES).inc("feltsafe_flags", rule="made-up", severity="warn")


def test_the_catalogue_follows_prometheus_naming_and_takes_no_identifiers() -> None:
    for spec in CATALOGUE:
        assert spec.name.startswith("feltsafe_")
        assert not spec.name.endswith("_total")
        assert set(spec.labels) <= set(LABEL_VALUES) | {"rule"}
        if spec.type is MetricType.HISTOGRAM:
            assert list(spec.buckets) == sorted(spec.buckets)
    assert len({spec.name for spec in CATALOGUE}) == len(CATALOGUE)


def test_the_readme_documents_every_metric() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [spec.sample_name for spec in CATALOGUE if f"`{spec.sample_name}`" not in readme]
    assert not missing
