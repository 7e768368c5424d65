"""Typed builders for Grafana dashboards over the metric catalogue.

Theory of operation: a panel's query is built from `MetricSpec` entries of
`monitor.metrics.CATALOGUE`, never from a hand-typed metric name, and every `by (...)`
label is checked against the metric's own labels when the query is built. Renaming a
metric in the catalogue therefore renames it in every dashboard; a typo fails at import
time, and the real-Prometheus test proves each query returns data from a live monitor.

The JSON follows Grafana's dashboard model (schemaVersion 39): panels carry unique ids,
a gridPos, a datasource reference by uid (the provisioned Prometheus data source), and
targets with `expr`, `legendFormat` and `refId`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from monitor.metrics import MetricSpec, MetricType

DATASOURCE_UID = "feltsafe-prometheus"
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 39


def _check_labels(spec: MetricSpec, labels: Sequence[str]) -> str:
    unknown = (
        set(labels) - set(spec.labels) - ({"le"} if spec.type is MetricType.HISTOGRAM else set())
    )
    if unknown:
        raise ValueError(f"{spec.name} has no label(s) {sorted(unknown)}")
    return ", ".join(labels)


def rate(spec: MetricSpec, window: str = "$__rate_interval", *, by: Sequence[str] = ()) -> str:
    """`sum by (...) (rate(counter_total[window]))`."""
    if spec.type is not MetricType.COUNTER:
        raise ValueError(f"rate() over {spec.name}, a {spec.type}")
    return f"sum by ({_check_labels(spec, by)}) (rate({spec.sample_name}[{window}]))"


def increase(spec: MetricSpec, window: str, *, by: Sequence[str] = ()) -> str:
    if spec.type is not MetricType.COUNTER:
        raise ValueError(f"increase() over {spec.name}, a {spec.type}")
    return f"sum by ({_check_labels(spec, by)}) (increase({spec.sample_name}[{window}]))"


def gauge(spec: MetricSpec, *, by: Sequence[str] = ()) -> str:
    if spec.type is not MetricType.GAUGE:
        raise ValueError(f"gauge() over {spec.name}, a {spec.type}")
    return f"sum by ({_check_labels(spec, by)}) ({spec.name})"


def quantile(
    q: float, spec: MetricSpec, window: str = "$__rate_interval", *, by: Sequence[str] = ()
) -> str:
    """`histogram_quantile(q, sum by (le, ...) (rate(h_bucket[window])))`."""
    if spec.type is not MetricType.HISTOGRAM:
        raise ValueError(f"quantile() over {spec.name}, a {spec.type}")
    labels = _check_labels(spec, ("le", *by))
    return f"histogram_quantile({q}, sum by ({labels}) (rate({spec.name}_bucket[{window}])))"


def share_below(spec: MetricSpec, edge: float, window: str, *, by: Sequence[str] = ()) -> str:
    """Fraction of a histogram's samples at or below `edge` (an existing bucket edge)."""
    if spec.type is not MetricType.HISTOGRAM or edge not in spec.buckets:
        raise ValueError(f"{edge} is not a bucket edge of {spec.name}")
    group = _check_labels(spec, by)
    bucket = f'increase({spec.name}_bucket{{le="{edge!r}"}}[{window}])'
    count = f"increase({spec.name}_count[{window}])"
    return f"sum by ({group}) ({bucket}) / clamp_min(sum by ({group}) ({count}), 1)"


def buckets(spec: MetricSpec, window: str) -> str:
    """Per-bucket increase, for a heatmap of a histogram over time."""
    if spec.type is not MetricType.HISTOGRAM:
        raise ValueError(f"buckets() over {spec.name}, a {spec.type}")
    return f"sum by (le) (increase({spec.name}_bucket[{window}]))"


class PanelType(StrEnum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    HEATMAP = "heatmap"
    BARGAUGE = "bargauge"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""
    format: str = "time_series"


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    type: PanelType
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = ("feltsafe",)
    refresh: str = "30s"
    time_from: str = "now-6h"

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": list(self.tags),
            "timezone": "browser",
            "editable": True,
            "refresh": self.refresh,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "time": {"from": self.time_from, "to": "now"},
            "templating": {"list": []},
            "annotations": {"list": []},
            "panels": _layout(self.panels),
        }


def _layout(panels: Sequence[Panel]) -> list[dict[str, Any]]:
    """Left-to-right rows on Grafana's 24-column grid; ids in order from 1."""
    out: list[dict[str, Any]] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        out.append(
            {
                "id": panel_id,
                "type": str(panel.type),
                "title": panel.title,
                "description": panel.description,
                "datasource": dict(DATASOURCE),
                "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": dict(panel.options),
                "targets": [
                    {
                        "refId": chr(ord("A") + i),
                        "datasource": dict(DATASOURCE),
                        "expr": query.expr,
                        "legendFormat": query.legend,
                        "format": query.format,
                    }
                    for i, query in enumerate(panel.queries)
                ],
            }
        )
        x += panel.width
        row_height = max(row_height, panel.height)
    return out
