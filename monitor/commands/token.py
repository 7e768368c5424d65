"""``feltsafe token issue``: print a signed, expiring access token; ``revoke``: end one.

The secret comes from the same configuration as ``feltsafe serve`` (``--config``,
``FELTSAFE_CONFIG``, ``FELTSAFE_SECRET``), so a token issued here verifies there.
What each role reaches is monitor/access.py's policy table. ``--sessions a,b`` gives a
supervisor token an allow-list of sessions; ``--subject`` names the account the token
is for (an opaque id: it is what the audit log records as the actor).

``feltsafe token revoke TOKEN`` (or ``--jti ID``) adds the token's id to the
``revocation_list`` file every worker follows (monitor/revocation.py): within about a
second its requests are refused and its websockets closed (4401).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from monitor.config import load_settings
from monitor.tokens import DEFAULT_TTL, TokenError, TokenRole, issue_token, revocable_id
from probes.base import ConfigError, Role


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
    issue.add_argument(
        "--sessions",
        metavar="S1,S2",
        help="a supervisor token's allow-list of session ids (default: every session)",
    )
    issue.add_argument(
        "--subject",
        metavar="ID",
        help="the opaque account id the token is for (default: a random one)",
    )
    issue.add_argument("--config", type=Path, help="config file (TOML) holding the secret")
    issue.set_defaults(func=run)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a token (by the token, or by its id)",
        description="Add a token's id to the revocation list (setting revocation_list).",
    )
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("token", nargs="?", help="the token to revoke (expired or not)")
    which.add_argument(
        "--jti", help="the id (jti claim) of the token to revoke (one starting with -: --jti=ID)"
    )
    revoke.add_argument("--config", type=Path, help="config file (TOML)")
    revoke.set_defaults(func=run_revoke)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(config_file=args.config)
    token = issue_token(
        settings.require_secret(),
        role=TokenRole(args.role),
        session=args.session,
        participant=Role(args.participant) if args.participant else None,
        ttl=args.ttl,
        subject=args.subject,
        sessions=_session_list(args.sessions),
    )
    print(token)
    return 0


def _session_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    listed = [part.strip() for part in text.split(",") if part.strip()]
    if not listed:
        raise TokenError("--sessions needs at least one session id")
    return listed


def run_revoke(args: argparse.Namespace) -> int:
    import time

    from monitor.revocation import revoke_in_file

    settings = load_settings(config_file=args.config)
    if settings.revocation_list is None:
        raise ConfigError(
            "no revocation list configured: set FELTSAFE_REVOCATION_LIST or "
            "`revocation_list` in the config file (the file feltsafe serve follows)"
        )
    if args.jti is not None:
        token_id, expires_at = args.jti, float("inf")
    else:
        token_id, expires_at = revocable_id(settings.require_secret(), args.token)
    try:
        listed = revoke_in_file(
            settings.revocation_list, token_id, expires_at=expires_at, now=time.time()
        )
    except ValueError as error:
        raise TokenError(str(error)) from None
    except OSError as error:
        raise ConfigError(f"{settings.revocation_list}: cannot write: {error.strerror}") from None
    print(f"revoked {token_id} ({listed} token(s) on the list)")
    return 0
