"""Rule-pack files: the bundled default pack, packs on disk, and hot reload by polling.

Theory of operation
-------------------
alerts/ does no I/O: this module reads the text and hands it to
``alerts.pack.parse_pack`` with the file name as the source, so every error reads
``file:line: message``. The default pack is package data of ``alerts``
(``alerts/default_pack.yaml``), read through ``importlib.resources`` so it works from an
installed wheel as well as from a checkout.

Hot reload (``PackFile``): the caller polls (every few seconds, from its own timer;
this module reads no clock). A poll stats the file; when its modification time, size or
inode changed, the text is read and *validated first*: a broken pack is logged with all
its ``file:line`` errors and the old pack keeps running; the same broken version is not
logged again on every poll. A change that leaves the text identical (``touch``) reloads
nothing. A file that vanishes (an editor's rename-into-place in progress) keeps the old
pack too. Start-up is different: a broken pack at start raises (fail fast, naming file
and line), because there is no old pack to keep.

Logs name the pack file, never a session: one reload serves every session.
"""

from __future__ import annotations

import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Final

from alerts.pack import Pack, PackError, parse_pack
from probes.base import ConfigError

DEFAULT_PACK_SOURCE: Final = "alerts/default_pack.yaml"

log = logging.getLogger("feltsafe.rules")


def default_pack_text() -> str:
    return (resources.files("alerts") / "default_pack.yaml").read_text(encoding="utf-8")


@functools.cache
def load_default_pack() -> Pack:
    """The bundled default felt-safety pack (parsed once; a Pack is immutable)."""
    return parse_pack(default_pack_text(), source=DEFAULT_PACK_SOURCE)


def read_pack_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot read the rule pack: {reason}") from None


def load_pack_file(path: str | Path) -> Pack:
    """Read and validate a pack file; raise PackError (file:line errors) or ConfigError."""
    return parse_pack(read_pack_text(path), source=str(path))


def load_pack(path: str | Path | None) -> Pack:
    """A pack file, or the default pack when ``path`` is None."""
    return load_default_pack() if path is None else load_pack_file(path)


_Stamp = tuple[int, int, int]


class PackFile:
    """A rule-pack file, reloaded when it changes: call ``poll()`` now and then."""

    def __init__(self, path: str | Path, *, logger: logging.Logger | None = None) -> None:
        self.path = Path(path)
        self._log = logger or log
        self._stamp = self._stat()
        self.pack = load_pack_file(self.path)  # fail fast at start-up
        self._rejected: _Stamp | None = None
        self._missing_logged = False

    def poll(self) -> Pack | None:
        """The new pack if the file changed into a valid one, else None (keep the old)."""
        stamp = self._stat()
        if stamp is None:
            if not self._missing_logged:
                self._log.warning(
                    "rule pack %s is missing; keeping %s", self.path, _describe(self.pack)
                )
                self._missing_logged = True
            return None
        self._missing_logged = False
        if stamp in (self._stamp, self._rejected):
            return None
        try:
            text = read_pack_text(self.path)
        except ConfigError as exc:
            self._log.warning("%s; keeping %s", exc, _describe(self.pack))
            return None
        try:
            pack = parse_pack(text, source=str(self.path))
        except PackError as exc:
            self._rejected = stamp
            self._log.warning(
                "rule pack %s is not valid, keeping %s:\n%s",
                self.path,
                _describe(self.pack),
                exc,
            )
            return None
        self._stamp = stamp
        self._rejected = None
        if pack.digest == self.pack.digest:
            return None
        self._log.info("rule pack %s reloaded: %s", self.path, _describe(pack))
        self.pack = pack
        return pack

    def _stat(self) -> _Stamp | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)


def _describe(pack: Pack) -> str:
    return f"pack {pack.name} v{pack.version} ({len(pack.rules)} rules)"
