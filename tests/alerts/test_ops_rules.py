"""The Prometheus alert rules for operations: valid, unit-tested with promtool, and
written only over metrics that feltsafe exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.metrics import CATALOGUE, MetricType

RULES_DIR = Path(__file__).resolve().parents[2] / "alerts" / "prometheus"
RULES = RULES_DIR / "feltsafe.rules.yml"
METRIC_TOKEN = re.compile(r"\bfeltsafe_[a-z_]+\b")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with the Debian package prometheus (make test installs it)"
    return promtool


def _rules() -> list[dict[str, object]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_rule_file() -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "test_file", sorted((RULES_DIR / "tests").glob("*.test.yml")), ids=lambda p: p.name
)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", test_file.name],
        cwd=test_file.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test_that_expects_it_to_fire() -> None:
    fired: set[str] = set()
    for test_file in (RULES_DIR / "tests").glob("*.test.yml"):
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            fired |= {t["alertname"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert {str(rule["alert"]) for rule in _rules()} <= fired


def test_every_alert_expression_uses_only_exported_metrics() -> None:
    known = set()
    for spec in CATALOGUE:
        known.add(spec.sample_name)
        if spec.type is MetricType.HISTOGRAM:
            known |= {f"{spec.name}_bucket", f"{spec.name}_count"}
    for rule in _rules():
        used = set(METRIC_TOKEN.findall(str(rule["expr"])))
        assert used, rule["alert"]
        assert used <= known, (rule["alert"], used - known)


def test_every_alert_carries_a_summary_a_runbook_and_a_severity() -> None:
    for rule in _rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations.get("summary"), rule["alert"]
        assert len(str(annotations.get("runbook", ""))) > 80, rule["alert"]
        labels = rule["labels"]
        assert isinstance(labels, dict)
        assert labels["severity"] in {"warning", "critical"}
