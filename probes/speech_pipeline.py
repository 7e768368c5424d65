"""Who is speaking, from two participants' audio: detector -> crosstalk gate -> smoother.

Theory of operation
-------------------
:class:`SpeechPipeline` chains the pieces of probes/speech.py and probes/crosstalk.py for
the two roles of a session and hands out one stream of :class:`VoiceStarted` /
:class:`VoiceStopped` events **in time order across both roles**, which is what the
conversation tracker consumes. Per role, input is either decoded PCM (``on_pcm``: a
:class:`VadDetector`) or levels (``on_level``: a :class:`LevelDetector`, metadata mode);
a role keeps the kind it started with.

Clock: frame times (the caller's clock, snapped to the 30 ms grid) drive everything.
The gate decides frame ``k`` once both roles delivered it, or once the clock gives it up
(``CrosstalkConfig.max_skew`` after it ended) but never while a detector still holds
input from before it (its batch or its warm-up, both bounded in time:
probes/speech.py, "Clock and held input"). The smoothers then advance to the gate's
watermark, so a role whose input stops still has its spurt closed. An event is released
once neither smoother can still emit an earlier one (``Smoother.horizon``), so the
stream is sorted by ``t`` (stops before starts at the same instant). Latency from sound
to event: the detectors' ``batch`` (120 ms), then the smoother's ``min_burst`` (start)
or ``fill_gap`` (stop), plus up to ``max_skew`` when a role's frames are missing, plus
the one-off warm-up at stream start. ``on_timer(now=...)`` and ``next_deadline()`` let a
live session settle what the clock alone settles; ``flush()`` ends an offline run.

:func:`analyze_tracks` is the offline form: two whole tracks in, talk spurts per role,
the events, and the echo leak per role out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt

from probes.base import FeltsafeError, Role
from probes.crosstalk import CrosstalkConfig, CrosstalkGate, EchoLeak
from probes.speech import (
    FRAME,
    InputCounters,
    LevelDetector,
    Smoother,
    SpeechConfig,
    VadDetector,
    VoiceEvent,
    VoiceStarted,
    VoiceStopped,
)

_ROLES: Final = (Role.THERAPIST, Role.CLIENT)


class SpeechInputError(FeltsafeError):
    """The caller fed one role both PCM and levels (an API misuse, not bad media)."""


def _event_order(event: VoiceEvent) -> tuple[float, int]:
    return event.t, 0 if isinstance(event, VoiceStopped) else 1


class SpeechPipeline:
    """Detector, crosstalk gate and smoother for both roles of one session (module doc)."""

    def __init__(
        self, speech: SpeechConfig | None = None, crosstalk: CrosstalkConfig | None = None
    ) -> None:
        self._speech = speech or SpeechConfig()
        self._crosstalk = crosstalk or CrosstalkConfig()
        self._detectors: dict[Role, VadDetector | LevelDetector] = {}
        self._gate = CrosstalkGate(self._crosstalk)
        self._smoothers = {role: Smoother(role, self._speech) for role in _ROLES}
        self._held: list[VoiceEvent] = []
        self._released: list[VoiceEvent] = []
        self._level_db: dict[Role, float] = {}
        self._watermark: float | None = None  # the gate's decided_until last pumped

    # -- input ---------------------------------------------------------------------------

    def on_pcm(
        self,
        role: Role,
        samples: npt.NDArray[np.generic],
        *,
        sample_rate: int,
        channels: int,
        t: float,
    ) -> None:
        """Decoded audio of ``role`` whose first sample is at ``t`` (see VadDetector)."""
        detector = self._detector(role, VadDetector)
        assert isinstance(detector, VadDetector)
        detector.on_pcm(samples, sample_rate=sample_rate, channels=channels, t=t)
        self._pump()

    def on_level(self, role: Role, level_dbov: float, *, now: float, duration: float) -> None:
        """A level of ``role`` in dBov for ``[now - duration, now)`` (see LevelDetector)."""
        detector = self._detector(role, LevelDetector)
        assert isinstance(detector, LevelDetector)
        detector.on_level(level_dbov, now=now, duration=duration)
        self._pump()

    def next_deadline(self) -> float | None:
        """When ``on_timer`` could settle something without new input."""
        candidates: list[float] = []
        gate = self._gate.next_deadline()
        if gate is not None:
            candidates.append(gate)
        # A smoother decides at its deadline once the gate's watermark gets there, and the
        # watermark trails the clock by max_skew plus a frame.
        lag = self._crosstalk.max_skew + FRAME
        for smoother in self._smoothers.values():
            deadline = smoother.next_deadline()
            if deadline is not None:
                candidates.append(deadline + lag)
        limit = self._clock_limit()
        due = [c for c in candidates if c <= limit]  # beyond it, only input moves things on
        due += [d for d in (x.next_deadline() for x in self._detectors.values()) if d is not None]
        return min(due) if due else None

    def on_timer(self, *, now: float) -> None:
        """Settle what the clock alone can settle: held input, missing frames, stops."""
        for detector in self._detectors.values():
            detector.on_timer(now=now)
        self._pump()
        self._gate.on_timer(now=min(now, self._clock_limit()))
        self._pump()

    def _clock_limit(self) -> float:
        """The clock may not give up on frames a detector still holds back (its batch or
        warm-up: both bounded in time, see ``on_timer``)."""
        held = [d.held_since for d in self._detectors.values() if d.held_since is not None]
        return min(held) + self._crosstalk.max_skew if held else math.inf

    def flush(self) -> None:
        """End of input: decide and release everything."""
        for detector in self._detectors.values():
            detector.flush()
        self._pump()
        self._gate.flush()
        self._pump()
        for smoother in self._smoothers.values():
            smoother.advance(now=math.inf)
            self._held += smoother.drain_events()
        self._held.sort(key=_event_order)
        self._released += self._held
        self._held = []

    # -- output --------------------------------------------------------------------------

    def drain_events(self) -> list[VoiceEvent]:
        """Voice edges of both roles, in time order, each released once decided."""
        events, self._released = self._released, []
        return events

    def active(self, role: Role) -> bool:
        """``role`` is in a talk spurt, as decided so far (the ``speech.active`` signal)."""
        return self._smoothers[role].active

    def level_db(self, role: Role) -> float | None:
        """Level of ``role``'s latest decided frame, dBov (the ``speech.level_db`` signal)."""
        return self._level_db.get(role)

    def echo_leak(self, role: Role) -> EchoLeak | None:
        return self._gate.echo_leak(role)

    def echo_leak_db(self, role: Role) -> float | None:
        return self._gate.echo_leak_db(role)

    def echo_problem(self, role: Role) -> bool:
        return self._gate.echo_problem(role)

    def input_counters(self, role: Role) -> InputCounters:
        detector = self._detectors.get(role)
        return InputCounters() if detector is None else detector.counters()

    # -- plumbing ------------------------------------------------------------------------

    def _detector(
        self, role: Role, kind: type[VadDetector] | type[LevelDetector]
    ) -> VadDetector | LevelDetector:
        detector = self._detectors.get(role)
        if detector is None:
            detector = self._detectors[role] = kind(self._speech)
        elif not isinstance(detector, kind):
            raise SpeechInputError(f"{role} already takes {type(detector).__name__} input")
        return detector

    def _pump(self) -> None:
        gate = self._gate
        for role, detector in self._detectors.items():
            for block in detector.drain_blocks():
                gate.on_block(role, block)
        watermark = gate.decided_until
        if watermark is None or watermark == self._watermark:
            return  # nothing new decided (a detector is still gathering its batch)
        self._watermark = watermark
        smoothers = self._smoothers
        for gated in gate.drain_blocks():
            smoothers[gated.role].on_block(gated.k0, gated.speech)
            if gated.present.any():
                self._level_db[gated.role] = float(gated.level_db[gated.present][-1])
        for smoother in smoothers.values():
            smoother.advance(now=watermark)
            self._held += smoother.drain_events()
        self._release()

    def _release(self) -> None:
        if not self._held:
            return
        horizons = [s.horizon for s in self._smoothers.values()]
        known = [h for h in horizons if h is not None]
        if not known:
            return
        settled = min(known)
        self._held.sort(key=_event_order)
        cut = 0
        while cut < len(self._held) and self._held[cut].t < settled:
            cut += 1
        self._released += self._held[:cut]
        del self._held[:cut]


# -- offline ---------------------------------------------------------------------------


class Segment(NamedTuple):
    """A half-open stretch of time ``[start, end)`` in seconds: one talk spurt here; the
    scenario ground truth (monitor/scenario/truth.py) does interval maths on them as
    tuples."""

    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class TrackAnalysis:
    """What :func:`analyze_tracks` found in a two-track recording."""

    duration: float
    segments: Mapping[Role, tuple[Segment, ...]]
    events: tuple[VoiceEvent, ...]
    echo: Mapping[Role, EchoLeak | None]
    echo_problem: Mapping[Role, bool]
    input_counters: Mapping[Role, InputCounters]

    def talk_time(self, role: Role) -> float:
        return sum(segment.duration for segment in self.segments[role])


def segments_from_events(
    events: list[VoiceEvent] | tuple[VoiceEvent, ...], role: Role
) -> tuple[Segment, ...]:
    """Pair a role's time-ordered starts and stops into segments."""
    segments: list[Segment] = []
    start: float | None = None
    for event in events:
        if event.role != role:
            continue
        if isinstance(event, VoiceStarted):
            start = event.t
        elif start is not None:
            segments.append(Segment(start, event.t))
            start = None
    return tuple(segments)


def analyze_tracks(
    therapist: npt.NDArray[np.generic],
    client: npt.NDArray[np.generic],
    *,
    sample_rate: int,
    channels: int = 1,
    speech: SpeechConfig | None = None,
    crosstalk: CrosstalkConfig | None = None,
    chunk: float = 30.0,
    on_progress: Callable[[float], None] | None = None,
) -> TrackAnalysis:
    """Talk spurts and echo leak of a recorded session (both tracks start at t = 0).

    Tracks are int16 (or float in [-1, 1]) at ``sample_rate`` (16 kHz or a multiple),
    interleaved when ``channels`` > 1. They are fed in ``chunk``-second pieces,
    alternating roles, so memory stays bounded and the gate sees them in step;
    ``on_progress`` gets the fraction done after each piece.
    """
    pipeline = SpeechPipeline(speech, crosstalk)
    tracks = {Role.THERAPIST: therapist.reshape(-1), Role.CLIENT: client.reshape(-1)}
    per_second = sample_rate * channels
    step = max(channels, round(chunk * sample_rate) * channels)
    longest = max(len(track) for track in tracks.values())
    events: list[VoiceEvent] = []
    for start in range(0, longest, step):
        for role, track in tracks.items():
            piece = track[start : start + step]
            if len(piece):
                pipeline.on_pcm(
                    role, piece, sample_rate=sample_rate, channels=channels, t=start / per_second
                )
        events += pipeline.drain_events()
        if on_progress is not None:
            on_progress(min(1.0, (start + step) / longest))
    pipeline.flush()
    events += pipeline.drain_events()
    return TrackAnalysis(
        duration=longest / per_second,
        segments={role: segments_from_events(events, role) for role in _ROLES},
        events=tuple(events),
        echo={role: pipeline.echo_leak(role) for role in _ROLES},
        echo_problem={role: pipeline.echo_problem(role) for role in _ROLES},
        input_counters={role: pipeline.input_counters(role) for role in _ROLES},
    )
