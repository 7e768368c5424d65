"""``feltsafe analyze THERAPIST_AUDIO CLIENT_AUDIO [--json]`` or ``--stereo FILE``.

Offline analysis of a recorded session (with consent, for supervision): who spoke how
much, turns, gaps, interruptions and backchannels, monologues, and the echo leak, from
two recordings (one per participant) or one stereo file (therapist left, client right).
Anything PyAV decodes is accepted (monitor/audiofile.py); the analysis is
monitor/analyze.py.

Output: ``--json`` prints the stable document described in the README ("Offline
analysis", schema ``feltsafe-analyze/1``) with sorted keys and no file names, so the same
recording gives the same bytes anywhere; otherwise a short human summary. A progress bar
goes to stderr only when stderr is a terminal and the recording is long.

Errors (exit 2, one line on stderr, never a traceback): a missing, unreadable or silent
file, a file without audio, ``--stereo`` on a file without exactly two channels, and two
recordings whose lengths differ by more than ``monitor.audiofile.length_tolerance``
(tracks within it are cut to the shorter, with a note on stderr). Content stays in
memory: nothing here writes or logs audio.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, TextIO

from monitor.analyze import ROLES, Analysis, analyze_pcm
from monitor.audiofile import (
    AudioTrack,
    check_lengths,
    read_audio,
    read_stereo,
    trim_to_common_length,
)
from monitor.audiofile import (
    ProgressCallback as DecodeProgress,
)

LONG_RECORDING = 120.0  # seconds of audio from which a terminal gets a progress bar
_BAR_WIDTH = 28


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="analyse a recorded session: talk time, turns, interruptions, echo",
        description=(
            "Offline analysis of a recorded session: talk time and share, turns, gaps, "
            "interruptions, backchannels, monologues and echo leak. Give the therapist's "
            "and the client's recordings, or one stereo file with --stereo."
        ),
    )
    parser.add_argument(
        "therapist_audio", metavar="THERAPIST_AUDIO", nargs="?", help="the therapist's track"
    )
    parser.add_argument(
        "client_audio", metavar="CLIENT_AUDIO", nargs="?", help="the client's track"
    )
    parser.add_argument(
        "--stereo",
        metavar="FILE",
        help="one stereo recording: therapist on the left, client on the right",
    )
    parser.add_argument("--json", action="store_true", help="print the JSON document")
    parser.set_defaults(func=run, parser=parser)


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.stereo is not None and (args.therapist_audio or args.client_audio):
        parser.error("give either THERAPIST_AUDIO CLIENT_AUDIO or --stereo FILE, not both")
    if args.stereo is None and not (args.therapist_audio and args.client_audio):
        parser.error("give THERAPIST_AUDIO and CLIENT_AUDIO, or --stereo FILE")
    progress = ProgressBar(sys.stderr)
    try:
        therapist, client = _read(args, progress)
        result = analyze_pcm(
            therapist.samples,
            client.samples,
            sample_rate=therapist.sample_rate,
            on_progress=(
                (lambda done: progress.show("analysing", done))
                if therapist.duration >= LONG_RECORDING
                else None
            ),
        )
    finally:
        progress.close()
    if args.json:
        sys.stdout.write(json_document(result))
    else:
        sys.stdout.write(summary_text(result))
    return 0


def _read(args: argparse.Namespace, progress: ProgressBar) -> tuple[AudioTrack, AudioTrack]:
    def decoding(label: str) -> DecodeProgress:
        def report(done: float, total: float | None) -> None:
            if max(done, total or 0.0) >= LONG_RECORDING:
                progress.show(label, None if not total else done / total)

        return report

    if args.stereo is not None:
        return read_stereo(args.stereo, progress=decoding("decoding"))
    therapist = read_audio(args.therapist_audio, progress=decoding("decoding 1/2"))
    client = read_audio(args.client_audio, progress=decoding("decoding 2/2"))
    check_lengths(therapist, client)  # MismatchedLengthsError: exit 2 via cli.main
    difference = abs(therapist.duration - client.duration)
    if difference >= 0.01:
        progress.close()
        longer = therapist if therapist.duration > client.duration else client
        print(
            f"note: {longer.name} is {difference:.2f} s longer; "
            f"analysing the first {min(therapist.duration, client.duration):.2f} s of both",
            file=sys.stderr,
        )
    return trim_to_common_length(therapist, client)


def json_document(result: Analysis) -> str:
    return json.dumps(result.to_json_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"


# -- the human summary ---------------------------------------------------------------------


def summary_text(result: Analysis) -> str:
    doc = result.to_json_dict()
    names = [str(role) for role in ROLES]
    rows: list[tuple[str, list[str]]] = [
        (
            "talk time",
            [f"{_clock(doc['talk_time_s'][n])} ({_percent(doc['talk_share'][n])})" for n in names],
        ),
        ("longest monologue", [f"{doc['longest_monologue_s'][n]:.1f} s" for n in names]),
        (
            "interruptions made",
            [_interruptions(doc["interruptions"], n) for n in names],
        ),
        (
            "backchannels",
            [str(sum(1 for b in doc["backchannels"] if b["by"] == n)) for n in names],
        ),
        ("echo of the other", [_echo(doc["echo"][n]) for n in names]),
    ]
    label_width = max(len(label) for label, _ in rows)
    column = max(14, *(len(cell) + 2 for _, cells in rows for cell in cells))
    lines = [
        f"session {_clock(doc['duration_s'])}, {doc['turns']} turns, "
        f"{doc['overlap_s']:.1f} s of overlap; gaps between speakers "
        f"{_gaps(doc['gaps'])}",
        "",
        " " * (label_width + 2) + "".join(n.ljust(column) for n in names).rstrip(),
    ]
    lines += [
        f"{label.ljust(label_width)}  " + "".join(c.ljust(column) for c in cells).rstrip()
        for label, cells in rows
    ]
    problems = [
        f"the {role.other}'s voice comes back through the {role}'s microphone "
        f"only {doc['echo'][str(role)]['leak_db']:.0f} dB down "
        f"(under {result.echo_problem_below_db:.0f} dB): the {role.other} hears themselves"
        for role in ROLES
        if doc["echo"][str(role)]["problem"]
    ]
    if problems:
        lines += ["", *(f"problem: {p}" for p in problems)]
    return "\n".join(lines) + "\n"


def _clock(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def _interruptions(events: list[dict[str, Any]], by: str) -> str:
    mine = [e for e in events if e["by"] == by]
    successful = sum(1 for e in mine if e["successful"])
    return f"{successful} (+{len(mine) - successful} failed)"


def _echo(echo: dict[str, Any]) -> str:
    if echo["leak_db"] is None:
        return "not heard"
    if echo["at_least"]:
        return f">= {echo['leak_db']:.0f} dB down"
    return f"{echo['leak_db']:.0f} dB down" + (" (!)" if echo["problem"] else "")


def _gaps(gaps: dict[str, Any]) -> str:
    if not gaps["count"]:
        return "none"
    return f"median {gaps['median']:.2f} s, p90 {gaps['p90']:.2f} s"


# -- progress ---------------------------------------------------------------------------------


class ProgressBar:
    """A one-line bar on ``stream``, drawn only if ``stream`` is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self._shown: tuple[str, int] | None = None

    def show(self, label: str, fraction: float | None) -> None:
        """Draw ``label`` and ``fraction`` done (None: unknown, only the label)."""
        if not self.enabled:
            return
        percent = -1 if fraction is None or not math.isfinite(fraction) else round(fraction * 100)
        percent = min(100, percent)
        if self._shown == (label, percent):
            return
        self._shown = (label, percent)
        if percent < 0:
            text = f"{label} ..."
        else:
            filled = round(_BAR_WIDTH * percent / 100)
            text = f"{label:<12} [{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {percent:3d} %"
        self._stream.write("\r" + text + "\x1b[K")
        self._stream.flush()

    def close(self) -> None:
        """Erase the bar (the line is left empty for what comes next)."""
        if self._shown is not None:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = None


__all__ = ["LONG_RECORDING", "ProgressBar", "json_document", "register", "run", "summary_text"]
