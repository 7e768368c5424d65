"""Conversation tracker cost on a scripted 50-minute session.

The session is a seeded random script in the shape of a therapy conversation: turns of
one to eight phrases (0.8-6 s) with pauses between them (0.25-1.5 s), gaps of 0-1.2 s at
turn changes, a listener backchannel (0.2-0.8 s) in a third of the phrases, and one turn
change in six made by interrupting (0.3-1 s of overlap). The speech probes' work is not
in it: only the voice edges they would emit.

- offline: ``summarize`` over all edges (what ``feltsafe analyze`` adds after the VAD);
  target (issue 3): a 50-minute session in well under 100 ms.
- live: the same edges through ``ConversationTracker.on_voice``, with ``snapshot(now=)``
  at every 250 ms tick, as a session runs it (12,000 snapshots).

Best of several repeats, which filters out the other tenants of a shared machine.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

from probes.base import Role
from probes.conversation import (
    ConversationConfig,
    ConversationTracker,
    VoiceEdge,
    edges_from_intervals,
    summarize,
)

SESSION = 50 * 60.0
TICK = 0.25


def scripted_session(duration: float, seed: int = 3) -> dict[Role, list[VoiceEdge]]:
    rng = random.Random(seed)
    spurts: dict[Role, list[tuple[float, float]]] = {Role.THERAPIST: [], Role.CLIENT: []}
    speaker, t = Role.THERAPIST, 0.0
    while t < duration:
        for phrase in range(rng.randint(1, 8)):
            if phrase:
                t += rng.uniform(0.25, 1.5)
            length = rng.uniform(0.8, 6.0)
            spurts[speaker].append((t, t + length))
            if rng.random() < 0.33 and length > 1.5:
                start = t + rng.uniform(0.3, length - 1.0)
                spurts[speaker.other].append((start, start + rng.uniform(0.2, 0.8)))
            t += length
        if rng.random() < 1 / 6:  # the next speaker comes in over the end of the turn
            last_start, last_end = spurts[speaker][-1]
            overlap = min(rng.uniform(0.3, 1.0), (last_end - last_start) / 2)
            listener = spurts[speaker.other]
            while listener and listener[-1][1] > last_end - overlap - 0.3:
                listener.pop()  # keep backchannels clear of the overlap
            t = last_end - overlap
        else:
            t += rng.uniform(0.0, 1.2)
        speaker = speaker.other
    return {role: edges_from_intervals(s) for role, s in spurts.items()}


def _merged(edges: dict[Role, list[VoiceEdge]]) -> list[tuple[float, bool, Role]]:
    return [
        (t, active, role)
        for t, active, _, role in sorted(
            (t, active, role.value, role) for role, xs in edges.items() for t, active in xs
        )
    ]


def _best(repeats: int, work: object) -> float:
    assert callable(work)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - began)
    return best


def run(quick: bool = False) -> Iterator[str]:
    duration = SESSION / 10 if quick else SESSION
    repeats = 2 if quick else 7
    edges = scripted_session(duration)
    merged = _merged(edges)
    scale = SESSION / duration
    summary = summarize(edges, duration)

    offline = _best(repeats, lambda: summarize(edges, duration))

    def live() -> None:
        tracker = ConversationTracker(ConversationConfig(edge_latency=0.3), start=0.0)
        i, now = 0, 0.0
        while now < duration:
            now += TICK
            while i < len(merged) and merged[i][0] <= now - 0.1:
                t, active, role = merged[i]
                tracker.on_voice(role, active, t=t)
                i += 1
            tracker.snapshot(now=now)
            tracker.drain_events()

    live_time = _best(repeats, live)
    ticks = int(duration / TICK)
    yield (
        f"script: {duration / 60:.0f} min, {len(merged)} edges, {summary.turns} turns, "
        f"{len(summary.interruptions)} interruptions, {len(summary.backchannels)} backchannels"
    )
    yield (
        f"offline summarize: {offline * 1e3:.1f} ms "
        f"({offline * scale * 1e3:.1f} ms per 50 min; target well under 100 ms), "
        f"{offline / len(merged) * 1e6:.1f} us per edge"
    )
    yield (
        f"live, edges + snapshot every {TICK * 1000:.0f} ms: {live_time * 1e3:.1f} ms "
        f"({live_time * scale * 1e3:.0f} ms per 50 min; "
        f"{live_time / ticks * 1e6:.1f} us per tick incl. edges)"
    )
