"""Fleet metrics for operations: the catalogue, the aggregates, the scrape-time collector.

Theory of operation (prometheus/client_python "custom collectors"): sessions do not own
Prometheus objects. Each session *observes* into one process-wide `FleetMetrics`
(plain counters and fixed-bucket histograms keyed by closed-set label values), at most
once per second per stream, from its own tick. At scrape time `FeltsafeCollector` turns
those aggregates, plus gauges read from the live sessions, into metric families. So a
scrape costs O(series), never O(sessions x series), and never blocks media processing
for long (the benchmark measures it at 50 sessions; the target is under 10 ms).

Identifiers never become labels: every label takes its values from a closed set named
in the catalogue (role, kind, mode, severity, level, websocket kind, error kind) or, for
`rule`, from the loaded rule pack. Every combination is exported from the start (zero),
so the set of series does not depend on how many sessions ran (a test checks 1 vs 200).

Naming follows Prometheus conventions: `feltsafe_` prefix, base units (seconds,
ratios), `_total` for counters.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from probes.base import MediaKind, Role


class MetricType(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


# Closed label sets. `rule` is closed too, but by the loaded pack (FleetMetrics(rules=...)).
MODES = ("full", "metadata")
SEVERITIES = ("info", "warn", "alert")
LEVELS = ("ok", "warn", "alert", "interrupted")
WEBSOCKET_KINDS = ("beacon", "indicator")
INGEST_ERROR_KINDS = (
    "malformed_sdp",
    "unsupported_codec",
    "bad_token",
    "bad_rtp",
    "bad_audio",
    "bad_beacon_message",
    "oversized_message",
    "rate_limited",
    "bad_origin",
)
LABEL_VALUES: Mapping[str, tuple[str, ...]] = {
    "role": tuple(Role),
    "kind": tuple(MediaKind),
    "mode": MODES,
    "severity": SEVERITIES,
    "level": LEVELS,
    "websocket": WEBSOCKET_KINDS,
    "error": INGEST_ERROR_KINDS,
}

# Bucket edges where the thresholds that matter sit (DESIGN.md's table): loss 2.5/7.5 %,
# jitter 30 ms, RTT 300/500 ms, MOS 3.1/3.6.
LOSS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.2, 0.4)
JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0)
RTT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0)
MOS_BUCKETS = (1.5, 2.0, 2.5, 3.1, 3.6, 4.0, 4.2, 4.4, 4.5)
SHARE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
INTERRUPTION_BUCKETS = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: `name` is the exported family name (counters without `_total`)."""

    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def sample_name(self) -> str:
        """The name a PromQL query uses (the `_total` sample for counters)."""
        return f"{self.name}_total" if self.type is MetricType.COUNTER else self.name


def _spec(
    name: str,
    type_: MetricType,
    help_: str,
    labels: tuple[str, ...] = (),
    buckets: tuple[float, ...] = (),
) -> MetricSpec:
    return MetricSpec(f"feltsafe_{name}", type_, help_, labels, buckets)


_G, _C, _H = MetricType.GAUGE, MetricType.COUNTER, MetricType.HISTOGRAM

CATALOGUE: tuple[MetricSpec, ...] = (
    _spec("sessions_active", _G, "Live sessions, by monitoring mode.", ("mode",)),
    _spec("participants_connected", _G, "Participants whose media is arriving.", ("role",)),
    _spec(
        "stream_jitter_seconds",
        _H,
        "RFC 3550 jitter, one sample per stream-second.",
        ("role", "kind"),
        JITTER_BUCKETS,
    ),
    _spec(
        "stream_loss_ratio",
        _H,
        "Packet loss ratio over 5 s, one sample per stream-second.",
        ("role", "kind"),
        LOSS_BUCKETS,
    ),
    _spec(
        "path_rtt_seconds",
        _H,
        "Round-trip time, one sample per participant-second.",
        ("role",),
        RTT_BUCKETS,
    ),
    _spec(
        "audio_mos",
        _H,
        "E-model MOS of an audio path, one sample per participant-second.",
        ("role",),
        MOS_BUCKETS,
    ),
    _spec("video_freezes", _C, "Video freezes (W3C webrtc-stats freezeCount).", ("role",)),
    _spec("video_frozen_seconds", _C, "Total frozen video time.", ("role",)),
    _spec(
        "talk_share_ratio",
        _H,
        "A role's share of talk time, one sample per session-minute.",
        ("role",),
        SHARE_BUCKETS,
    ),
    _spec(
        "interruptions_per_minute",
        _H,
        "Successful interruptions by a role, one sample per session-minute.",
        ("role",),
        INTERRUPTION_BUCKETS,
    ),
    _spec("session_minutes", _C, "Session-minutes monitored (denominator for rates).", ("mode",)),
    _spec("flags", _C, "Flags raised by the rules engine.", ("rule", "severity")),
    _spec(
        "indicator_level_changes",
        _C,
        "Therapist indicator level changes, by new level.",
        ("level",),
    ),
    _spec(
        "tick_lag_seconds", _H, "How late a session tick ran behind its schedule.", (), LAG_BUCKETS
    ),
    _spec("websocket_clients", _G, "Open websocket connections.", ("websocket",)),
    _spec("ingest_errors", _C, "Bad input rejected or counted, by kind.", ("error",)),
    _spec("scrape_duration_seconds", _G, "Time the previous /metrics collection took."),
)

BY_NAME: Mapping[str, MetricSpec] = {spec.name: spec for spec in CATALOGUE}


class _Histogram:
    __slots__ = ("counts", "edges", "sum")

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = edges
        self.counts = [0] * (len(edges) + 1)  # last slot: above every edge (+Inf)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.edges, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for edge, count in zip((*self.edges, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if edge == float("inf") else repr(edge), float(running)))
        return out


LabelKey = tuple[str, ...]
GaugeReader = Callable[[], Iterable[tuple[str, LabelKey, float]]]


@dataclass
class FleetMetrics:
    """Process-wide aggregates that sessions observe into (all from the event loop)."""

    rules: Sequence[str] = ()
    _counters: dict[tuple[str, LabelKey], float] = field(default_factory=dict, init=False)
    _histograms: dict[tuple[str, LabelKey], _Histogram] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.rules = tuple(dict.fromkeys(self.rules))
        self._declare()

    def _declare(self) -> None:
        """Create every series of the closed sets that does not exist yet, at zero."""
        for spec in CATALOGUE:
            for key in self.label_sets(spec):
                if spec.type is MetricType.COUNTER:
                    self._counters.setdefault((spec.name, key), 0.0)
                elif spec.type is MetricType.HISTOGRAM and (spec.name, key) not in self._histograms:
                    self._histograms[(spec.name, key)] = _Histogram(spec.buckets)

    def add_rules(self, rules: Iterable[str]) -> None:
        """Widen the `rule` set (a hot-reloaded pack's new rule ids), keeping every count.

        Rules that went away keep their series: a counter that vanished would read as a
        reset to Prometheus, and their past flags still count.
        """
        new = [rule for rule in dict.fromkeys(rules) if rule not in self.rules]
        if new:
            self.rules = (*self.rules, *new)
            self._declare()

    def label_sets(self, spec: MetricSpec) -> list[LabelKey]:
        """Every label-value combination of a metric: its whole, closed series set."""
        domains = [self.rules if label == "rule" else LABEL_VALUES[label] for label in spec.labels]
        return [tuple(combo) for combo in itertools.product(*domains)]

    def _key(self, name: str, type_: MetricType, labels: Mapping[str, str]) -> tuple[str, LabelKey]:
        spec = BY_NAME[name]
        if spec.type is not type_:
            raise TypeError(f"{name} is a {spec.type}, not a {type_}")
        if set(labels) != set(spec.labels):
            raise ValueError(f"{name} takes labels {spec.labels}, got {sorted(labels)}")
        return name, tuple(str(labels[label]) for label in spec.labels)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = self._key(name, MetricType.COUNTER, labels)
        if key not in self._counters:
            raise ValueError(f"{name}: label values {key[1]} are outside the closed set")
        self._counters[key] += amount

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = self._key(name, MetricType.HISTOGRAM, labels)
        histogram = self._histograms.get(key)
        if histogram is None:
            raise ValueError(f"{name}: label values {key[1]} are outside the closed set")
        histogram.observe(value)

    def counter_value(self, name: str, **labels: str) -> float:
        return self._counters[self._key(name, MetricType.COUNTER, labels)]

    def families(self, gauges: Mapping[tuple[str, LabelKey], float]) -> Iterator[Metric]:
        for spec in CATALOGUE:
            labels = list(spec.labels)
            if spec.type is MetricType.COUNTER:
                counter = CounterMetricFamily(spec.name, spec.help, labels=labels)
                for key in self.label_sets(spec):
                    counter.add_metric(list(key), self._counters[(spec.name, key)])
                yield counter
            elif spec.type is MetricType.HISTOGRAM:
                histogram = HistogramMetricFamily(spec.name, spec.help, labels=labels)
                for key in self.label_sets(spec):
                    h = self._histograms[(spec.name, key)]
                    histogram.add_metric(list(key), h.cumulative(), h.sum)
                yield histogram
            else:
                gauge = GaugeMetricFamily(spec.name, spec.help, labels=labels)
                for key in self.label_sets(spec):
                    gauge.add_metric(list(key), gauges.get((spec.name, key), 0.0))
                yield gauge


class FeltsafeCollector(Collector):
    """Builds every family at scrape time. `read_gauges` reports live-session gauges as
    (metric name, label values, value); anything it omits is exported as 0."""

    def __init__(
        self,
        metrics: FleetMetrics,
        read_gauges: GaugeReader,
        clock: Callable[[], float],
    ) -> None:
        self._metrics = metrics
        self._read_gauges = read_gauges
        self._clock = clock
        self._last_scrape = 0.0

    def collect(self) -> Iterator[Metric]:
        started = self._clock()
        gauges: dict[tuple[str, LabelKey], float] = {}
        for name, key, value in self._read_gauges():
            gauges[(name, key)] = gauges.get((name, key), 0.0) + value
        gauges[("feltsafe_scrape_duration_seconds", ())] = self._last_scrape
        yield from self._metrics.families(gauges)
        self._last_scrape = self._clock() - started
