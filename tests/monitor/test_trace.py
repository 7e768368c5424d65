"""Session traces: content-free JSONL that reads back exactly what was written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.trace import (
    TRACE_FORMAT,
    TraceError,
    TraceEvent,
    TraceEventKind,
    TraceHeader,
    TraceWriter,
    parse_trace,
    read_trace,
)
from probes.signals import CATALOGUE, SignalValue

LOSS = "client.audio.loss_ratio"
FROZEN = "client.video.frozen"
MOS = "client.network.mos"

HEADER = TraceHeader(
    profile="individual", mode="full", pack_name="feltsafe_default", pack_version=1,
    pack_digest="ab" * 32,
)  # fmt: skip


def write(snapshots: list[tuple[float, dict[str, object]]]) -> str:
    stream = io.StringIO()
    writer = TraceWriter(stream, HEADER)
    for now, snapshot in snapshots:
        writer.tick(snapshot, now=now)
    return stream.getvalue()


def test_ticks_read_back_as_the_snapshots_that_were_written() -> None:
    snapshots: list[tuple[float, dict[str, object]]] = [
        (0.0, {LOSS: 0.01, FROZEN: False, MOS: 4.3}),
        (0.25, {LOSS: 0.01, FROZEN: True, MOS: 4.3}),
        (0.5, {LOSS: 0.02, FROZEN: True}),  # MOS went away
        (0.75, {LOSS: None, FROZEN: True, MOS: 3.9}),
    ]
    trace = parse_trace(write(snapshots).splitlines(keepends=True), source="t.jsonl")
    assert trace.header == HEADER
    assert list(trace.ticks()) == [
        (0.0, {LOSS: 0.01, FROZEN: False, MOS: 4.3}),
        (0.25, {LOSS: 0.01, FROZEN: True, MOS: 4.3}),
        (0.5, {LOSS: 0.02, FROZEN: True, MOS: None}),  # absent reads back as unknown
        (0.75, {LOSS: None, FROZEN: True, MOS: 3.9}),
    ]


def test_each_tick_line_holds_only_what_changed() -> None:
    lines = write([(0.0, {LOSS: 0.01, FROZEN: False}), (0.25, {LOSS: 0.01, FROZEN: False})])
    header, first, second = (json.loads(line) for line in lines.splitlines())
    assert header["format"] == TRACE_FORMAT
    assert first == {"t": 0.0, "signals": {LOSS: 0.01, FROZEN: False}}
    assert second == {"t": 0.25, "signals": {}}


def test_a_boolean_stays_a_boolean_and_a_number_a_number() -> None:
    # True == 1.0 in Python; the trace must not take one for the other.
    text = write([(0.0, {FROZEN: True, LOSS: 1}), (1.0, {FROZEN: True, LOSS: True})])
    ticks = list(parse_trace(text.splitlines(), source="t").ticks())
    assert ticks[0][1][LOSS] == 1.0
    assert isinstance(ticks[0][1][LOSS], float)
    assert ticks[1][1][LOSS] is True


def test_not_a_number_is_written_as_unknown() -> None:
    text = write([(0.0, {MOS: float("nan"), LOSS: float("inf")})])
    assert "NaN" not in text
    assert "Infinity" not in text
    assert list(parse_trace(text.splitlines(), source="t").ticks()) == [
        (0.0, {MOS: None, LOSS: None})
    ]


@pytest.mark.parametrize(
    ("snapshot", "fragment"),
    [
        ({"client.transcript": 1.0}, "not a catalogue signal"),
        ({"session.id": 1.0}, "not a catalogue signal"),
        ({LOSS: "hello"}, "not str"),
        ({LOSS: b"\x00"}, "not bytes"),
        ({LOSS: [1, 2]}, "not list"),
    ],
)
def test_the_writer_refuses_anything_but_catalogue_numbers_and_booleans(
    snapshot: dict[str, object], fragment: str
) -> None:
    writer = TraceWriter(io.StringIO(), HEADER)
    with pytest.raises(TraceError, match=fragment):
        writer.tick(snapshot, now=0.0)


def test_the_writer_refuses_time_going_backwards() -> None:
    writer = TraceWriter(io.StringIO(), HEADER)
    writer.tick({}, now=2.0)
    writer.event(TraceEventKind.MARKER_ON, now=2.0)
    with pytest.raises(TraceError, match="backwards"):
        writer.tick({}, now=1.0)


def test_events_read_back_and_the_session_end_is_known() -> None:
    stream = io.StringIO()
    writer = TraceWriter(stream, HEADER)
    writer.tick({FROZEN: False}, now=0.0)
    writer.event(TraceEventKind.MARKER_ON, now=0.1)
    writer.event(TraceEventKind.PACK_RELOADED, now=0.2, pack_digest="cd" * 32)
    writer.event(TraceEventKind.SESSION_ENDED, now=0.3)
    trace = parse_trace(stream.getvalue().splitlines(), source="t")
    assert trace.records[1:] == (
        TraceEvent(0.1, TraceEventKind.MARKER_ON),
        TraceEvent(0.2, TraceEventKind.PACK_RELOADED, "cd" * 32),
        TraceEvent(0.3, TraceEventKind.SESSION_ENDED),
    )
    assert trace.ended_at == 0.3
    assert trace.tick_count == 1


def test_a_trace_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.trace.jsonl"
    with TraceWriter.create(path, HEADER) as writer:
        writer.tick({LOSS: 0.0}, now=0.0)
    with pytest.raises(FileExistsError):
        TraceWriter.create(path, HEADER)
    assert read_trace(path).tick_count == 1


def test_a_line_cut_off_by_a_crash_is_skipped(tmp_path: Path) -> None:
    text = write([(0.0, {LOSS: 0.0}), (0.25, {LOSS: 0.5})])
    path = tmp_path / "crashed.jsonl"
    path.write_text(text + '{"t": 0.5, "signals": {"client.au')
    trace = read_trace(path)
    assert trace.truncated
    assert trace.tick_count == 2


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "t:1: empty trace"),
        (["hello\n"], "t:1: not a feltsafe trace"),
        (['{"format": "other"}\n'], "t:1: not a feltsafe trace"),
        (['{"format": "feltsafe-trace", "version": 9}\n'], "t:1: unsupported trace version 9"),
        (["H", "garbage\n", '{"t": 1, "signals": {}}\n'], "t:2: not a JSON line"),
        (["H", '{"t": "1", "signals": {}}\n'], "t:2: 't' must be a number"),
        (["H", '{"t": 1}\n'], "t:2: a tick line needs a 'signals' object"),
        (["H", '{"t": 1, "signals": {"client.audio.loss_ratio": "x"}}\n'], "t:2: client.audio"),
        (["H", '{"t": 1, "event": "party"}\n'], "t:2: unknown event 'party'"),
        (["H", '{"t": 2, "signals": {}}\n', '{"t": 1, "signals": {}}\n'], "t:3: time goes back"),
    ],
)
def test_a_malformed_trace_names_its_line(lines: list[str], message: str) -> None:
    header = json.dumps(HEADER.as_json()) + "\n"
    lines = [header if line == "H" else line for line in lines]
    with pytest.raises(TraceError) as caught:
        parse_trace(lines, source="t")
    assert str(caught.value).startswith(message)


def test_signals_from_a_newer_catalogue_are_kept_and_listed() -> None:
    header = json.dumps(HEADER.as_json()) + "\n"
    trace = parse_trace([header, '{"t": 0, "signals": {"client.new.thing": 1}}\n'], source="t")
    assert trace.unknown_signals == {"client.new.thing"}


def test_every_line_of_a_trace_is_content_free() -> None:
    snapshot: dict[str, object] = {name: (False if "frozen" in name else 0.5) for name in CATALOGUE}
    text = write([(0.0, snapshot), (0.25, {**snapshot, LOSS: 0.25})])
    header, *ticks = (json.loads(line) for line in text.splitlines())
    assert set(header) == {"format", "version", "profile", "mode", "tick_s", "pack"}
    for tick in ticks:
        assert set(tick) == {"t", "signals"}
        assert set(tick["signals"]) <= set(CATALOGUE)
        assert all(v is None or isinstance(v, bool | float) for v in tick["signals"].values())


values = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False))


@given(
    st.lists(
        st.dictionaries(st.sampled_from([LOSS, FROZEN, MOS]), values, max_size=3),
        max_size=20,
    )
)
def test_values_round_trip_bit_for_bit(snapshots: list[dict[str, SignalValue]]) -> None:
    timed: list[tuple[float, dict[str, object]]] = [
        (i * 0.1, dict(s)) for i, s in enumerate(snapshots)
    ]
    trace = parse_trace(write(timed).splitlines(), source="t")
    seen: set[str] = set()
    for (t, written), (t_read, read) in zip(timed, trace.ticks(), strict=True):
        seen |= written.keys()
        assert t_read == t
        for name in seen:
            expected = written.get(name)
            assert read[name] == expected
            assert type(read[name]) is type(expected)
