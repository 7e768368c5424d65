"""Rules engine and trace writer: the cost of one session tick.

The default pack (all its rules, the individual profile) is run over a synthetic
session of ticks every 250 ms: a calm session with every signal present, and a rough
one in which freezes, MOS dips, loss and missing data come and go, so rules move through
every state. Each run is timed in CPU time of this process (the cost on one core), best
of several repeats, which filters out most of the other tenants of a shared machine.
The trace writer is timed on the same snapshots (JSON to an in-memory stream).
Budget: a session ticks 4 times a second, so 250 us a tick is 0.1 % of a core.
"""

from __future__ import annotations

import io
import random
import time
from collections.abc import Iterator

from alerts.engine import Engine
from monitor.rulefile import load_default_pack
from monitor.trace import TraceHeader, TraceWriter
from probes.signals import CATALOGUE, SignalType, SignalValue


def _calm() -> dict[str, SignalValue]:
    snapshot: dict[str, SignalValue] = {}
    for name, spec in CATALOGUE.items():
        snapshot[name] = False if spec.type is SignalType.BOOL else 0.0
    snapshot.update(
        {
            "client.network.mos": 4.3,
            "therapist.network.mos": 4.3,
            "client.network.rtt_ms": 80.0,
            "therapist.network.rtt_ms": 80.0,
            "client.audio.echo_leak_db": 40.0,
            "therapist.audio.echo_leak_db": 40.0,
            "conversation.therapist.talk_share_10m": 0.4,
            "session.elapsed_s": 1200.0,
        }
    )
    return snapshot


def _rough(count: int, rng: random.Random) -> list[dict[str, SignalValue]]:
    snapshots = []
    base = _calm()
    for i in range(count):
        snapshot = dict(base)
        phase = (i // 40) % 6
        snapshot["client.video.frozen"] = phase == 1 and rng.random() < 0.8
        snapshot["client.network.mos"] = 3.2 if phase == 2 else 4.2
        snapshot["client.audio.loss_ratio"] = 0.05 if phase == 3 else 0.0
        snapshot["conversation.client.holds_floor"] = phase in (1, 3)
        snapshot["session.disclosure"] = phase == 3
        if phase == 4:
            snapshot["therapist.network.rtt_ms"] = None
        snapshot["client.audio.jitter_ms"] = rng.uniform(2, 40)
        snapshots.append(snapshot)
    return snapshots


def _engine_us(snapshots: list[dict[str, SignalValue]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        engine = Engine(load_default_pack(), profile="individual")
        start = time.process_time()
        for i, snapshot in enumerate(snapshots):
            engine.evaluate(snapshot, now=i * 0.25)
        best = min(best, time.process_time() - start)
    return best / len(snapshots) * 1e6


def _trace_us(snapshots: list[dict[str, SignalValue]], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        writer = TraceWriter(io.StringIO(), TraceHeader(profile="individual"))
        start = time.process_time()
        for i, snapshot in enumerate(snapshots):
            writer.tick(snapshot, now=i * 0.25)
        best = min(best, time.process_time() - start)
    return best / len(snapshots) * 1e6


def run(*, quick: bool = False) -> Iterator[str]:
    count = 400 if quick else 4000
    repeats = 2 if quick else 5
    rng = random.Random(5)
    calm = [_calm() for _ in range(count)]
    rough = _rough(count, rng)
    rules = len(load_default_pack().rules_for("individual"))
    yield f"default pack, {rules} rules, {count} ticks, best of {repeats} (CPU time)"
    yield ""
    yield "| session | engine per tick | trace write per tick | share of a core at 4 ticks/s |"
    yield "|---|---|---|---|"
    for name, snapshots in (("calm", calm), ("rough", rough)):
        engine = _engine_us(snapshots, repeats)
        trace = _trace_us(snapshots, repeats)
        share = (engine + trace) * 4 / 1e6 * 100
        yield f"| {name} | {engine:.0f} us | {trace:.0f} us | {share:.2f} % |"
