"""/metrics: how long a scrape holds the event loop, at 50 live sessions (target: 10 ms).

The real app (``create_app``) runs 50 sessions (two thirds in metadata mode), both
participants present, whose metrics sinks have each been fed ten minutes of realistic
ticks (every 250 ms: jitter, loss, RTT, MOS, freezes, talk times), interruptions, flags
of every rule of the default pack and indicator changes, so every histogram and counter
holds data. A scrape is ``generate_latest`` over the app's collector registry, what
``GET /metrics`` runs on the event loop. Side by side in the same run: an empty
``CollectorRegistry`` (the floor of the client library) and the same app with no
session (the cost of the catalogue's series alone). Times are CPU time of this process
(best of the repeats, the cost on one core) and wall-clock median (what the loop feels
on this shared machine). The sink's own cost per tick is measured too.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from alerts.engine import FlagRaised
from alerts.indicator import IndicatorState, Level
from alerts.model import Audience, Flag, Severity
from monitor.app import create_app
from monitor.config import Mode, Settings
from monitor.participant import Attachment
from monitor.rulefile import load_default_pack
from monitor.sinks import SessionEvent
from probes.base import Role
from probes.conversation import InterruptionDetected
from probes.signals import CATALOGUE, SignalValue

SESSIONS = 50
TARGET_MS = 10.0
SECRET = "b" * 40


def _tick(rng: random.Random, elapsed: float) -> dict[str, SignalValue]:
    values: dict[str, SignalValue] = dict.fromkeys(CATALOGUE)
    for role in Role:
        for kind in ("audio", "video"):
            values[f"{role}.{kind}.jitter_ms"] = rng.lognormvariate(2.5, 0.8)
            values[f"{role}.{kind}.loss_ratio"] = min(1.0, rng.expovariate(80.0))
        values[f"{role}.network.rtt_ms"] = rng.lognormvariate(4.5, 0.6)
        values[f"{role}.network.mos"] = rng.uniform(2.8, 4.4)
        values[f"{role}.media.interrupted"] = rng.random() < 0.01
        values[f"{role}.video.freeze_count"] = float(int(elapsed // 45))
        values[f"{role}.video.total_freezes_s"] = 0.6 * int(elapsed // 45)
        share = 0.35 if role is Role.THERAPIST else 0.45
        values[f"conversation.{role}.talk_time_s"] = elapsed * share
    values["session.elapsed_s"] = elapsed
    return values


def _flag(rule: str, start: float) -> Flag:
    return Flag(rule, 1, start, None, Severity.WARN, frozenset({Audience.OPS}), frozenset(), "t")


def _time(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(best CPU ms, median wall ms) of ``call``."""
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        call()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return min(cpu) * 1e3, statistics.median(wall) * 1e3


async def _measure(quick: bool) -> list[str]:
    repeats = 20 if quick else 200
    minutes = 2 if quick else 10
    rules = [rule.id for rule in load_default_pack().rules]

    idle = create_app(Settings(secret=SECRET))
    app = create_app(Settings(secret=SECRET))
    state: Any = app.state
    rng = random.Random(3)
    ticks = 0
    sink_cpu = 0.0
    for i in range(SESSIONS):
        session_id = f"bench-{i}"
        live = state.registry.open(session_id, mode=Mode.FULL if i % 3 == 0 else Mode.METADATA)
        for role in Role:
            live.session.attach(role, Attachment.BEACON, now=live.clock())
        sink = state.metrics.sink_of(session_id)
        start = live.session.started_at
        snapshots = [_tick(rng, t * 0.25) for t in range(minutes * 240)]
        c0 = time.process_time()
        for t, snapshot in enumerate(snapshots):
            sink.on_snapshot(start + t * 0.25, snapshot)
        sink_cpu += time.process_time() - c0
        ticks += len(snapshots)
        event = InterruptionDetected(
            t=start, by=Role.THERAPIST, of=Role.CLIENT, overlap=0.3, successful=True
        )
        sink.on_events(start + 30, [SessionEvent(start + 30, None, None, event)])
        sink.on_flag_events([FlagRaised(_flag(rule, start)) for rule in rules])
        sink.on_indicator_state(IndicatorState(Level.WARN, "m", None, since=start))

    empty_cpu, empty_wall = _time(lambda: generate_latest(CollectorRegistry()), repeats)
    idle_cpu, idle_wall = _time(lambda: generate_latest(idle.state.metrics.collectors), repeats)
    live_cpu, live_wall = _time(lambda: generate_latest(state.metrics.collectors), repeats)
    body = generate_latest(state.metrics.collectors)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
    await state.registry.aclose()
    await idle.state.registry.aclose()

    verdict = "met" if live_cpu < TARGET_MS and live_wall < TARGET_MS else "NOT met"
    return [
        f"{SESSIONS} live sessions, {minutes} min of ticks each; {samples} samples, "
        f"{len(body) / 1024:.1f} KiB per scrape; {repeats} scrapes per row",
        "",
        "| registry | CPU ms (best) | wall ms (median) | x target |",
        "|---|---:|---:|---:|",
        f"| empty CollectorRegistry (floor) | {empty_cpu:.3f} | {empty_wall:.3f} | - |",
        f"| app, no session | {idle_cpu:.2f} | {idle_wall:.2f} | {idle_wall / TARGET_MS:.2f} |",
        f"| app, {SESSIONS} live sessions | {live_cpu:.2f} | {live_wall:.2f} | "
        f"{live_wall / TARGET_MS:.2f} |",
        "",
        f"metrics sink: {sink_cpu / ticks * 1e6:.1f} us CPU per tick "
        f"({sink_cpu / ticks * 4 * 100:.3f} % of a core per session at 4 ticks/s)",
        f"target: a scrape at {SESSIONS} sessions under {TARGET_MS:.0f} ms: {verdict}",
    ]


def run(quick: bool = False) -> Iterator[str]:
    yield from asyncio.run(_measure(quick))
