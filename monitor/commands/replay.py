"""``feltsafe replay TRACE [--rules PACK] [--profile NAME] [--json]``: rules over a trace.

Runs a rule pack over a content-free session trace (monitor/trace.py) and prints the
flags it gives: the same flags the live run gave, when the pack is the one the session
ran with (the trace header records the pack's digest; a different pack is fine, that is
how packs are tuned, and is noted on stderr).

- ``--rules`` is optional: without it the bundled default pack runs (DESIGN.md writes
  ``--rules PACK``; the default saves typing ``$(feltsafe rules default)`` into a file).
- ``--profile`` defaults to the session profile in the trace header.
- A trace with a ``session_ended`` event ends every open flag there, as the live
  runtime does; without one (a session cut short), flags still up stay open
  (``end`` null).
- ``--json`` prints one JSON document with sorted keys and no file paths, so replaying
  the same trace through the same pack gives the same bytes wherever it runs.

Exit 0 after a replay (flags or not), 2 for an unreadable trace or an invalid pack.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from alerts.engine import replay
from alerts.model import Flag
from alerts.pack import Pack, PackError
from monitor.rulefile import load_pack
from monitor.trace import Trace, read_trace

REPLAY_FORMAT = "feltsafe-replay"
REPLAY_VERSION = 1


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-run rules over a content-free session trace",
        description="Re-run a rule pack over a session trace and print the flags.",
    )
    parser.add_argument("trace", metavar="TRACE", help="a feltsafe trace (JSONL)")
    parser.add_argument(
        "--rules", metavar="PACK", help="rule-pack YAML (default: the bundled default pack)"
    )
    parser.add_argument("--profile", help="session profile, e.g. intake (default: the trace's own)")
    parser.add_argument("--json", action="store_true", help="print JSON (stable output)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        pack = load_pack(args.rules)
    except PackError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return 2
    trace = read_trace(args.trace)  # TraceError: cli.py prints it and exits 2
    profile = args.profile if args.profile is not None else trace.header.profile
    if profile is not None and profile not in pack.profiles:
        print(
            f"note: pack {pack.name} declares no profile {profile!r}; no rule is switched by it",
            file=sys.stderr,
        )
    if trace.header.pack_digest and trace.header.pack_digest != pack.digest:
        live = trace.header.pack_name or "another pack"
        print(f"note: the session ran {live}, not this pack text", file=sys.stderr)
    if trace.truncated:
        print(f"note: {args.trace}: the last line was cut off; replayed up to it", file=sys.stderr)
    flags = replay(pack, trace.ticks(), profile=profile, end=trace.ended_at)
    if args.json:
        sys.stdout.write(replay_json(trace, pack, profile, flags))
    else:
        sys.stdout.write(replay_text(args.trace, trace, pack, profile, flags))
    return 0


def replay_json(trace: Trace, pack: Pack, profile: str | None, flags: Sequence[Flag]) -> str:
    span = trace.span
    document = {
        "format": REPLAY_FORMAT,
        "version": REPLAY_VERSION,
        "trace": {
            "ticks": trace.tick_count,
            "first": span[0] if span else None,
            "last": span[1] if span else None,
            "ended_at": trace.ended_at,
            "truncated": trace.truncated,
            "profile": profile,
        },
        "pack": {"name": pack.name, "version": pack.version, "digest": pack.digest},
        "flags": [flag.as_dict() for flag in flags],
    }
    return json.dumps(document, sort_keys=True, indent=2, allow_nan=False) + "\n"


def replay_text(
    name: str, trace: Trace, pack: Pack, profile: str | None, flags: Sequence[Flag]
) -> str:
    span = trace.span
    when = f"{span[0]:.2f}-{span[1]:.2f} s" if span else "no ticks"
    lines = [
        f"trace {name}: {trace.tick_count} ticks, {when}, profile {profile or 'none'}",
        f"pack {pack.name} v{pack.version} ({len(pack.rules)} rules)",
        f"{len(flags)} flag{'' if len(flags) == 1 else 's'}",
    ]
    for flag in flags:
        end = f"{flag.end:.2f}" if flag.end is not None else "open"
        lines.append(
            f"  {flag.start:9.2f} - {end:>9}  {flag.severity!s:<5}  {flag.rule_id}"
            f" (v{flag.rule_version})"
        )
        lines.append(f"      {flag.title}")
        if flag.message:
            lines.append(f"      message: {flag.message}")
        lines.append(f"      context: {_pairs(flag.context)}")
        lines.append(f"      evidence: {_pairs(flag.evidence)}")
    return "\n".join(lines) + "\n"


def _pairs(values: Mapping[str, object]) -> str:
    shown = [f"{k}={_show(v)}" for k, v in sorted(values.items()) if v is not None]
    return ", ".join(shown) or "-"


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


__all__ = ["REPLAY_FORMAT", "register", "replay_json", "replay_text", "run"]
