"""`feltsafe dashboards export DIR` and `feltsafe dashboards push --url URL --token T`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("dashboards", help="Grafana dashboards: export JSON, push")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser("export", help="write dashboards and provisioning YAML")
    export.add_argument("directory", type=Path, metavar="DIR")
    export.add_argument("--grafana-path", help="where Grafana will see DIR/dashboards")
    export.set_defaults(func=_export)
    push = actions.add_parser("push", help="create or update the dashboards in a Grafana")
    push.add_argument("--url", required=True, help="Grafana base URL")
    push.add_argument(
        "--token",
        default=os.environ.get("FELTSAFE_GRAFANA_TOKEN"),
        help="service-account token (or FELTSAFE_GRAFANA_TOKEN)",
    )
    push.set_defaults(func=_push)


def _export(args: argparse.Namespace) -> int:
    from dashboards.export import export

    for path in export(args.directory, dashboards_path=args.grafana_path):
        print(path)
    return 0


def _push(args: argparse.Namespace) -> int:
    from dashboards.push import PushError, push

    if not args.token:
        raise PushError("no token: pass --token or set FELTSAFE_GRAFANA_TOKEN")
    for pushed in push(args.url, args.token):
        print(f"{pushed.uid}: version {pushed.version} {pushed.url or ''}".rstrip())
    return 0
