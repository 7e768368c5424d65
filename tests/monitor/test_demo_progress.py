"""What ``feltsafe demo`` prints: progress on a terminal and in a log, and its summary."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from alerts.model import Audience, Flag, Severity
from monitor.demo.progress import (
    Progress,
    Stall,
    clock,
    flag_counts,
    plan_lines,
    summary_lines,
)
from monitor.demo.script import DemoScript, IncidentKind, build_script
from monitor.store import StoredFlag

ORIGIN = 1000.0  # script time 0 on the session clock
SESSION = "demo-abc123"


def _stored(rule: str, start: float, severity: Severity = Severity.WARN) -> StoredFlag:
    """A flag that began ``start`` seconds into the script."""
    flag = Flag(
        rule_id=rule,
        rule_version=1,
        start=ORIGIN + start,
        end=ORIGIN + start + 3.0,
        severity=severity,
        audience=frozenset({Audience.SUPERVISOR}),
        undermines=frozenset(),
        title=f"title of {rule}",
    )
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return StoredFlag(flag.key(SESSION), SESSION, flag, at, at, start, start + 3.0, None)


def _script() -> DemoScript:
    return build_script("default", 150.0)


def _incident_start(script: DemoScript, kind: IncidentKind) -> float:
    return script.incidents_of(kind)[0].start


def test_clock_shows_minutes_and_seconds_and_never_a_negative_time() -> None:
    assert clock(0.0) == "0:00"
    assert clock(61.9) == "1:01"
    assert clock(150.0) == "2:30"
    assert clock(-3.0) == "0:00"


def test_flag_counts_go_from_the_most_severe() -> None:
    flags = [
        _stored("a", 1.0, Severity.WARN),
        _stored("b", 2.0, Severity.ALERT),
        _stored("c", 3.0, Severity.WARN),
    ]
    assert flag_counts(flags) == "3 (1 alert, 2 warn)"
    assert flag_counts([]) == "none"


def test_the_plan_lists_the_acts_and_faults_with_their_times() -> None:
    text = "\n".join(plan_lines(_script()))
    assert "the therapist keeps cutting in on the client" in text
    assert "the client's network dips for 15 s" in text
    assert "the therapist's picture freezes for 3 s" in text
    assert "Too short" not in text
    short = "\n".join(plan_lines(build_script("default", 30.0)))
    assert "Too short for: interruptions, network dip" in short
    calm = "\n".join(plan_lines(build_script("calm", 60.0)))
    assert "nothing should be flagged" in calm


def test_the_summary_says_which_rule_noticed_each_fault() -> None:
    script = _script()
    freeze = _incident_start(script, IncidentKind.VIDEO_FREEZE)
    dip = _incident_start(script, IncidentKind.NETWORK_DIP)
    flags = [
        _stored("therapist_video_frozen_while_client_speaks", freeze + 0.3, Severity.ALERT),
        _stored("client_audio_loss", dip + 3.0),
    ]
    text = "\n".join(summary_lines(script, flags, ORIGIN, played=150.0))
    assert "Flags raised: 2 (1 alert, 1 warn)" in text
    assert f"noticed at {clock(freeze + 0.3)} by therapist_video_frozen_while_client_speaks" in (
        text
    )
    assert f"noticed at {clock(dip + 3.0)} by client_audio_loss" in text
    # Nothing flagged the interruption streak: said plainly, with what was expected.
    assert "NOT flagged (expected one of: therapist_interrupting_client)" in text
    assert "not scripted" not in text


def test_a_fault_after_the_stop_is_not_reached_rather_than_missed() -> None:
    script = _script()
    played = _incident_start(script, IncidentKind.NETWORK_DIP) - 5.0
    text = "\n".join(summary_lines(script, [], ORIGIN, played=played))
    assert text.count("not reached (stopped before it)") == 2  # the dip and the freeze
    assert text.count("NOT flagged") == 1  # the streak was played: it should have been


def test_a_flag_no_fault_explains_is_shown_with_the_machine_stall_that_does() -> None:
    script = _script()
    flags = [
        _stored("client_video_frozen", 10.4),  # during ordinary conversation
        _stored("therapist_video_frozen", 12.9),
    ]
    stalls = [Stall(10.1, 0.4, "the client's video left late")]
    text = "\n".join(summary_lines(script, flags, ORIGIN, played=150.0, stalls=stalls))
    assert (
        "not scripted: client_video_frozen at 0:10: this machine stalled 0.40 s at 0:10 "
        "(the client's video left late)"
    ) in text
    assert ("not scripted: therapist_video_frozen at 0:12: no scripted fault and no stall") in text


def test_on_a_terminal_one_status_line_is_redrawn_in_place_under_the_events() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True, width=lambda: 200)
    flags = [_stored("client_audio_loss", 3.0)]
    progress.update(elapsed=5.0, duration=150.0, act="a", level="ok", message=None, flags=[])
    progress.update(elapsed=6.0, duration=150.0, act="a", level="warn", message="m", flags=flags)
    progress.line("[0:06] flag: something")
    progress.end_status()
    text = out.getvalue()
    assert "\r\x1b[K0:06/2:30  indicator: WARN  |  flags: 1 (1 warn)  |  a" in text
    # An event line erases the status line, prints, and redraws the status under it.
    assert text.endswith(
        "\r\x1b[K[0:06] flag: something\n0:06/2:30  indicator: WARN  |  flags: 1 (1 warn)  |  a\n"
    )
    assert '[0:06] therapist\'s indicator: warn: "m"' in text


def test_the_status_line_is_cut_to_the_terminal_width() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True, width=lambda: 30)
    progress.update(elapsed=1.0, duration=150.0, act="x" * 80, level="ok", message=None, flags=[])
    last = out.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert len(last) == 29
    assert last.endswith("...")


def test_in_a_log_only_changes_are_printed_as_plain_lines() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    for second in range(5):
        progress.update(
            elapsed=float(second), duration=30.0, act="sharing", level="ok", message=None, flags=[]
        )
    progress.update(
        elapsed=5.0, duration=30.0, act="sharing", level="alert", message="froze", flags=[]
    )
    progress.end_status()
    assert out.getvalue() == (
        "[0:00] sharing\n"
        "[0:00] therapist's indicator: ok\n"
        '[0:05] therapist\'s indicator: alert: "froze"\n'
    )
    assert "\r" not in out.getvalue()
