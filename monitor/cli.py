"""The ``feltsafe`` command line.

Exit codes: 0 success, 2 bad input or usage (one line on stderr, never a traceback),
1 an unexpected internal error.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from probes.base import FeltsafeError

# Subcommands, in the order `feltsafe --help` lists them. Each is monitor.commands.<name>.
COMMANDS = ("demo", "serve", "analyze", "replay", "rules", "token", "purge", "dashboards")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feltsafe",
        description="Real-time session-quality monitor for virtual therapy.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module_name = f"monitor.commands.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue  # not built yet; the list above names the whole interface
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except FeltsafeError as exc:
        print(f"feltsafe {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
