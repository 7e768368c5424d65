"""``feltsafe demo``: a scripted therapy session, end to end, on this machine, no set-up.

Starts the monitor (as ``feltsafe serve``) on 127.0.0.1 with an SQLite flag store and a
secret generated for the run, and two simulated participants who publish synthetic
speech and a moving picture over WHIP and play a scripted session with faults (a
network dip, a therapist interruption streak, the therapist's picture freezing while
the client discloses). It prints the URLs of the therapist's indicator and of the
supervisor's review (tokens in the URL fragment), shows progress, and at the end the
flags read back from the store. The orchestration is monitor/demo/run.py.

Exit status: 0 the script played to its end; 130 stopped by Ctrl-C (SIGINT) before
that, 143 by SIGTERM; 1 the participants could not join or failed; 2 bad options.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from monitor.demo.script import DEFAULT_DURATION, MAX_DURATION, MIN_DURATION, Scenario


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="play a scripted session end to end (monitor, participants, flags)",
        description="Play a scripted therapy session between two simulated participants "
        "through a local monitor, and show the therapist's indicator, the supervisor's "
        "review and the flags raised. Ctrl-C stops it cleanly.",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION,
        metavar="SECONDS",
        help=f"length of the session, {MIN_DURATION:.0f}-{MAX_DURATION:.0f} s "
        f"(default {DEFAULT_DURATION:.0f}; under 100 s the network dip is left out, under 70 s "
        "the interruptions too)",
    )
    parser.add_argument(
        "--scenario",
        choices=[s.value for s in Scenario],
        default=Scenario.DEFAULT.value,
        help="default: the three faults; calm: the same kind of session, no faults",
    )
    parser.add_argument(
        "--no-browser",
        dest="browser",
        action="store_false",
        default=None,
        help="do not open the pages in a browser (default: open them when a display is available)",
    )
    parser.add_argument(
        "--port",
        type=int,
        metavar="P",
        help="HTTP port on 127.0.0.1 (default 8750, or any free port if it is taken; "
        "0: any free port)",
    )
    parser.add_argument(
        "--db",
        metavar="PATH",
        default="./feltsafe-demo.db",
        help="SQLite file for the flags (default ./feltsafe-demo.db; a database URL "
        "is taken as it is)",
    )
    parser.add_argument(
        "--keep-serving",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the session, keep the monitor up for the review page until Ctrl-C "
        "(default: on a terminal)",
    )
    parser.add_argument(
        "--trace-dir",
        dest="trace_dir",
        type=Path,
        metavar="DIR",
        help="also write the session's content-free JSONL trace here (for feltsafe replay)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from monitor.demo.run import DemoFailedError, DemoOptions, run_demo

    if args.port is not None and not 0 <= args.port <= 65535:
        print("feltsafe demo: --port must be within 0-65535", file=sys.stderr)
        return 2
    options = DemoOptions(
        duration=args.duration,
        scenario=args.scenario,
        browser=args.browser,
        port=args.port,
        db=args.db,
        keep_serving=args.keep_serving,
        trace_dir=args.trace_dir,
    )
    try:
        return run_demo(options)
    except DemoFailedError as exc:
        print(f"feltsafe demo: {exc}", file=sys.stderr)
        return 1
