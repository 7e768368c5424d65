"""A flag writer for the kill -9 test (test_crash.py): run as a script, killed at random.

    python crash_writer.py DB_URL SEED

It opens the store (migrating a new file), records the session (idempotent), then
writes flags in a loop through the store, forever, the way the monitor does: new flags,
retries of flags it or an earlier (killed) run already wrote, flags that end later, and
now and then an acknowledgement. It prints one line per write, only after the write's
commit has returned, so every printed line is a write the store acknowledged:

    ready                   the store is open; writes follow
    flag INDEX KEY          flag INDEX is committed with key KEY
    ack KEY                 the acknowledgement of KEY (and its audit row) is committed

Flag INDEX is a pure function of INDEX (plus whether this write carries its end), so
the parent can check every stored row against what was written.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime, timedelta

from alerts.model import Audience, Flag, SafetyElement, Severity
from monitor.store import Actor, Store

SESSION = "crash-session"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
REVIEWER = Actor(subject="acct-crash", role="supervisor")


def flag_for(index: int, *, ended: bool) -> Flag:
    return Flag(
        rule_id="video.frozen_during_disclosure",
        rule_version=1,
        start=float(index),
        end=index + 0.75 if ended else None,
        severity=(Severity.INFO, Severity.WARN, Severity.ALERT)[index % 3],
        audience=frozenset({Audience.SUPERVISOR}),
        undermines=frozenset({SafetyElement.TRUST}),
        title="Picture froze while the client was sharing",
        evidence={"therapist.video.freeze_s": index / 10},
        context={"speaker": "client", "session.disclosure": True},
    )


def main(url: str, seed: int) -> None:
    rng = random.Random(seed)
    store = Store.open(url)
    store.record_session_start(SESSION, started_at=T0, clock_at_start=0.0, mode="full")
    written = sorted(int(s.flag.start) for s in store.list_flags(SESSION))
    next_index = written[-1] + 1 if written else 0
    print("ready", flush=True)
    while True:
        roll = rng.random()
        if written and roll < 0.3:  # a retry, possibly now with the flag's end
            index = rng.choice(written)
            key = store.upsert_flag(SESSION, flag_for(index, ended=rng.random() < 0.5))
        else:
            index = next_index
            next_index += 1
            key = store.upsert_flag(SESSION, flag_for(index, ended=False))
            written.append(index)
        print(f"flag {index} {key}", flush=True)
        if roll > 0.9:
            store.acknowledge(
                key, by=REVIEWER, note=f"seen {index}", now=T0 + timedelta(hours=1, seconds=index)
            )
            print(f"ack {key}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
