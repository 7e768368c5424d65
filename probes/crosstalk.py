"""Crosstalk gate: a participant's frame is their speech only if it is not the other's echo.

Theory of operation
-------------------
Each participant's microphone also picks up the other's voice, played by their own
loudspeaker: an acoustic echo, delayed by the round trip (tens to hundreds of ms) and
attenuated by the echo path plus whatever echo canceller the browser runs. Seen as
levels, the echo of B in A's track follows B's level, minus a fairly constant *leak*
(the echo return loss of ITU-T G.168, in dB), ``delay`` later. Without a gate, A's
detector calls B's echoed words A's speech, and overlap and talk time are wildly
inflated.

The gate is the level-domain form of the double-talk detectors of line echo cancellers.
Geigel's detector (D. L. Duttweiler, "A twelve-channel digital echo canceler", IEEE
Trans. Commun. 26(5), 1978) declares near-end speech when the near-end level exceeds the
far-end's recent peak minus an *assumed* echo return loss (6 dB for a line hybrid). Here
the return loss is *measured* per direction, so a frame of A (in grid frame ``k``) is A's
speech only if

    A voiced by its detector, and
    level_A[k] >= reference_B[k] - leak(B -> A) + double_talk_margin_db (6 dB)

where ``reference_B[k]`` is the loudest of B's frames that could have echoed into frame
``k``: the frames around ``k - delay`` once the delay is known, else all of the last
``dominance_window`` (300 ms). B's frames count only while B's level stands
``source_margin_db`` above B's own noise floor: B's steady noise echoes too, but that is
part of A's noise floor, which A's detector already handles.

Before a leak is measured, ``prior_leak_db`` (18 dB) stands in for it, which makes the
rule plain energy dominance: A's frame must be within 12 dB of the louder track's level
over the last 300 ms (DESIGN.md, "Crosstalk gate"). Once measured, the rule follows the
room: a true -20 dB leak lets A through down to 14 dB below B, so a backchannel
("mm-hm", 8 dB under the speaker) or a real interruption survives while the echo (at
-20 dB, 6 dB under the bar) does not. The margin covers the frame-to-frame wobble of an
acoustic echo path; it also means a voice quieter than the echo's level plus 6 dB cannot
be told from the echo by levels alone: with a -10 dB leak, a backchannel 8 dB under the
speaker is lost, and that leak is reported as a problem anyway.

Leak and delay estimation (per direction, every ``leak_update_interval``, 10 s, or every
0.5 s until the first estimate, over the last ``leak_window``, 30 s, of frames; skipped
while B said nothing new): single-talk of B is where the leak shows. Take the frames of
A whose level stands ``measurable_db`` (6 dB) above A's noise (the median level of A
where neither side spoke), subtract that noise in the power domain (the echo's own
level), and pair each with B's frame ``lag`` earlier while B was voiced and louder than
A. At the true lag the differences ``level_B - echo_A`` are nearly constant (the echo
*tracks* B); at wrong lags they swing with B's syllables. For each lag take the shorth,
the shortest interval that holds half the differences: the delay is the lag with the
narrowest shorth, the leak the median inside it. That holds even when nearly half the
frames are A really talking over B (those differences are smaller and scattered): a
real second voice is not a constant offset from B and never looks like the echo.
A candidate must also be *visible where it predicts itself*: a leak L at lag d says that
wherever B was voiced and loud enough for ``level_B - L`` to stand ``measurable_db`` +
``visibility_margin_db`` (6 + 3 dB) above A's noise, A's frame d later reaches
``level_B - L`` (less the gate's ``double_talk_margin_db`` for the path's wobble). If
fewer than ``min_visible_ratio`` (half) of those frames do, the candidate is not an echo
but a chance alignment of A's own double-talk frames: with the echo under the noise, or
barely above it, a few dozen of them can line up at some lag with a narrow shorth and a
leak of 1-5 dB, which would both wreck the gate (A's speech over B would have to be
louder than B) and report a false echo problem. It is dropped, and the narrowest
remaining lag wins; a window in which B was too seldom loud enough to check the
narrowest candidate decides nothing (the previous estimate stands). If B talked plenty
but no lag survives (A's track never rose measurably above its noise in step with B),
the echo is buried in noise: the leak is then only known to be at least
``median(level_B) - (noise_A + measurable_db)``, reported as a lower bound.

``echo_leak_db(role)`` is the leak of the other's voice into ``role``'s track, the
``<role>.audio.echo_leak_db`` signal. ``echo_problem(role)`` is true when that measured
leak is under ``echo_problem_below_db`` (20 dB, DESIGN.md): the other participant hears
themselves come back. G.131 asks for far more echo loss at conversational delays, so
20 dB is lenient; a leak right at the threshold reads either side of it.

Alignment: frames are keyed by grid index (``probes.speech.frame_index``). Offline both
tracks arrive in step (or in alternating chunks); live they may be skewed or missing.
Frame ``k`` is decided once both roles have delivered it or moved past it (a role's
frames come in order, so a frame it skipped is missing for good), or once the clock
says it will not come: ``on_timer(now=...)`` past ``(k + 1) * FRAME + max_skew`` (0.5 s),
or ``flush()`` at the end of input. The clock, not the other role's progress, settles a
late frame, so offline input may be fed in large chunks. A missing frame is no speech
and no echo source. A frame that arrives after its index was decided is counted and
dropped. ``decided_until`` is the watermark downstream smoothers may advance to.
Decisions come out one frame at a time (``drain_frames``: :class:`GatedFrame`) or in bulk
(``drain_blocks``: :class:`GatedBlock`, what the pipeline uses); inside, frames move as
numpy arrays over spans of the grid, and a leak estimate is reported to 0.5 dB, about
its precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from probes.base import ConfigError, Role
from probes.speech_frames import FRAME, Flags, FrameBlock, Levels, SpeechFrame, windows

_ROLES: Final = (Role.THERAPIST, Role.CLIENT)
_LOCAL_LAGS: Final = 2  # lags either side of a known delay searched between full searches
_FULL_SEARCH_EVERY: Final = 6  # updates
_LEAK_STEP_DB: Final = 0.5  # estimates are reported to this precision


def _to_precision(leak_db: float) -> float:
    return round(leak_db / _LEAK_STEP_DB) * _LEAK_STEP_DB


def _shorth(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Width and median of the shortest interval holding half the (sorted) values.

    The shorth (Andrews et al. 1972; Rousseeuw's least median of squares) finds the
    densest half of the data, so it locates the echo's tight cluster even when up to
    half the frames are the near side talking over the far side.
    """
    half = (len(values) + 1) // 2
    widths = values[half - 1 :] - values[: len(values) - half + 1]
    start = int(np.argmin(widths))
    return float(widths[start]), float(np.median(values[start : start + half]))


@dataclass(frozen=True, slots=True)
class CrosstalkConfig:
    """Parameters of the crosstalk gate and the echo-leak estimator (module doc)."""

    prior_leak_db: float = 18.0
    double_talk_margin_db: float = 6.0
    dominance_window: float = 0.3
    max_echo_delay: float = 0.45
    source_margin_db: float = 6.0
    measurable_db: float = 6.0
    visibility_margin_db: float = 3.0
    min_visible_ratio: float = 0.5
    leak_window: float = 30.0
    leak_update_interval: float = 10.0
    min_leak_frames: int = 40
    echo_problem_below_db: float = 20.0
    max_skew: float = 0.5

    def __post_init__(self) -> None:
        if self.dominance_window < 0.0 or self.max_echo_delay < 0.0:
            raise ConfigError("dominance_window and max_echo_delay must not be negative")
        if self.leak_update_interval < FRAME or self.leak_window < self.leak_update_interval:
            raise ConfigError("need FRAME <= leak_update_interval <= leak_window")
        if self.min_leak_frames < 5:
            raise ConfigError("min_leak_frames must be at least 5")
        if self.max_skew < 0.0:
            raise ConfigError("max_skew must not be negative")
        if not 0.0 <= self.min_visible_ratio <= 1.0:
            raise ConfigError("min_visible_ratio must be within 0..1")

    def frames(self, seconds: float) -> int:
        return max(0, round(seconds / FRAME))


@dataclass(frozen=True, slots=True)
class EchoLeak:
    """How far below the other's voice its echo sits in one participant's track.

    ``leak_db`` is positive (20 means the echo is 20 dB down). ``delay`` is the echo's
    lag behind the other's track, seconds, on the 30 ms grid. When ``lower_bound`` is
    true the echo never rose above the noise: the leak is at least ``leak_db`` and the
    delay is unknown. ``frame_count`` is how many frames the estimate rests on.
    """

    leak_db: float
    delay: float | None
    frame_count: int
    lower_bound: bool = False


@dataclass(frozen=True, slots=True)
class GatedFrame:
    """A detector frame after the gate: ``speech`` is the participant's own voice."""

    role: Role
    t: float
    level_db: float
    voiced: bool
    speech: bool


@dataclass(frozen=True, slots=True, eq=False)
class GatedBlock:
    """Frames ``k0, k0 + 1, ...`` of one role after the gate (the bulk GatedFrame).

    ``present`` is false where the role delivered no frame (its level is then NaN and
    ``voiced`` and ``speech`` are false): a smoother reads that as silence.
    """

    role: Role
    k0: int
    level_db: Levels
    voiced: Flags
    speech: Flags
    present: Flags

    def frames(self) -> list[GatedFrame]:
        return [
            GatedFrame(self.role, (self.k0 + i) * FRAME, level, voiced, speech)
            for i, level, voiced, speech in zip(
                np.flatnonzero(self.present).tolist(),
                self.level_db[self.present].tolist(),
                self.voiced[self.present].tolist(),
                self.speech[self.present].tolist(),
                strict=True,
            )
        ]


class _Records:
    """One row per decided grid frame of one role, oldest first (numpy, for vector work).

    ``level`` is NaN for a missing frame; ``source`` is the level as an echo source,
    -inf unless it stood ``source_margin_db`` above the role's noise floor.
    """

    def __init__(self) -> None:
        self.level = np.empty(0, dtype=np.float64)
        self.voiced = np.empty(0, dtype=bool)
        self.floor = np.empty(0, dtype=np.float64)
        self.source = np.empty(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.level)

    def append(self, level: Levels, voiced: Flags, floor: Levels, source: Levels) -> None:
        self.level = np.concatenate((self.level, level))
        self.voiced = np.concatenate((self.voiced, voiced))
        self.floor = np.concatenate((self.floor, floor))
        self.source = np.concatenate((self.source, source))

    def append_missing(self, count: int) -> None:
        nothing = np.full(count, np.nan)
        self.append(nothing, np.zeros(count, dtype=bool), nothing, np.full(count, -np.inf))

    def keep_last(self, count: int) -> None:
        if len(self) > count:
            start = len(self) - count
            self.level = self.level[start:]
            self.voiced = self.voiced[start:]
            self.floor = self.floor[start:]
            self.source = self.source[start:]


class _Span:
    """One role's frames over a span of grid indices (missing: NaN level, not present)."""

    def __init__(self, blocks: list[FrameBlock], start: int, end: int) -> None:
        count = end - start
        self.level = np.full(count, np.nan)
        self.voiced = np.zeros(count, dtype=bool)
        self.floor = np.full(count, np.nan)
        self.present = np.zeros(count, dtype=bool)
        for block in blocks:
            lo, hi = max(start, block.k0), min(end, block.end)
            if lo >= hi:
                continue
            into, out = slice(lo - start, hi - start), slice(lo - block.k0, hi - block.k0)
            self.level[into] = block.level_db[out]
            self.voiced[into] = block.voiced[out]
            self.floor[into] = block.noise_floor_db[out]
            self.present[into] = True


class CrosstalkGate:
    """Aligns both participants' frames and keeps only each one's own voice (module doc)."""

    def __init__(self, config: CrosstalkConfig | None = None) -> None:
        self._config = c = config or CrosstalkConfig()
        self._dominance_frames = c.frames(c.dominance_window)
        self._max_lag = c.frames(c.max_echo_delay)
        self._window_frames = max(c.min_leak_frames, c.frames(c.leak_window))
        self._pending: dict[Role, list[FrameBlock]] = {r: [] for r in _ROLES}
        self._latest: dict[Role, float] = dict.fromkeys(_ROLES, -math.inf)
        self._next_k: int | None = None
        self._watermark_k: float = -math.inf  # frames up to here are settled by the clock
        self._records = {r: _Records() for r in _ROLES}
        # Per role: how far back the other's frames that can echo into the current one
        # start and end, and the leak to assume for them.
        self._reach: dict[Role, tuple[int, int, float]] = dict.fromkeys(
            _ROLES, (self._dominance_frames, 0, c.prior_leak_db)
        )
        self._since_update = dict.fromkeys(_ROLES, 0)  # frames since each role's estimate
        self._updates = dict.fromkeys(_ROLES, 0)
        self._estimates: dict[Role, EchoLeak | None] = dict.fromkeys(_ROLES)
        self._out: list[tuple[GatedBlock, GatedBlock]] = []
        self.late_frame_count = 0
        self.duplicate_frame_count = 0

    # -- results -------------------------------------------------------------------------

    def drain_frames(self) -> list[GatedFrame]:
        """Gated frames in grid order (both roles interleaved, therapist first)."""
        frames: list[GatedFrame] = []
        for therapist, client in self._drain():
            by_index = [(round(f.t / FRAME), 0, f) for f in therapist.frames()]
            by_index += [(round(f.t / FRAME), 1, f) for f in client.frames()]
            frames += [f for _, _, f in sorted(by_index, key=lambda item: item[:2])]
        return frames

    def drain_blocks(self) -> list[GatedBlock]:
        """Gated frames as blocks, in grid order (a therapist and a client block per span)."""
        return [block for pair in self._drain() for block in pair]

    def _drain(self) -> list[tuple[GatedBlock, GatedBlock]]:
        out, self._out = self._out, []
        return out

    @property
    def decided_until(self) -> float | None:
        """Every frame starting before this time has been decided (or declared missing)."""
        return None if self._next_k is None else self._next_k * FRAME

    def echo_leak(self, role: Role) -> EchoLeak | None:
        """The other participant's echo in ``role``'s track; None until estimated."""
        return self._estimates[role]

    def echo_leak_db(self, role: Role) -> float | None:
        """The measured leak in dB (None until measured, or while only a bound is known)."""
        estimate = self._estimates[role]
        return None if estimate is None or estimate.lower_bound else estimate.leak_db

    def echo_problem(self, role: Role) -> bool:
        """The other participant's voice comes back through ``role``'s track too loudly."""
        leak = self.echo_leak_db(role)
        return leak is not None and leak < self._config.echo_problem_below_db

    # -- input ---------------------------------------------------------------------------

    def on_frame(self, role: Role, frame: SpeechFrame) -> None:
        self.on_frames(role, [frame])

    def on_frames(self, role: Role, frames: list[SpeechFrame]) -> None:
        """Frames of one role, oldest first."""
        for block in FrameBlock.of(frames):
            self._accept(role, block)
        self._decide_ready()

    def on_block(self, role: Role, block: FrameBlock) -> None:
        """Consecutive frames of one role, after those it already gave."""
        self._accept(role, block)
        self._decide_ready()

    def next_deadline(self) -> float | None:
        """When ``on_timer`` would settle the oldest frame still waiting for its partner."""
        waiting = [blocks[0].k0 for blocks in self._pending.values() if blocks]
        if not waiting:
            return None
        return (min(waiting) + 1) * FRAME + self._config.max_skew

    def on_timer(self, *, now: float) -> None:
        """Frames ending ``max_skew`` before ``now`` will not get their partner: decide them."""
        settled = math.floor((now - self._config.max_skew) / FRAME + 1e-9) - 1
        if settled <= self._watermark_k:
            return
        self._watermark_k = settled
        self._decide_ready()

    def flush(self) -> None:
        """End of input: decide every frame still waiting."""
        self._watermark_k = math.inf
        self._decide_ready()

    # -- decisions -----------------------------------------------------------------------

    def _accept(self, role: Role, block: FrameBlock) -> None:
        first = block.k0
        if self._next_k is not None and first < self._next_k:
            late = min(len(block), self._next_k - first)
            self.late_frame_count += late
            first += late
        if first <= self._latest[role]:  # frames of one role come in order
            repeated = min(block.end, int(self._latest[role]) + 1) - first
            self.duplicate_frame_count += repeated
            first += repeated
        if first >= block.end:
            return
        self._pending[role].append(block.tail(first))
        self._latest[role] = block.end - 1
        if self._next_k is None:
            self._next_k = first

    def _decide_ready(self) -> None:
        """Decide, in grid order, every frame both roles have settled."""
        if self._next_k is None:
            return
        # A role has settled k if it delivered it or moved past it (frames of one role
        # come in order), or the clock has given up on it.
        ready = min(max(self._latest[r] + 1, self._watermark_k + 1) for r in _ROLES)
        if ready == math.inf:  # flushed: everything delivered
            ready = max(self._latest.values()) + 1
        if not ready > self._next_k:
            return
        end = int(ready) if math.isfinite(ready) else self._next_k
        while self._next_k < end:
            start = self._next_k
            waiting = [blocks[0].k0 for blocks in self._pending.values() if blocks]
            first = min(waiting) if waiting else end
            if first > start:  # both roles missing: a hole in the records
                self._skip_to(min(first, end))
                continue
            # Up to the next block boundary of either role, or the end.
            stop = min(
                [end]
                + [b.end for blocks in self._pending.values() for b in blocks[:1] if b.k0 <= start]
                + [b.k0 for blocks in self._pending.values() for b in blocks[:1] if b.k0 > start]
            )
            therapist = _Span(self._pending[Role.THERAPIST][:1], start, stop)
            client = _Span(self._pending[Role.CLIENT][:1], start, stop)
            self._consume(stop)
            self._decide_span(start, therapist, client)
            self._next_k = stop

    def _consume(self, stop: int) -> None:
        for role, blocks in self._pending.items():
            while blocks and blocks[0].end <= stop:
                blocks.pop(0)
            if blocks and blocks[0].k0 < stop:
                blocks[0] = blocks[0].tail(stop)
            self._pending[role] = blocks

    def _skip_to(self, k: int) -> None:
        """Both roles are missing every frame before ``k``: record the hole, move on."""
        assert self._next_k is not None
        hole = k - self._next_k
        if hole <= 0:
            return
        for records in self._records.values():
            if hole > self._window_frames:
                records.keep_last(0)
            else:
                records.append_missing(hole)
        self._next_k = k

    def _decide_span(self, k0: int, therapist: _Span, client: _Span) -> None:
        """Decide consecutive frames, re-estimating the leak on schedule in between."""
        start, count = 0, len(therapist.level)
        while start < count:
            due = min(self._update_frames(r) - self._since_update[r] for r in _ROLES)
            stop = min(count, start + max(1, due))
            self._decide_chunk(k0 + start, therapist, client, slice(start, stop))
            for role in _ROLES:
                self._since_update[role] += stop - start
            start = stop
            self._update_estimates()

    def _decide_chunk(self, k0: int, therapist: _Span, client: _Span, part: slice) -> None:
        margin = self._config.source_margin_db
        spans = ((Role.THERAPIST, therapist), (Role.CLIENT, client))
        for role, span in spans:
            level, floor = span.level[part], span.floor[part]
            with np.errstate(invalid="ignore"):
                source = np.where(level >= floor + margin, level, -np.inf)
            self._records[role].append(level, span.voiced[part], floor, source)
        count = part.stop - part.start
        gated: list[GatedBlock] = []
        for role, span in spans:
            level, voiced = span.level[part], span.voiced[part]
            with np.errstate(invalid="ignore"):
                speech = voiced & (level >= self._thresholds(role, count))
            gated.append(GatedBlock(role, k0, level, voiced, speech, span.present[part]))
        self._out.append((gated[0], gated[1]))

    def _thresholds(self, role: Role, count: int) -> npt.NDArray[np.float64]:
        """The level each of ``role``'s last ``count`` frames had to reach (module doc)."""
        back_from, back_to, leak = self._reach[role]
        sources = self._records[role.other].source
        end = len(sources) - back_to  # the window of frame i is [i - back_from, i - back_to]
        begin = len(sources) - count - back_from
        window = sources[max(0, begin) : max(0, end)]
        if begin < 0 or end <= 0:
            padding = np.full(min(-begin, count + back_from - back_to), -np.inf)
            window = np.concatenate((padding, window))
        reference = windows(window, back_from - back_to + 1).max(axis=1)
        return np.asarray(reference - leak + self._config.double_talk_margin_db, dtype=np.float64)

    def _update_frames(self, role: Role) -> int:
        interval = self._config.leak_update_interval
        if self._estimates[role] is None:
            interval = min(interval, 0.5)  # converge quickly at the start
        return max(1, round(interval / FRAME))

    # -- estimation ----------------------------------------------------------------------

    def _update_estimates(self) -> None:
        """Re-estimate each role's leak that is due (module doc: leak and delay)."""
        due = [r for r in _ROLES if self._since_update[r] >= self._update_frames(r)]
        if not due:
            return
        for records in self._records.values():
            records.keep_last(self._window_frames)
        for role in due:
            since, self._since_update[role] = self._since_update[role], 0
            if not self._records[role.other].voiced[-since:].any():
                continue  # the other said nothing new: nothing new to learn about its echo
            self._updates[role] += 1
            estimate = self._estimate(role)
            if estimate is not None:
                self._estimates[role] = estimate
                self._reach[role] = self._reach_for(estimate)

    def _reach_for(self, estimate: EchoLeak) -> tuple[int, int, float]:
        """Which frames of the other can echo into this one, and the leak to assume."""
        if estimate.delay is not None and not estimate.lower_bound:
            lag = round(estimate.delay / FRAME)  # a frame either side: the delay is fractional
            return lag + 1, max(0, lag - 1), estimate.leak_db
        return self._dominance_frames, 0, max(self._config.prior_leak_db, estimate.leak_db)

    def _estimate(self, role: Role) -> EchoLeak | None:
        """The echo of the other participant in ``role``'s track, from the recent records."""
        c = self._config
        near_records, far_records = self._records[role], self._records[role.other]
        near, far = near_records.level, far_records.level
        near_voiced, far_voiced = near_records.voiced, far_records.voiced
        n = len(near)
        if n < c.min_leak_frames or far_voiced.sum() < c.min_leak_frames:
            return None
        noise_db = self._noise_db(role, near, near_voiced, far_voiced)
        if noise_db is None:
            return None
        measurable = near >= noise_db + c.measurable_db  # NaN compares False
        with np.errstate(invalid="ignore", divide="ignore"):
            echo_db = 10.0 * np.log10(10.0 ** (near / 10.0) - 10.0 ** (noise_db / 10.0))
        best, unverifiable = self._best_lag(
            role,
            far=far,
            far_voiced=far_voiced,
            near=near,
            echo_db=echo_db,
            measurable=measurable,
            noise_db=noise_db,
        )
        if best is not None:
            return EchoLeak(_to_precision(best[1]), best[2] * FRAME, best[3])
        if unverifiable:
            return None  # the window cannot tell: keep what was known
        with np.errstate(invalid="ignore"):
            heard = far_voiced & (far > near)  # the other talking, not just its echo of us
        if heard.sum() < 2 * c.min_leak_frames:
            return None
        bound = float(np.median(far[heard])) - (noise_db + c.measurable_db)
        return EchoLeak(_to_precision(max(0.0, bound)), None, int(heard.sum()), lower_bound=True)

    def _best_lag(
        self,
        role: Role,
        *,
        far: npt.NDArray[np.float64],
        far_voiced: npt.NDArray[np.bool_],
        near: npt.NDArray[np.float64],
        echo_db: npt.NDArray[np.float64],
        measurable: npt.NDArray[np.bool_],
        noise_db: float,
    ) -> tuple[tuple[float, float, int, int] | None, bool]:
        """(shorth width, leak, lag, frame count) of the lag where the echo tracks best, and
        whether a narrower candidate was left unchecked for want of loud frames of B."""
        minimum = self._config.min_leak_frames
        candidates = np.nonzero(measurable)[0]
        if len(candidates) < minimum:
            return None, False
        lags = np.array(self._lags_to_search(role))
        far_k = candidates[np.newaxis, :] - lags[:, np.newaxis]  # one row per lag
        usable = far_k >= 0
        far_k = np.where(usable, far_k, 0)
        far_level = far[far_k]
        with np.errstate(invalid="ignore"):
            usable &= far_voiced[far_k] & (far_level > near[candidates])
        counts = usable.sum(axis=1)
        differences = np.where(usable, far_level - echo_db[candidates], np.inf)
        differences.sort(axis=1)
        best: tuple[float, float, int, int] | None = None
        unverifiable = False
        for row in np.nonzero(counts >= minimum)[0].tolist():
            count = int(counts[row])
            width, leak = _shorth(differences[row, :count])
            if best is not None and width >= best[0]:
                continue
            visible = self._visible(
                leak, int(lags[row]), far=far, far_voiced=far_voiced, near=near, noise_db=noise_db
            )
            if visible:
                best = (width, leak, int(lags[row]), count)
            unverifiable |= visible is None
        return best, unverifiable and best is None

    def _visible(
        self,
        leak_db: float,
        lag: int,
        *,
        far: npt.NDArray[np.float64],
        far_voiced: npt.NDArray[np.bool_],
        near: npt.NDArray[np.float64],
        noise_db: float,
    ) -> bool | None:
        """Does an echo ``leak_db`` down at ``lag`` show wherever it should (module doc)?

        None: B had too few frames loud enough to tell."""
        c = self._config
        loud_enough = noise_db + c.measurable_db + c.visibility_margin_db + leak_db
        with np.errstate(invalid="ignore"):
            predicted = np.nonzero(
                far_voiced[: len(far) - lag] & (far[: len(far) - lag] >= loud_enough)
            )[0]
        if len(predicted) < c.min_leak_frames:
            return None
        # Seen: A's frame reaches the predicted echo level, less the gate's allowance for
        # the wobble of an acoustic path (NaN, a missing frame, is not seen).
        expected = far[predicted] - leak_db - c.double_talk_margin_db
        with np.errstate(invalid="ignore"):
            seen = near[predicted + lag] >= expected
        return bool(seen.mean() >= c.min_visible_ratio)

    def _lags_to_search(self, role: Role) -> range:
        estimate = self._estimates[role]
        if (
            estimate is None
            or estimate.delay is None
            or estimate.lower_bound
            or self._updates[role] % _FULL_SEARCH_EVERY == 0
        ):
            return range(self._max_lag + 1)
        lag = round(estimate.delay / FRAME)
        return range(max(0, lag - _LOCAL_LAGS), min(self._max_lag, lag + _LOCAL_LAGS) + 1)

    def _noise_db(
        self,
        role: Role,
        near: npt.NDArray[np.float64],
        near_voiced: npt.NDArray[np.bool_],
        far_voiced: npt.NDArray[np.bool_],
    ) -> float | None:
        """``role``'s noise level: its median where neither side spoke (nor echoed)."""
        # Frames with the far side voiced within the last max_lag frames (an echo may come).
        voiced_so_far: npt.NDArray[np.intp] = np.cumsum(far_voiced, dtype=np.intp)
        before_window = np.zeros_like(voiced_so_far)
        before_window[self._max_lag + 1 :] = voiced_so_far[: -(self._max_lag + 1)]
        far_recent = voiced_so_far - before_window
        quiet = ~near_voiced & (far_recent == 0) & np.isfinite(near)
        if quiet.sum() >= 20:
            return float(np.median(near[quiet]))
        floors = self._records[role].floor
        floors = floors[np.isfinite(floors)]
        return float(np.median(floors)) if len(floors) else None
