"""`feltsafe analyze`: files in, the JSON document or a summary out, one-line errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from monitor.analyze import SCHEMA
from monitor.cli import main
from monitor.commands.analyze import LONG_RECORDING, ProgressBar
from monitor.scenario import Scenario, ScenarioConfig, compose, talk_share_error, write_wav

ROOT = Path(__file__).resolve().parents[2]
FELTSAFE = ROOT / ".venv" / "bin" / "feltsafe"
RATE = 16000


@cache
def scenario(duration: float = 30.0) -> Scenario:
    return compose(
        ScenarioConfig(
            therapist_voice="en-slow",
            client_voice="de-en",
            duration=duration,
            echo_leak_db=30.0,
            snr_db=30.0,
            monologue_first=10.0,
        ),
        seed=3,
    )


def encode(path: Path, channels: list[npt.NDArray[np.int16]], *, codec: str) -> Path:
    """Synthetic test audio to a file with PyAV (wav, flac, or Opus in Ogg)."""
    layout = "mono" if len(channels) == 1 else "stereo"
    interleaved = np.stack(channels).T.reshape(1, -1)
    fmt = "ogg" if codec == "libopus" else None
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else RATE)
        stream.layout = layout
        step = 960
        width = len(channels)
        for start in range(0, len(channels[0]), step):
            chunk = np.ascontiguousarray(interleaved[:, start * width : (start + step) * width])
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = RATE
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def pair(tmp_path: Path, suffix: str = "wav") -> tuple[Path, Path]:
    sc = scenario()
    if suffix == "wav":
        return sc.write_wavs(tmp_path)
    codec = {"flac": "flac", "ogg": "libopus"}[suffix]
    return (
        encode(tmp_path / f"therapist.{suffix}", [sc.therapist], codec=codec),
        encode(tmp_path / f"client.{suffix}", [sc.client], codec=codec),
    )


def run_cli(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["analyze", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("feltsafe analyze: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0]


# -- the document -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg"])
def test_json_of_two_recordings_follows_the_schema_and_the_truth(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    therapist, client = pair(tmp_path, suffix)
    code, out, err = run_cli(capsys, therapist, client, "--json")
    assert code == 0
    assert err == ""  # no progress bar, no note: stderr is not a terminal here
    doc = json.loads(out)
    assert doc["schema"] == SCHEMA
    assert doc["duration_s"] == pytest.approx(scenario().duration, abs=0.1)
    for key in ("talk_time_s", "talk_share", "longest_monologue_s", "echo_leak_db", "echo"):
        assert set(doc[key]) == {"therapist", "client"}
    assert set(doc["gaps"]) >= {"median", "p90"}
    assert doc["turns"] > 0
    assert isinstance(doc["overlap_s"], float)
    assert talk_share_error(doc["talk_share"], scenario().truth) <= 0.03
    assert str(tmp_path) not in out  # no file names in the document


def test_json_is_the_same_bytes_for_the_same_recording(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, client = pair(tmp_path)
    first = run_cli(capsys, therapist, client, "--json")
    second = run_cli(capsys, therapist, client, "--json")
    assert first == second


def test_a_stereo_file_gives_the_same_document_as_its_two_channels(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, client = pair(tmp_path)
    stereo = scenario().write_wav(tmp_path / "session.wav")
    _, from_pair, _ = run_cli(capsys, therapist, client, "--json")
    code, from_stereo, err = run_cli(capsys, "--stereo", stereo, "--json")
    assert (code, err) == (0, "")
    assert json.loads(from_stereo) == json.loads(from_pair)


def test_a_stereo_ogg_opus_file_is_analysed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario()
    stereo = encode(tmp_path / "session.ogg", [sc.therapist, sc.client], codec="libopus")
    code, out, _ = run_cli(capsys, "--stereo", stereo, "--json")
    assert code == 0
    assert talk_share_error(json.loads(out)["talk_share"], sc.truth) <= 0.03


def test_the_summary_names_both_roles_their_shares_and_the_turns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, client = pair(tmp_path)
    code, out, err = run_cli(capsys, therapist, client)
    _, raw, _ = run_cli(capsys, therapist, client, "--json")
    doc = json.loads(raw)
    assert (code, err) == (0, "")
    assert f"{doc['turns']} turns" in out
    header, *rows = [line for line in out.splitlines()[2:] if line.strip()]
    assert header.split() == ["therapist", "client"]
    talk = next(row for row in rows if row.startswith("talk time"))
    for role in ("therapist", "client"):
        assert f"({round(doc['talk_share'][role] * 100)} %)" in talk
    assert any(row.startswith("interruptions made") for row in rows)
    assert not out.startswith("{")


def test_a_weak_echo_is_called_a_problem_in_the_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = compose(
        ScenarioConfig(
            therapist_voice="en-low",
            client_voice="es-en",
            duration=45.0,
            echo_leak_db=10.0,
            monologue_first=15.0,
        ),
        seed=5,
    )
    stereo = sc.write_wav(tmp_path / "echoey.wav")
    code, out, _ = run_cli(capsys, "--stereo", stereo)
    assert code == 0
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 2
    assert "hears themselves" in problems[0]


def test_tracks_a_little_apart_in_length_are_cut_to_the_shorter_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario()
    therapist = write_wav(tmp_path / "t.wav", sc.therapist)
    client = write_wav(tmp_path / "c.wav", sc.client[: -RATE // 2])  # 0.5 s shorter
    code, out, err = run_cli(capsys, therapist, client, "--json")
    assert code == 0
    assert json.loads(out)["duration_s"] == pytest.approx(sc.duration - 0.5, abs=1e-3)
    assert err.startswith(f"note: {therapist} is 0.50 s longer")
    assert len(err.splitlines()) == 1


# -- errors: exit 2, one line, never a traceback ------------------------------------------


def test_a_missing_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, _ = pair(tmp_path)
    missing = tmp_path / "nope.wav"
    assert_one_line_error(*run_cli(capsys, therapist, missing), str(missing), "no such file")


def test_a_corrupt_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, _ = pair(tmp_path)
    corrupt = tmp_path / "client.ogg"
    corrupt.write_bytes(np.random.default_rng(1).bytes(40_000))
    assert_one_line_error(*run_cli(capsys, therapist, corrupt), str(corrupt))


def test_a_silent_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, _ = pair(tmp_path)
    silent = write_wav(tmp_path / "silent.wav", np.zeros(len(scenario().client), np.int16))
    assert_one_line_error(*run_cli(capsys, therapist, silent), str(silent), "silent")


def test_a_stereo_file_with_a_silent_channel_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario()
    dead = np.stack([sc.therapist, np.zeros_like(sc.client)], axis=1)
    path = write_wav(tmp_path / "half.wav", dead)
    assert_one_line_error(*run_cli(capsys, "--stereo", path), "right channel (client)", "silent")


def test_mismatched_lengths_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = scenario()
    therapist = write_wav(tmp_path / "t.wav", sc.therapist)
    client = write_wav(tmp_path / "c.wav", sc.client[: len(sc.client) // 2])
    assert_one_line_error(*run_cli(capsys, therapist, client), "within")


def test_stereo_on_a_mono_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    therapist, _ = pair(tmp_path, "flac")
    assert_one_line_error(*run_cli(capsys, "--stereo", therapist), "two")


@pytest.mark.parametrize(
    "args",
    [["--stereo", "a.wav", "b.wav"], ["only-one.wav"], [], ["a.wav", "b.wav", "c.wav"]],
    ids=["stereo-and-files", "one-file", "nothing", "three-files"],
)
def test_wrong_arguments_are_a_usage_error_with_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["analyze", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: feltsafe")
    assert "Traceback" not in err


# -- progress ---------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_and_erases_itself() -> None:
    stream = Terminal()
    bar = ProgressBar(stream)
    bar.show("analysing", 0.25)
    bar.show("analysing", 0.25)  # unchanged: not redrawn
    bar.show("analysing", 1.0)
    bar.close()
    text = stream.getvalue()
    assert text.count("\r") == 3
    assert "25 %" in text
    assert "100 %" in text
    assert text.endswith("\r\x1b[K")


def test_the_progress_bar_stays_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar(stream)
    bar.show("analysing", 0.5)
    bar.close()
    assert stream.getvalue() == ""


def test_a_long_recording_shows_progress_on_a_terminal_and_not_in_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = scenario(duration=LONG_RECORDING + 10)
    stereo = sc.write_wav(tmp_path / "long.wav")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["analyze", "--stereo", str(stereo), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["schema"] == SCHEMA
    drawn = terminal.getvalue()
    assert "analysing" in drawn
    assert "100 %" in drawn
    assert drawn.endswith("\r\x1b[K")  # erased before the result


def test_a_short_recording_shows_no_progress_even_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    stereo = scenario().write_wav(tmp_path / "short.wav")
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["analyze", "--stereo", str(stereo)]) == 0
    assert terminal.getvalue() == ""


# -- the installed command ---------------------------------------------------------------------


@pytest.mark.slow
def test_the_installed_command_prints_json_and_refuses_bad_files_in_one_line(
    tmp_path: Path,
) -> None:
    therapist, client = pair(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    ok = subprocess.run(
        [str(FELTSAFE), "analyze", str(therapist), str(client), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["schema"] == SCHEMA
    missing = tmp_path / "gone.flac"
    bad = subprocess.run(
        [str(FELTSAFE), "analyze", str(therapist), str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.splitlines() == [f"feltsafe analyze: {missing}: no such file"]
