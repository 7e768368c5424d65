"""Compose two-track therapy conversations from the synthetic voices, with exact truth.

Theory of operation
-------------------
A seeded ``random.Random`` writes a *script*; the script is rendered by adding clips
into preallocated float arrays (5 minutes in a few hundred ms once the two voices are
decoded; decoded voices are cached per process). The same seed and config give the same
samples and the same truth.

Clips are prepared once per voice: decoded, scaled so that their active speech level
(truth.active_level_db, P.56-style) is ``speech_level_dbfs``, and trimmed to their audible
extent (frames within 40 dB of that level). Script times are speech *onsets* and
*offsets* under the truth definition, on the truth's 10 ms grid (clips are placed on it,
so gap filling decides the same in a clip and in the track); pauses, gaps and overlaps
are what the script says, to the frame.

The script follows the definitions of DESIGN.md "Conversation" as probes/turns.py
implements them (floor per Jaffe & Feldstein: taken by >= 1 s of solo speech), and stays
clear of their borderline cases, so that a perfect detector scores 1.0
(tests/monitor/test_scenario_definitions.py). Floor holder S, listener L, the therapist
speaks first:

- a **turn**: 1-3 utterances of S separated by pauses (``pause``); the first one's first
  talkspurt lasts >= ``ESTABLISHED`` (1.3 s) so the floor is taken before any pause;
  then the floor goes to L after a gap (``gap``, speaker change);
- a **backchannel** by L in one of S's pauses, once S has spoken ``ESTABLISHED`` in the
  turn: a clip of at most 0.8 s starting between ``backchannel_overlap_max`` before S's
  offset and 0.25 s after it;
- a **successful interruption** (``successful_interruption_ratio`` of turns): L starts
  inside one of S's talkspurts (S talking >= 0.3 s and >= ``ESTABLISHED`` in the turn),
  S talks on for ``successful_overlap`` (0.3-1 s) and stops mid-utterance (the clip is
  cut with a 10 ms fade, right after loud frames), L's talkspurt goes on >= 1.3 s alone:
  L holds the floor;
- a **failed interruption** (``failed_interruption_ratio`` of turns): L starts inside S's
  speech and talks ``failed_intrusion`` (1.2-1.8 s, longer than a backchannel by
  definition) in one talkspurt, at most 0.3 s of it alone; S talks on >= 0.7 s after
  and keeps the floor;
- a **client monologue** (``monologue``: at least 22 s, about 22-35 s, short pauses,
  therapist backchannels), first at ``monologue_first`` and then every
  ``monologue_every`` seconds.

The first turn has no events (nobody holds the floor yet). The script keeps adding turns
until ``duration`` is reached and finishes the turn under way, so a scenario lasts at
least ``duration`` (typically up to 40 s more).

Rendering: each role's clean track is the sum of its clips; the truth is computed from
it (truth.py). **Echo** (``echo_leak_db`` = X): each track also gets the other role's
clean track delayed by ``echo_delay`` and scaled to -X dB (optionally through a 4-sample
moving average, a gentle lowpass as in a laptop's speaker-to-microphone path, rescaled
so that the leak is still -X dB in RMS). **Noise** (``snr_db``): white (uniform samples:
a flat spectrum, at a quarter of the cost of Gaussian) or pink (Voss-McCartney)
noise per track, its RMS
``snr_db`` below that track's own speech RMS over its truth segments. Samples are
rounded and clipped to int16.
"""

from __future__ import annotations

import itertools
import math
import random
import wave
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from monitor import voices as voice_catalogue
from monitor.scenario.truth import (
    ACTIVITY_MARGIN_DB,
    BACKCHANNEL_MAX,
    FRAME,
    FRAME_SAMPLES,
    FRAMES_PER_SECOND,
    SAMPLE_RATE,
    Backchannel,
    GroundTruth,
    Interruption,
    Turn,
    active_frames,
    active_level_db,
    frame_levels_db,
    frame_powers,
    intersect,
    levels_db,
    segments_from_frames,
    total,
    union,
)
from monitor.voices import ClipKind
from probes.base import FeltsafeError, Role
from probes.speech_pipeline import Segment

Floats = npt.NDArray[np.float32]
Int16s = npt.NDArray[np.int16]

TRIM_BELOW_LEVEL_DB = 40.0
BACKCHANNEL_LONGEST = 0.8  # BACKCHANNEL_MAX less room for a detector's smoothing
ESTABLISHED = 1.3  # holder's speech in a turn before the listener may chime in
FADE = 0.010
TAIL = 0.5
_SAFETY = 0.3  # how long S must already be talking when an intrusion starts
_TALK_ON = 0.7  # how long S talks on after a failed intrusion
_SOLO_MAX = 0.3  # how much of a failed intrusion may fall in S's silence
_PINK_ROWS = 13


class ScenarioError(FeltsafeError):
    """A scenario was asked for with impossible parameters."""


class NoiseColour(StrEnum):
    WHITE = "white"
    PINK = "pink"


@dataclass(frozen=True, slots=True)
class ScenarioConfig:
    therapist_voice: str = "en-low"
    client_voice: str = "en-high"
    duration: float = 300.0
    speech_level_dbfs: float = -26.0
    # Each track gets the other role's voice at -echo_leak_db dB (None: no echo).
    echo_leak_db: float | None = None
    echo_delay: float = 0.040
    echo_lowpass: bool = False
    # Noise per track, this many dB below that track's speech (None: no noise).
    snr_db: float | None = None
    noise: NoiseColour = NoiseColour.WHITE
    pause: tuple[float, float] = (0.3, 1.5)
    gap: tuple[float, float] = (0.1, 1.0)
    utterances_per_turn: tuple[int, ...] = (1, 2, 2, 3)
    successful_interruption_ratio: float = 0.4  # of turns
    failed_interruption_ratio: float = 0.4  # of turns, drawn independently
    backchannel_ratio: float = 0.5  # of pauses
    successful_overlap: tuple[float, float] = (0.3, 1.0)
    failed_intrusion: tuple[float, float] = (1.2, 1.8)
    backchannel_overlap_max: float = 0.1
    monologue: tuple[float, float] = (22.0, 32.0)
    monologue_first: float = 30.0
    monologue_every: float = 90.0
    lead_in: float = 0.5

    def __post_init__(self) -> None:
        for name in ("pause", "gap", "successful_overlap", "failed_intrusion", "monologue"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
                raise ScenarioError(f"scenario: {name} must be a range 0 < low <= high")
        if not 0 < self.duration <= 4 * 3600:
            raise ScenarioError("scenario: duration must be between 0 and 4 hours")
        if self.successful_overlap[0] < 0.2 or self.successful_overlap[1] > 1.5:
            raise ScenarioError("scenario: successful_overlap must lie within 0.2-1.5 s")
        if self.failed_intrusion[0] <= BACKCHANNEL_MAX:
            raise ScenarioError(
                "scenario: a failed interruption must last more than 1 s "
                "(a shorter listener talkspurt is a backchannel by definition)"
            )
        if self.pause[0] < 0.25:
            raise ScenarioError("scenario: pauses must be >= 0.25 s (200 ms silences are filled)")
        if not 0 <= self.backchannel_overlap_max <= 0.2:
            raise ScenarioError("scenario: backchannel_overlap_max must be within 0-0.2 s")
        if self.echo_leak_db is not None and not self.echo_leak_db >= 0:
            raise ScenarioError("scenario: echo_leak_db is an attenuation, >= 0 dB")
        if not 0 <= self.echo_delay <= 0.5:
            raise ScenarioError("scenario: echo_delay must be within 0-0.5 s")
        if self.snr_db is not None and not math.isfinite(self.snr_db):
            raise ScenarioError("scenario: snr_db must be finite")
        if not -60 <= self.speech_level_dbfs <= -6:
            raise ScenarioError("scenario: speech_level_dbfs must be within -60 to -6 dBFS")
        if not self.utterances_per_turn or min(self.utterances_per_turn) < 1:
            raise ScenarioError("scenario: utterances_per_turn must be counts >= 1")
        for name in ("successful_interruption_ratio", "failed_interruption_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise ScenarioError(f"scenario: {name} must be within 0-1")
        if not 0 <= self.backchannel_ratio <= 1:
            raise ScenarioError("scenario: backchannel_ratio must be within 0-1")
        for role_voice in (self.therapist_voice, self.client_voice):
            voice_catalogue.voice(role_voice)  # raises UnknownVoiceError (a FeltsafeError)

    def voice_of(self, role: Role) -> str:
        return self.therapist_voice if role is Role.THERAPIST else self.client_voice


@dataclass(frozen=True, slots=True, eq=False)
class Scenario:
    """Two int16 tracks at 16 kHz (echo and noise included) and their exact truth."""

    therapist: Int16s
    client: Int16s
    truth: GroundTruth
    config: ScenarioConfig
    seed: int | None
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        return len(self.therapist) / self.sample_rate

    def track(self, role: Role) -> Int16s:
        return self.therapist if role is Role.THERAPIST else self.client

    def to_stereo(self) -> Int16s:
        """Shape (samples, 2): left = therapist, right = client."""
        return np.ascontiguousarray(np.stack([self.therapist, self.client], axis=1))

    def write_wav(self, path: str | Path) -> Path:
        """Write the stereo scenario (left therapist) as a 16-bit wav; synthetic audio."""
        return write_wav(path, self.to_stereo(), sample_rate=self.sample_rate)

    def write_wavs(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``therapist.wav`` and ``client.wav`` into ``directory``."""
        folder = Path(directory)
        return (
            write_wav(folder / "therapist.wav", self.therapist, sample_rate=self.sample_rate),
            write_wav(folder / "client.wav", self.client, sample_rate=self.sample_rate),
        )


def write_wav(path: str | Path, samples: Int16s, *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write int16 samples, shape (n,) or (n, channels), as a wav file.

    For SYNTHETIC test audio only (tests, the demo): product code never writes audio.
    """
    target = Path(path)
    data = np.asarray(samples, dtype=np.int16)
    channels = 1 if data.ndim == 1 else data.shape[1]
    with wave.open(str(target), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(np.ascontiguousarray(data).astype("<i2").tobytes())
    return target


def compose(config: ScenarioConfig | None = None, *, seed: int | random.Random = 0) -> Scenario:
    """A conversation per ``config``, deterministic for an integer ``seed``."""
    config = config or ScenarioConfig()
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    voices = {
        role: _prepared_voice(config.voice_of(role), config.speech_level_dbfs) for role in Role
    }
    script = _Script(config, rng, voices)
    script.write()
    return _render(config, script, rng, None if isinstance(seed, random.Random) else seed)


def bundled_example() -> Scenario:
    """The fixed two-minute example conversation that ``feltsafe demo`` analyses.

    Generated on the fly (about 0.3 s) rather than shipped as a file: a stereo Opus copy
    would take ~300 kB of the package next to the ~450 kB of voices.
    """
    return compose(
        ScenarioConfig(
            therapist_voice="en-low",
            client_voice="fr-en",
            duration=120.0,
            echo_leak_db=30.0,
            snr_db=30.0,
            monologue_first=40.0,
        ),
        seed=20240501,
    )


# -- prepared voices --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Clip:
    samples: Floats  # level-normalised, trimmed to the audible extent
    segments: tuple[Segment, ...]  # truth extent, seconds from the clip's first sample
    active: npt.NDArray[np.bool_]  # the same, as 10 ms frames
    loud: npt.NDArray[np.bool_]  # frames above the threshold themselves (no gap filling)
    kind: ClipKind

    @property
    def onset(self) -> float:
        return self.segments[0].start

    @property
    def offset(self) -> float:
        return self.segments[-1].end

    @property
    def speech(self) -> float:
        return self.offset - self.onset


@dataclass(frozen=True, slots=True, eq=False)
class _Voice:
    utterances: tuple[_Clip, ...]  # utterances and long clips
    # Utterances whose first talkspurt alone takes the floor (>= 1 s alone, J&F), so that
    # no pause falls inside a claim that is still undecided.
    openers: tuple[_Clip, ...]
    long: tuple[_Clip, ...]
    backchannels: tuple[_Clip, ...]


@cache
def _prepared_voice(voice_id: str, level_dbfs: float) -> _Voice:
    info = voice_catalogue.voice(voice_id)
    clips = [_prepare(voice_catalogue.decode_clip(c), c.kind, level_dbfs) for c in info.clips]
    backchannels = tuple(
        c
        for c in clips
        if c.kind is ClipKind.BACKCHANNEL
        and len(c.segments) == 1
        and c.speech <= BACKCHANNEL_LONGEST
    )
    utterances = tuple(c for c in clips if c.kind is not ClipKind.BACKCHANNEL)
    if not backchannels or not utterances:
        raise ScenarioError(f"voice {voice_id!r} lacks usable utterances or backchannels")
    return _Voice(
        utterances=utterances,
        openers=tuple(c for c in utterances if c.segments[0].duration >= ESTABLISHED),
        long=tuple(c for c in clips if c.kind is ClipKind.LONG) or utterances,
        backchannels=backchannels,
    )


def _prepare(pcm: Int16s, kind: ClipKind, level_dbfs: float) -> _Clip:
    samples = pcm.astype(np.float32) / np.float32(32768.0)
    gain = 10.0 ** ((level_dbfs - active_level_db(samples)) / 20.0)
    samples = (samples * np.float32(gain)).astype(np.float32)
    levels = frame_levels_db(samples)
    audible = np.flatnonzero(levels >= level_dbfs - TRIM_BELOW_LEVEL_DB)
    first, last = int(audible[0]) * 160, (int(audible[-1]) + 1) * 160
    samples = np.ascontiguousarray(samples[first:last])
    levels = frame_levels_db(samples)
    threshold = level_dbfs - ACTIVITY_MARGIN_DB
    active = active_frames(levels, threshold)
    segments = segments_from_frames(active)
    return _Clip(
        samples=samples,
        segments=tuple(segments),
        active=active,
        loud=levels >= threshold,
        kind=kind,
    )


# -- the script -------------------------------------------------------------------------


@dataclass(slots=True)
class _TurnPlan:
    by: Role
    clips: list[tuple[float, float]] = field(default_factory=list)  # speech spans placed
    taken_by_interruption: bool = False


@dataclass(frozen=True, slots=True)
class _IntrusionMark:
    by: Role
    window: Segment  # where the simultaneous speech lies
    successful: bool


class _Script:
    """Writes placements (role, start sample, samples) and marks for the truth."""

    def __init__(self, config: ScenarioConfig, rng: random.Random, voices: dict[Role, _Voice]):
        self.config = config
        self.rng = rng
        self.voices = voices
        self.placements: dict[Role, list[tuple[int, Floats]]] = {role: [] for role in Role}
        self.turns: list[_TurnPlan] = []
        self.intrusions: list[_IntrusionMark] = []
        self.backchannels: list[tuple[Role, float]] = []

    # placement primitives

    def place(self, role: Role, clip: _Clip, onset: float, *, cut: float | None = None) -> float:
        """Put ``clip`` so its speech starts at ``onset``; return the speech offset.

        ``cut`` (seconds into the clip) ends the clip there with a short fade.
        """
        # On the 10 ms grid of the truth, so that gap filling decides the same in the clip
        # and in the track (a 195 ms silence must not become 200 ms by misalignment).
        start = round((onset - clip.onset) / FRAME) * FRAME_SAMPLES
        samples = clip.samples
        offset = clip.offset
        if cut is not None:
            end = round(cut * SAMPLE_RATE)
            fade = round(FADE * SAMPLE_RATE)
            samples = samples[:end].copy()
            samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
            offset = cut
        self.placements[role].append((start, samples))
        return start / SAMPLE_RATE + offset

    def pick(self, clips: Sequence[_Clip]) -> _Clip:
        return clips[self.rng.randrange(len(clips))]

    # the conversation

    def write(self) -> None:
        cfg = self.config
        holder = Role.THERAPIST
        t = _on_grid(cfg.lead_in)
        next_monologue = cfg.monologue_first
        continuing: tuple[_TurnPlan, float] | None = None
        first = True
        while t < cfg.duration:
            outcome: tuple[float, tuple[_TurnPlan, float] | None]
            if continuing is not None:
                plan, spoken = continuing
                outcome = self.turn(plan, t, spoken=spoken, continuing=True, events=True)
            elif holder is Role.CLIENT and t >= next_monologue:
                plan = self.new_turn(holder)
                outcome = (self.monologue(plan, t), None)
                next_monologue = outcome[0] + cfg.monologue_every
            else:
                plan = self.new_turn(holder)
                outcome = self.turn(plan, t, spoken=0.0, continuing=False, events=not first)
            first = False
            end, taken = outcome
            holder = holder.other
            if taken is not None:
                continuing = taken
                t = end
            else:
                continuing = None
                t = _on_grid(end + self.rng.uniform(*cfg.gap))

    def new_turn(self, by: Role) -> _TurnPlan:
        plan = _TurnPlan(by=by)
        self.turns.append(plan)
        return plan

    def turn(
        self, plan: _TurnPlan, t: float, *, spoken: float, continuing: bool, events: bool
    ) -> tuple[float, tuple[_TurnPlan, float] | None]:
        """Utterances of the holder; returns (speech end, (intruder's plan, spoken) | None)."""
        cfg, rng = self.config, self.rng
        count = rng.choice(cfg.utterances_per_turn) - (1 if continuing else 0)
        successful = events and rng.random() < cfg.successful_interruption_ratio
        failed = events and rng.random() < cfg.failed_interruption_ratio
        failed_from = rng.randrange(max(count, 1))
        for index in range(count):
            if index > 0 or continuing:
                t = self.pause(plan.by, t, spoken=spoken, events=events)
            if successful and index == count - 1:
                taken = self.successful_interruption(plan, t, spoken)
                if taken is not None:
                    return taken
            clip = None
            if failed and index >= failed_from:
                clip = self.failed_interruption(plan, t, spoken)
                failed = clip is None
            if clip is None:
                # A turn's first utterance must take the floor: >= 1 s alone (J&F).
                choices = self.voices[plan.by].openers if spoken == 0 else None
                clip = self.pick(choices or self.voices[plan.by].utterances)
                self.place(plan.by, clip, t)
            plan.clips.append((t, t + clip.speech))
            spoken += clip.speech
            t += clip.speech
        return t, None

    def monologue(self, plan: _TurnPlan, t: float) -> float:
        cfg, rng = self.config, self.rng
        length = rng.uniform(*cfg.monologue)
        start, spoken = t, 0.0
        voice = self.voices[plan.by]
        while True:
            if spoken == 0:
                clip = self.pick(voice.openers or voice.utterances)
            else:
                clip = self.pick(voice.long if rng.random() < 0.6 else voice.utterances)
            self.place(plan.by, clip, t)
            plan.clips.append((t, t + clip.speech))
            spoken += clip.speech
            t += clip.speech
            if t - start >= length:
                return t
            t = self.pause(plan.by, t, spoken=spoken, events=True, short=True)

    def pause(
        self, holder: Role, t: float, *, spoken: float, events: bool, short: bool = False
    ) -> float:
        """A pause of ``holder`` after speech ending at ``t``; maybe a backchannel in it.

        Returns the holder's next onset.
        """
        cfg, rng = self.config, self.rng
        low, high = cfg.pause
        length = rng.uniform(low, min(high, 0.8) if short else high)
        if not (events and spoken >= ESTABLISHED and rng.random() < cfg.backchannel_ratio):
            return _on_grid(t + length)
        clip = self.pick(self.voices[holder.other].backchannels)
        onset = _on_grid(t + rng.uniform(-cfg.backchannel_overlap_max, 0.25))
        offset = self.place(holder.other, clip, onset)
        self.backchannels.append((holder.other, onset))
        return _on_grid(max(t + length, offset + rng.uniform(0.15, 0.4)))

    def host(
        self,
        role: Role,
        spoken: float,
        *,
        need: float,
        after: float,
        solo_max: float = 0.0,
        cut: bool = False,
    ) -> tuple[_Clip, float] | None:
        """A clip of ``role`` that can host an intrusion, and the intrusion's start in it.

        A turn's first clip must also take the floor on its own (an opener)."""
        voice = self.voices[role]
        clips = list(voice.openers if spoken == 0 and voice.openers else voice.utterances)
        self.rng.shuffle(clips)
        for clip in clips:
            starts = self.intrusion_starts(
                clip, spoken, need=need, after=after, solo_max=solo_max, cut=cut
            )
            if starts:
                return clip, self.rng.choice(starts)
        return None

    def successful_interruption(
        self, plan: _TurnPlan, t: float, spoken: float
    ) -> tuple[float, tuple[_TurnPlan, float]] | None:
        """A holder's utterance from ``t`` cut short by the listener, who takes the floor.

        None (nothing placed) if no clip of the two voices fits.
        """
        overlap = self.rng.uniform(*self.config.successful_overlap)
        intruder = plan.by.other
        candidates = [
            c
            for c in self.voices[intruder].utterances
            if c.segments[0].duration >= overlap + ESTABLISHED
        ]
        hosting = self.host(plan.by, spoken, need=overlap, after=0.0, cut=True)
        if not candidates or hosting is None:
            return None
        clip, local = hosting
        onset = t + local - clip.onset
        self.place(plan.by, clip, t, cut=local + overlap)
        plan.clips.append((t, onset + overlap))
        end = self.place(intruder, self.pick(candidates), onset)
        self.intrusions.append(_IntrusionMark(intruder, Segment(onset, onset + overlap), True))
        taken = self.new_turn(intruder)
        taken.taken_by_interruption = True
        taken.clips.append((onset, end))
        return end, (taken, end - (onset + overlap))

    def failed_interruption(self, plan: _TurnPlan, t: float, spoken: float) -> _Clip | None:
        """A holder's utterance from ``t`` with a failed intrusion in it; the clip placed.

        None (nothing placed) if no clip of the two voices fits.
        """
        length = self.rng.uniform(*self.config.failed_intrusion)
        intruder = plan.by.other
        candidates = [
            c for c in self.voices[intruder].utterances if c.segments[0].duration >= length
        ]
        hosting = self.host(plan.by, spoken, need=length, after=_TALK_ON, solo_max=_SOLO_MAX)
        if not candidates or hosting is None:
            return None
        clip, local = hosting
        onset = t + local - clip.onset
        self.place(plan.by, clip, t)
        intruding = self.pick(candidates)
        self.place(intruder, intruding, onset, cut=_loud_cut(intruding, intruding.onset + length))
        self.intrusions.append(_IntrusionMark(intruder, Segment(onset, onset + length), False))
        return clip

    def intrusion_starts(
        self,
        clip: _Clip,
        spoken: float,
        *,
        need: float,
        after: float,
        solo_max: float = 0.0,
        cut: bool = False,
    ) -> list[float]:
        """Times (seconds into ``clip``) where an intrusion of ``need`` seconds may start.

        The holder must have talked ``ESTABLISHED`` in the turn and, without a break,
        ``_SAFETY`` before the start; leave the intruder at most ``solo_max`` alone; and
        talk on for ``after`` seconds once the intrusion ends. With ``cut`` (the holder
        stops where the intrusion ends) the frames before the cut must be loud in
        themselves: a silence that only gap filling made active would vanish with the
        speech after it. Every other 10 ms frame is a candidate.
        """
        active = clip.active
        covered = np.concatenate(([0], np.cumsum(active, dtype=np.int64)))
        span, lead = round(need / FRAME), round(_SAFETY / FRAME)
        first = max(lead, math.ceil((ESTABLISHED - spoken + clip.onset) / FRAME))
        last = min(len(active) - span, math.floor((clip.offset - after) / FRAME) - span)
        if last < first:
            return []
        k = np.arange(first, last + 1, 2)
        talking_before = covered[k + 1] - covered[k - lead] == lead + 1
        alone = span - (covered[k + span] - covered[k])
        fits = talking_before & (alone <= round(solo_max / FRAME))
        if cut:
            fits &= clip.loud[k + span - 1] & clip.loud[k + span - 2] & clip.loud[k + span - 3]
        return [round(float(start) * FRAME, 3) for start in k[fits]]


def _on_grid(t: float) -> float:
    return round(t / FRAME) / FRAMES_PER_SECOND


def _loud_cut(clip: _Clip, cut: float) -> float:
    """The latest cut at or before ``cut`` (and after ``BACKCHANNEL_MAX`` + 0.15 s of
    speech) right after three loud frames, so the talkspurt really lasts until the cut."""
    frame = round(cut / FRAME)
    earliest = math.ceil((clip.onset + BACKCHANNEL_MAX + 0.15) / FRAME)
    while frame > earliest and not clip.loud[frame - 3 : frame].all():
        frame -= 1
    return frame * FRAME


# -- rendering and the truth ------------------------------------------------------------


def _render(
    config: ScenarioConfig, script: _Script, rng: random.Random, seed: int | None
) -> Scenario:
    end = max(start + len(s) for placed in script.placements.values() for start, s in placed)
    length = end + round(TAIL * SAMPLE_RATE)
    clean = {role: np.zeros(length, dtype=np.float32) for role in Role}
    for role, placed in script.placements.items():
        for start, samples in placed:
            clean[role][start : start + len(samples)] += samples
    threshold = config.speech_level_dbfs - ACTIVITY_MARGIN_DB
    segments: dict[Role, tuple[Segment, ...]] = {}
    speech_rms: dict[Role, float] = {}
    for role in Role:
        powers = frame_powers(clean[role])
        active = active_frames(levels_db(powers), threshold)
        segments[role] = tuple(segments_from_frames(active))
        speech_rms[role] = math.sqrt(float(powers[active].mean())) if active.any() else 0.0
    truth = _truth(script, segments, length / SAMPLE_RATE)

    noise_rng = np.random.default_rng(rng.getrandbits(64))
    echoes = {
        role: _echo(clean[role.other], config) if config.echo_leak_db is not None else None
        for role in Role
    }
    out: dict[Role, Int16s] = {}
    for role in Role:
        mixed = clean[role]  # consumed in place: the echoes were taken first
        echo = echoes.pop(role)
        if echo is not None:
            mixed += echo
        if config.snr_db is not None:
            noise = _noise(length, config.noise, noise_rng)
            noise *= np.float32(speech_rms[role] / 10.0 ** (config.snr_db / 20.0))
            mixed += noise
        mixed *= np.float32(32768.0)
        np.rint(mixed, out=mixed)
        np.clip(mixed, -32768, 32767, out=mixed)
        out[role] = mixed.astype(np.int16)
    return Scenario(
        therapist=out[Role.THERAPIST],
        client=out[Role.CLIENT],
        truth=truth,
        config=config,
        seed=seed,
    )


def _echo(source: Floats, config: ScenarioConfig) -> Floats:
    """``source`` delayed and attenuated to -echo_leak_db dB (RMS), maybe lowpassed."""
    assert config.echo_leak_db is not None
    delay = round(config.echo_delay * SAMPLE_RATE)
    gain = np.float32(10.0 ** (-config.echo_leak_db / 20.0))
    leak = np.empty_like(source)
    leak[:delay] = 0.0
    np.multiply(source[: len(source) - delay], gain, out=leak[delay:])
    if config.echo_lowpass:
        before = math.sqrt(float(np.dot(leak, leak)))
        cumulative = np.concatenate(([0.0], np.cumsum(leak, dtype=np.float64)))
        leak[3:] = (cumulative[4:] - cumulative[:-4]) / 4.0
        after = math.sqrt(float(np.dot(leak, leak)))
        leak *= np.float32(before / after if after > 0 else 0.0)
    return leak


def _noise(length: int, colour: NoiseColour, rng: np.random.Generator) -> Floats:
    """Unit-RMS noise. White: uniform samples (a flat spectrum like Gaussian noise, at a
    quarter of the cost). Pink: Voss-McCartney, the sum of 13 white rows each held for
    2^k samples (k = 0..12, with random phases): -3 dB per octave from 4 Hz to 8 kHz
    within about 1 dB, with no FFT over the whole track (slow here)."""
    if colour is NoiseColour.WHITE:
        noise = rng.random(length, dtype=np.float32)
        noise -= np.float32(0.5)
        noise *= np.float32(math.sqrt(12.0))  # the RMS of uniform [-0.5, 0.5) is 1/sqrt(12)
        return noise
    noise = np.zeros(length, dtype=np.float32)
    for k in range(_PINK_ROWS):
        hold = 1 << k
        phase = int(rng.integers(hold))
        values = rng.random(length // hold + 2, dtype=np.float32)
        values -= np.float32(0.5)
        noise += np.repeat(values, hold)[phase : phase + length]
    noise *= np.float32(math.sqrt(length / float(np.dot(noise, noise))))
    return noise


def _truth(
    script: _Script, segments: dict[Role, tuple[Segment, ...]], duration: float
) -> GroundTruth:
    interruptions = []
    for mark in script.intrusions:
        window = (Segment(mark.window.start - FRAME, mark.window.end + FRAME),)
        mine = intersect(segments[mark.by], window)
        theirs = intersect(segments[mark.by.other], window)
        overlaps = intersect(mine, theirs)
        if overlaps:
            interruptions.append(
                Interruption(
                    t=overlaps[0].start,
                    by=mark.by,
                    of=mark.by.other,
                    overlap_s=total(overlaps),
                    successful=mark.successful,
                )
            )
    backchannels = []
    for role, onset in script.backchannels:
        nearest = min(segments[role], key=lambda s: abs(s.start - onset))
        backchannels.append(Backchannel(t=nearest.start, by=role, duration=nearest.duration))

    turns: list[Turn] = []
    gaps: list[float] = []
    pauses: list[float] = []
    for plan in script.turns:
        if not plan.clips:
            continue
        span = (Segment(plan.clips[0][0] - FRAME, plan.clips[-1][1] + FRAME),)
        held = [s for s in segments[plan.by] if intersect((s,), span)]
        if not held:
            continue
        start = held[0].start
        if plan.taken_by_interruption and turns:
            start = turns[-1].end
        elif turns:
            gaps.append(start - turns[-1].end)
        pauses += [b.start - a.end for a, b in itertools.pairwise(held)]
        turns.append(Turn(by=plan.by, start=start, end=held[-1].end))
    return GroundTruth(
        duration=duration,
        therapist_segments=union(segments[Role.THERAPIST]),
        client_segments=union(segments[Role.CLIENT]),
        interruptions=tuple(interruptions),
        backchannels=tuple(backchannels),
        turns=tuple(turns),
        gaps=tuple(gaps),
        pauses=tuple(pauses),
    )
