"""Retention: ``Store.purge`` on both backends, and the ``feltsafe purge`` command."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.model import Audience, Flag, Severity
from monitor.cli import main
from monitor.store import Actor, AuditAction, SessionSummary, Store, StoreError, TimelineSample
from tests.monitor import store_backends

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SUPERVISOR = Actor(subject="acct-7f3a", role="supervisor")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=store_backends.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with (
        store_backends.store_url(request.param, tmp_path, request.config) as url,
        Store.open(url) as opened,
    ):
        yield opened


def add_session(
    store: Store, session_id: str, *, started: datetime, ended: datetime | None, flags: int = 2
) -> None:
    store.record_session_start(session_id, started_at=started, clock_at_start=0.0, mode="full")
    for n in range(flags):
        flag = Flag(
            rule_id="network.poor_mos", rule_version=1, start=10.0 * n, end=None,
            severity=Severity.WARN, audience=frozenset({Audience.SUPERVISOR}),
            undermines=frozenset(), title="Poor network",
        )  # fmt: skip
        store.upsert_flag(session_id, flag)
    store.append_timeline(
        session_id, [TimelineSample(t, {"client.network.mos": 4.0}) for t in (0.0, 5.0, 10.0)]
    )
    if ended is not None:
        store.record_session_end(session_id, ended_at=ended, summary=SessionSummary())


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def test_purge_deletes_sessions_ended_before_the_cutoff_with_their_flags_and_timeline(
    store: Store,
) -> None:
    add_session(store, "ended-100d", started=days_ago(100.1), ended=days_ago(100))
    add_session(store, "ended-10d", started=days_ago(10.1), ended=days_ago(10))
    add_session(store, "ended-at-cutoff", started=days_ago(90.1), ended=days_ago(90))
    add_session(store, "never-ended-95d", started=days_ago(95), ended=None)
    add_session(store, "live-now", started=days_ago(0.01), ended=None)

    counts = store.purge(older_than_days=90, now=NOW)

    assert (counts.sessions, counts.flags, counts.timeline_points) == (2, 4, 6)
    kept = {s.session_id for s in store.list_sessions().sessions}
    assert kept == {"ended-10d", "ended-at-cutoff", "live-now"}
    assert len(store.list_flags("ended-10d")) == 2
    assert len(store.timeline("ended-10d")) == 3


def test_purging_again_deletes_nothing_more(store: Store) -> None:
    add_session(store, "old", started=days_ago(200), ended=days_ago(200))
    first = store.purge(older_than_days=90, now=NOW)
    second = store.purge(older_than_days=90, now=NOW)

    assert first.sessions == 1
    assert (second.sessions, second.flags, second.timeline_points, second.audit_entries) == (
        0, 0, 0, 0,
    )  # fmt: skip


def test_the_audit_log_outlives_the_sessions_it_is_about(store: Store) -> None:
    add_session(store, "old", started=days_ago(200), ended=days_ago(200))
    store.record_view(by=SUPERVISOR, resource="session/old", session_id="old", now=days_ago(199))
    store.record_view(by=SUPERVISOR, resource="sessions", now=days_ago(400))

    counts = store.purge(older_than_days=90, now=NOW)

    assert counts.audit_entries == 0
    assert {e.resource for e in store.list_audit(session_id="old")} == {"session/old"}

    counts = store.purge(older_than_days=90, audit_older_than_days=365, now=NOW)
    assert counts.audit_entries == 1
    assert "sessions" not in {e.resource for e in store.list_audit()}
    assert store.list_audit(session_id="old") != []


def test_each_purge_leaves_an_audit_entry(store: Store) -> None:
    store.purge(older_than_days=30, now=NOW)

    (entry,) = store.list_audit()
    assert entry.action is AuditAction.PURGE
    assert entry.at == NOW
    assert entry.resource == "sessions ended over 30 days ago"


def test_an_audit_retention_shorter_than_the_sessions_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="at least as long"):
        store.purge(older_than_days=90, audit_older_than_days=30, now=NOW)


def test_negative_retention_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match=">= 0"):
        store.purge(older_than_days=-1, now=NOW)


# -- the command ---------------------------------------------------------------------------


@pytest.fixture
def old_and_new(tmp_path: Path) -> str:
    """A store file with a session that ended 40 days ago and one that ended yesterday."""
    url = f"sqlite:///{tmp_path / 'feltsafe.db'}"
    now = datetime.now(UTC)
    with Store.open(url) as store:
        add_session(
            store, "old", started=now - timedelta(days=40.1), ended=now - timedelta(days=40)
        )
        add_session(store, "new", started=now - timedelta(days=1.1), ended=now - timedelta(days=1))
    return url


def remaining(url: str) -> set[str]:
    with Store.open(url) as store:
        return {s.session_id for s in store.list_sessions().sessions}


@pytest.fixture(autouse=True)
def no_feltsafe_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FELTSAFE_DB", "FELTSAFE_RETENTION_DAYS", "FELTSAFE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_the_command_purges_and_prints_the_counts(
    old_and_new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--older-than", "30", "--db", old_and_new]) == 0
    first = capsys.readouterr().out
    assert main(["purge", "--older-than", "30", "--db", old_and_new]) == 0
    second = capsys.readouterr().out

    assert first.startswith("purged 1 sessions ended over 30 days ago (2 flags, 3 timeline points)")
    assert second.startswith("purged 0 sessions ended over 30 days ago (0 flags, 0 timeline")
    assert remaining(old_and_new) == {"new"}


def test_the_default_retention_of_90_days_keeps_a_40_day_old_session(
    old_and_new: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["purge", "--db", old_and_new, "--json"]) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["older_than_days"] == 90
    assert printed["audit_older_than_days"] == 6 * 365
    assert printed["sessions"] == 0
    assert remaining(old_and_new) == {"old", "new"}


def test_retention_and_database_come_from_the_environment(
    old_and_new: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FELTSAFE_RETENTION_DAYS", "30")
    monkeypatch.setenv("FELTSAFE_DB", old_and_new)

    assert main(["purge", "--json"]) == 0

    assert json.loads(capsys.readouterr().out)["sessions"] == 1
    assert remaining(old_and_new) == {"new"}


def test_retention_comes_from_the_config_file(
    old_and_new: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "feltsafe.toml"
    config.write_text(f'db = "{old_and_new}"\nretention_days = 30\n')

    assert main(["purge", "--config", str(config)]) == 0

    assert remaining(old_and_new) == {"new"}


@pytest.mark.parametrize("days", ["0", "-3", "ninety", "1.5"])
def test_a_bad_number_of_days_is_a_usage_error(old_and_new: str, days: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["purge", "--older-than", days, "--db", old_and_new])
    assert exit_info.value.code == 2
    assert remaining(old_and_new) == {"old", "new"}


def test_purging_a_missing_file_fails_without_creating_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.db"

    assert main(["purge", "--db", f"sqlite:///{missing}"]) == 2

    assert "no store at" in capsys.readouterr().err
    assert not missing.exists()


def test_an_unreachable_database_is_one_line_without_the_password(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://feltsafe:hunter2-secret@127.0.0.1:{port}/feltsafe?connect_timeout=5"

    assert main(["purge", "--db", url]) == 2

    error = capsys.readouterr().err
    assert error.startswith("feltsafe purge: cannot use the store at postgresql+psycopg://")
    assert "hunter2" not in error
    assert len(error.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_installed_command_runs(old_and_new: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "purge", "--older-than", "30", "--db", old_and_new],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("purged 1 sessions")
