"""``feltsafe token issue``: print a signed, expiring access token.

The secret comes from the same configuration as ``feltsafe serve`` (``--config``,
``FELTSAFE_CONFIG``, ``FELTSAFE_SECRET``), so a token issued here verifies there.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from monitor.config import load_settings
from monitor.tokens import DEFAULT_TTL, TokenRole, issue_token
from probes.base import Role


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("token", help="issue access tokens")
    actions = parser.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    issue = actions.add_parser(
        "issue",
        help="print a signed, expiring token",
        description="Print a signed, expiring access token (JWT, HS256) on stdout.",
    )
    issue.add_argument("--role", required=True, choices=[r.value for r in TokenRole])
    issue.add_argument("--session", help="the session the token is for")
    issue.add_argument(
        "--as",
        dest="participant",
        choices=[r.value for r in Role],
        help="the participant a publisher token publishes as",
    )
    issue.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        metavar="SECONDS",
        help=f"lifetime in seconds (default {DEFAULT_TTL:.0f})",
    )
    issue.add_argument("--config", type=Path, help="config file (TOML) holding the secret")
    issue.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(config_file=args.config)
    token = issue_token(
        settings.require_secret(),
        role=TokenRole(args.role),
        session=args.session,
        participant=Role(args.participant) if args.participant else None,
        ttl=args.ttl,
    )
    print(token)
    return 0
