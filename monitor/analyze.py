"""Offline analysis of a recorded session: two PCM tracks in, the ``analyze`` document out.

Theory of operation
-------------------
The chain is the one a live session runs, not a second copy of it: the probes' own
offline driver (``probes.speech_pipeline.analyze_tracks``: webrtcvad and level gate per
track -> crosstalk gate with the echo-leak estimate -> smoothing) gives each role's talk
spurts, and ``probes.conversation.summarize`` replays their edges through the
conversation tracker (turns, gaps, backchannels, interruptions, monologues) with no edge
latency. This module only puts the two together and writes the result as the stable
JSON document of ``feltsafe analyze --json`` (:data:`SCHEMA`; README, "Offline
analysis").

Clock: both tracks start at t = 0 and share the sample clock; every time in the result
is seconds from the start of the recording. No one-way delay is known offline, so the
delay guard subtracts nothing: an overlap in the files is an overlap.

Lengths: the two tracks must have the same length here (the command trims tracks of one
session that end within the tolerance of ``monitor.audiofile.check_lengths``, and refuses
others); equal lengths are an API precondition, so a mismatch raises
:class:`AnalysisInputError`.

Pure apart from the optional progress callback: no I/O, no clock. The PCM stays in
memory, and nothing derived from it but the numbers below leaves this function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from probes.base import FeltsafeError, Role
from probes.conversation import (
    ConversationConfig,
    ConversationSummary,
    edges_from_intervals,
    summarize,
)
from probes.crosstalk import CrosstalkConfig, EchoLeak
from probes.speech import SpeechConfig
from probes.speech_pipeline import Segment, TrackAnalysis, analyze_tracks

SCHEMA: Final = "feltsafe-analyze/1"
"""Name and major version of the JSON document; a new major version breaks consumers."""

ROLES: Final = (Role.THERAPIST, Role.CLIENT)
ECHO_PROBLEM_BELOW_DB: Final = CrosstalkConfig().echo_problem_below_db

ProgressCallback = Callable[[float], None]
"""Called with the fraction of the recording analysed so far, 0..1."""


class AnalysisInputError(FeltsafeError):
    """The caller passed tracks that cannot be analysed together (an API misuse)."""


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the analysis found: the talk spurts and echo per role, and the conversation."""

    tracks: TrackAnalysis
    conversation: ConversationSummary
    echo_problem_below_db: float = ECHO_PROBLEM_BELOW_DB

    @property
    def duration(self) -> float:
        return self.conversation.duration

    def segments(self, role: Role) -> tuple[Segment, ...]:
        """``role``'s talk spurts after the crosstalk gate and smoothing."""
        return self.tracks.segments[role]

    def echo(self, role: Role) -> EchoLeak | None:
        """The other participant's echo in ``role``'s track (None: never estimated)."""
        return self.tracks.echo[role]

    def echo_problem(self, role: Role) -> bool:
        """The measured leak into ``role``'s track is under the threshold (20 dB)."""
        return self.tracks.echo_problem[role]

    def to_json_dict(self) -> dict[str, Any]:
        """The ``feltsafe analyze --json`` document (README, "Offline analysis")."""
        core = self.conversation.to_json_dict()
        return {
            "schema": SCHEMA,
            "duration_s": core["duration_s"],
            "talk_time_s": core["talk_time_s"],
            "talk_share": core["talk_share"],
            "overlap_s": core["overlap_s"],
            "turns": core["turns"],
            "interruptions": core["interruptions"],
            "backchannels": core["backchannels"],
            "longest_monologue_s": core["longest_monologue_s"],
            "gaps": _durations(core["gaps"]),
            "pauses": _durations(core["pauses"]),
            "disclosure_windows": core["disclosure_windows"],
            "echo_leak_db": {str(role): _leak_db(self.echo(role)) for role in ROLES},
            "echo": {str(role): self._echo_json(role) for role in ROLES},
        }

    def _echo_json(self, role: Role) -> dict[str, Any]:
        estimate = self.echo(role)
        return {
            "leak_db": None if estimate is None else estimate.leak_db,
            "at_least": None if estimate is None else estimate.lower_bound,
            "delay_s": None if estimate is None or estimate.delay is None else estimate.delay,
            "problem": self.echo_problem(role),
        }


def _durations(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The issue's ``{median, p90}`` names for the summary's ``median_s``/``p90_s``."""
    return {"count": stats["count"], "median": stats["median_s"], "p90": stats["p90_s"]}


def _leak_db(estimate: EchoLeak | None) -> float | None:
    """A measured leak; None when unknown or only bounded (the echo stayed under the noise)."""
    if estimate is None or estimate.lower_bound:
        return None
    return estimate.leak_db


def analyze_pcm(
    therapist: npt.NDArray[np.int16],
    client: npt.NDArray[np.int16],
    *,
    sample_rate: int = 16000,
    speech: SpeechConfig | None = None,
    crosstalk: CrosstalkConfig | None = None,
    conversation: ConversationConfig | None = None,
    on_progress: ProgressCallback | None = None,
) -> Analysis:
    """Analyse two mono int16 tracks of one session, both starting at t = 0.

    ``sample_rate`` is 16 kHz or a multiple of it (the detectors decimate); the tracks
    must have the same number of samples.
    """
    if therapist.ndim != 1 or client.ndim != 1:
        raise AnalysisInputError("analyze_pcm takes two mono tracks (1-D arrays)")
    if len(therapist) != len(client):
        raise AnalysisInputError(
            f"the tracks differ in length ({len(therapist)} and {len(client)} samples)"
        )
    if len(therapist) == 0:
        raise AnalysisInputError("the tracks are empty")
    tracks = analyze_tracks(
        therapist,
        client,
        sample_rate=sample_rate,
        speech=speech,
        crosstalk=crosstalk,
        on_progress=on_progress,
    )
    edges = {
        role: edges_from_intervals((s.start, s.end) for s in tracks.segments[role])
        for role in ROLES
    }
    summary = summarize(edges, len(therapist) / sample_rate, config=conversation)
    threshold = (crosstalk or CrosstalkConfig()).echo_problem_below_db
    return Analysis(tracks=tracks, conversation=summary, echo_problem_below_db=threshold)


__all__ = [
    "ROLES",
    "SCHEMA",
    "Analysis",
    "AnalysisInputError",
    "ProgressCallback",
    "analyze_pcm",
]
