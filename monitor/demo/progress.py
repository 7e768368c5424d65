"""What ``feltsafe demo`` shows in the terminal: the plan, the URLs, progress, the summary.

Theory of operation: everything goes to one text stream (stdout). Plain lines say when
something changes: an act of the script begins, the therapist's indicator changes level
or words, a flag is stored or escalates. On a terminal there is also a single status line,
redrawn in place (carriage return, erase to the end of the line, cut to the terminal's
width), with the time, the act, the indicator's level and the flags so far; the plain
lines are printed above it. On anything else (a pipe, a log file, CI) there is no status
line. Times are shown as ``m:ss`` of *script time* (seconds since the
participants' call began, monitor/demo/script.py), the same clock as the plan printed at
the start, so a reader can match each flag to the fault that caused it.

Nothing here reads a clock or the store: :class:`Progress` is told what to show.
Only derived figures are shown (rule ids, severities, levels, times), as everywhere.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TextIO

from alerts.model import Severity
from monitor.demo.script import DemoScript, Incident
from monitor.store import StoredFlag

_ERASE = "\r\x1b[K"
SEVERITIES = (Severity.ALERT, Severity.WARN, Severity.INFO)


def clock(seconds: float) -> str:
    """``m:ss`` (negative times, before the call began, clamp to 0:00)."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def flag_counts(flags: Iterable[StoredFlag]) -> str:
    """``3 (1 alert, 2 warn)``, or ``none``."""
    counts = Counter(f.flag.severity for f in flags)
    total = sum(counts.values())
    if not total:
        return "none"
    parts = [f"{counts[s]} {s}" for s in SEVERITIES if counts[s]]
    return f"{total} ({', '.join(parts)})"


def status_line(
    *,
    elapsed: float,
    duration: float,
    act: str | None,
    level: str | None,
    flags: Sequence[StoredFlag],
) -> str:
    shown_level = (level or "-").upper()
    return (
        f"{clock(elapsed)}/{clock(duration)}  indicator: {shown_level}  |  "
        f"flags: {flag_counts(flags)}  |  {act or '-'}"
    )


def flag_line(stored: StoredFlag, origin: float) -> str:
    """One flag as the summary and the live log show it."""
    flag = stored.flag
    end = "open" if flag.end is None else clock(flag.end - origin)
    return (
        f"{clock(flag.start - origin):>5}-{end:<5} {flag.severity:<5}  {flag.rule_id}: {flag.title}"
    )


def plan_lines(script: DemoScript) -> list[str]:
    lines = [f"  {clock(a.start):>5}-{clock(a.end):<5} {a.description}" for a in script.acts]
    if script.incidents:
        lines.append("  Scripted faults:")
        lines += [
            f"  {clock(i.start):>5}-{clock(i.end):<5} {i.description}" for i in script.incidents
        ]
    else:
        lines.append("  No faults are scripted: nothing should be flagged.")
    if script.left_out:
        lines.append(
            f"  Too short for: {', '.join(script.left_out)} (the default 150 s has every fault)."
        )
    return lines


@dataclass(frozen=True, slots=True)
class Stall:
    """A pause of this machine: ``where`` paused ``length`` seconds at script time ``at``
    (a participant's video leaving late, or the monitor's event loop running late)."""

    at: float
    length: float
    where: str


# A stall explains a flag that begins up to this long after it (W3C freeze threshold,
# a tick, the indicator) or shortly before it ends.
EXPLAINS_WITHIN = 2.0


def explaining_stall(onset: float, stalls: Sequence[Stall]) -> Stall | None:
    """The stall of this machine nearest before a flag's onset (script time), if any."""
    near = [s for s in stalls if s.at - 0.5 <= onset <= s.at + s.length + EXPLAINS_WITHIN]
    return max(near, key=lambda s: s.length) if near else None


@dataclass(frozen=True, slots=True)
class Verdict:
    incident: Incident
    noticed_by: tuple[StoredFlag, ...]


# A fault's flags may begin this long after it ends: a loss ratio over the last 5 s,
# 3 of 5 one-second samples, a freeze noticed at the W3C threshold.
NOTICE_AFTER = 8.0


def verdicts(script: DemoScript, flags: Sequence[StoredFlag], origin: float) -> list[Verdict]:
    """For each scripted fault, the flags of its rules that began while it lasted."""
    found = []
    for incident in script.incidents:
        hits = tuple(
            f
            for f in flags
            if f.flag.rule_id in incident.rules
            and incident.start - 1.0 <= f.flag.start - origin <= incident.end + NOTICE_AFTER
        )
        found.append(Verdict(incident, hits))
    return found


def summary_lines(
    script: DemoScript,
    flags: Sequence[StoredFlag],
    origin: float,
    *,
    played: float,
    stalls: Sequence[Stall] = (),
) -> list[str]:
    """The end-of-demo summary: every stored flag, then each scripted fault's verdict,
    then the flags no fault was scripted for, with the stall of this machine that
    explains each, if one does."""
    ordered = sorted(flags, key=lambda f: f.flag.start)
    lines = [f"Flags raised: {flag_counts(flags)} (read back from the store)"]
    lines += [f"  {flag_line(f, origin)}" for f in ordered]
    found = verdicts(script, flags, origin)
    for verdict in found:
        incident = verdict.incident
        if incident.start > played:
            state = "not reached (stopped before it)"
        elif verdict.noticed_by:
            first = min(verdict.noticed_by, key=lambda f: f.flag.start)
            rules = sorted({f.flag.rule_id for f in verdict.noticed_by})
            state = f"noticed at {clock(first.flag.start - origin)} by {', '.join(rules)}"
        else:
            state = f"NOT flagged (expected one of: {', '.join(incident.rules)})"
        lines.append(f"  fault at {clock(incident.start)}: {incident.description}: {state}")
    expected = {f.key for v in found for f in v.noticed_by}
    for stored in ordered:
        if stored.key in expected:
            continue
        onset = stored.flag.start - origin
        stall = explaining_stall(onset, stalls)
        cause = (
            f"this machine stalled {stall.length:.2f} s at {clock(stall.at)} ({stall.where}): "
            "on a busy computer that is a real freeze"
            if stall is not None
            else "no scripted fault and no stall of this machine near it"
        )
        lines.append(f"  not scripted: {stored.flag.rule_id} at {clock(onset)}: {cause}")
    return lines


class Progress:
    """The terminal side (see the module doc): a status line on a TTY, plain lines else."""

    def __init__(
        self,
        out: TextIO,
        *,
        tty: bool,
        width: Callable[[], int] = lambda: shutil.get_terminal_size().columns,
    ) -> None:
        self._out = out
        self.tty = tty
        self._width = width
        self._status = ""
        self._last: tuple[str | None, tuple[str | None, str | None]] = (None, (None, None))

    def line(self, text: str = "") -> None:
        """A line of its own (on a TTY, above the status line, which is redrawn)."""
        if self.tty and self._status:
            self._out.write(_ERASE)
        self._out.write(text + "\n")
        if self.tty and self._status:
            self._out.write(self._fit(self._status))
        self._out.flush()

    def update(
        self,
        *,
        elapsed: float,
        duration: float,
        act: str | None,
        level: str | None,
        message: str | None,
        flags: Sequence[StoredFlag],
    ) -> None:
        act_before, shown_before = self._last
        self._last = (act, (level, message))
        if act != act_before and act is not None:
            self.line(f"[{clock(elapsed)}] {act}")
        if (level, message) != shown_before and level is not None:
            words = f': "{message}"' if message else ""
            self.line(f"[{clock(elapsed)}] therapist's indicator: {level}{words}")
        if self.tty:
            self._status = status_line(
                elapsed=elapsed, duration=duration, act=act, level=level, flags=flags
            )
            self._out.write(_ERASE + self._fit(self._status))
            self._out.flush()

    def end_status(self) -> None:
        """Leave the status line as it is and go on below it."""
        if self.tty and self._status:
            self._out.write("\n")
            self._out.flush()
        self._status = ""

    def _fit(self, text: str) -> str:
        width = max(20, self._width() - 1)
        return text if len(text) <= width else text[: width - 3] + "..."


__all__ = [
    "Progress",
    "Stall",
    "Verdict",
    "clock",
    "explaining_stall",
    "flag_counts",
    "flag_line",
    "plan_lines",
    "status_line",
    "summary_lines",
    "verdicts",
]
