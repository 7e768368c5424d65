"""The layering of DESIGN.md holds: probes are pure, alerts do no I/O.

import-linter checks imports between packages (pyproject.toml, [tool.importlinter]);
this test also reads every module's syntax tree, which catches what an import graph
cannot: a direct ``open()`` call, or ``from time import monotonic`` hidden in a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CLOCKS_AND_IO = {"time", "datetime", "asyncio", "socket", "threading", "subprocess"}
MEDIA_AND_NETWORK = {"aiortc", "aioice", "av", "websockets", "prometheus_client", "starlette"}
STORAGE = {"sqlalchemy", "sqlite3", "shutil", "tempfile", "urllib", "http"}
IO_CALLS = {"open", "input", "print"}


def _imports_and_calls(path: Path) -> tuple[set[str], set[str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    imported: set[str] = set()
    called: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            called.add(node.func.attr)
    return imported, called


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("probes"), ids=lambda p: p.name)
def test_probe_modules_read_no_clock_and_do_no_io(path: Path) -> None:
    imported, called = _imports_and_calls(path)
    assert not imported & (CLOCKS_AND_IO | MEDIA_AND_NETWORK | STORAGE)
    assert not imported & {"alerts", "monitor", "dashboards"}
    assert not called & (IO_CALLS | {"read_text", "read_bytes", "write_text", "monotonic"})


@pytest.mark.parametrize("path", _modules("alerts"), ids=lambda p: p.name)
def test_alert_modules_do_no_io(path: Path) -> None:
    imported, called = _imports_and_calls(path)
    assert not imported & (CLOCKS_AND_IO | MEDIA_AND_NETWORK | STORAGE)
    assert not imported & {"monitor", "dashboards"}
    assert not called & (IO_CALLS | {"read_text", "read_bytes", "write_text", "monotonic"})


def test_import_linter_contracts_hold() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_clock_read_in_a_probe_would_be_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from time import monotonic\n\ndef f():\n    return monotonic()\n")
    imported, called = _imports_and_calls(bad)
    assert "time" in imported
    assert "monotonic" in called
