"""Both participants' speech, live: detectors -> crosstalk gate -> smoothers -> conversation.

Theory of operation: the speech probes (probes/speech.py) and the conversation tracker
(probes/conversation.py) are pure and offline-friendly; this module runs them live,
which is mostly a matter of time order.

Sources, per role, by preference: decoded PCM (full mode, webrtcvad), then the RFC 6464
level of each RTP packet (metadata mode), then the beacon's microphone level. A role
uses the best source that has spoken in the last ``SOURCE_STALE`` seconds, so a browser
beacon never competes with the monitor's own decode of the same voice. Levels and PCM
are placed on the session clock by their media timestamps, not their arrival (LAB.md).

Frames: each detector yields 30 ms grid frames (``SpeechFrame``); the crosstalk gate
(probes/crosstalk.py, when present) takes both roles' frames and keeps a frame as speech
only if its level dominates the other track's, which removes the echo of the other
voice. Gated decisions go to one :class:`~probes.speech.Smoother` per role.

Watermarks: a smoother may only be told that silence has passed (``advance``) up to a
time no frame will precede. That is the end of the last frame its detector produced;
when a stream stalls (no input for ``STALL``), silence is assumed up to ``now - STALL``.

Edges to the conversation: the tracker wants voice edges in global time order. Edges are
buffered and released once both roles' smoothers are past them (their ``horizon``), or
once they are ``EDGE_LATENCY`` old, whichever comes first; the tracker's own
``edge_latency`` is set to the same bound, so its decisions wait for late edges.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from probes.base import Role
from probes.conversation import (
    ConversationConfig,
    ConversationEvent,
    ConversationSnapshot,
    ConversationTracker,
)
from probes.speech import (
    FRAME,
    LevelDetector,
    Smoother,
    SpeechConfig,
    SpeechFrame,
    VadDetector,
    VoiceEvent,
    VoiceStarted,
)

SOURCE_STALE = 2.0  # seconds without input before a less preferred source may take over
STALL = 0.5  # seconds without input after which silence is assumed
EDGE_LATENCY = 1.0  # the latest a voice edge is released to the conversation tracker


class SpeechSource(IntEnum):
    """Where a role's speech decisions come from; higher is preferred."""

    BEACON_LEVEL = 1
    RTP_LEVEL = 2
    PCM = 3


class _RoleSpeech:
    """One role's detector (of its current source), smoother and clocks."""

    def __init__(self, role: Role, config: SpeechConfig) -> None:
        self.role = role
        self._config = config
        self.smoother = Smoother(role, config)
        self.source: SpeechSource | None = None
        self.detector: VadDetector | LevelDetector | None = None
        self.last_input = -math.inf  # session time of the last input's end
        self.covered_until: float | None = None  # end of the last frame produced
        self.level_db: float | None = None
        self.frames_produced = 0

    def take(self, source: SpeechSource, now: float) -> VadDetector | LevelDetector | None:
        """The detector for ``source``, switching to it if it is preferred or current."""
        stale = now - self.last_input > SOURCE_STALE
        if self.source is None or source >= self.source or stale:
            if source is not self.source:
                self.source = source
                self.detector = (
                    VadDetector(self._config)
                    if source is SpeechSource.PCM
                    else LevelDetector(self._config)
                )
            return self.detector
        return None

    def frames(self) -> list[SpeechFrame]:
        if self.detector is None:
            return []
        frames = self.detector.drain_frames()
        if frames:
            self.frames_produced += len(frames)
            self.covered_until = frames[-1].t + FRAME
            self.level_db = frames[-1].level_db
        return frames


class SpeechPipeline:
    """Live speech and conversation for the two roles of one session."""

    def __init__(
        self,
        *,
        speech: SpeechConfig | None = None,
        conversation: ConversationConfig | None = None,
        start: float,
    ) -> None:
        config = speech or SpeechConfig()
        self._roles = {role: _RoleSpeech(role, config) for role in Role}
        conversation_config = conversation or ConversationConfig(edge_latency=EDGE_LATENCY)
        self.conversation = ConversationTracker(conversation_config, start=start)
        self._pending_edges: list[VoiceEvent] = []
        self._voice_events: list[VoiceEvent] = []
        self._gate = _pass_through_gate

    # -- inputs -------------------------------------------------------------------------

    def on_pcm(
        self,
        role: Role,
        samples: npt.NDArray[np.int16],
        *,
        sample_rate: int,
        channels: int,
        t: float,
    ) -> None:
        speech = self._roles[role]
        detector = speech.take(SpeechSource.PCM, t)
        if not isinstance(detector, VadDetector):
            return
        detector.on_pcm(samples, sample_rate=sample_rate, channels=channels, t=t)
        speech.last_input = t + len(samples) / max(1, sample_rate * channels)
        self._feed(speech)

    def on_level(
        self, role: Role, level_db: float, *, now: float, duration: float, source: SpeechSource
    ) -> None:
        """A level in dBov (<= 0) covering ``[now - duration, now)``."""
        speech = self._roles[role]
        detector = speech.take(source, now)
        if not isinstance(detector, LevelDetector):
            return
        detector.on_level(level_db, now=now, duration=duration)
        speech.last_input = now
        self._feed(speech)

    def set_marker(self, on: bool, *, now: float) -> None:
        self.conversation.mark_sensitive(on, now=now)

    def set_one_way_delay(self, delay: float | None) -> None:
        self.conversation.set_one_way_delay(delay)

    # -- time ---------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [
            d for s in self._roles.values() if (d := s.smoother.next_deadline()) is not None
        ]
        if (d := self.conversation.next_deadline()) is not None:
            deadlines.append(d)
        return min(deadlines, default=None)

    def advance(self, *, now: float) -> None:
        """Move watermarks to ``now`` and release what is decided (call on every tick)."""
        for speech in self._roles.values():
            watermark = speech.covered_until
            if speech.detector is not None and now - speech.last_input > STALL:
                stalled = now - STALL
                watermark = stalled if watermark is None else max(watermark, stalled)
            if watermark is not None and speech.frames_produced:
                speech.smoother.advance(now=watermark)
            self._collect(speech)
        self._release(now)
        self.conversation.advance(now=now)

    # -- outputs ------------------------------------------------------------------------

    def active(self, role: Role) -> bool | None:
        speech = self._roles[role]
        return None if speech.detector is None else speech.smoother.active

    def level_db(self, role: Role) -> float | None:
        return self._roles[role].level_db

    def source(self, role: Role) -> SpeechSource | None:
        return self._roles[role].source

    def snapshot(self, *, now: float) -> ConversationSnapshot:
        return self.conversation.snapshot(now=now)

    def drain_events(self) -> tuple[list[VoiceEvent], list[ConversationEvent]]:
        voice, self._voice_events = self._voice_events, []
        return voice, self.conversation.drain_events()

    # -- internals ----------------------------------------------------------------------

    def _feed(self, speech: _RoleSpeech) -> None:
        for frame in self._gate(speech.role, speech.frames()):
            speech.smoother.on_frame(frame.t, frame.voiced)
        self._collect(speech)

    def _collect(self, speech: _RoleSpeech) -> None:
        events = speech.smoother.drain_events()
        if events:
            self._voice_events.extend(events)
            self._pending_edges.extend(events)

    def _release(self, now: float) -> None:
        if not self._pending_edges:
            return
        horizons = [
            h
            for s in self._roles.values()
            if s.detector is not None
            if (h := s.smoother.horizon) is not None
        ]
        safe = max(min(horizons, default=now), now - EDGE_LATENCY)
        self._pending_edges.sort(key=lambda e: e.t)
        released = [e for e in self._pending_edges if e.t <= safe]
        self._pending_edges = self._pending_edges[len(released) :]
        for event in released:
            self.conversation.on_voice(event.role, isinstance(event, VoiceStarted), t=event.t)


def _pass_through_gate(role: Role, frames: Iterable[SpeechFrame]) -> Iterable[SpeechFrame]:
    return frames
