"""``feltsafe replay``: a recorded trace gives exactly the flags of the live run."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from alerts.engine import Engine, collect_flags
from alerts.model import Flag
from monitor.cli import main
from monitor.rulefile import load_default_pack
from monitor.trace import TraceEventKind, TraceHeader, TraceWriter
from tests.alerts.scenario import HEALTHY
from tests.alerts.series import ticks

END = 60.0


def session() -> list[tuple[float, dict[str, object]]]:
    """A minute: the client discloses, the therapist's picture freezes 2 s, the sound
    from the client dips, and the therapist cuts in three times late on."""
    return ticks(  # type: ignore[return-value]
        {
            "client.speech.active": "1x159 0x79",
            "conversation.client.holds_floor": "1x159 0x79",
            "session.disclosure": "0x79 1x79 0x79",
            "therapist.video.frozen": "0x99 1x7 0x131",
            "therapist.video.freeze_s": "0x99 0+0.25x7 0x131",
            "client.network.mos": "4.3x119 3.3x19 4.3x99",
            "conversation.interruptions_by_therapist_5m": "0x199 3x39",
            "client.audio.loss_ratio": "0.01x99 _x3 0.01x135",
        },
        base=HEALTHY,
    )


def live_run(path: Path, *, profile: str = "individual") -> list[Flag]:
    """What the session runtime does: evaluate each tick, write it, finish at the end."""
    pack = load_default_pack()
    engine = Engine(pack, profile=profile)
    flags: dict[tuple[str, float], Flag] = {}
    header = TraceHeader(
        profile=profile, mode="full", pack_name=pack.name, pack_version=pack.version,
        pack_digest=pack.digest,
    )  # fmt: skip
    with TraceWriter.create(path, header) as writer:
        for now, snapshot in session():
            collect_flags(engine.evaluate(snapshot, now=now), flags)
            writer.tick(snapshot, now=now)
        writer.event(TraceEventKind.SESSION_ENDED, now=END)
        collect_flags(engine.finish(now=END), flags)
    return sorted(flags.values(), key=lambda f: (f.start, f.rule_id))


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "session.trace.jsonl"
    live_run(path)
    return path


def replay_json(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["replay", *args, "--json"]) == 0
    document: dict[str, object] = json.loads(capsys.readouterr().out)
    return document


def test_replay_gives_exactly_the_flags_of_the_live_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "live.jsonl"
    live = live_run(path)
    assert {f.rule_id for f in live} == {
        "therapist_video_frozen_while_client_speaks",
        "client_sound_poor",
        "therapist_interrupting_client",
    }
    document = replay_json([str(path)], capsys)
    flags = document["flags"]
    assert isinstance(flags, list)
    key = lambda f: (f["start"], f["rule_id"])  # noqa: E731
    assert sorted(flags, key=key) == sorted((f.as_dict() for f in live), key=key)


def test_json_output_is_byte_stable(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(trace), "--json"]) == 0
    first = capsys.readouterr().out
    assert main(["replay", str(trace), "--json", "--rules", str(_default_pack_file())]) == 0
    second = capsys.readouterr().out
    assert first == second
    document = json.loads(first)
    assert document["trace"] == {
        "ticks": 240, "first": 0.0, "last": 59.75, "ended_at": 60.0, "truncated": False,
        "profile": "individual",
    }  # fmt: skip
    assert str(trace) not in first  # no paths: same bytes wherever it runs


def test_the_text_output_lists_each_flag_with_its_context(
    trace: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "240 ticks, 0.00-59.75 s, profile individual" in out
    assert "3 flags" in out
    assert "25.00 -     29.00  alert  therapist_video_frozen_while_client_speaks (v1)" in out
    assert "conversation.client.holds_floor=yes" in out
    assert "session.disclosure=yes" in out
    assert "speaking=client" in out


def test_another_pack_or_profile_gives_other_flags(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "pack: strict\nversion: 1\nrules:\n"
        "  - id: any_freeze\n    version: 1\n    title: Any freeze\n"
        "    when: therapist.video.frozen\n    severity: info\n    audience: [ops]\n"
        "    undermines: [trust]\n    source: test\n"
    )
    assert main(["replay", str(trace), "--rules", str(strict), "--json"]) == 0
    out, err = capsys.readouterr()
    flags = json.loads(out)["flags"]
    assert [(f["rule_id"], f["start"], f["end"]) for f in flags] == [("any_freeze", 25.0, 27.0)]
    assert "the session ran feltsafe_default, not this pack text" in err


def test_the_intake_profile_switches_the_talk_share_rule_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "talky.jsonl"
    with TraceWriter.create(path, TraceHeader(profile="individual")) as writer:
        for now, snapshot in ticks(
            {"conversation.therapist.talk_share_10m": "0.8x200"}, base=HEALTHY
        ):
            writer.tick(snapshot, now=now)
    flags = replay_json([str(path)], capsys)["flags"]
    assert isinstance(flags, list)
    assert [f["rule_id"] for f in flags] == ["therapist_talk_share_high"]
    assert flags[0]["end"] is None  # no session_ended event: still open
    assert replay_json([str(path), "--profile", "intake"], capsys)["flags"] == []


def test_a_broken_pack_or_trace_exits_2_with_one_clear_message(
    trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("pack: x\nversion: 1\nrules:\n  - id: a\n")
    assert main(["replay", str(trace), "--rules", str(broken)]) == 2
    assert capsys.readouterr().err.startswith(f"{broken}:4: rule 'a': missing required field")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a trace\n")
    assert main(["replay", str(bad)]) == 2
    assert (
        capsys.readouterr().err
        == f"feltsafe replay: {bad}:1: not a feltsafe trace (no JSON header)\n"
    )


def test_the_installed_command_replays_a_trace(trace: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "monitor.cli", "replay", str(trace), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["flags"]) == 3


def _default_pack_file() -> Path:
    return Path(str(resources.files("alerts") / "default_pack.yaml"))
