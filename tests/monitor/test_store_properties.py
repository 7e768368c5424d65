"""Invariants of the flag store, with Hypothesis, on both backends.

- Any flag the engine can produce comes back equal (non-finite evidence as None), under
  the key it was written with.
- Any sequence of writes of one flag, in any order, leaves exactly one row: its severity
  is the highest written, its end the last end written, its texts the last written.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.model import Audience, Flag, SafetyElement, Severity
from monitor.store import Store
from probes.signals import CATALOGUE
from tests.monitor import store_backends

PROPERTY_SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
signal_value = st.one_of(st.none(), st.booleans(), st.floats(width=64))
printable = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=60
).filter(str.strip)


@st.composite
def flags(draw: st.DrawFn) -> Flag:
    start = draw(finite)
    end = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=1e4)))
    return Flag(
        rule_id=draw(st.from_regex(r"[a-z][a-z0-9_.]{0,40}", fullmatch=True)),
        rule_version=draw(st.integers(0, 10_000)),
        start=start,
        end=None if end is None else start + end,
        severity=draw(st.sampled_from(Severity)),
        audience=draw(st.frozensets(st.sampled_from(Audience), min_size=1)),
        undermines=draw(st.frozensets(st.sampled_from(SafetyElement))),
        title=draw(printable),
        message=draw(st.one_of(st.none(), printable)),
        hint=draw(st.one_of(st.none(), printable)),
        evidence=draw(st.dictionaries(st.sampled_from(sorted(CATALOGUE)), signal_value)),
        context=draw(
            st.dictionaries(
                st.sampled_from(["speaker", "session.disclosure", "client.floor_s"]),
                st.one_of(
                    signal_value,
                    st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20),
                ),
            )
        ),
    )


def as_stored(flag: Flag) -> Flag:
    def known(value: object) -> object:
        return None if isinstance(value, float) and not math.isfinite(value) else value

    return dataclasses.replace(
        flag,
        evidence={k: known(v) for k, v in flag.evidence.items()},  # type: ignore[misc]
        context={k: known(v) for k, v in flag.context.items()},  # type: ignore[misc]
    )


@pytest.fixture(params=store_backends.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with (
        store_backends.store_url(request.param, tmp_path, request.config) as url,
        Store.open(url) as opened,
    ):
        yield opened


_sessions = (f"prop-{n}" for n in itertools.count())


def fresh_session(store: Store) -> str:
    session_id = next(_sessions)
    store.record_session_start(
        session_id, started_at=datetime(2026, 1, 1, tzinfo=UTC), clock_at_start=0.0, mode="full"
    )
    return session_id


@PROPERTY_SETTINGS
@given(flag=flags())
def test_any_flag_comes_back_equal_under_its_key(store: Store, flag: Flag) -> None:
    session_id = fresh_session(store)

    key = store.upsert_flag(session_id, flag)

    (stored,) = store.list_flags(session_id)
    assert stored.key == key == flag.key(session_id)
    assert stored.flag == as_stored(flag)


@PROPERTY_SETTINGS
@given(
    base=flags(),
    writes=st.lists(
        st.tuples(
            st.sampled_from(Severity),
            st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
            printable,
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_any_sequence_of_writes_of_one_flag_merges_into_one_row(
    store: Store, base: Flag, writes: list[tuple[Severity, float | None, str]]
) -> None:
    session_id = fresh_session(store)
    for severity, duration, title in writes:
        end = None if duration is None else base.start + duration
        store.upsert_flag(
            session_id, dataclasses.replace(base, severity=severity, end=end, title=title)
        )

    (stored,) = store.list_flags(session_id)
    assert stored.flag.severity == max((w[0] for w in writes), key=lambda s: s.rank)
    ends = [base.start + d for _, d, _ in writes if d is not None]
    assert stored.flag.end == (ends[-1] if ends else None)
    assert stored.flag.title == writes[-1][2]
