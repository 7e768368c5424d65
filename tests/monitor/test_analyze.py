"""monitor/analyze.py: two PCM tracks in, the `feltsafe analyze --json` document out."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.analyze import SCHEMA, Analysis, AnalysisInputError, analyze_pcm
from monitor.scenario import Scenario, ScenarioConfig, compose, talk_share_error
from probes.base import FeltsafeError, Role

ROLE_NAMES = {"therapist", "client"}
PER_ROLE_KEYS = ("talk_time_s", "talk_share", "longest_monologue_s", "echo_leak_db", "echo")
TOP_LEVEL_KEYS = {
    "schema",
    "duration_s",
    "talk_time_s",
    "talk_share",
    "overlap_s",
    "turns",
    "interruptions",
    "backchannels",
    "longest_monologue_s",
    "gaps",
    "pauses",
    "disclosure_windows",
    "echo_leak_db",
    "echo",
}


@cache
def scenario(
    echo_leak_db: float | None = None, snr_db: float | None = None, duration: float = 60.0
) -> Scenario:
    return compose(
        ScenarioConfig(
            therapist_voice="en-low",
            client_voice="hi-en",
            duration=duration,
            echo_leak_db=echo_leak_db,
            snr_db=snr_db,
            monologue_first=20.0,
        ),
        seed=7,
    )


@cache
def analysed(echo_leak_db: float | None = None, snr_db: float | None = None) -> Analysis:
    sc = scenario(echo_leak_db, snr_db)
    return analyze_pcm(sc.therapist, sc.client, sample_rate=sc.sample_rate)


def test_the_document_has_every_schema_key_with_its_type() -> None:
    doc = analysed().to_json_dict()
    assert set(doc) == TOP_LEVEL_KEYS
    assert doc["schema"] == SCHEMA == "feltsafe-analyze/1"
    for key in PER_ROLE_KEYS:
        assert set(doc[key]) == ROLE_NAMES, key
    assert isinstance(doc["turns"], int)
    assert doc["turns"] > 0
    assert set(doc["gaps"]) == {"count", "median", "p90"}
    assert set(doc["pauses"]) == {"count", "median", "p90"}
    for event in doc["interruptions"]:
        assert set(event) == {"t", "by", "of", "overlap_s", "successful"}
        assert {event["by"], event["of"]} == ROLE_NAMES
        assert isinstance(event["successful"], bool)
    for event in doc["backchannels"]:
        assert set(event) == {"t", "by"}
        assert event["by"] in ROLE_NAMES
    for role in ROLE_NAMES:
        assert set(doc["echo"][role]) == {"leak_db", "at_least", "delay_s", "problem"}
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN or infinity anywhere


def test_times_lie_inside_the_recording_and_events_are_in_time_order() -> None:
    doc = analysed().to_json_dict()
    duration = doc["duration_s"]
    assert duration == pytest.approx(scenario().duration, abs=1e-3)
    for kind in ("interruptions", "backchannels"):
        times = [event["t"] for event in doc[kind]]
        assert times == sorted(times)
        assert all(0.0 <= t <= duration for t in times)
    for role in ROLE_NAMES:
        assert 0.0 < doc["talk_time_s"][role] <= duration
        assert 0.0 < doc["longest_monologue_s"][role] <= duration


def test_talk_shares_sum_to_one_and_match_the_truth_of_a_clean_recording() -> None:
    doc = analysed().to_json_dict()
    assert doc["talk_share"]["therapist"] + doc["talk_share"]["client"] == pytest.approx(1.0)
    assert talk_share_error(doc["talk_share"], scenario().truth) <= 0.02


def test_gaps_carry_the_conversation_figures_under_the_issue_names() -> None:
    result = analysed()
    doc = result.to_json_dict()
    gaps = result.conversation.gaps
    assert doc["gaps"] == {
        "count": gaps.count,
        "median": pytest.approx(gaps.median, abs=1e-3),
        "p90": pytest.approx(gaps.p90, abs=1e-3),
    }
    assert 0.0 < doc["gaps"]["median"] <= doc["gaps"]["p90"] < 5.0  # seconds


def test_a_clean_echo_at_minus_20_db_is_measured_and_not_a_problem() -> None:
    doc = analysed(echo_leak_db=20.0).to_json_dict()
    for role in ROLE_NAMES:
        assert doc["echo_leak_db"][role] == pytest.approx(20.0, abs=1.5)
        assert doc["echo"][role]["at_least"] is False
        assert doc["echo"][role]["problem"] is False


def test_an_echo_at_minus_10_db_is_a_problem_for_both_roles() -> None:
    doc = analysed(echo_leak_db=10.0).to_json_dict()
    for role in ROLE_NAMES:
        assert doc["echo_leak_db"][role] is not None
        assert doc["echo_leak_db"][role] < 20.0
        assert doc["echo"][role]["problem"] is True


def test_an_echo_buried_in_noise_is_a_bound_not_a_measured_leak_nor_a_problem() -> None:
    # At -20 dB with noise 15 dB under the speech, the echo never rises above the noise:
    # only a lower bound is known, which must not read as a weak (problem) leak.
    doc = analysed(echo_leak_db=20.0, snr_db=15.0).to_json_dict()
    for role in ROLE_NAMES:
        assert doc["echo_leak_db"][role] is None
        assert doc["echo"][role]["problem"] is False
        if doc["echo"][role]["leak_db"] is not None:
            assert doc["echo"][role]["at_least"] is True


def test_tracks_of_different_lengths_are_an_api_error() -> None:
    sc = scenario()
    with pytest.raises(AnalysisInputError, match="differ in length") as caught:
        analyze_pcm(sc.therapist, sc.client[:-16000])
    assert isinstance(caught.value, FeltsafeError)


def test_a_stereo_array_is_an_api_error() -> None:
    stereo = scenario().to_stereo()
    with pytest.raises(AnalysisInputError, match="mono"):
        analyze_pcm(stereo, stereo)


def test_empty_tracks_are_an_api_error() -> None:
    empty = np.zeros(0, dtype=np.int16)
    with pytest.raises(AnalysisInputError, match="empty"):
        analyze_pcm(empty, empty)


def test_progress_rises_to_one_and_never_goes_back() -> None:
    sc = scenario()
    seen: list[float] = []
    analyze_pcm(sc.therapist, sc.client, on_progress=seen.append)
    assert len(seen) >= 2
    assert seen == sorted(seen)
    assert seen[-1] == pytest.approx(1.0)
    assert all(0.0 < fraction <= 1.0 for fraction in seen)


def test_a_48k_recording_gives_the_same_talk_time_as_16k() -> None:
    sc = scenario()
    upsampled = {role: np.repeat(sc.track(role), 3) for role in Role}  # crude, same content
    at_48k = analyze_pcm(
        upsampled[Role.THERAPIST], upsampled[Role.CLIENT], sample_rate=48000
    ).to_json_dict()
    at_16k = analysed().to_json_dict()
    assert at_48k["duration_s"] == pytest.approx(at_16k["duration_s"], abs=1e-3)
    for role in ROLE_NAMES:
        assert at_48k["talk_time_s"][role] == pytest.approx(at_16k["talk_time_s"][role], rel=0.03)


def _arrays_in(value: Any, depth: int = 0) -> int:
    """How many numpy arrays hang off ``value`` (dataclasses, mappings, sequences)."""
    if depth > 8:
        return 0
    if isinstance(value, np.ndarray):
        return 1
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(_arrays_in(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    if isinstance(value, dict):
        return sum(_arrays_in(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_arrays_in(v, depth + 1) for v in value)
    return 0


def test_the_result_holds_derived_numbers_only_never_audio() -> None:
    # DESIGN.md non-negotiable 1: content never leaves the probe.
    assert _arrays_in(analysed()) == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seconds=st.floats(min_value=0.05, max_value=4.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    kind=st.sampled_from(["noise", "tone", "clicks", "full-scale"]),
)
def test_any_audio_gives_a_valid_document_and_never_raises(
    seconds: float, seed: int, kind: str
) -> None:
    rng = np.random.default_rng(seed)
    n = round(seconds * 16000)
    tracks = []
    for _ in Role:
        if kind == "noise":
            x = rng.normal(0, 10 ** rng.uniform(1, 4), n)
        elif kind == "tone":
            x = 8000 * np.sin(2 * np.pi * rng.uniform(80, 4000) * np.arange(n) / 16000)
        elif kind == "clicks":
            x = np.zeros(n)
            x[rng.integers(0, n, size=max(1, n // 2000))] = 30000
        else:
            x = rng.choice([-32768, 32767], size=n)
        tracks.append(np.clip(np.rint(x), -32768, 32767).astype(np.int16))
    doc = analyze_pcm(tracks[0], tracks[1]).to_json_dict()
    json.dumps(doc, allow_nan=False)
    shares = [doc["talk_share"][role] for role in ROLE_NAMES]
    if None in shares:
        assert shares == [None, None]
    else:
        assert math.isclose(sum(shares), 1.0, abs_tol=2e-4)
    for role in ROLE_NAMES:
        assert 0.0 <= doc["talk_time_s"][role] <= doc["duration_s"] + 1e-3
