"""Composed test conversations with exact ground truth, and scoring against it.

- :mod:`monitor.scenario.truth`: the speech-extent definition, the truth types and
  interval arithmetic;
- :mod:`monitor.scenario.composer`: the seeded composer (turns, pauses, gaps,
  backchannels, successful and failed interruptions, client monologues, echo, noise) and
  the bundled two-minute example;
- :mod:`monitor.scenario.scoring`: precision/recall of events, talk-share error and
  spurious overlap, for the accuracy tests.

All audio here is synthetic (monitor/voices); nothing here ever touches captured audio.
"""

from __future__ import annotations

from monitor.scenario.composer import (
    NoiseColour,
    Scenario,
    ScenarioConfig,
    ScenarioError,
    bundled_example,
    compose,
    write_wav,
)
from monitor.scenario.scoring import (
    MatchResult,
    match_events,
    overlaps_of,
    spurious_overlap_per_min,
    talk_share_error,
)
from monitor.scenario.truth import (
    Backchannel,
    GroundTruth,
    Interruption,
    Turn,
    intersect,
    subtract,
    total,
    union,
)
from probes.speech_pipeline import Segment

__all__ = [
    "Backchannel",
    "GroundTruth",
    "Interruption",
    "MatchResult",
    "NoiseColour",
    "Scenario",
    "ScenarioConfig",
    "ScenarioError",
    "Segment",
    "Turn",
    "bundled_example",
    "compose",
    "intersect",
    "match_events",
    "overlaps_of",
    "spurious_overlap_per_min",
    "subtract",
    "talk_share_error",
    "total",
    "union",
    "write_wav",
]
