"""Both participants' speech and the conversation, live, from whichever source exists.

Theory of operation: probes/speech_pipeline.py chains the detectors, the crosstalk gate
and the smoothers for two roles and releases voice edges in time order; this module runs
it live and feeds the conversation tracker (probes/conversation.py).

Sources, per role, by preference: decoded PCM (full mode: webrtcvad), the RFC 6464 level
of each RTP packet (metadata mode), the beacon's microphone level (a peer-to-peer call
the monitor does not receive). A role uses the most preferred source that gave input in
the last ``SOURCE_STALE`` seconds, so a browser's beacon never doubles the monitor's own
measurement of the same voice. The probes' pipeline keeps one detector kind per role
(webrtcvad for PCM, levels otherwise), fixed by the role's first input: input of the
other kind is counted in ``mismatched_inputs`` and dropped (a role that began on beacon
levels stays on levels when it later publishes in full mode). Times are media times
placed on the session clock (monitor/media_clock.py), never raw arrival.

Time: the pipeline settles frames a role will never deliver ``max_skew`` (0.5 s) after
they were due, on :meth:`advance` (every session tick). Its edges reach the conversation
tracker in time order; the tracker waits ``EDGE_LATENCY`` (sound-to-edge: the gate's
0.5 s skew, the smoother's 200 ms gap fill, a frame and the jitter buffer) before it
decides turns and interruptions, so a late edge cannot contradict a decision.
"""

from __future__ import annotations

import math
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
from probes.speech import VoiceEvent, VoiceStarted
from probes.speech_pipeline import SpeechInputError, SpeechPipeline

SOURCE_STALE = 2.0  # seconds without input before a less preferred source may take over
EDGE_LATENCY = 1.0  # how late a voice edge may reach the conversation tracker


class SpeechSource(IntEnum):
    """Where a role's speech decisions come from; higher is preferred."""

    BEACON_LEVEL = 1
    RTP_LEVEL = 2
    PCM = 3


class LiveSpeech:
    """Live speech activity, echo leak and conversation for the two roles of a session."""

    def __init__(self, *, start: float, conversation: ConversationConfig | None = None) -> None:
        self.voices = SpeechPipeline()
        self.conversation = ConversationTracker(
            conversation or ConversationConfig(edge_latency=EDGE_LATENCY), start=start
        )
        self._source: dict[Role, SpeechSource | None] = dict.fromkeys(Role)
        self._last_input: dict[Role, float] = dict.fromkeys(Role, -math.inf)
        self._voice_events: list[VoiceEvent] = []
        self.mismatched_inputs = 0

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
        if not self._take(role, SpeechSource.PCM, t):
            return
        try:
            self.voices.on_pcm(role, samples, sample_rate=sample_rate, channels=channels, t=t)
        except SpeechInputError:
            self.mismatched_inputs += 1
            return
        self._last_input[role] = t + len(samples) / max(1, sample_rate * channels)
        self._collect()

    def on_level(
        self, role: Role, level_db: float, *, now: float, duration: float, source: SpeechSource
    ) -> None:
        """A level in dBov (<= 0) covering ``[now - duration, now)``."""
        if not self._take(role, source, now):
            return
        try:
            self.voices.on_level(role, level_db, now=now, duration=duration)
        except SpeechInputError:
            self.mismatched_inputs += 1
            return
        self._last_input[role] = now
        self._collect()

    def _take(self, role: Role, source: SpeechSource, now: float) -> bool:
        current = self._source[role]
        stale = now - self._last_input[role] > SOURCE_STALE
        if current is None or source >= current or stale:
            self._source[role] = source
            return True
        return False

    def set_marker(self, on: bool, *, now: float) -> None:
        self.conversation.mark_sensitive(on, now=now)

    def set_one_way_delay(self, delay: float | None) -> None:
        self.conversation.set_one_way_delay(delay)

    # -- time ---------------------------------------------------------------------------

    def advance(self, *, now: float) -> None:
        """Settle what the clock alone settles, and pass decided edges on (every tick)."""
        self.voices.on_timer(now=now)
        self._collect()
        self.conversation.advance(now=now)

    def _collect(self) -> None:
        for event in self.voices.drain_events():
            self._voice_events.append(event)
            self.conversation.on_voice(event.role, isinstance(event, VoiceStarted), t=event.t)

    # -- outputs ------------------------------------------------------------------------

    def active(self, role: Role) -> bool | None:
        return None if self._source[role] is None else self.voices.active(role)

    def level_db(self, role: Role) -> float | None:
        return self.voices.level_db(role)

    def echo_leak_db(self, role: Role) -> float | None:
        return self.voices.echo_leak_db(role)

    def source(self, role: Role) -> SpeechSource | None:
        return self._source[role]

    def snapshot(self, *, now: float) -> ConversationSnapshot:
        return self.conversation.snapshot(now=now)

    def drain_events(self) -> tuple[list[VoiceEvent], list[ConversationEvent]]:
        voice, self._voice_events = self._voice_events, []
        return voice, self.conversation.drain_events()
