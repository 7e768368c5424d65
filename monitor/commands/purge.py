"""``feltsafe purge``: apply the retention policy to the flag store.

Deletes the sessions that ended more than ``--older-than`` DAYS ago, with their flags
and timeline samples (a session whose end was never recorded counts from its start),
and audit entries older than ``--audit-older-than`` DAYS. Idempotent: run it from cron
as often as you like; a second run finds nothing more to delete. Prints what it deleted.

Defaults come from the same configuration as ``feltsafe serve`` (monitor/config.py):
the database from ``--db``, ``FELTSAFE_DB`` or the config file's ``db``; the retention
from ``FELTSAFE_RETENTION_DAYS`` or ``retention_days`` (90 days by default).

The audit log outlives the sessions it is about: by default it is kept
``AUDIT_RETENTION_DAYS`` (six years, the retention HIPAA sets for required
documentation, 45 CFR 164.316(b)(2)(i)), and never less than the sessions' retention.
Each purge itself leaves an audit entry.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from monitor.config import load_settings
from monitor.store import Store, StoreError
from monitor.store.engine import parse_url

AUDIT_RETENTION_DAYS = 6 * 365


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of days, got {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 day, got {days}")
    return days


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "purge",
        help="delete sessions, flags and timelines past their retention",
        description=(
            "Delete sessions that ended more than DAYS ago, with their flags and timeline,"
            " and audit entries past the audit retention. Idempotent."
        ),
    )
    parser.add_argument(
        "--older-than", type=_days, metavar="DAYS",
        help="retention in days (default: retention_days from the configuration, 90)",
    )  # fmt: skip
    parser.add_argument(
        "--audit-older-than", type=_days, metavar="DAYS",
        help=f"audit retention in days (default {AUDIT_RETENTION_DAYS}, never below --older-than)",
    )  # fmt: skip
    parser.add_argument("--db", metavar="URL", help="the store (default sqlite:///./feltsafe.db)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file (TOML)")
    parser.add_argument("--json", action="store_true", help="print the counts as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(cli={"db": args.db}, config_file=args.config)
    days = args.older_than if args.older_than is not None else settings.retention_days
    audit_days = args.audit_older_than
    if audit_days is None:
        audit_days = max(AUDIT_RETENTION_DAYS, days)
    _refuse_missing_sqlite_file(settings.db)
    try:
        with Store.open(settings.db) as store:
            counts = store.purge(
                older_than_days=days, audit_older_than_days=audit_days, now=datetime.now(UTC)
            )
    except OperationalError as exc:
        shown = parse_url(settings.db).render_as_string(hide_password=True)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise StoreError(f"cannot use the store at {shown}: {reason}") from None
    if args.json:
        print(json.dumps({"older_than_days": days, "audit_older_than_days": audit_days,
                          "sessions": counts.sessions, "flags": counts.flags,
                          "timeline_points": counts.timeline_points,
                          "audit_entries": counts.audit_entries}))  # fmt: skip
    else:
        print(
            f"purged {counts.sessions} sessions ended over {days} days ago"
            f" ({counts.flags} flags, {counts.timeline_points} timeline points)"
            f" and {counts.audit_entries} audit entries over {audit_days} days old"
        )
    return 0


def _refuse_missing_sqlite_file(url: str) -> None:
    """Purging a store that is not there would create an empty one: say so instead."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(str(parsed.database)).exists():
        raise StoreError(f"no store at {parsed.database}: check --db or FELTSAFE_DB")
