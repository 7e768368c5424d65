"""Session traces: the content-free JSONL record of every snapshot the rules engine saw.

Theory of operation
-------------------
A trace lets a rule pack be replayed over a past session (``feltsafe replay``) and give
exactly the flags the live run gave. That holds because the engine is a pure function
of the ``(now, snapshot)`` sequence (alerts/engine.py): so the live runtime must write
every snapshot it evaluates, with the same ``now``, in the same order, and write
``session_ended`` at the ``now`` it calls ``Engine.finish`` with.

Format (UTF-8, one JSON object per line, ``\\n`` endings):

1. a header: ``{"format": "feltsafe-trace", "version": 1, "profile": "individual",
   "mode": "full", "tick_s": 0.25, "pack": {"name": ..., "version": ..., "digest":
   ...}}``; every field but ``format`` and ``version`` may be null;
2. one line per tick: ``{"t": 12.25, "signals": {...}}``, where ``signals`` holds only
   the signals that *changed* since the previous tick (the first tick holds them all),
   and a signal that went away is written ``null``. Unknown and absent mean the same
   to the engine (NO_DATA), so replay loses nothing;
3. marker events: ``{"t": 12.3, "event": "marker_on"}`` (``TraceEventKind``: the
   therapist's sensitive-moment marker on and off, a pack reload, the session's end).

Content-free by construction: the writer accepts only names from the signal catalogue
(probes/signals.py) and values that are booleans, numbers or null; NaN and infinities are
written null (the engine reads them as NO_DATA anyway). There is no session, person or
room id in a trace; the file's name and place are the caller's business. Times are the
engine's clock: monotonic seconds, no wall-clock time.

Floats are written with ``repr`` precision, so they read back bit for bit. Each line is
flushed as it is written; a crash can cut off only the last line, which the reader then
skips (``Trace.truncated``). Any other malformed line is an error naming file and line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TextIO

from probes.base import FeltsafeError
from probes.signals import CATALOGUE, SignalValue

TRACE_FORMAT: Final = "feltsafe-trace"
TRACE_VERSION: Final = 1


class TraceError(FeltsafeError):
    """A trace is malformed (reading), or the caller tried to write what a trace may not
    hold (writing): a name outside the catalogue, a text value, time going backwards."""


class TraceEventKind(StrEnum):
    MARKER_ON = "marker_on"
    MARKER_OFF = "marker_off"
    PACK_RELOADED = "pack_reloaded"
    SESSION_ENDED = "session_ended"


@dataclass(frozen=True, slots=True)
class TraceHeader:
    profile: str | None = None
    mode: str | None = None
    tick_s: float | None = 0.25
    pack_name: str | None = None
    pack_version: int | None = None
    pack_digest: str | None = None
    version: int = TRACE_VERSION

    def as_json(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "version": self.version,
            "profile": self.profile,
            "mode": self.mode,
            "tick_s": self.tick_s,
            "pack": {
                "name": self.pack_name,
                "version": self.pack_version,
                "digest": self.pack_digest,
            },
        }


@dataclass(frozen=True, slots=True)
class TraceTick:
    """One tick: ``changes`` holds the signals that changed since the previous tick."""

    t: float
    changes: Mapping[str, SignalValue]


@dataclass(frozen=True, slots=True)
class TraceEvent:
    t: float
    kind: TraceEventKind
    pack_digest: str | None = None  # for PACK_RELOADED


TraceRecord = TraceTick | TraceEvent


@dataclass(frozen=True, slots=True)
class Trace:
    header: TraceHeader
    records: tuple[TraceRecord, ...]
    source: str = "<trace>"
    truncated: bool = False  # the last line was cut off (a crash while writing)
    unknown_signals: frozenset[str] = field(default_factory=frozenset)

    def ticks(self) -> Iterator[tuple[float, dict[str, SignalValue]]]:
        """Each tick's full snapshot, rebuilt from the changes (a fresh dict each)."""
        current: dict[str, SignalValue] = {}
        for record in self.records:
            if isinstance(record, TraceTick):
                current.update(record.changes)
                yield record.t, dict(current)

    @property
    def tick_count(self) -> int:
        return sum(1 for r in self.records if isinstance(r, TraceTick))

    @property
    def span(self) -> tuple[float, float] | None:
        times = [r.t for r in self.records if isinstance(r, TraceTick)]
        return (times[0], times[-1]) if times else None

    @property
    def ended_at(self) -> float | None:
        """When the session ended (its ``session_ended`` event), if the trace says."""
        for record in reversed(self.records):
            if isinstance(record, TraceEvent) and record.kind is TraceEventKind.SESSION_ENDED:
                return record.t
        return None


# --- writing ---------------------------------------------------------------------------


def _clean(name: str, raw: object) -> SignalValue:
    if name not in CATALOGUE:
        raise TraceError(f"not a catalogue signal, refusing to write it: {name!r}")
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, int | float):
        number = float(raw)
        return number if math.isfinite(number) else None
    raise TraceError(f"{name}: a trace holds numbers, booleans or null, not {type(raw).__name__}")


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"


class TraceWriter:
    """Writes a trace to a text stream; ``TraceWriter.create(path, header)`` for a file."""

    def __init__(self, stream: TextIO, header: TraceHeader) -> None:
        self._stream = stream
        self._last: dict[str, SignalValue] = {}
        self._now: float | None = None
        self._write(header.as_json())

    @classmethod
    def create(cls, path: str | Path, header: TraceHeader) -> TraceWriter:
        # Mode "x": never overwrite an existing trace. The writer owns the stream.
        stream = Path(path).open("x", encoding="utf-8", newline="\n")  # noqa: SIM115
        try:
            return cls(stream, header)
        except BaseException:
            stream.close()
            raise

    def tick(self, snapshot: Mapping[str, object], *, now: float) -> None:
        self._advance(now)
        cleaned = {name: _clean(name, raw) for name, raw in snapshot.items()}
        changes: dict[str, SignalValue] = {
            name: value
            for name, value in cleaned.items()
            if name not in self._last or not _same(self._last[name], value)
        }
        for name in self._last.keys() - cleaned.keys():
            if self._last[name] is not None:
                changes[name] = None  # went away: unknown from now on
        self._last = {**self._last, **changes}
        self._write({"t": float(now), "signals": changes})

    def event(self, kind: TraceEventKind, *, now: float, pack_digest: str | None = None) -> None:
        self._advance(now)
        record: dict[str, Any] = {"t": float(now), "event": str(TraceEventKind(kind))}
        if pack_digest is not None:
            record["pack_digest"] = pack_digest
        self._write(record)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _advance(self, now: float) -> None:
        if not math.isfinite(now):
            raise TraceError(f"a tick time must be finite, got {now!r}")
        if self._now is not None and now < self._now:
            raise TraceError(f"time went backwards: {now} after {self._now}")
        self._now = now

    def _write(self, record: Mapping[str, Any]) -> None:
        self._stream.write(_dumps(record))
        self._stream.flush()


def _same(a: SignalValue, b: SignalValue) -> bool:
    # True == 1.0 in Python; a trace must keep a bool a bool.
    return type(a) is type(b) and a == b


# --- reading ---------------------------------------------------------------------------


def read_trace(path: str | Path) -> Trace:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"{path}: cannot read the trace: {exc}") from None
    return parse_trace(text.splitlines(keepends=True), source=str(path))


def parse_trace(lines: Iterable[str], *, source: str) -> Trace:
    """Parse trace lines (with or without their ``\\n``); raise TraceError on a bad one."""
    numbered = list(enumerate(lines, start=1))
    if not numbered:
        raise TraceError(f"{source}:1: empty trace (no header)")
    header = _header(numbered[0][1], source)
    records: list[TraceRecord] = []
    unknown: set[str] = set()
    truncated = False
    last_t: float | None = None
    for number, line in numbered[1:]:
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if number == len(numbered) and not line.endswith("\n"):
                truncated = True  # cut off by a crash mid-write
                break
            raise TraceError(f"{source}:{number}: not a JSON line") from None
        record = _record(obj, f"{source}:{number}", unknown)
        if last_t is not None and record.t < last_t:
            raise TraceError(f"{source}:{number}: time goes backwards ({record.t} < {last_t})")
        last_t = record.t
        records.append(record)
    return Trace(header, tuple(records), source, truncated, frozenset(unknown))


def _header(line: str, source: str) -> TraceHeader:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        raise TraceError(f"{source}:1: not a feltsafe trace (no JSON header)") from None
    if not isinstance(obj, dict) or obj.get("format") != TRACE_FORMAT:
        raise TraceError(f"{source}:1: not a feltsafe trace (format is not {TRACE_FORMAT!r})")
    if obj.get("version") != TRACE_VERSION:
        raise TraceError(f"{source}:1: unsupported trace version {obj.get('version')!r}")
    raw_pack = obj.get("pack")
    pack: dict[str, Any] = raw_pack if isinstance(raw_pack, dict) else {}
    tick_s = obj.get("tick_s")
    return TraceHeader(
        profile=_optional(obj.get("profile"), str),
        mode=_optional(obj.get("mode"), str),
        tick_s=float(tick_s) if isinstance(tick_s, int | float) else None,
        pack_name=_optional(pack.get("name"), str),
        pack_version=_optional(pack.get("version"), int),
        pack_digest=_optional(pack.get("digest"), str),
    )


def _optional(value: object, kind: type[Any]) -> Any:
    return value if isinstance(value, kind) and not isinstance(value, bool) else None


def _record(obj: object, where: str, unknown: set[str]) -> TraceRecord:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: a trace line is a JSON object")
    t = obj.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t):
        raise TraceError(f"{where}: 't' must be a number of seconds")
    if "event" in obj:
        try:
            kind = TraceEventKind(obj["event"])
        except ValueError:
            raise TraceError(f"{where}: unknown event {obj['event']!r}") from None
        digest = obj.get("pack_digest")
        return TraceEvent(float(t), kind, digest if isinstance(digest, str) else None)
    signals = obj.get("signals")
    if not isinstance(signals, dict):
        raise TraceError(f"{where}: a tick line needs a 'signals' object")
    changes: dict[str, SignalValue] = {}
    for name, value in signals.items():
        if value is not None and not isinstance(value, bool | int | float):
            raise TraceError(f"{where}: {name}: a trace holds numbers, booleans or null")
        if name not in CATALOGUE:
            unknown.add(name)  # from a newer catalogue: kept, no rule can read it
        changes[name] = (
            float(value) if isinstance(value, int) and not isinstance(value, bool) else value
        )
    return TraceTick(float(t), changes)
