"""Shared test fixtures for rule tests: a healthy session, and a recording engine run."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources

from alerts.engine import (
    Engine,
    EngineEvent,
    FlagCleared,
    FlagRaised,
    FlagUpdated,
    RuleState,
    RuleStateChanged,
)
from alerts.model import Flag
from alerts.pack import Pack, parse_pack
from probes.signals import CATALOGUE, SignalValue

# A calm session: every value well inside every default threshold.
_HEALTHY_BY_METRIC: dict[str, SignalValue] = {
    "audio.jitter_ms": 5.0,
    "audio.loss_ratio": 0.0,
    "audio.loss_ratio_total": 0.0,
    "audio.bitrate_bps": 32000.0,
    "audio.since_last_packet_s": 0.02,
    "audio.concealment_ratio": 0.0,
    "audio.echo_leak_db": 40.0,
    "video.jitter_ms": 8.0,
    "video.loss_ratio": 0.0,
    "video.bitrate_bps": 800000.0,
    "video.fps": 30.0,
    "video.frozen": False,
    "video.freeze_s": 0.0,
    "video.freeze_count": 0.0,
    "video.freezes_2m_count": 0.0,
    "video.total_freezes_s": 0.0,
    "network.rtt_ms": 80.0,
    "network.mos": 4.3,
    "media.interrupted": False,
    "speech.active": False,
    "speech.level_db": -60.0,
    "floor_s": 0.0,
    "holds_floor": False,
    "talk_time_s": 300.0,
    "talk_share": 0.5,
    "talk_share_5m": 0.5,
    "talk_share_10m": 0.5,
    "longest_monologue_s": 20.0,
    "interruptions_by_therapist_5m": 0.0,
    "interruptions_by_client_5m": 0.0,
    "interruptions_total": 0.0,
    "backchannels_total": 4.0,
    "overlap_ratio_1m": 0.02,
    "overlap_ratio_5m": 0.02,
    "turns_total": 20.0,
    "gap_median_s": 0.5,
    "disclosure": False,
    "marker": False,
    "one_way_delay_ms": 50.0,
    "elapsed_s": 1200.0,
}


def _healthy() -> dict[str, SignalValue]:
    healthy: dict[str, SignalValue] = {}
    for name in CATALOGUE:
        for metric, value in _HEALTHY_BY_METRIC.items():
            if name.endswith("." + metric):
                healthy[name] = value
                break
    return healthy


HEALTHY: Mapping[str, SignalValue] = _healthy()


@functools.cache
def default_pack() -> Pack:
    text = (resources.files("alerts") / "default_pack.yaml").read_text()
    return parse_pack(text, source="default_pack.yaml")


@dataclass
class Recording:
    """Every event of a run, with the tick it happened on, and the states over time."""

    events: list[tuple[float, EngineEvent]] = field(default_factory=list)
    states: list[tuple[float, dict[str, RuleState]]] = field(default_factory=list)

    def raised(self, rule_id: str) -> list[tuple[float, Flag]]:
        return [
            (t, e.flag)
            for t, e in self.events
            if isinstance(e, FlagRaised) and e.flag.rule_id == rule_id
        ]

    def updated(self, rule_id: str) -> list[tuple[float, Flag]]:
        return [
            (t, e.flag)
            for t, e in self.events
            if isinstance(e, FlagUpdated) and e.flag.rule_id == rule_id
        ]

    def cleared(self, rule_id: str) -> list[tuple[float, Flag]]:
        return [
            (t, e.flag)
            for t, e in self.events
            if isinstance(e, FlagCleared) and e.flag.rule_id == rule_id
        ]

    def raised_rules(self) -> set[str]:
        return {e.flag.rule_id for _, e in self.events if isinstance(e, FlagRaised)}

    def state_at(self, rule_id: str, now: float) -> RuleState:
        for t, states in self.states:
            if t == now:
                return states[rule_id]
        raise KeyError(now)

    def transitions(self, rule_id: str) -> list[tuple[float, RuleState]]:
        return [
            (t, e.new)
            for t, e in self.events
            if isinstance(e, RuleStateChanged) and e.rule_id == rule_id
        ]


def run(engine: Engine, ticks: Iterable[tuple[float, Mapping[str, SignalValue]]]) -> Recording:
    recording = Recording()
    for now, snapshot in ticks:
        for event in engine.evaluate(snapshot, now=now):
            recording.events.append((now, event))
        recording.states.append((now, engine.states()))
    return recording
