"""Write the dashboards and Grafana's file-provisioning YAML into a folder.

Layout of DIR (what Grafana's provisioning expects, see the README's Operations section):
  DIR/dashboards/<uid>.json               the dashboard models
  DIR/provisioning/datasources/feltsafe.yaml   the Prometheus data source (uid fixed)
  DIR/provisioning/dashboards/feltsafe.yaml    a file provider pointing at DIR/dashboards
"""

from __future__ import annotations

import json
from pathlib import Path

from dashboards.catalogue import DASHBOARDS
from dashboards.model import DATASOURCE_UID

FOLDER_TITLE = "feltsafe"
FOLDER_UID = "feltsafe"


def dashboard_json(uid: str) -> str:
    for dashboard in DASHBOARDS:
        if dashboard.uid == uid:
            return json.dumps(dashboard.to_json(), indent=2, sort_keys=True) + "\n"
    raise KeyError(uid)


def datasource_yaml(prometheus_url: str = "http://127.0.0.1:9090") -> str:
    return (
        "# Grafana data source for feltsafe's dashboards (their panels reference this uid).\n"
        "apiVersion: 1\n"
        "datasources:\n"
        "  - name: feltsafe Prometheus\n"
        "    type: prometheus\n"
        f"    uid: {DATASOURCE_UID}\n"
        "    access: proxy\n"
        f"    url: {prometheus_url}\n"
        "    isDefault: false\n"
        "    jsonData:\n"
        "      timeInterval: 15s\n"
    )


def provider_yaml(dashboards_path: str) -> str:
    return (
        "# Grafana dashboard provider: loads feltsafe's dashboards from files.\n"
        "apiVersion: 1\n"
        "providers:\n"
        "  - name: feltsafe\n"
        f"    folder: {FOLDER_TITLE}\n"
        f"    folderUid: {FOLDER_UID}\n"
        "    type: file\n"
        "    disableDeletion: false\n"
        "    allowUiUpdates: false\n"
        "    options:\n"
        f"      path: {dashboards_path}\n"
    )


def export(directory: Path, *, dashboards_path: str | None = None) -> list[Path]:
    """Write everything; `dashboards_path` is where Grafana will see DIR/dashboards
    (defaults to its absolute path here)."""
    board_dir = directory / "dashboards"
    datasource_dir = directory / "provisioning" / "datasources"
    provider_dir = directory / "provisioning" / "dashboards"
    for folder in (board_dir, datasource_dir, provider_dir):
        folder.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = board_dir / f"{dashboard.uid}.json"
        path.write_text(dashboard_json(dashboard.uid))
        written.append(path)
    (datasource_dir / "feltsafe.yaml").write_text(datasource_yaml())
    (provider_dir / "feltsafe.yaml").write_text(
        provider_yaml(dashboards_path or str(board_dir.resolve()))
    )
    written += [datasource_dir / "feltsafe.yaml", provider_dir / "feltsafe.yaml"]
    return written
