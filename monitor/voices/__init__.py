"""The synthetic test voices shipped with feltsafe (package data, no real person).

Theory of operation: DESIGN.md principle 4 ("Equally accurate for every voice") needs
speech to test against that differs in pitch, pace and accent. ``tools/make_voices.py``
synthesised these clips with espeak-ng (several voices, English text, some read by other
languages' voices), resampled them to 16 kHz mono and stored them as Ogg Opus at
10 kbit/s (wideband; about 450 kB in all). ``manifest.json`` lists each voice and each
clip with its kind and transcript; the transcripts are our own test sentences.

The files are found through ``importlib.resources``, so an installed copy (wheel, zip)
works as well as the source tree. Decoded clips live in memory only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np
import numpy.typing as npt

from monitor.audiofile import read_audio
from probes.base import FeltsafeError

MANIFEST = "manifest.json"


class UnknownVoiceError(FeltsafeError):
    """A voice id that the manifest does not list."""


class ClipKind(StrEnum):
    UTTERANCE = "utterance"  # a sentence of about 1-4 s
    LONG = "long"  # about 5-7 s, a building block of monologues
    BACKCHANNEL = "backchannel"  # "mm-hm", "yeah", "right", "okay", "I see": 0.2-0.8 s


@dataclass(frozen=True, slots=True)
class ClipInfo:
    file: str
    kind: ClipKind
    text: str
    duration: float  # of the stored clip, before the composer's own trimming


@dataclass(frozen=True, slots=True)
class VoiceInfo:
    voice_id: str
    description: str
    pitch: str  # "low", "medium", "high"
    pace: str  # "slow", "normal", "fast"
    accent: str
    clips: tuple[ClipInfo, ...]

    def clips_of(self, kind: ClipKind) -> tuple[ClipInfo, ...]:
        return tuple(clip for clip in self.clips if clip.kind is kind)


def resource(file_name: str) -> Traversable:
    """The packaged file ``file_name`` of this directory."""
    return resources.files(__name__).joinpath(file_name)


@cache
def voices() -> tuple[VoiceInfo, ...]:
    """Every voice of the manifest, in manifest order."""
    data = json.loads(resource(MANIFEST).read_text(encoding="utf-8"))
    return tuple(
        VoiceInfo(
            voice_id=v["id"],
            description=v["description"],
            pitch=v["pitch"],
            pace=v["pace"],
            accent=v["accent"],
            clips=tuple(
                ClipInfo(
                    file=c["file"],
                    kind=ClipKind(c["kind"]),
                    text=c["text"],
                    duration=float(c["duration"]),
                )
                for c in v["clips"]
            ),
        )
        for v in data["voices"]
    )


def voice_ids() -> tuple[str, ...]:
    return tuple(v.voice_id for v in voices())


def voice(voice_id: str) -> VoiceInfo:
    for candidate in voices():
        if candidate.voice_id == voice_id:
            return candidate
    raise UnknownVoiceError(f"unknown voice {voice_id!r}; known: {', '.join(voice_ids())}")


@cache
def decode_clip(clip: ClipInfo, *, sample_rate: int = 16000) -> npt.NDArray[np.int16]:
    """The clip's PCM, mono int16 at ``sample_rate``, decoded into memory once per
    process (all voices: about 10 MB) and shared, hence read-only."""
    with resources.as_file(resource(clip.file)) as path:
        samples = read_audio(path, sample_rate=sample_rate).samples
    samples.setflags(write=False)
    return samples
