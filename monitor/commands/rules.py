"""``feltsafe rules``: check rule packs, and print the bundled default pack.

``feltsafe rules check PACK [PACK ...]`` validates each pack. It prints ``PACK: ok
(...)`` for a valid pack, and one ``file:line: message`` line on stderr per problem of an
invalid one, as compilers do, so editors can jump to the line. Exit 0 when every pack is
valid, 2 otherwise (cli.py's convention for bad input).

``feltsafe rules default`` prints the bundled default pack: a starting point to copy,
edit and point the monitor at.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alerts.pack import PackError
from monitor.rulefile import default_pack_text, load_pack_file
from probes.base import ConfigError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "rules",
        help="check rule packs; print the default pack",
        description="Work with felt-safety rule packs (YAML).",
    )
    actions = parser.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate rule packs (file:line errors; exit 2 if any is invalid)",
        description="Validate rule packs. Errors print as file:line: message.",
    )
    check.add_argument("packs", nargs="+", metavar="PACK", help="a rule-pack YAML file")
    check.set_defaults(func=run_check)
    default = actions.add_parser(
        "default",
        help="print the bundled default rule pack",
        description="Print the bundled default felt-safety rule pack, to copy and edit.",
    )
    default.set_defaults(func=run_default)


def run_check(args: argparse.Namespace) -> int:
    status = 0
    for path in args.packs:
        try:
            pack = load_pack_file(path)
        except PackError as exc:
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            status = 2
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            status = 2
        else:
            print(f"{path}: ok (pack {pack.name} v{pack.version}, {len(pack.rules)} rules)")
    return status


def run_default(args: argparse.Namespace) -> int:
    sys.stdout.write(default_pack_text())
    return 0
