"""Smoothing: one participant's gated frame decisions become talk spurts with true edges.

Theory of operation
-------------------
This is the on-off analysis of Brady (P. T. Brady, "A statistical analysis of on-off
patterns in 16 conversations", Bell Syst. Tech. J. 47(1), 1968), whose 200 ms fill-in
bridges stop consonants and syllable joins, which are not pauses. In the order of
DESIGN.md ("fill gaps < 200 ms, drop bursts < 100 ms"), the hangover-then-minimum-length
order of endpoint detectors: first gaps shorter than ``fill_gap`` between speech frames
are filled, then every resulting stretch is dropped that is shorter than ``min_burst``
(100 ms: a cough, a stray frame) or holds no run of ``min_run`` (90 ms, three frames)
of consecutive speech frames. So whatever the input, every spurt lasts at least
``min_burst`` and every silence between spurts at least ``fill_gap``. Filling first
matters where the crosstalk gate decides frame by frame: a voice talking over a louder
one loses single frames to it, and dropping its 60-90 ms pieces before filling would
delete the intrusion itself (interruptions were found at a quarter of the composed
scenarios' rate, tests/accuracy). The run of 90 ms keeps what the click test leaves of
typing, stray one- and two-frame bursts often less than 250 ms apart, from filling
into talk. Brady's own burst threshold was 15 ms, where the order makes no difference.

``fill_gap`` is 250 ms on the detector's grid for Brady's 200 ms of silence: the frames
either side of a true gap hold the quiet ends of syllables, which the level gate loses
to noise (about a frame a side at 15 dB SNR), so a gap reads up to ~50 ms longer than
it was. Parameters: ``SpeechConfig``.

:class:`VoiceStarted` and :class:`VoiceStopped` carry the true edges (the start of the
first speech frame, the end of the last) and are emitted once decided, a bounded time
later: a start once the stretch has lasted ``min_burst`` and held a run of ``min_run``,
a stop ``fill_gap`` after it.

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
        self._min_run = config.min_run - _EPS
        self._min_burst = config.min_burst - _EPS
        self._fill = config.fill_gap - _EPS
        self._events: list[VoiceEvent] = []
        self._cursor: float | None = None  # end of the time accounted for
        self._run_start = 0.0  # the latest run of speech frames
        self._stretch_start: float | None = None  # runs joined by filled gaps
        self._speech_end = 0.0  # end of the stretch's last run
        self._anchored = False  # the stretch holds a run of min_run
        self._active = False  # ... and has lasted min_burst: a spurt, started
        self.late_frame_count = 0

    @property
    def active(self) -> bool:
        """A spurt is in progress, as far as has been decided."""
        return self._active

    @property
    def horizon(self) -> float | None:
        """No event still to come has a time before this (None before any input)."""
        if self._active:
            return self._speech_end
        if self._stretch_start is not None:
            return self._stretch_start
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
        if self._cursor is None or now > self._cursor:
            self._cursor = now
        self._close_after_silence(now)

    def on_timer(self, *, now: float) -> None:
        self.advance(now=now)

    def next_deadline(self) -> float | None:
        """When, absent new frames, the open stretch would be closed (a stop, or a drop)."""
        if self._stretch_start is None:
            return None
        return self._speech_end + self._fill + 2 * _EPS

    def _on_run(self, start: float, end: float, speech: bool) -> None:
        if self._cursor is not None and start < self._cursor - FRAME / 2:
            self.late_frame_count += 1
            return
        if not speech:
            self._close_after_silence(end)
            self._cursor = end
            return
        self._close_after_silence(start)  # the frames before it never came: silence
        if self._stretch_start is None:
            self._stretch_start = self._run_start = start
        elif start > self._speech_end + _EPS:
            self._run_start = start  # a new run, after a gap the fill bridges
        self._speech_end = end
        self._cursor = end
        self._anchored |= end - self._run_start >= self._min_run
        if not self._active and self._anchored and end - self._stretch_start >= self._min_burst:
            self._events.append(VoiceStarted(self.role, self._stretch_start))
            self._active = True

    def _close_after_silence(self, now: float) -> None:
        """End the stretch if silence has lasted ``fill_gap`` by ``now``."""
        silence = now - self._speech_end
        if self._stretch_start is None or silence < self._fill or silence < _EPS:
            return  # (speech that follows on directly is never a gap, even with no fill)
        if self._active:
            self._events.append(VoiceStopped(self.role, self._speech_end))
        self._active = self._anchored = False  # a stretch never started is dropped
        self._stretch_start = None
