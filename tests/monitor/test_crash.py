"""Kill -9 the flag writer while it writes, 20 times: no acknowledged write is lost.

A child process (crash_writer.py, the venv's python) writes flags through the store into
an SQLite file and prints each flag's key only after its commit returned. The parent
SIGKILLs it at a random (seeded) moment, starts it again on the same file, and so on;
each run resumes where the file is and re-writes flags an earlier run wrote (retries).
Afterwards every acknowledged flag is there exactly once, each row is exactly what was
written, acknowledgements and their audit rows exist only together, and SQLite's own
integrity check passes.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alerts.model import Flag
from monitor.store import Store
from tests.monitor.crash_writer import SESSION, flag_for

ROUNDS = 20
SEED = 20260302
WRITER = Path(__file__).with_name("crash_writer.py")
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Round:
    """What one writer run acknowledged before it was killed."""

    flags: dict[int, str] = field(default_factory=dict)
    acks: set[str] = field(default_factory=set)
    writes: int = 0
    retries: int = 0


def run_and_kill(url: str, seed: int, delay: float, already: set[int]) -> Round:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, str(WRITER), url, str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert child.stdout is not None
    ready = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            if line == "ready\n":
                ready.set()
            elif line.endswith("\n"):  # a line cut by the kill was never acknowledged
                lines.append(line.rstrip("\n"))
        ready.set()  # the child died (or was killed) before it got ready

    reader = threading.Thread(target=read)
    reader.start()
    assert ready.wait(timeout=30), "the writer never got ready"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    reader.join(timeout=30)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""

    result = Round()
    for line in lines:
        kind, *rest = line.split()
        if kind == "flag":
            index, key = int(rest[0]), rest[1]
            result.retries += index in already or index in result.flags
            result.flags[index] = key
            result.writes += 1
        else:
            result.acks.add(rest[0])
    return result


@pytest.mark.slow
def test_every_acknowledged_flag_survives_twenty_kill_9s_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "feltsafe.db"
    url = f"sqlite:///{db}"
    rng = random.Random(SEED)
    acknowledged: dict[int, str] = {}
    acked_keys: set[str] = set()
    writes = retries = 0

    for round_number in range(ROUNDS):
        outcome = run_and_kill(
            url, seed=rng.randrange(2**32), delay=rng.uniform(0.02, 0.3), already=set(acknowledged)
        )
        assert outcome.writes > 0, f"round {round_number} wrote nothing before the kill"
        for index, key in outcome.flags.items():
            assert acknowledged.setdefault(index, key) == key  # a flag's key never changes
        acked_keys |= outcome.acks
        writes += outcome.writes
        retries += outcome.retries

    assert retries > ROUNDS  # the runs did re-write flags that were already stored

    connection = sqlite3.connect(db)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        key_rows = connection.execute(
            "SELECT key, COUNT(*) FROM flags GROUP BY key HAVING COUNT(*) > 1"
        ).fetchall()
        audit_acks = {
            resource.removeprefix("flag/")
            for (resource,) in connection.execute("SELECT resource FROM audit WHERE action = 'ack'")
        }
    finally:
        connection.close()
    assert key_rows == []

    with Store.open(url) as store:
        stored = {s.key: s for s in store.list_flags(SESSION)}

    starts = [s.flag.start for s in stored.values()]
    assert len(starts) == len(set(starts)), "one flag stored under two keys"
    for index, key in acknowledged.items():
        assert key in stored, f"acknowledged flag {index} lost"
        assert _same_flag(stored[key].flag, index)
    for key, row in stored.items():  # unacknowledged rows may exist (killed after commit)
        assert row.flag.key(SESSION) == key
        assert _same_flag(row.flag, int(row.flag.start))

    acknowledged_in_store = {k for k, s in stored.items() if s.acknowledgement is not None}
    assert acked_keys <= acknowledged_in_store
    assert acknowledged_in_store == audit_acks  # never one without the other
    print(f"{ROUNDS} kills, {writes} acknowledged writes ({retries} retries), {len(stored)} flags")


def _same_flag(stored: Flag, index: int) -> bool:
    """Equal to what the writer wrote for ``index``, with or without its end."""
    return stored in (flag_for(index, ended=False), flag_for(index, ended=True))
