"""Ground truth of a composed conversation: speech segments and conversation events.

Theory of operation
-------------------
**Speech extent** (what "speaking" means in the truth): the clean, level-normalised voice
track of one role, cut into 10 ms frames on a global grid (frame ``k`` covers
``[k * FRAME, (k + 1) * FRAME)``); a frame is active when its RMS level is at least
``ACTIVITY_MARGIN_DB`` (15.9 dB) below the clips' active speech level, the margin of
ITU-T P.56 ("Objective measurement of active speech level", method B); silences shorter
than ``FILL_GAP`` (200 ms, P.56's hangover and DESIGN.md's smoothing) are filled. This is
the definition the speech detector smooths towards, computed on the clean signal, so the
truth is exact to the 10 ms frame. Echo and noise are never part of a role's truth.

**Events**, with the definitions of DESIGN.md "Conversation" and probes/turns.py:

- ``Interruption``: the listener starts while the floor holder is speaking; ``t`` is the
  start of the simultaneous speech, ``overlap_s`` its length measured on the truth
  segments. Successful: the holder stops within 2 s and the intruder then speaks alone
  >= 1 s. Failed: the intruder's talkspurt is longer than ``BACKCHANNEL_MAX`` (1 s) and
  the holder keeps talking (a shorter one is a backchannel by definition, whatever its
  overlap: content-free timing cannot tell a 0.6 s "wait" from a 0.6 s "mm-hm").
- ``Backchannel``: a listener talkspurt of at most 0.8 s (``BACKCHANNEL_MAX`` less a
  margin for detector smoothing); the holder keeps the floor. ``t`` is its onset.
- ``Turn``: one floor-holding stretch (Jaffe & Feldstein): it starts at the newcomer's
  first onset when the floor was free, or at the old holder's last offset when the
  newcomer started during their speech (an interruption); it ends at the holder's last
  offset in it. A turn of at least ``MONOLOGUE_MIN`` (20 s) is a monologue (DESIGN.md
  "Disclosure window").
- ``gaps``: silences at a change of floor without overlap (new onset - old offset);
  ``pauses``: silences between consecutive talkspurts of the floor holder within a turn.

Talk time is the sum of a role's segment durations (simultaneous speech counts for both
roles); talk share is a role's talk time over the sum of both roles' talk times.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from probes.base import Role
from probes.speech_pipeline import Segment

SAMPLE_RATE = 16000
FRAME = 0.010
FRAMES_PER_SECOND = 100
FRAME_SAMPLES = 160
ACTIVITY_MARGIN_DB = 15.9  # ITU-T P.56 method B
FILL_GAP = 0.200
BACKCHANNEL_MAX = 1.0  # DESIGN.md "Conversation"
MONOLOGUE_MIN = 20.0  # DESIGN.md "Disclosure window"
_FULL_SCALE = 32768.0
_FLOOR_DB = -200.0


@dataclass(frozen=True, slots=True)
class Interruption:
    t: float
    by: Role
    of: Role
    # `overlap_s`, not `overlap`: the key of `feltsafe analyze --json`, so that truth and
    # detections can be compared field by field.
    overlap_s: float
    successful: bool


@dataclass(frozen=True, slots=True)
class Backchannel:
    t: float
    by: Role
    duration: float


@dataclass(frozen=True, slots=True)
class Turn:
    by: Role
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class GroundTruth:
    duration: float
    therapist_segments: tuple[Segment, ...]
    client_segments: tuple[Segment, ...]
    interruptions: tuple[Interruption, ...]
    backchannels: tuple[Backchannel, ...]
    turns: tuple[Turn, ...]
    gaps: tuple[float, ...]
    pauses: tuple[float, ...]

    def segments(self, role: Role) -> tuple[Segment, ...]:
        return self.therapist_segments if role is Role.THERAPIST else self.client_segments

    def talk_time(self, role: Role) -> float:
        return total(self.segments(role))

    def talk_share(self, role: Role) -> float | None:
        both = self.talk_time(Role.THERAPIST) + self.talk_time(Role.CLIENT)
        return self.talk_time(role) / both if both > 0 else None

    @property
    def overlap(self) -> float:
        return total(self.overlaps)

    @property
    def overlaps(self) -> tuple[Segment, ...]:
        return intersect(self.therapist_segments, self.client_segments)

    @property
    def monologues(self) -> tuple[Turn, ...]:
        return tuple(turn for turn in self.turns if turn.duration >= MONOLOGUE_MIN)

    def longest_monologue(self, role: Role) -> float:
        return max((turn.duration for turn in self.turns if turn.by is role), default=0.0)


# -- the activity definition ------------------------------------------------------------


def frame_powers(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Mean square (full scale = 1.0) of each whole 10 ms frame of float samples."""
    usable = len(samples) // FRAME_SAMPLES * FRAME_SAMPLES
    frames = samples[:usable].reshape(-1, FRAME_SAMPLES)
    power: npt.NDArray[np.float64] = np.einsum("ij,ij->i", frames, frames, dtype=np.float64)
    return power / FRAME_SAMPLES


def levels_db(powers: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Frame powers in dBFS; digital silence reads -200 dBFS."""
    levels: npt.NDArray[np.float64] = np.full(len(powers), _FLOOR_DB)
    positive = powers > 0
    levels[positive] = 10.0 * np.log10(powers[positive])
    return levels


def frame_levels_db(samples: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """RMS level (dBFS, full scale = 1.0) of each whole 10 ms frame of float samples."""
    return levels_db(frame_powers(samples))


def active_level_db(samples: npt.NDArray[np.floating]) -> float:
    """Active speech level in the spirit of P.56: the level L for which the RMS over the
    frames at or above ``L - ACTIVITY_MARGIN_DB`` equals L (fixed-point iteration)."""
    levels = frame_levels_db(samples)
    if not np.any(levels > _FLOOR_DB):
        return -math.inf
    powers = 10.0 ** (levels / 10.0)
    level = float(levels.max()) - 40.0
    for _ in range(50):
        chosen = powers[levels >= level - ACTIVITY_MARGIN_DB]
        new_level = 10.0 * math.log10(float(chosen.mean()))
        if abs(new_level - level) < 1e-3:
            return new_level
        level = new_level
    return level


def active_frames(levels_db: npt.NDArray[np.float64], threshold_db: float) -> npt.NDArray[np.bool_]:
    """Frames at or above the threshold, with silences shorter than ``FILL_GAP`` filled."""
    active = levels_db >= threshold_db
    fill = round(FILL_GAP / FRAME)
    edges = np.flatnonzero(np.diff(active.astype(np.int8)))
    # Silent runs strictly inside the signal: from a 1->0 edge to the next 0->1 edge.
    for fall, rise in itertools.pairwise(edges):
        if active[fall] and not active[fall + 1] and rise - fall < fill:
            active[fall + 1 : rise + 1] = True
    return active


def segments_from_frames(active: npt.NDArray[np.bool_], *, offset: float = 0.0) -> list[Segment]:
    padded = np.concatenate(([False], active, [False])).astype(np.int8)
    changes = np.flatnonzero(np.diff(padded))
    # Divide rather than multiply by FRAME: k / 100 is the float nearest to the true time.
    return [
        Segment(offset + int(a) / FRAMES_PER_SECOND, offset + int(b) / FRAMES_PER_SECOND)
        for a, b in zip(changes[0::2], changes[1::2], strict=True)
    ]


def speech_segments(samples: npt.NDArray[np.floating], threshold_db: float) -> list[Segment]:
    """The speech extent of float samples (full scale 1.0) under the truth definition."""
    return segments_from_frames(active_frames(frame_levels_db(samples), threshold_db))


# -- interval arithmetic ----------------------------------------------------------------


def total(segments: Iterable[Segment | tuple[float, float]]) -> float:
    return float(sum(end - start for start, end in segments))


def intersect(
    a: Sequence[Segment | tuple[float, float]], b: Sequence[Segment | tuple[float, float]]
) -> tuple[Segment, ...]:
    """Pairwise intersection of two sorted lists of disjoint segments."""
    out: list[Segment] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][1], b[j][1])
        if end > start:
            out.append(Segment(start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def union(segments: Iterable[Segment | tuple[float, float]]) -> tuple[Segment, ...]:
    """Sorted, merged (touching or overlapping) segments."""
    out: list[Segment] = []
    for start, end in sorted(segments):
        if end <= start:
            continue
        if out and start <= out[-1].end:
            out[-1] = Segment(out[-1].start, max(out[-1].end, end))
        else:
            out.append(Segment(start, end))
    return tuple(out)


def subtract(
    a: Sequence[Segment | tuple[float, float]], b: Sequence[Segment | tuple[float, float]]
) -> tuple[Segment, ...]:
    """The parts of ``a`` not covered by ``b`` (both sorted and disjoint)."""
    out: list[Segment] = []
    j = 0
    for start, end in a:
        cursor = start
        while j < len(b) and b[j][1] <= cursor:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > cursor:
                out.append(Segment(cursor, b[k][0]))
            cursor = max(cursor, b[k][1])
            k += 1
        if cursor < end:
            out.append(Segment(cursor, end))
    return tuple(out)
