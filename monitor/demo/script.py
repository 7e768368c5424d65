"""The demo's scripted therapy session: who says what when, and which faults happen.

Theory of operation
-------------------
``feltsafe demo`` plays one scripted conversation between two simulated participants
(monitor/demo/participants.py) with faults at known times, so that a newcomer sees each
face of feltsafe react to something they were told would happen. A script is built in
*script time* (seconds from the moment both participants are on the call, ``t = 0``) by
:func:`build_script`, the same way in every process that asks for it (the participants'
process renders it, the demo's own process shows its acts): nothing here reads a clock
or does I/O, and the same scenario and duration always give the same script.

The conversation is made of *lines*: one synthetic clip (monitor/voices: espeak-ng
voices, no real person) of one role, its speech onset placed at a script time,
optionally cut short (an interrupted speaker stops mid-sentence). Clips are prepared as
monitor/scenario/composer.py prepares them: scaled to the same active speech level
(ITU-T P.56 style, monitor/scenario/truth.py) and trimmed to their audible extent, so a
line's onset and offset are what the truth definitions say. :func:`render` sums the
lines into one 16 kHz track per role over a quiet room noise (a digital zero is not a
room: the speech detector learns the noise floor from it).

Blocks, each a fixed sequence of lines (its length known before it is placed):

- **interruptions** ("the therapist keeps cutting in"): four times, the client takes the
  floor (>= 2 s alone), the therapist starts over them, the client talks on for about
  0.7 s and stops mid-sentence, the therapist holds the floor for seconds: successful
  interruptions as DESIGN.md defines them (overlap >= 200 ms, the speaker stops within
  2 s, the intruder holds the floor >= 1 s). Three in five minutes raise
  ``therapist_interrupting_client``.
- **network dip**: the client talks (turns under 20 s, so no disclosure window) while
  their uplink loses ``DIP_LOSS_RATIO`` of its packets and delays the rest by up to
  ``DIP_MAX_DELAY`` (the participants' seeded impairment) for ``DIP_LENGTH`` seconds:
  the loss rules, "the client's voice broke up while they were speaking", and their
  picture stalls. (A longer delay spread, 150 ms, reorders packets past what aiortc's
  audio jitter buffer holds: the monitor then hears no speech at all, and the
  therapist-facing rule, which needs the client speaking, cannot fire.)
- **disclosure**: the therapist asks, the client talks for about 30 s (short pauses,
  the therapist's backchannels: the floor stays theirs), and 23 s into it, once the
  disclosure window is open (the client has held the floor 20 s), the therapist's camera
  stops for ``FREEZE_LENGTH`` seconds: ``therapist_video_frozen_while_client_speaks``
  at alert. A *compact* form (no question, 22 s) fits a 30 s smoke test.
- **sharing** (the calm scenario's monologue): the same, without the freeze.

Between the blocks, *filler*: ordinary turns (a sentence or two, backchannels in the
pauses, gaps of 0.5-1 s, never an overlap), drawn from a seeded ``random.Random``, so the
session lasts ``duration``. A script opens with ``WARM_UP`` seconds of room (the speech
detector ends its warm-up on a steady room) and ends with ``TAIL`` seconds of it.

Scaling (``--duration``): blocks keep their length; filler stretches or shrinks. When
the duration cannot hold every block with some filler between them, blocks are left
out, least important first (the network dip, then the interruptions; the freeze during
disclosure is what the demo is for); :attr:`DemoScript.left_out` names them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import cache
from typing import Final

import numpy as np
import numpy.typing as npt

from monitor import voices
from monitor.scenario.truth import (
    ACTIVITY_MARGIN_DB,
    FRAME,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    active_frames,
    active_level_db,
    frame_levels_db,
    segments_from_frames,
)
from monitor.voices import ClipInfo
from probes.base import FeltsafeError, Role

Int16s = npt.NDArray[np.int16]
Floats = npt.NDArray[np.float32]

DEFAULT_DURATION: Final = 150.0
MIN_DURATION: Final = 30.0
MAX_DURATION: Final = 600.0
WARM_UP: Final = 2.0  # room only: the speech detector's warm-up ends on 1.5 s of steady room
TAIL: Final = 1.0
SPEECH_LEVEL_DBFS: Final = -26.0
ROOM_BELOW_SPEECH_DB: Final = 45.0  # a quiet room, well under the level gate's 10 dB margin
TRIM_BELOW_LEVEL_DB: Final = 40.0
CUT_FADE: Final = 0.010

# The faults (each cited where the rule that should notice it is defined: alerts/default_pack.yaml).
DIP_LENGTH: Final = 15.0
DIP_LOSS_RATIO: Final = 0.12  # over the rule pack's 7.5 % "poor" (LiveKit's Opus scorer)
DIP_MAX_DELAY: Final = 0.06  # uniform 0-60 ms: reordered, yet within the jitter buffer
FREEZE_LENGTH: Final = 3.0
FREEZE_INTO_MONOLOGUE: Final = 23.0  # the disclosure window opens 20 s into the floor
COMPACT_FREEZE_INTO_MONOLOGUE: Final = 22.0
MIN_FILLER: Final = 3.0  # between two blocks, at least this much ordinary conversation
MIN_ACT: Final = 2.0  # shorter filler is a pause, not an act of its own

THERAPIST_VOICE: Final = "en-low"
CLIENT_VOICE: Final = "en-high"


class ScriptError(FeltsafeError):
    """A script asked for with an unknown scenario or an impossible duration."""


class Scenario(StrEnum):
    DEFAULT = "default"  # the three faults
    CALM = "calm"  # the same kind of session, nothing goes wrong


class IncidentKind(StrEnum):
    INTERRUPTIONS = "interruptions"
    NETWORK_DIP = "network_dip"
    VIDEO_FREEZE = "video_freeze"


@dataclass(frozen=True, slots=True)
class Line:
    """One clip of ``role`` with its speech onset at ``onset`` (script time).

    ``cut``: seconds of the clip's speech after which it stops (faded), None for all.
    """

    role: Role
    clip: ClipInfo
    onset: float
    cut: float | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """Something the script makes happen on purpose, and the rules that should say so.

    ``role``: whose media or behaviour it is (the client's network, the therapist's
    camera, the therapist interrupting). ``rules``: the default pack's rule ids that
    notice it (any one of them counts).
    """

    kind: IncidentKind
    role: Role
    start: float
    end: float
    description: str
    rules: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Act:
    """A stretch of the script with a name the terminal shows while it plays."""

    start: float
    end: float
    description: str


@dataclass(frozen=True, slots=True)
class DemoScript:
    scenario: Scenario
    duration: float
    lines: tuple[Line, ...]
    acts: tuple[Act, ...]
    incidents: tuple[Incident, ...]
    left_out: tuple[str, ...] = ()
    therapist_voice: str = THERAPIST_VOICE
    client_voice: str = CLIENT_VOICE

    def act_at(self, t: float) -> Act | None:
        """The act playing at script time ``t`` (None before the first, after the last)."""
        return next((a for a in self.acts if a.start <= t < a.end), None)

    def incidents_of(self, kind: IncidentKind) -> tuple[Incident, ...]:
        return tuple(i for i in self.incidents if i.kind is kind)

    def voice_of(self, role: Role) -> str:
        return self.therapist_voice if role is Role.THERAPIST else self.client_voice


# -- prepared clips -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class PreparedClip:
    """A clip at the script's speech level, trimmed; its speech extent on 10 ms frames."""

    info: ClipInfo
    samples: Floats
    onset: float  # seconds from the first sample to the first speech frame
    offset: float  # ... to the end of the last speech frame
    first_spurt: float  # length of the first talkspurt
    loud: npt.NDArray[np.bool_]  # frames loud in themselves (no gap filling)

    @property
    def speech(self) -> float:
        return self.offset - self.onset

    def cut_at(self, wanted: float, *, earliest: float) -> float:
        """The latest cut (seconds of speech) at or before ``wanted``, right after three
        loud frames, so the talkspurt really lasts until the cut (as the composer cuts)."""
        frame = round((self.onset + wanted) / FRAME)
        first = math.ceil((self.onset + earliest) / FRAME)
        while frame > first and not self.loud[frame - 3 : frame].all():
            frame -= 1
        return frame * FRAME - self.onset


@cache
def prepared(voice_id: str, file: str) -> PreparedClip:
    """The clip ``file`` of ``voice_id``, decoded and prepared once per process."""
    info = next((c for c in voices.voice(voice_id).clips if c.file == file), None)
    if info is None:
        raise ScriptError(f"voice {voice_id!r} has no clip {file!r}")
    pcm = voices.decode_clip(info).astype(np.float32) / np.float32(32768.0)
    gain = 10.0 ** ((SPEECH_LEVEL_DBFS - active_level_db(pcm)) / 20.0)
    samples = (pcm * np.float32(gain)).astype(np.float32)
    audible = np.flatnonzero(frame_levels_db(samples) >= SPEECH_LEVEL_DBFS - TRIM_BELOW_LEVEL_DB)
    samples = np.ascontiguousarray(
        samples[int(audible[0]) * FRAME_SAMPLES : (int(audible[-1]) + 1) * FRAME_SAMPLES]
    )
    levels = frame_levels_db(samples)
    threshold = SPEECH_LEVEL_DBFS - ACTIVITY_MARGIN_DB
    segments = segments_from_frames(active_frames(levels, threshold))
    return PreparedClip(
        info=info,
        samples=samples,
        onset=segments[0].start,
        offset=segments[-1].end,
        first_spurt=segments[0].duration,
        loud=levels >= threshold,
    )


def _clip(voice_id: str, name: str) -> PreparedClip:
    """``name`` is the clip's short name in the manifest's files: u1-u5, l1-l2, b1-b5."""
    return prepared(voice_id, f"{voice_id}_{name}.opus")


# -- blocks -------------------------------------------------------------------------------


class _Writer:
    """Places lines on the 10 ms grid; returns speech offsets."""

    def __init__(self, therapist_voice: str, client_voice: str) -> None:
        self.voice = {Role.THERAPIST: therapist_voice, Role.CLIENT: client_voice}
        self.lines: list[Line] = []

    def say(self, role: Role, name: str, onset: float, *, cut: float | None = None) -> float:
        clip = _clip(self.voice[role], name)
        onset = _on_grid(onset)
        self.lines.append(Line(role, clip.info, onset, cut))
        return onset + (clip.speech if cut is None else cut)

    def clip(self, role: Role, name: str) -> PreparedClip:
        return _clip(self.voice[role], name)


def _on_grid(t: float) -> float:
    return round(t / FRAME) * FRAME


BlockBuilder = Callable[[_Writer], tuple[float, list[Incident]]]


def _interruptions(w: _Writer) -> tuple[float, list[Incident]]:
    """Four successful interruptions of the client by the therapist (see the module doc)."""
    cycles = (("l2", "u5"), ("l1", "u4"), ("u5", "u3"), ("l2", "u4"))
    lead, overlap = 2.0, 0.7
    t = w.say(Role.THERAPIST, "u1", 0.0) + 0.8  # the therapist hands the floor over
    first = t
    for client_clip, therapist_clip in cycles:
        cut = w.clip(Role.CLIENT, client_clip).cut_at(lead + overlap, earliest=lead + 0.4)
        w.say(Role.CLIENT, client_clip, t, cut=cut)
        end = w.say(Role.THERAPIST, therapist_clip, t + lead)
        t = end + 0.8
    incident = Incident(
        IncidentKind.INTERRUPTIONS,
        Role.THERAPIST,
        first,
        t,
        f"the therapist cuts in on the client {len(cycles)} times",
        ("therapist_interrupting_client",),
    )
    return t, [incident]


def _network_dip(w: _Writer) -> tuple[float, list[Incident]]:
    """The client talks (turns under 20 s) while their uplink loses and delays packets."""
    t = w.say(Role.THERAPIST, "u2", 0.0) + 0.7  # the therapist hands the floor over
    start = t + 1.0
    t = w.say(Role.CLIENT, "l2", t)
    w.say(Role.THERAPIST, "b1", t + 0.1)
    t = w.say(Role.CLIENT, "u5", t + 0.9)
    t = w.say(Role.THERAPIST, "u3", t + 0.8)
    t = w.say(Role.CLIENT, "l1", t + 0.7)
    t = w.say(Role.CLIENT, "u2", t + 0.6) + 0.8
    incident = Incident(
        IncidentKind.NETWORK_DIP,
        Role.CLIENT,
        start,
        start + DIP_LENGTH,
        f"the client's network dips for {DIP_LENGTH:.0f} s "
        f"({DIP_LOSS_RATIO:.0%} loss, up to {DIP_MAX_DELAY * 1000:.0f} ms delay)",
        (
            "client_audio_dropping_while_speaking",
            "client_audio_loss",
            "client_sound_poor",
            "client_audio_jitter",
            # A dip loses video packets too: the client's picture stalls.
            "client_video_frozen",
            "client_video_frozen_while_sharing",
            "client_video_freezes_repeated",
        ),
    )
    return t, [incident]


_MONOLOGUE = ("l2", "l1", "u5", "l2", "u4", "l1", "u5", "l2")
_BACKCHANNELS = ("b4", "b2", "b5", "b3")  # under 0.5 s: well short of a turn


def _monologue(w: _Writer, t: float, *, until: float) -> float:
    """The client speaks from ``t`` until ``until`` or a little after: short pauses with
    backchannels; the last clip is the shortest one that reaches ``until``."""
    index = 0
    while True:
        name = _MONOLOGUE[index % len(_MONOLOGUE)]
        left = until - t
        if w.clip(Role.CLIENT, name).speech > left + 1.0:
            reaching = [n for n in _MONOLOGUE if w.clip(Role.CLIENT, n).speech >= left]
            if reaching:
                name = min(reaching, key=lambda n: w.clip(Role.CLIENT, n).speech)
        t = w.say(Role.CLIENT, name, t)
        if t >= until:
            return t
        if index % 2 == 0:  # a backchannel in the pause: the floor stays the client's
            w.say(Role.THERAPIST, _BACKCHANNELS[(index // 2) % len(_BACKCHANNELS)], t + 0.15)
            t += 0.9
        else:
            t += 0.5
        index += 1


def _disclosure(*, freeze: bool, compact: bool) -> BlockBuilder:
    into = COMPACT_FREEZE_INTO_MONOLOGUE if compact else FREEZE_INTO_MONOLOGUE

    def build(w: _Writer) -> tuple[float, list[Incident]]:
        start = 0.0 if compact else w.say(Role.THERAPIST, "u4", 0.0) + 0.8
        until = start + into + FREEZE_LENGTH + (0.5 if compact else 4.0)
        t = _monologue(w, start, until=until)
        if not compact:
            t = w.say(Role.THERAPIST, "u3", t + 0.9)
        incidents = []
        if freeze:
            incidents.append(
                Incident(
                    IncidentKind.VIDEO_FREEZE,
                    Role.THERAPIST,
                    start + into,
                    start + into + FREEZE_LENGTH,
                    f"the therapist's picture freezes for {FREEZE_LENGTH:.0f} s, "
                    f"{into:.0f} s into the client's sharing",
                    ("therapist_video_frozen_while_client_speaks",),
                )
            )
        return t + (0.3 if compact else 0.8), incidents

    return build


@dataclass(frozen=True, slots=True)
class _BlockSpec:
    name: str
    description: str
    build: BlockBuilder


_INTERRUPTIONS = _BlockSpec(
    "interruptions", "the therapist keeps cutting in on the client", _interruptions
)
_DIP = _BlockSpec("network dip", "the client's network dips: packets lost and late", _network_dip)
_DISCLOSURE = _BlockSpec(
    "disclosure",
    "the client shares something painful; the therapist's picture freezes",
    _disclosure(freeze=True, compact=False),
)
_DISCLOSURE_COMPACT = replace(_DISCLOSURE, build=_disclosure(freeze=True, compact=True))
_SHARING = _BlockSpec(
    "sharing", "the client shares something painful", _disclosure(freeze=False, compact=False)
)
_SHARING_COMPACT = replace(_SHARING, build=_disclosure(freeze=False, compact=True))

# In time order, and in the order they are left out when the duration is short.
_PLANS: dict[Scenario, tuple[tuple[_BlockSpec, ...], ...]] = {
    Scenario.DEFAULT: (
        (_INTERRUPTIONS, _DIP, _DISCLOSURE),
        (_INTERRUPTIONS, _DISCLOSURE),
        (_DISCLOSURE,),
        (_DISCLOSURE_COMPACT,),
    ),
    Scenario.CALM: ((_SHARING,), (_SHARING_COMPACT,), ()),
}
_FULL_NAMES: dict[Scenario, tuple[str, ...]] = {
    Scenario.DEFAULT: ("interruptions", "network dip", "disclosure"),
    Scenario.CALM: ("sharing",),
}


# -- filler -------------------------------------------------------------------------------


def _filler(w: _Writer, rng: random.Random, start: float, end: float, first: Role) -> None:
    """Ordinary turns from ``start`` that end (speech and gap) by ``end``; no overlap."""
    t, role = start, first
    while True:
        turn = _turn(w, rng, role)
        length = sum(step for _, step in turn)
        if t + length > end:
            return
        for name, step in turn:
            if name.startswith("b"):
                w.say(role.other, name, t)
            else:
                w.say(role, name, t)
            t += step
        role = role.other


def _turn(w: _Writer, rng: random.Random, role: Role) -> list[tuple[str, float]]:
    """A turn as (clip, time to the next onset) steps; a backchannel is the listener's."""
    count = rng.choice((1, 1, 2)) if role is Role.THERAPIST else rng.choice((1, 2, 2))
    steps: list[tuple[str, float]] = []
    for index in range(count):
        name = rng.choice(("u1", "u2", "u3", "u4", "u5"))
        speech = w.clip(role, name).speech
        if index < count - 1:
            pause = rng.uniform(0.5, 0.9)
            if rng.random() < 0.5:
                steps.append((name, speech + 0.15))
                steps.append((rng.choice(("b2", "b3", "b4", "b5")), pause - 0.15 + 0.45))
            else:
                steps.append((name, speech + pause))
        else:
            steps.append((name, speech + rng.uniform(0.5, 1.0)))
    return steps


# -- the script ---------------------------------------------------------------------------


def build_script(
    scenario: Scenario | str = Scenario.DEFAULT,
    duration: float = DEFAULT_DURATION,
    *,
    seed: int = 1,
) -> DemoScript:
    """The script of ``scenario`` lasting ``duration`` seconds (see the module doc)."""
    try:
        name = Scenario(scenario)
    except ValueError:
        known = ", ".join(s.value for s in Scenario)
        raise ScriptError(f"unknown scenario {scenario!r} (known: {known})") from None
    if not (math.isfinite(duration) and MIN_DURATION <= duration <= MAX_DURATION):
        raise ScriptError(
            f"the duration must be between {MIN_DURATION:.0f} and {MAX_DURATION:.0f} "
            f"seconds, got {duration:g}"
        )
    for plan in _PLANS[name]:
        script = _try_plan(name, plan, duration, seed)
        if script is not None:
            return script
    raise ScriptError(f"no plan of {name} fits in {duration:g} s")  # pragma: no cover


def _try_plan(
    scenario: Scenario, plan: Sequence[_BlockSpec], duration: float, seed: int
) -> DemoScript | None:
    built = []
    for spec in plan:
        w = _Writer(THERAPIST_VOICE, CLIENT_VOICE)
        length, block_incidents = spec.build(w)
        built.append((spec, w.lines, length, block_incidents))
    room = duration - WARM_UP - TAIL - sum(length for _, _, length, _ in built)
    if room < MIN_FILLER * (len(built) - 1):
        return None
    rng = random.Random(seed)
    fillers = _filler_lengths(room, len(built))
    w = _Writer(THERAPIST_VOICE, CLIENT_VOICE)
    acts: list[Act] = []
    incidents: list[Incident] = []
    t = WARM_UP
    for index, (spec, lines, length, block_incidents) in enumerate(built):
        filler_end = _on_grid(t + fillers[index])
        _filler(w, rng, t, filler_end, Role.THERAPIST)
        if filler_end - t >= MIN_ACT:
            acts.append(Act(t, filler_end, "ordinary conversation"))
        t = filler_end
        w.lines.extend(replace(line, onset=_on_grid(line.onset + t)) for line in lines)
        incidents.extend(replace(i, start=i.start + t, end=i.end + t) for i in block_incidents)
        acts.append(Act(t, t + length, spec.description))
        t += length
    end = duration - TAIL
    _filler(w, rng, t, end, Role.THERAPIST)
    if end - t >= MIN_ACT:
        acts.append(Act(t, end, "ordinary conversation"))
    names = {spec.name for spec in plan}
    left_out = tuple(n for n in _FULL_NAMES[scenario] if n not in names)
    return DemoScript(
        scenario=scenario,
        duration=duration,
        lines=tuple(sorted(w.lines, key=lambda line: (line.onset, line.role))),
        acts=tuple(acts),
        incidents=tuple(sorted(incidents, key=lambda i: i.start)),
        left_out=left_out,
    )


def _filler_lengths(room: float, blocks: int) -> list[float]:
    """How much filler goes before each block (the last entry: after the last one).

    A quarter of the room opens the session, each joint between two blocks gets an equal
    share of half of it (at least MIN_FILLER), the close takes what is left.
    """
    if blocks == 0:
        return [room]
    joints = [max(MIN_FILLER, 0.5 * room / (blocks - 1))] * (blocks - 1) if blocks > 1 else []
    opening = 0.25 * room if blocks > 1 else 0.4 * room
    closing = room - opening - sum(joints)
    if closing < 0:
        opening, closing = max(0.0, opening + closing), 0.0
    return [opening, *joints, closing]


def render(script: DemoScript, *, seed: int = 7) -> dict[Role, Int16s]:
    """Each role's track: 16 kHz mono int16, ``script.duration`` long (synthetic audio).

    For the simulated participants only: the samples live in memory and are sent as
    media; product code never writes audio anywhere.
    """
    length = round(script.duration * SAMPLE_RATE)
    rng = np.random.default_rng(seed)
    tracks: dict[Role, Int16s] = {}
    for role in Role:
        mixed = rng.random(length, dtype=np.float32) - np.float32(0.5)
        room_rms = 10.0 ** ((SPEECH_LEVEL_DBFS - ROOM_BELOW_SPEECH_DB) / 20.0)
        mixed *= np.float32(room_rms * math.sqrt(12.0))  # uniform noise: RMS is 1/sqrt(12)
        for line in script.lines:
            if line.role is not role:
                continue
            clip = prepared(script.voice_of(role), line.clip.file)
            samples = clip.samples
            if line.cut is not None:
                samples = samples[: round((clip.onset + line.cut) * SAMPLE_RATE)].copy()
                fade = round(CUT_FADE * SAMPLE_RATE)
                samples[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
            start = round((line.onset - clip.onset) * SAMPLE_RATE)
            stop = min(length, start + len(samples))
            if start < stop:
                mixed[start:stop] += samples[: stop - start]
        mixed *= np.float32(32768.0)
        np.rint(mixed, out=mixed)
        np.clip(mixed, -32768, 32767, out=mixed)
        tracks[role] = mixed.astype(np.int16)
    return tracks


__all__ = [
    "DEFAULT_DURATION",
    "MAX_DURATION",
    "MIN_DURATION",
    "Act",
    "DemoScript",
    "Incident",
    "IncidentKind",
    "Line",
    "Scenario",
    "ScriptError",
    "build_script",
    "render",
]
