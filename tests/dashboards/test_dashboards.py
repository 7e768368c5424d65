from __future__ import annotations

import filecmp
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboards.catalogue import DASHBOARDS
from dashboards.export import export
from dashboards.model import DATASOURCE_UID, gauge, quantile, rate
from monitor.cli import main
from monitor.metrics import BY_NAME, CATALOGUE, MetricType
from tests.dashboards.fake_grafana import FakeGrafana

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"
METRIC_TOKEN = re.compile(r"\bfeltsafe_[a-z_]+\b")


def _targets() -> list[tuple[str, str, str]]:
    return [
        (d.uid, panel["title"], target["expr"])
        for d in DASHBOARDS
        for panel in d.to_json()["panels"]
        for target in panel["targets"]
    ]


def _known_sample_names() -> set[str]:
    names = set()
    for spec in CATALOGUE:
        names.add(spec.sample_name)
        if spec.type is MetricType.HISTOGRAM:
            names |= {f"{spec.name}_bucket", f"{spec.name}_count", f"{spec.name}_sum"}
    return names


def test_each_dashboard_has_unique_panel_ids_and_fits_the_grid() -> None:
    assert len({d.uid for d in DASHBOARDS}) == len(DASHBOARDS)
    for dashboard in DASHBOARDS:
        panels = dashboard.to_json()["panels"]
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids))
        for panel in panels:
            pos = panel["gridPos"]
            assert pos["x"] >= 0
            assert pos["x"] + pos["w"] <= 24
            assert panel["targets"], panel["title"]
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids))


def test_every_panel_and_target_uses_the_provisioned_datasource() -> None:
    for dashboard in DASHBOARDS:
        for panel in dashboard.to_json()["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": DATASOURCE_UID}
            assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])


def test_queries_reference_only_catalogued_metrics() -> None:
    known = _known_sample_names()
    for uid, title, expr in _targets():
        used = set(METRIC_TOKEN.findall(expr))
        assert used, (uid, title)
        assert used <= known, (uid, title, used - known)


def test_query_builders_refuse_wrong_labels_and_types() -> None:
    with pytest.raises(ValueError, match="no label"):
        gauge(BY_NAME["feltsafe_sessions_active"], by=("session",))
    with pytest.raises(ValueError, match="rate"):
        rate(BY_NAME["feltsafe_sessions_active"])
    with pytest.raises(ValueError, match="quantile"):
        quantile(0.5, BY_NAME["feltsafe_flags"])


def test_every_query_is_valid_promql_for_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is installed by make test (Debian package prometheus)"
    rules = [
        {
            "record": f"feltsafe:check_{i}",
            "expr": expr.replace("$__rate_interval", "1m").replace("$__range", "1h"),
        }
        for i, (_, _, expr) in enumerate(_targets())
    ]
    path = tmp_path / "panels.rules.json"
    path.write_text(json.dumps({"groups": [{"name": "panels", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_committed_export_is_what_the_code_generates(tmp_path: Path) -> None:
    export(tmp_path, dashboards_path="/etc/grafana/dashboards/feltsafe")
    comparison = filecmp.dircmp(tmp_path, GENERATED)
    stale: list[str] = []

    def walk(c: filecmp.dircmp[str], prefix: str) -> None:
        stale.extend(prefix + n for n in c.diff_files + c.left_only + c.right_only)
        for name, sub in c.subdirs.items():
            walk(sub, f"{prefix}{name}/")

    walk(comparison, "")
    assert not stale, (
        f"run: feltsafe dashboards export dashboards/generated "
        f"--grafana-path /etc/grafana/dashboards/feltsafe ({stale})"
    )


def test_export_command_writes_dashboards_and_provisioning(tmp_path: Path) -> None:
    assert main(["dashboards", "export", str(tmp_path)]) == 0
    boards = sorted(p.name for p in (tmp_path / "dashboards").iterdir())
    assert boards == sorted(f"{d.uid}.json" for d in DASHBOARDS)
    datasource = (tmp_path / "provisioning" / "datasources" / "feltsafe.yaml").read_text()
    assert f"uid: {DATASOURCE_UID}" in datasource


def test_push_creates_the_folder_then_creates_or_updates_each_dashboard_by_uid() -> None:
    with FakeGrafana() as grafana:
        assert main(["dashboards", "push", "--url", grafana.url, "--token", grafana.token]) == 0
        assert main(["dashboards", "push", "--url", grafana.url, "--token", grafana.token]) == 0
    folder_creates = [c for c in grafana.calls if c.method == "POST" and c.path == "/api/folders"]
    assert len(folder_creates) == 1
    posts = [c for c in grafana.calls if c.path == "/api/dashboards/db"]
    assert [c.body["dashboard"]["uid"] for c in posts] == [d.uid for d in DASHBOARDS] * 2
    assert all(c.body["folderUid"] == "feltsafe" and c.body["overwrite"] for c in posts)
    assert all(c.authorization == f"Bearer {grafana.token}" for c in grafana.calls)
    assert {uid: d["version"] for uid, d in grafana.dashboards.items()} == {
        d.uid: 2 for d in DASHBOARDS
    }


def test_push_with_a_bad_token_fails_with_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with FakeGrafana() as grafana:
        code = main(["dashboards", "push", "--url", grafana.url, "--token", "wrong-secret"])
    err = capsys.readouterr().err
    assert code == 2
    assert "refused the token" in err
    assert "wrong-secret" not in err
    assert err.count("\n") == 1
    assert not grafana.dashboards


def test_push_reports_a_version_conflict(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGrafana(conflict_uids={DASHBOARDS[0].uid}) as grafana:
        code = main(["dashboards", "push", "--url", grafana.url, "--token", grafana.token])
    assert code == 2
    assert "version conflict" in capsys.readouterr().err


def test_push_to_nowhere_says_grafana_cannot_be_reached(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGrafana() as grafana:
        url = grafana.url
    code = main(["dashboards", "push", "--url", url, "--token", "t"])
    assert code == 2
    assert "cannot reach Grafana" in capsys.readouterr().err
