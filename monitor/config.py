"""Settings of ``feltsafe serve``: defaults < config file < environment < command line.

Theory of operation: every setting has one name, used three ways (DESIGN.md,
"Interfaces"): a config-file key (``media_host``), an environment variable
(``FELTSAFE_MEDIA_HOST``) and, for the settings people change most, a command-line flag
(``--media-host``). Values are merged in precedence order, command line first, then
validated once into a frozen :class:`Settings`; nothing reads the environment later.

The config file is TOML (``tomllib``), flat keys at the top level:

.. code-block:: toml

    host = "127.0.0.1"
    port = 8750
    media_host = "127.0.0.2"
    mode = "metadata"
    db = "sqlite:///./feltsafe.db"
    secret = "..."                     # at least 32 characters, for HS256 tokens
    allowed_origins = ["https://therapy.example"]
    ice_servers = [{urls = "turn:turn.example:3478", username = "u", credential = "p"}]
    tick_interval = 0.25
    trace_dir = "/var/lib/feltsafe/traces"
    retention_days = 90
    rules = "/etc/feltsafe/rules.yaml"  # default: the bundled pack; hot-reloaded
    profile = "individual"              # session profile (modality) the rules run for
    revocation_list = "/etc/feltsafe/revoked"  # revoked token ids (monitor/revocation.py)

Environment values are strings: lists are comma-separated (or a JSON array), numbers are
parsed. A bad file, an unknown key or a value of the wrong type fails fast at start-up
with a :class:`ConfigError` naming the file, the key and, where it can be found, the line.
A secret is never part of an error message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path

from probes.base import ConfigError

ENV_PREFIX = "FELTSAFE_"
CONFIG_ENV = "FELTSAFE_CONFIG"
MIN_SECRET_LENGTH = 32  # RFC 7518 §3.2: an HS256 key is at least 256 bits


class Mode(StrEnum):
    """How much of the media the monitor looks at (DESIGN.md, non-negotiable 2)."""

    FULL = "full"  # decode audio (VAD) and video (Y-plane content freeze)
    METADATA = "metadata"  # RTP headers and RFC 6464 levels only; nothing is decoded


@dataclass(frozen=True, slots=True)
class IceServer:
    """One STUN or TURN server offered to the monitor's own ICE agent."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8750
    # The address aioice offers as its host candidate (it never offers 127.0.0.1 on its
    # own). None: every address of the machine except loopback, aioice's default.
    media_host: str | None = None
    mode: Mode = Mode.FULL
    db: str = "sqlite:///./feltsafe.db"
    secret: str | None = field(default=None, repr=False)
    allowed_origins: tuple[str, ...] = ()
    ice_servers: tuple[IceServer, ...] = ()
    tick_interval: float = 0.25
    trace_dir: Path | None = None
    retention_days: int = 90
    # A rule-pack file, validated at start-up and followed by hot reload; None: the
    # bundled default pack (alerts/default_pack.yaml).
    rules: Path | None = None
    # The session profile (modality) the rules run for (a pack's `profiles`); None: none.
    profile: str | None = None
    # The file of revoked token ids (`feltsafe token revoke` writes it, every worker
    # follows it); None: revocations only in-process (monitor/revocation.py).
    revocation_list: Path | None = None

    def require_secret(self) -> str:
        """The token secret, or a ConfigError telling the operator how to set one."""
        if self.secret is None:
            raise ConfigError(
                "no token secret configured: set FELTSAFE_SECRET or `secret` in the "
                f"config file (at least {MIN_SECRET_LENGTH} characters)"
            )
        return self.secret


KEYS: tuple[str, ...] = tuple(f.name for f in fields(Settings))


def load_settings(
    *,
    cli: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | str | None = None,
) -> Settings:
    """Merge defaults, the config file, ``FELTSAFE_*`` variables and ``cli`` values.

    ``cli`` maps setting names to values, None meaning "flag not given". The config
    file is ``config_file`` if given, else ``$FELTSAFE_CONFIG``, else none.
    """
    environ = os.environ if env is None else env
    path = config_file if config_file is not None else environ.get(CONFIG_ENV)
    settings = Settings()
    if path:
        settings = _apply(settings, _read_file(Path(path)), source=str(path))
    from_env = {
        key: environ[ENV_PREFIX + key.upper()]
        for key in KEYS
        if ENV_PREFIX + key.upper() in environ
    }
    settings = _apply(settings, from_env, source="environment", env_style=True)
    from_cli = {k: v for k, v in (cli or {}).items() if v is not None}
    return _apply(settings, from_cli, source="command line")


def _read_file(path: Path) -> dict[str, object]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return data


class _BadValueError(ValueError):
    pass


def _apply(
    settings: Settings, values: Mapping[str, object], *, source: str, env_style: bool = False
) -> Settings:
    changes: dict[str, object] = {}
    for key, raw in values.items():
        where = _locate(source, key, env_style=env_style)
        if key not in _PARSERS:
            raise ConfigError(f"{where}: unknown setting (known: {', '.join(KEYS)})")
        try:
            changes[key] = _PARSERS[key](raw, env_style)
        except _BadValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return replace(settings, **changes)  # type: ignore[arg-type]


def _locate(source: str, key: str, *, env_style: bool) -> str:
    if env_style:
        return f"{ENV_PREFIX}{key.upper()} (environment)"
    if source == "command line":
        return f"--{key.replace('_', '-')} (command line)"
    line = _line_of(Path(source), key)
    return f"{source}:{line}: key {key!r}" if line else f"{source}: key {key!r}"


def _line_of(path: Path, key: str) -> int | None:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    pattern = re.compile(rf"^\s*\"?{re.escape(key)}\"?\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


# --- value parsers: (raw value, came from the environment?) -> typed value ----------


def _str(raw: object, env_style: bool) -> str:
    if not isinstance(raw, str) or not raw:
        raise _BadValueError("expected a non-empty string")
    return raw


def _int_in(low: int, high: int) -> Callable[[object, bool], int]:
    def parse(raw: object, env_style: bool) -> int:
        if isinstance(raw, str) and env_style:
            try:
                raw = int(raw)
            except ValueError:
                raise _BadValueError(f"expected an integer, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise _BadValueError("expected an integer")
        if not low <= raw <= high:
            raise _BadValueError(f"expected an integer in [{low}, {high}], got {raw}")
        return raw

    return parse


def _seconds(raw: object, env_style: bool) -> float:
    if isinstance(raw, str) and env_style:
        try:
            raw = float(raw)
        except ValueError:
            raise _BadValueError(f"expected a number of seconds, got {raw!r}") from None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _BadValueError("expected a number of seconds")
    if not 0.01 <= raw <= 10.0:
        raise _BadValueError(f"expected a number of seconds in [0.01, 10], got {raw}")
    return float(raw)


def _ip(raw: object, env_style: bool) -> str:
    text = _str(raw, env_style)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise _BadValueError(f"expected an IP address, got {text!r}") from None


def _mode(raw: object, env_style: bool) -> Mode:
    try:
        return Mode(_str(raw, env_style))
    except ValueError:
        raise _BadValueError(f"expected one of {', '.join(Mode)}, got {raw!r}") from None


def _db(raw: object, env_style: bool) -> str:
    text = _str(raw, env_style)
    if "://" not in text:
        raise _BadValueError("expected a database URL such as sqlite:///./feltsafe.db")
    return text


def _secret(raw: object, env_style: bool) -> str:
    if not isinstance(raw, str) or len(raw) < MIN_SECRET_LENGTH:
        # The value itself is never echoed: it is a secret, even when it is a bad one.
        raise _BadValueError(
            f"the secret must be a string of at least {MIN_SECRET_LENGTH} characters"
        )
    return raw


def _string_list(raw: object, env_style: bool) -> tuple[str, ...]:
    if isinstance(raw, str) and env_style:
        raw = _env_list(raw)
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        raise _BadValueError("expected a list of non-empty strings")
    return tuple(raw)


def _origins(raw: object, env_style: bool) -> tuple[str, ...]:
    origins = _string_list(raw, env_style)
    for origin in origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise _BadValueError(f"expected origins like https://app.example, got {origin!r}")
    return origins


def _env_list(text: str) -> object:
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _BadValueError(f"not a valid JSON array: {exc}") from None
    return [part.strip() for part in text.split(",") if part.strip()]


def _ice_servers(raw: object, env_style: bool) -> tuple[IceServer, ...]:
    if isinstance(raw, str) and env_style:
        raw = _env_list(raw)
    if not isinstance(raw, list):
        raise _BadValueError("expected a list of URLs or of {urls, username, credential} tables")
    servers: list[IceServer] = []
    for entry in raw:
        item = {"urls": entry} if isinstance(entry, str) else entry
        if not isinstance(item, dict) or "urls" not in item:
            raise _BadValueError("each ICE server is a URL or a table with `urls`")
        unknown = set(item) - {"urls", "username", "credential"}
        if unknown:
            raise _BadValueError(f"unknown ICE server field(s): {', '.join(sorted(unknown))}")
        urls = item["urls"]
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not all(
            isinstance(u, str) and re.match(r"(stun|stuns|turn|turns):", u) for u in url_list
        ):
            raise _BadValueError("ICE server urls must be stun:, stuns:, turn: or turns: URLs")
        username, credential = item.get("username"), item.get("credential")
        if not all(v is None or isinstance(v, str) for v in (username, credential)):
            raise _BadValueError("ICE server username and credential must be strings")
        servers.append(IceServer(tuple(url_list), username, credential))
    return tuple(servers)


def _path(raw: object, env_style: bool) -> Path:
    return Path(_str(raw, env_style))


def _profile(raw: object, env_style: bool) -> str:
    text = _str(raw, env_style)
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", text):
        raise _BadValueError(f"expected a profile name like intake, got {text!r}")
    return text


_PARSERS: dict[str, Callable[[object, bool], object]] = {
    "host": _str,
    "port": _int_in(0, 65535),
    "media_host": _ip,
    "mode": _mode,
    "db": _db,
    "secret": _secret,
    "allowed_origins": _origins,
    "ice_servers": _ice_servers,
    "tick_interval": _seconds,
    "trace_dir": _path,
    "retention_days": _int_in(1, 36500),
    "rules": _path,
    "profile": _profile,
    "revocation_list": _path,
}
assert set(_PARSERS) == set(KEYS), "every setting needs a parser"
