"""Score detections against a composed scenario's ground truth (the accuracy tests).

Theory of operation: detections come from the probes (dataclass events with ``t`` and
``by`` attributes) or from ``feltsafe analyze --json`` (dicts with the same keys); both
are accepted. Events are matched one to one: each candidate pair lies within
``tolerance`` seconds; pairs whose compared fields agree are taken first, then the
closest in time (greedy, which is optimal here because events of one kind are seconds
apart while the tolerance is a fraction of a second). A pair counts as correct only if
every compared field agrees (by default ``by``: an interruption found at the right time
but blamed on the wrong person is a false positive *and* a miss).

Talk share error is the largest absolute difference over the two roles, as a fraction
(0.02 = 2 percentage points). Spurious overlap is detected simultaneous speech outside
the true simultaneous speech (optionally widened by ``tolerance`` each side), in seconds
per minute of the scenario.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.scenario.truth import GroundTruth, intersect, subtract, total, union
from probes.base import Role
from probes.speech_pipeline import Segment


@dataclass(frozen=True, slots=True)
class MatchResult:
    detected_count: int
    truth_count: int
    pairs: tuple[tuple[int, int], ...]  # (detected index, truth index), fields agreeing
    wrong_field_pairs: tuple[tuple[int, int], ...]  # matched in time, a field differs

    @property
    def correct_count(self) -> int:
        return len(self.pairs)

    @property
    def precision(self) -> float:
        """Correct / detected; 1.0 when nothing was detected (nothing false was said)."""
        return self.correct_count / self.detected_count if self.detected_count else 1.0

    @property
    def recall(self) -> float:
        """Correct / true events; 1.0 when there was nothing to find."""
        return self.correct_count / self.truth_count if self.truth_count else 1.0

    @property
    def missed(self) -> tuple[int, ...]:
        found = {truth_index for _, truth_index in self.pairs}
        return tuple(i for i in range(self.truth_count) if i not in found)

    @property
    def false(self) -> tuple[int, ...]:
        right = {detected_index for detected_index, _ in self.pairs}
        return tuple(i for i in range(self.detected_count) if i not in right)


def field_of(event: object, name: str) -> Any:
    """``event[name]`` for a mapping, ``event.name`` otherwise."""
    if isinstance(event, Mapping):
        return event[name]
    return getattr(event, name)


def match_events(
    detected: Sequence[object],
    truth: Sequence[object],
    *,
    tolerance: float = 0.5,
    fields: Sequence[str] = ("by",),
) -> MatchResult:
    """Match events on ``t`` within ``tolerance`` seconds, comparing ``fields``."""
    candidates = []
    for i, found in enumerate(detected):
        found_t = float(field_of(found, "t"))
        for j, true in enumerate(truth):
            distance = abs(found_t - float(field_of(true, "t")))
            if distance <= tolerance:
                agree = all(
                    str(field_of(found, name)) == str(field_of(true, name)) for name in fields
                )
                candidates.append((not agree, distance, i, j, agree))
    candidates.sort()
    used_detected: set[int] = set()
    used_truth: set[int] = set()
    pairs: list[tuple[int, int]] = []
    wrong: list[tuple[int, int]] = []
    for _, _, i, j, agree in candidates:
        if i in used_detected or j in used_truth:
            continue
        used_detected.add(i)
        used_truth.add(j)
        (pairs if agree else wrong).append((i, j))
    return MatchResult(
        detected_count=len(detected),
        truth_count=len(truth),
        pairs=tuple(sorted(pairs)),
        wrong_field_pairs=tuple(sorted(wrong)),
    )


def talk_share_error(
    detected: Mapping[Role, float | None] | Mapping[str, float | None], truth: GroundTruth
) -> float:
    """Largest |detected - true| talk share over both roles (a fraction; inf if missing)."""
    shares: Mapping[Any, float | None] = detected
    worst = 0.0
    for role in Role:
        expected = truth.talk_share(role)
        found = shares.get(role, shares.get(str(role)))
        if expected is None and found is None:
            continue
        if expected is None or found is None:
            return math.inf
        worst = max(worst, abs(float(found) - expected))
    return worst


def spurious_overlap_per_min(
    detected_overlaps: Iterable[Segment | tuple[float, float]],
    truth: GroundTruth,
    *,
    tolerance: float = 0.0,
) -> float:
    """Seconds of detected overlap outside the true overlap (widened by ``tolerance``),
    per minute of the scenario."""
    true_overlap = union(
        (max(0.0, start - tolerance), end + tolerance) for start, end in truth.overlaps
    )
    spurious = subtract(union(detected_overlaps), true_overlap)
    return total(spurious) / (truth.duration / 60.0)


def overlaps_of(
    therapist: Iterable[Segment | tuple[float, float]],
    client: Iterable[Segment | tuple[float, float]],
) -> tuple[Segment, ...]:
    """Simultaneous speech of two lists of detected talkspurts."""
    return intersect(union(therapist), union(client))
