"""Smoothing: one participant's gated frame decisions become talk spurts with true edges.

Theory of operation
-------------------
This is the on-off analysis of Brady (P. T. Brady, "A statistical analysis of on-off
patterns in 16 conversations", Bell Syst. Tech. J. 47(1), 1968), whose 200 ms fill-in
bridges stop consonants and syllable joins, which are not pauses. First every run of
speech frames shorter than ``min_burst`` (100 ms: a click, a cough, a stray frame) is
dropped, then gaps shorter than ``fill_gap`` (200 ms) between the surviving runs are
filled. So whatever the input, every spurt lasts at least ``min_burst`` and every
silence between spurts at least ``fill_gap``. Parameters: ``SpeechConfig``.

:class:`VoiceStarted` and :class:`VoiceStopped` carry the true edges (the start of the
first frame, the end of the last) and are emitted once decided, a bounded time later: a
start ``min_burst`` after it, a stop ``fill_gap`` after it (a little more if a new run
began inside the fill window and has yet to prove itself).

Clock: frame times. Input is frames (``on_frame``) or blocks of consecutive frames
(``on_block``, processed run by run); a frame that never came is silence.
``advance(now=...)`` is a watermark (no frame will start before ``now``) that decides
what silence alone decides; ``next_deadline()`` says when that would happen with no
more input, ``on_timer(now=...)`` is ``advance``. ``horizon`` bounds the time of any
event still to come, which is how the pipeline releases two roles' edges in time order.
A frame earlier than what was already accounted for is counted and dropped.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from probes.base import Role
from probes.speech_frames import (
    FRAME,
    Flags,
    SpeechConfig,
    VoiceEvent,
    VoiceStarted,
    VoiceStopped,
)

_EPS: Final = 1e-6  # seconds; absorbs float error on the grid


class Smoother:
    """Gated frame decisions of one participant -> talk-spurt edges (module doc)."""

    def __init__(self, role: Role, config: SpeechConfig | None = None) -> None:
        config = config or SpeechConfig()
        self.role = role
        self._min_burst = config.min_burst - _EPS
        self._fill = config.fill_gap - _EPS
        self._events: list[VoiceEvent] = []
        self._cursor: float | None = None  # end of the time accounted for
        self._run_start: float | None = None  # the current run of speech frames
        self._run_end = 0.0
        self._active = False  # a spurt has started and not yet stopped
        self._spurt_end = 0.0  # end of the last proven run of the active spurt
        self.late_frame_count = 0

    @property
    def active(self) -> bool:
        """A spurt is in progress, as far as has been decided."""
        return self._active

    @property
    def horizon(self) -> float | None:
        """No event still to come has a time before this (None before any input)."""
        if self._active:
            return self._spurt_end
        if self._run_start is not None:
            return self._run_start
        return self._cursor

    def drain_events(self) -> list[VoiceEvent]:
        events, self._events = self._events, []
        return events

    def on_frame(self, t: float, speech: bool) -> None:
        """One grid frame starting at ``t``; missing frames between calls are silence."""
        self._on_run(t, t + FRAME, speech)

    def on_block(self, k0: int, speech: Flags) -> None:
        """Frames ``k0, k0 + 1, ...`` (grid indices), processed run by run."""
        if len(speech) == 0:
            return
        changes = np.flatnonzero(speech[1:] != speech[:-1]) + 1
        bounds = [0, *changes.tolist(), len(speech)]
        values = speech[bounds[:-1]].tolist()
        for start, end, value in zip(bounds[:-1], bounds[1:], values, strict=True):
            self._on_run((k0 + start) * FRAME, (k0 + end) * FRAME, value)

    def advance(self, *, now: float) -> None:
        """Watermark: no frame will start before ``now``; decide what silence decides."""
        self._pass_silence_until(now, _EPS)

    def on_timer(self, *, now: float) -> None:
        self.advance(now=now)

    def next_deadline(self) -> float | None:
        """When, absent new frames, the pending stop would be decided."""
        if not self._active:
            return None
        if self._run_proven():
            return self._run_end + self._fill + 2 * _EPS
        deadline = self._spurt_end + self._fill
        if self._run_start is not None:
            deadline = max(deadline, self._run_end)
        return deadline + 2 * _EPS

    def _on_run(self, start: float, end: float, speech: bool) -> None:
        if self._cursor is not None and start < self._cursor - FRAME / 2:
            self.late_frame_count += 1
            return
        self._pass_silence_until(start, FRAME / 2)
        if speech:
            if self._run_start is None:
                self._run_start = start
            self._run_end = end
            if self._run_proven():
                if not self._active:
                    self._events.append(VoiceStarted(self.role, self._run_start))
                    self._active = True
                self._spurt_end = self._run_end
        else:
            self._run_start = None  # the run is over; if it never proved itself, dropped
        self._cursor = end
        self._decide_stop()

    def _pass_silence_until(self, now: float, tolerance: float) -> None:
        if self._cursor is not None and now <= self._cursor:
            return
        if self._run_start is not None and now > self._run_end + tolerance:
            self._run_start = None
        self._cursor = now
        self._decide_stop()

    def _run_proven(self) -> bool:
        return self._run_start is not None and self._run_end - self._run_start >= self._min_burst

    def _decide_stop(self) -> None:
        if not self._active or self._cursor is None or self._run_proven():
            return
        fill_ends = self._spurt_end + self._fill
        if self._cursor < fill_ends:
            return
        if self._run_start is not None and self._run_start < fill_ends:
            return  # a run began inside the fill window and may still prove itself
        self._events.append(VoiceStopped(self.role, self._spurt_end))
        self._active = False
