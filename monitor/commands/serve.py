"""``feltsafe serve``: the monitor, one asyncio process (WHIP ingest, websockets, REST).

Settings come from the flags below, then ``FELTSAFE_*`` variables, then the config file
(``--config`` or ``FELTSAFE_CONFIG``), then defaults (monitor/config.py). The media bind
address (``--media-host``) is applied to aioice before any peer connection exists.
Uvicorn runs as every feltsafe server does (monitor/serving.py): the ``websockets``
library's sans-I/O protocol, a 64 KiB websocket frame cap, and no access logs (request
paths carry session ids, and ids stay out of logs, DESIGN.md). Ctrl-C shuts down cleanly
(every session ends) and exits with 130.

The flag store (``--db``, SQLite file by default) is opened and migrated before the
server starts, and closed after it stopped (and the flag writer drained). A rule file
(``--rules``) is validated at start: a broken one stops the start with ``file:line``
errors; later edits are hot-reloaded.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import uvicorn

from monitor.app import create_app
from monitor.config import Mode, Settings, load_settings
from monitor.media_host import apply_media_host
from monitor.rtp_hook import check_aiortc_internals
from monitor.serving import uvicorn_config
from monitor.store import Store


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the monitor (WHIP ingest, beacon, REST API)",
        description="Run the feltsafe monitor. Every flag also has a FELTSAFE_* variable "
        "and a config-file key.",
    )
    parser.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="HTTP port (default 8750; 0: any free port)")
    parser.add_argument(
        "--media-host",
        dest="media_host",
        metavar="IP",
        help="the address offered for media (ICE host candidate)",
    )
    parser.add_argument("--mode", choices=[m.value for m in Mode], help="default: full")
    parser.add_argument("--db", metavar="URL", help="default: sqlite:///./feltsafe.db")
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file (TOML)")
    parser.add_argument(
        "--rules",
        type=Path,
        metavar="PACK",
        help="rule-pack YAML, hot-reloaded (default: the bundled default pack)",
    )
    parser.add_argument("--profile", help="session profile the rules run for, e.g. intake")
    parser.add_argument(
        "--trace-dir",
        dest="trace_dir",
        type=Path,
        metavar="DIR",
        help="write a content-free JSONL trace of every session here",
    )
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> Settings:
    cli = {
        "host": args.host,
        "port": args.port,
        "media_host": args.media_host,
        "mode": args.mode,
        "db": args.db,
        "trace_dir": str(args.trace_dir) if args.trace_dir else None,
        "rules": str(args.rules) if args.rules else None,
        "profile": args.profile,
    }
    return load_settings(cli=cli, config_file=args.config)


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    settings.require_secret()
    check_aiortc_internals()
    apply_media_host(settings.media_host)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    store = Store.open(settings.db)
    try:
        config = uvicorn_config(
            create_app(settings, store=store),
            host=settings.host,
            port=settings.port,
            log_level="info",
        )
        uvicorn.Server(config).run()
    finally:
        store.close()
    return 0
