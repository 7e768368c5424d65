#!/usr/bin/env python3
"""Regenerate the synthetic voice clips in ``monitor/voices/`` (not run by the tests).

Theory of operation: DESIGN.md principle 4 asks that speech, talk-time and interruption
measures be tested per voice, so the project ships a small set of *synthetic* voices:
low and high pitch, fast and slow pace, and English text read by other languages'
espeak-ng voices (French, Spanish, Hindi, Mandarin, German, Swahili), each in a female
or male variant. No recording of a real person is involved.

Pipeline per clip, all deterministic for a given tool version:

1. ``espeak-ng -v VOICE -p PITCH -s SPEED -w raw.wav TEXT`` (22.05 kHz mono);
2. ``sox -D raw.wav -r 16000 -c 1 -b 16 clip.wav silence ... reverse silence ... reverse
   gain -n -1``: 16 kHz mono, leading and trailing silence trimmed (the composer trims
   again with its own energy definition, this only keeps the files small), peak at
   -1 dBFS (the composer normalises speech level itself); ``-D`` turns sox's random
   dither off, so reruns give the same samples;
3. ``ffmpeg -i clip.wav -c:a libopus -b:a RATE -application voip clip.opus`` with
   bit-exact flags and no metadata, so reruns give the same bytes.

Why Opus at 10 kbit/s (measured on these clips, 16 kHz): it is the lowest rate at which
libopus stays wideband (at 8 kbit/s it cuts at 4 kHz, dulling fricatives, which matters
most for high voices); webrtcvad's decision on the decoded clips differs from the
uncompressed ones on 0.6 % (mode 2) / 1.3 % (mode 3) of 30 ms frames, about what 16 kbit/s
gives (0.5 % / 0.8 %); the whole set is about 450 kB (12 kbit/s: 525 kB; FLAC would be
several MB). The truth is computed from the decoded clips, so coding never biases it.

The manifest ``monitor/voices/manifest.json`` lists every voice (id, description, pitch,
pace, accent, the espeak-ng settings) and every clip (file, kind, transcript, duration).
The transcripts are our own test sentences.

Usage: ``python tools/make_voices.py [--bitrate 10k] [--out monitor/voices]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


@dataclass(frozen=True, slots=True)
class VoiceSpec:
    voice_id: str
    espeak_voice: str
    pitch: int  # espeak-ng -p, 0-99 (default 50)
    speed: int  # espeak-ng -s, words per minute (default 175)
    pitch_label: str
    pace_label: str
    accent: str
    description: str


VOICES = (
    VoiceSpec("en-low", "en-us+m3", 12, 165, "low", "normal", "American English",
              "low-pitched male variant, American English"),
    VoiceSpec("en-high", "en-us+f4", 90, 170, "high", "normal", "American English",
              "high-pitched female variant, American English"),
    VoiceSpec("en-fast", "en-gb+m2", 50, 240, "medium", "fast", "British English",
              "fast speaker (240 words/min), British English, male variant"),
    VoiceSpec("en-slow", "en-gb-x-rp+f2", 55, 115, "medium", "slow", "British English (RP)",
              "slow speaker (115 words/min), British RP, female variant"),
    VoiceSpec("fr-en", "fr-fr+f3", 60, 160, "medium", "normal", "French",
              "English read by the French voice, female variant"),
    VoiceSpec("es-en", "es+m2", 40, 170, "medium", "normal", "Spanish",
              "English read by the Spanish voice, male variant"),
    VoiceSpec("hi-en", "hi+f1", 65, 160, "medium", "normal", "Hindi",
              "English read by the Hindi voice, female variant"),
    VoiceSpec("cmn-en", "cmn+m3", 45, 165, "medium", "normal", "Mandarin Chinese",
              "English read by the Mandarin voice, male variant"),
    VoiceSpec("de-en", "de+f2", 55, 165, "medium", "normal", "German",
              "English read by the German voice, female variant"),
    VoiceSpec("sw-en", "sw+m1", 45, 165, "medium", "normal", "Swahili",
              "English read by the Swahili voice, male variant"),
)  # fmt: skip

# (clip name, kind, text). Kinds: "utterance" (about 1-4 s), "long" (about 5-7 s, the
# building blocks of monologues), "backchannel" (about 0.2-0.8 s).
CLIPS = (
    ("u1", "utterance", "How was your week?"),
    ("u2", "utterance", "I went back to work on Monday."),
    ("u3", "utterance", "That sounds like it was really hard for you."),
    ("u4", "utterance", "Can you tell me a little more about what happened after that?"),
    ("u5", "utterance", "Some days are fine, and then some days I just cannot get up at all."),
    ("l1", "long", "When I got home that evening, the house was quiet, and I sat in the "
     "kitchen for a long time without turning on the lights."),
    ("l2", "long", "I think what bothers me most is that nobody asked how I was doing, "
     "not even once, and I did not know how to bring it up myself."),
    ("b1", "backchannel", "mm-hm"),
    ("b2", "backchannel", "yeah"),
    ("b3", "backchannel", "right"),
    ("b4", "backchannel", "okay"),
    ("b5", "backchannel", "I see"),
)  # fmt: skip


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def _make_clip(spec: VoiceSpec, text: str, work: Path, out: Path, bitrate: str) -> float:
    raw, clip = work / "raw.wav", work / "clip.wav"
    _run(["espeak-ng", "-v", spec.espeak_voice, "-p", str(spec.pitch), "-s", str(spec.speed),
          "-w", str(raw), text])  # fmt: skip
    _run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(clip),
          "silence", "1", "0.01", "0.1%", "reverse", "silence", "1", "0.01", "0.1%", "reverse",
          "gain", "-n", "-1"])  # fmt: skip
    _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip),
          "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:a", "+bitexact",
          "-c:a", "libopus", "-b:a", bitrate, "-application", "voip", str(out)])  # fmt: skip
    with wave.open(str(clip), "rb") as w:
        return w.getnframes() / w.getframerate()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bitrate", default="10k", help="Opus bit rate (default 10k)")
    parser.add_argument("--out", type=Path, default=ROOT / "monitor" / "voices")
    args = parser.parse_args()
    for tool in ("espeak-ng", "sox", "ffmpeg"):
        if shutil.which(tool) is None:
            print(f"make_voices: {tool} not found (apt-get install espeak-ng sox ffmpeg)")
            return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.opus"):
        old.unlink()
    voices = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for spec in VOICES:
            clips = []
            for name, kind, text in CLIPS:
                file_name = f"{spec.voice_id}_{name}.opus"
                duration = _make_clip(spec, text, work, out / file_name, args.bitrate)
                clips.append(
                    {"file": file_name, "kind": kind, "text": text, "duration": round(duration, 3)}
                )
            voices.append(
                {
                    "id": spec.voice_id,
                    "description": spec.description,
                    "pitch": spec.pitch_label,
                    "pace": spec.pace_label,
                    "accent": spec.accent,
                    "espeak": {
                        "voice": spec.espeak_voice,
                        "pitch": spec.pitch,
                        "speed_wpm": spec.speed,
                    },
                    "clips": clips,
                }
            )
            print(f"{spec.voice_id}: {sum(c['duration'] for c in clips):.1f} s")
    manifest = {
        "format": 1,
        "sample_rate": SAMPLE_RATE,
        "codec": f"Ogg Opus, {args.bitrate}bit/s, voip application",
        "generator": "tools/make_voices.py (espeak-ng, sox, ffmpeg); synthetic voices only",
        "voices": voices,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"{len(voices)} voices, {total / 1000:.0f} kB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
