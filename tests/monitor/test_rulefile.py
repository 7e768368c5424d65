"""Pack files and hot reload: a broken pack never replaces the one that is running."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from alerts.engine import Engine, FlagRaised
from alerts.pack import PackError, parse_pack
from monitor.rulefile import PackFile, default_pack_text, load_default_pack, load_pack
from tests.alerts.scenario import HEALTHY

RULE = """\
pack: mine
version: {version}
rules:
  - id: loss
    version: 1
    title: Loss
    when: client.audio.loss_ratio > {threshold}
    severity: warn
    audience: [ops]
    undermines: [trust]
    source: LiveKit
"""

BROKEN = RULE.replace("severity: warn", "severity: loud")


def write(path: Path, text: str, *, mtime_ns: int) -> None:
    # Explicit modification times: no sleeping to get past the file system's granularity.
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.fixture
def pack_file(tmp_path: Path) -> Path:
    path = tmp_path / "pack.yaml"
    write(path, RULE.format(version=1, threshold=0.1), mtime_ns=1_000_000_000)
    return path


def test_the_default_pack_comes_from_package_data() -> None:
    assert load_pack(None) is load_default_pack()
    assert load_default_pack() == parse_pack(default_pack_text(), source="x")
    assert load_default_pack().source == "alerts/default_pack.yaml"


def test_a_broken_pack_at_start_up_fails_fast_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(BROKEN.format(version=1, threshold=0.1))
    with pytest.raises(PackError, match=rf"^{path}:8: rule 'loss': severity"):
        PackFile(path)


def test_an_unchanged_file_is_not_reloaded(pack_file: Path) -> None:
    watched = PackFile(pack_file)
    assert watched.poll() is None
    os.utime(pack_file, ns=(2_000_000_000, 2_000_000_000))  # touched, same text
    assert watched.poll() is None


def test_a_valid_change_is_picked_up_and_the_engine_keeps_running(pack_file: Path) -> None:
    watched = PackFile(pack_file)
    engine = Engine(watched.pack)
    engine.evaluate({**HEALTHY, "client.audio.loss_ratio": 0.15}, now=0.0)
    assert [f.rule_id for f in engine.active_flags()] == ["loss"]
    write(pack_file, RULE.format(version=2, threshold=0.2), mtime_ns=2_000_000_000)
    new = watched.poll()
    assert new is not None
    assert new.version == 2
    assert watched.pack is new
    engine.replace_pack(new, now=1.0)  # the changed rule restarts
    assert engine.active_flags() == []
    events = engine.evaluate({**HEALTHY, "client.audio.loss_ratio": 0.25}, now=2.0)
    assert [type(e) for e in events if isinstance(e, FlagRaised)] == [FlagRaised]


def test_a_broken_change_keeps_the_old_pack_and_is_logged_once(
    pack_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watched = PackFile(pack_file)
    old = watched.pack
    write(pack_file, BROKEN.format(version=2, threshold=0.2), mtime_ns=2_000_000_000)
    with caplog.at_level(logging.WARNING, logger="feltsafe.rules"):
        assert watched.poll() is None
        assert watched.poll() is None  # the same broken version: not logged again
    assert watched.pack is old
    (record,) = caplog.records
    assert "keeping pack mine v1" in record.getMessage()
    assert f"{pack_file}:8: rule 'loss': severity" in record.getMessage()
    # Fixed: the next poll reloads.
    write(pack_file, RULE.format(version=3, threshold=0.2), mtime_ns=3_000_000_000)
    new = watched.poll()
    assert new is not None
    assert new.version == 3


def test_a_vanished_file_keeps_the_old_pack(
    pack_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    watched = PackFile(pack_file)
    pack_file.unlink()
    with caplog.at_level(logging.WARNING, logger="feltsafe.rules"):
        assert watched.poll() is None
        assert watched.poll() is None
    assert len(caplog.records) == 1
    assert "missing" in caplog.records[0].getMessage()
    assert watched.pack.name == "mine"
