"""``feltsafe rules check``: exit 0 for a valid pack, file:line errors and exit 2 otherwise."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from monitor.cli import main

BROKEN = """\
pack: broken
version: 1
rules:
  - id: loss
    version: 1
    title: Loss
    when: client.audio.los_ratio > 2.5%
    severity: critical
    audience: [ops]
    undermines: [trust]
    source: LiveKit
"""


def default_pack_path() -> Path:
    return Path(str(resources.files("alerts") / "default_pack.yaml"))


def test_the_default_pack_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(default_pack_path())]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("ok (pack feltsafe_default v1, 24 rules)")
    assert err == ""


def test_a_broken_pack_prints_file_line_errors_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "broken.yaml"
    pack.write_text(BROKEN)
    assert main(["rules", "check", str(pack)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{pack}:7: rule 'loss': when: column 1: unknown signal 'client.audio.los_ratio'",
        f"{pack}:8: rule 'loss': severity: Input should be 'info', 'warn' or 'alert' "
        "(got 'critical')",
    ]


def test_one_broken_pack_among_several_fails_the_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "broken.yaml"
    pack.write_text(BROKEN)
    assert main(["rules", "check", str(default_pack_path()), str(pack)]) == 2
    out, err = capsys.readouterr()
    assert "ok" in out
    assert f"{pack}:7:" in err


def test_bad_yaml_and_a_missing_file_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack = tmp_path / "bad.yaml"
    pack.write_text("pack: x\nrules: [\n")
    assert main(["rules", "check", str(pack)]) == 2
    assert capsys.readouterr().err.startswith(f"{pack}:3: bad YAML")
    assert main(["rules", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read the rule pack" in capsys.readouterr().err


def test_the_printed_default_pack_is_a_valid_starting_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "default"]) == 0
    copy = tmp_path / "mine.yaml"
    copy.write_text(capsys.readouterr().out)
    assert main(["rules", "check", str(copy)]) == 0


def test_the_installed_command_checks_a_pack(tmp_path: Path) -> None:
    pack = tmp_path / "broken.yaml"
    pack.write_text(BROKEN)
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "rules", "check", str(pack)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"{pack}:7: ")
    assert "Traceback" not in result.stderr
