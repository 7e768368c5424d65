"""Fixtures of the real-browser tests: a loopback-only namespace, synthetic media, one run.

- ``netns``: ``ip netns add feltsafe-<random>`` with only ``lo`` up; deleted afterwards,
  even when the run failed, after ending any process still inside (by pid: only ours
  can be there).
- ``media``: synthetic test media written to a temporary directory: a wav of espeak-ng
  speech (4 s of silence, two sentences, a pause, a tail; pink noise at about -56 dBFS
  underneath, as a room would have) made with sox, and a y4m of ffmpeg's ``testsrc``
  (640x480, 30 fps, 5 s; Chromium loops it).
- ``browser_run``: tests/browser/driver.py run once under ``ip netns exec`` (server,
  Chromium and iptables all inside), its JSON result shared by every test of the
  package, so the browser starts once for all assertions.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
TOOLS = ("ip", "iptables", "espeak-ng", "sox", "ffmpeg")
SENTENCES = (
    "I have been feeling anxious about work lately, and I am not sleeping well.",
    "Sometimes it helps to talk it through, but today it feels hard.",
)
TIMELINE = {
    "pause_at": 3.0,  # s after set-up: the freeze probes have their 5 frames by then
    "pause": 1.5,  # replaceTrack(null) for this long
    "speech_settle": 3.0,  # s after the wav's end before speech figures are read
    "loss_probability": 0.05,
    "loss_duration": 20.0,  # about 1000 audio packets: the estimate's sd is about 0.7 %
    "fuzz_seed": 20240917,
}


def _missing_prerequisites() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces and iptables need root"
    if not CHROMIUM.exists():
        return f"{CHROMIUM} missing (Debian package chromium)"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"missing tools: {', '.join(missing)}" if missing else None


def skip_or_fail(reason: str) -> None:
    """Skip a real-browser test whose prerequisites are missing; in CI (which installs
    them through .ci/debian-packages) a missing prerequisite fails instead of hiding."""
    if os.environ.get("CI"):
        pytest.fail(f"real-browser tests: {reason} (CI is set: these tests must run)")
    pytest.skip(f"real-browser tests: {reason}")


def _run(*command: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], check=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def netns() -> Iterator[str]:
    reason = _missing_prerequisites()
    if reason:
        skip_or_fail(reason)
    name = f"feltsafe-{secrets.token_hex(4)}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "delete", name], check=False)


@dataclass(frozen=True)
class Media:
    wav: Path
    wav_16k: Path  # the same wav at 16 kHz, for the webrtcvad reference
    y4m: Path
    wav_duration: float


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    reason = _missing_prerequisites()
    if reason:
        skip_or_fail(reason)
    work = tmp_path_factory.mktemp("media")
    parts = []
    for index, sentence in enumerate(SENTENCES):
        raw = work / f"s{index}.wav"
        _run("espeak-ng", "-v", "en-us", "-s", "150", "-w", raw, sentence)
        _run("sox", raw, "-r", "48000", "-c", "1", "-b", "16", work / f"s{index}_48k.wav")
        parts.append(work / f"s{index}_48k.wav")
    silences = {}
    for name, seconds in (("lead", 4.0), ("gap", 1.0), ("tail", 1.5)):
        silences[name] = work / f"{name}.wav"
        _run("sox", "-n", "-r", "48000", "-c", "1", "-b", "16", silences[name],
             "trim", "0", str(seconds))  # fmt: skip
    speech = work / "speech.wav"
    _run("sox", silences["lead"], parts[0], silences["gap"], parts[1], silences["tail"],
         speech, "gain", "-n", "-3")  # fmt: skip
    with wave.open(str(speech)) as w:
        duration = w.getnframes() / w.getframerate()
    noise = work / "noise.wav"
    _run("sox", "-n", "-r", "48000", "-c", "1", "-b", "16", noise,
         "synth", f"{duration}", "pinknoise", "vol", "0.003")  # fmt: skip
    wav = work / "voice.wav"
    _run("sox", "-m", speech, noise, "-b", "16", wav)
    wav_16k = work / "voice_16k.wav"
    _run("sox", wav, "-r", "16000", wav_16k)
    y4m = work / "pattern.y4m"
    _run("ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi",
         "-i", "testsrc=size=640x480:rate=30", "-t", "5", "-pix_fmt", "yuv420p", y4m)  # fmt: skip
    with wave.open(str(wav)) as w:
        duration = w.getnframes() / w.getframerate()
    return Media(wav=wav, wav_16k=wav_16k, y4m=y4m, wav_duration=duration)


@pytest.fixture(scope="session")
def browser_run(
    netns: str, media: Media, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("run")
    config = {
        **TIMELINE,
        "port": 8750,  # a fresh namespace: nothing else listens there
        "media_host": "127.0.0.2",
        "secret": secrets.token_urlsafe(32),
        "workdir": str(work),
        "server_log": str(work / "server.log"),
        "wav": str(media.wav),
        "y4m": str(media.y4m),
        "wav_duration": media.wav_duration,
    }
    config_path = work / "config.json"
    config_path.write_text(json.dumps(config))
    completed = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.browser.driver",
         str(config_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        log = Path(config["server_log"])
        server = log.read_text()[-3000:] if log.exists() else ""
        pytest.fail(
            f"browser run failed ({completed.returncode}):\n{completed.stderr[-4000:]}\n"
            f"--- server log ---\n{server}"
        )
    (work / "result.json").write_text(completed.stdout)  # for a look after a failure
    result: dict[str, Any] = json.loads(completed.stdout)
    result["config"] = config
    result["media"] = media
    return result
