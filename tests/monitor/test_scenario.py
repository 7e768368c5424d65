"""monitor/scenario/composer.py: composed conversations and their exact ground truth."""

from __future__ import annotations

import itertools
import math
import random
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.audiofile import read_stereo
from monitor.scenario import (
    GroundTruth,
    Interruption,
    NoiseColour,
    Scenario,
    ScenarioConfig,
    ScenarioError,
    Segment,
    bundled_example,
    compose,
    intersect,
    subtract,
    total,
    union,
)
from monitor.scenario.truth import ACTIVITY_MARGIN_DB, speech_segments
from monitor.voices import UnknownVoiceError, voice_ids
from probes.base import FeltsafeError, Role

RATE = 16000


@pytest.fixture(scope="module")
def clean() -> Scenario:
    return compose(ScenarioConfig(therapist_voice="en-low", client_voice="hi-en"), seed=11)


def power(track: npt.NDArray[np.int16], regions: tuple[Segment, ...]) -> float:
    """Mean square over the regions (full scale 1.0)."""
    energy, count = 0.0, 0
    for start, end in regions:
        part = track[round(start * RATE) : round(end * RATE)].astype(np.float64) / 32768
        energy += float(np.dot(part, part))
        count += len(part)
    return energy / count


def shrink(regions: tuple[Segment, ...], by: float, minimum: float = 0.3) -> tuple[Segment, ...]:
    return tuple(Segment(s + by, e - by) for s, e in regions if e - s - 2 * by >= minimum)


def widen(regions: tuple[Segment, ...], by: float) -> tuple[Segment, ...]:
    return union((max(0.0, s - by), e + by) for s, e in regions)


def single_talk(truth: GroundTruth, role: Role) -> tuple[Segment, ...]:
    """Where only ``role`` speaks, away from the other's speech by 0.1 s."""
    return subtract(truth.segments(role), widen(truth.segments(role.other), 0.1))


def silence(truth: GroundTruth) -> tuple[Segment, ...]:
    speech = widen(truth.therapist_segments + truth.client_segments, 0.1)
    return subtract((Segment(0.0, truth.duration),), speech)


def spurt_at(truth: GroundTruth, role: Role, t: float) -> Segment:
    return next(s for s in truth.segments(role) if s.start <= t + 1e-9 < s.end)


def overlap_of(truth: GroundTruth, event: Interruption) -> float:
    """The simultaneous speech of an interruption, measured on the truth segments: the
    intruder's talkspurt against the holder's talkspurt it cut short (successful), or
    against all the holder's speech during it (failed: the holder talks on)."""
    spurt = spurt_at(truth, event.by, event.t)
    if event.successful:
        return total(intersect((spurt_at(truth, event.of, event.t),), (spurt,)))
    return total(intersect(truth.segments(event.of), (spurt,)))


# -- determinism and shape ---------------------------------------------------------------


def test_the_same_seed_gives_the_same_conversation() -> None:
    config = ScenarioConfig(duration=90.0, echo_leak_db=20.0, snr_db=15.0)
    first, second = compose(config, seed=5), compose(config, seed=5)
    np.testing.assert_array_equal(first.therapist, second.therapist)
    np.testing.assert_array_equal(first.client, second.client)
    assert first.truth == second.truth
    third = compose(config, seed=random.Random(5))
    np.testing.assert_array_equal(first.client, third.client)


def test_another_seed_gives_another_conversation() -> None:
    config = ScenarioConfig(duration=90.0)
    first, second = compose(config, seed=5), compose(config, seed=6)
    assert first.truth.therapist_segments != second.truth.therapist_segments


def test_tracks_are_int16_16k_of_equal_length_covering_the_duration(clean: Scenario) -> None:
    assert clean.therapist.dtype == np.int16
    assert clean.client.dtype == np.int16
    assert len(clean.therapist) == len(clean.client)
    assert 300.0 <= clean.duration <= 360.0
    assert clean.truth.duration == pytest.approx(clean.duration)


def test_stereo_puts_the_therapist_left(clean: Scenario) -> None:
    stereo = clean.to_stereo()
    assert stereo.shape == (len(clean.therapist), 2)
    np.testing.assert_array_equal(stereo[:, 0], clean.therapist)
    np.testing.assert_array_equal(stereo[:, 1], clean.client)


def test_a_written_wav_reads_back_identically(clean: Scenario, tmp_path: Path) -> None:
    therapist, client = read_stereo(clean.write_wav(tmp_path / "session.wav"))
    np.testing.assert_array_equal(therapist.samples, clean.therapist)
    np.testing.assert_array_equal(client.samples, clean.client)
    paths = clean.write_wavs(tmp_path)
    assert [p.name for p in paths] == ["therapist.wav", "client.wav"]


def test_composing_five_minutes_is_quick() -> None:
    config = ScenarioConfig(echo_leak_db=20.0, snr_db=15.0)
    compose(config, seed=1)  # voices decoded and cached
    started = time.process_time()  # CPU time: other jobs on the machine do not count
    compose(config, seed=2)
    # Measured 0.2-0.4 s of CPU; the bound only catches a per-sample Python loop.
    assert time.process_time() - started < 2.0


# -- the truth is the speech that is there ----------------------------------------------


def test_truth_segments_are_sorted_disjoint_and_inside_the_scenario(clean: Scenario) -> None:
    for role in Role:
        segments = clean.truth.segments(role)
        assert segments
        assert all(s.end > s.start for s in segments)
        assert all(a.end < b.start for a, b in itertools.pairwise(segments))
        assert segments[0].start >= 0
        assert segments[-1].end <= clean.truth.duration


def test_talk_time_is_the_sum_of_segments_and_shares_sum_to_one(clean: Scenario) -> None:
    truth = clean.truth
    for role in Role:
        assert truth.talk_time(role) == pytest.approx(sum(e - s for s, e in truth.segments(role)))
    shares = [truth.talk_share(role) for role in Role]
    assert sum(s for s in shares if s is not None) == pytest.approx(1.0)
    assert truth.overlap == pytest.approx(
        total(intersect(truth.therapist_segments, truth.client_segments))
    )


def test_truth_segments_are_where_the_clean_track_has_speech_energy(clean: Scenario) -> None:
    """Recomputing the definition on the rendered int16 tracks gives the same segments."""
    threshold = clean.config.speech_level_dbfs - ACTIVITY_MARGIN_DB
    for role in Role:
        samples = clean.track(role).astype(np.float32) / 32768
        found = tuple(speech_segments(samples, threshold))
        mismatch = total(subtract(found, clean.truth.segments(role))) + total(
            subtract(clean.truth.segments(role), found)
        )
        assert mismatch <= 0.05, role


def test_without_echo_a_track_is_digitally_silent_away_from_its_own_voice(clean: Scenario) -> None:
    for role in Role:
        others_turf = subtract(
            (Segment(0.0, clean.duration),), widen(clean.truth.segments(role), 0.5)
        )
        assert power(clean.track(role), others_turf) == 0.0


# -- conversation events ------------------------------------------------------------------


def test_interruptions_overlap_by_the_stated_amount(clean: Scenario) -> None:
    truth = clean.truth
    assert truth.interruptions
    for event in truth.interruptions:
        spurt = spurt_at(truth, event.by, event.t)
        assert spurt.start == pytest.approx(event.t)  # t: the intruder's onset
        held = spurt_at(truth, event.of, event.t)  # the holder was talking at t ...
        assert event.t - held.start >= 0.29  # ... for a while already
        assert overlap_of(truth, event) == pytest.approx(event.overlap_s, abs=1e-9)
        assert event.overlap_s >= 0.29


def test_successful_interruptions_make_the_holder_yield_and_the_intruder_keep_the_floor(
    clean: Scenario,
) -> None:
    truth = clean.truth
    successful = [e for e in truth.interruptions if e.successful]
    assert len(successful) >= 3
    for event in successful:
        held = spurt_at(truth, event.of, event.t)
        assert held.end - event.t <= 2.0  # yielded within 2 s
        assert event.overlap_s <= 1.0 + 1e-9
        after_yield = (Segment(held.end, held.end + 1.0),)
        assert total(intersect(truth.segments(event.of), after_yield)) == 0.0
        spurt = spurt_at(truth, event.by, event.t)
        assert spurt.end - held.end >= 1.0  # the intruder then talks >= 1 s alone


def test_failed_interruptions_are_longer_than_backchannels_and_the_holder_talks_on(
    clean: Scenario,
) -> None:
    truth = clean.truth
    failed = [e for e in truth.interruptions if not e.successful]
    assert len(failed) >= 3
    for event in failed:
        spurt = spurt_at(truth, event.by, event.t)
        assert 1.0 < spurt.duration <= 1.8 + 1e-9
        alone = spurt.duration - event.overlap_s
        assert alone <= 0.3 + 1e-9
        talks_on = (Segment(spurt.end, spurt.end + 1.0),)
        assert total(intersect(truth.segments(event.of), talks_on)) >= 0.5


def test_both_roles_interrupt_and_backchannel(clean: Scenario) -> None:
    truth = clean.truth
    assert {e.by for e in truth.interruptions} == set(Role)
    assert {e.of for e in truth.interruptions} == set(Role)
    assert {b.by for b in truth.backchannels} == set(Role)
    assert all(e.of is e.by.other for e in truth.interruptions)


def test_backchannels_are_short_barely_overlap_and_the_holder_goes_on(clean: Scenario) -> None:
    truth = clean.truth
    assert len(truth.backchannels) >= 5
    for event in truth.backchannels:
        spurt = spurt_at(truth, event.by, event.t)
        assert spurt.start == pytest.approx(event.t)
        assert spurt.duration == pytest.approx(event.duration)
        assert event.duration <= 0.8 + 1e-9
        assert total(intersect(truth.segments(event.by.other), (spurt,))) <= 0.1 + 0.011
        resumes = (Segment(spurt.end, spurt.end + 1.5),)
        assert total(intersect(truth.segments(event.by.other), resumes)) > 0


def test_there_is_a_client_monologue_with_only_backchannels_from_the_therapist(
    clean: Scenario,
) -> None:
    truth = clean.truth
    monologues = [m for m in truth.monologues if m.by is Role.CLIENT]
    assert monologues
    for turn in monologues:
        assert turn.duration >= 20.0
        inside = intersect(truth.therapist_segments, (Segment(turn.start, turn.end),))
        assert all(s.duration <= 0.8 + 1e-9 for s in inside)
    assert truth.longest_monologue(Role.CLIENT) == max(m.duration for m in monologues)


def test_turns_alternate_and_gaps_and_pauses_are_in_range(clean: Scenario) -> None:
    truth = clean.truth
    assert truth.turns[0].by is Role.THERAPIST
    assert all(a.by is not b.by for a, b in zip(truth.turns, truth.turns[1:], strict=False))
    config = clean.config
    assert truth.gaps
    assert all(config.gap[0] - 0.011 <= gap <= config.gap[1] + 0.011 for gap in truth.gaps)
    assert truth.pauses
    assert all(0.2 - 1e-9 <= pause <= 1.5 for pause in truth.pauses)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), voice_index=st.integers(0, 9))
def test_truth_invariants_hold_for_any_seed_and_voice(seed: int, voice_index: int) -> None:
    client_voice = voice_ids()[voice_index]
    truth = compose(ScenarioConfig(duration=60.0, client_voice=client_voice), seed=seed).truth
    for role in Role:
        segments = truth.segments(role)
        assert all(a.end < b.start for a, b in itertools.pairwise(segments))
    for event in truth.interruptions:
        assert overlap_of(truth, event) == pytest.approx(event.overlap_s, abs=1e-9)
    assert all(b.duration <= 0.8 + 1e-9 for b in truth.backchannels)


# -- echo and noise -------------------------------------------------------------------------


@pytest.mark.parametrize(("leak_db", "lowpass"), [(20.0, False), (10.0, False), (20.0, True)])
def test_echo_puts_the_other_voice_in_at_the_requested_level(leak_db: float, lowpass: bool) -> None:
    scenario = compose(
        ScenarioConfig(
            therapist_voice="en-fast",
            client_voice="de-en",
            echo_leak_db=leak_db,
            echo_lowpass=lowpass,
        ),
        seed=3,
    )
    for talker in Role:
        regions = shrink(single_talk(scenario.truth, talker), 0.05)
        assert total(regions) > 30.0
        leaked = power(scenario.track(talker.other), regions)
        spoken = power(scenario.track(talker), regions)
        assert 10 * math.log10(leaked / spoken) == pytest.approx(-leak_db, abs=1.0)


def test_echo_arrives_after_the_requested_delay() -> None:
    scenario = compose(ScenarioConfig(duration=60.0, echo_leak_db=20.0, echo_delay=0.05), seed=4)
    region = max(single_talk(scenario.truth, Role.CLIENT), key=lambda s: s.duration)
    start = round(region.start * RATE)
    end = min(round(region.end * RATE), start + 3 * RATE)
    source = scenario.client[start:end].astype(np.float64)
    leak = scenario.therapist[start:end].astype(np.float64)
    size = 2 * len(source)
    correlation = np.fft.irfft(np.fft.rfft(leak, size) * np.conj(np.fft.rfft(source, size)), size)
    assert int(np.argmax(correlation[: RATE // 10])) == round(0.05 * RATE)


@pytest.mark.parametrize(("snr_db", "colour"), [(15.0, NoiseColour.WHITE), (5.0, NoiseColour.PINK)])
def test_noise_sits_at_the_requested_snr_below_each_tracks_speech(
    snr_db: float, colour: NoiseColour
) -> None:
    scenario = compose(
        ScenarioConfig(
            therapist_voice="cmn-en", client_voice="en-slow", snr_db=snr_db, noise=colour
        ),
        seed=8,
    )
    quiet = silence(scenario.truth)
    assert total(quiet) > 20.0
    for role in Role:
        noise = power(scenario.track(role), quiet)
        both = power(scenario.track(role), scenario.truth.segments(role))
        measured = 10 * math.log10((both - noise) / noise)
        assert measured == pytest.approx(snr_db, abs=1.0), role


def test_noise_is_white_or_pink_as_asked() -> None:
    def slope(colour: NoiseColour) -> float:
        scenario = compose(ScenarioConfig(duration=60.0, snr_db=0.0, noise=colour), seed=2)
        quiet = max(silence(scenario.truth), key=lambda s: s.duration)
        part = scenario.therapist[round(quiet.start * RATE) : round(quiet.end * RATE)]
        spectrum = np.abs(np.fft.rfft(part.astype(np.float64))) ** 2
        freqs = np.fft.rfftfreq(len(part), 1 / RATE)
        low = spectrum[(freqs > 100) & (freqs < 400)].mean()
        high = spectrum[(freqs > 3200) & (freqs < 6400)].mean()
        return 10 * math.log10(high / low)

    # Band means of a 1/f spectrum: ln(2)/3200 over ln(4)/300, i.e. -13.3 dB.
    assert slope(NoiseColour.WHITE) == pytest.approx(0.0, abs=1.5)
    assert slope(NoiseColour.PINK) == pytest.approx(-13.3, abs=1.5)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"failed_intrusion": (0.3, 0.8)},  # a backchannel by definition
        {"pause": (0.1, 0.5)},  # would be filled by the 200 ms rule
        {"successful_overlap": (0.1, 0.5)},
        {"gap": (1.0, 0.5)},
        {"duration": 0.0},
        {"echo_leak_db": -3.0},
        {"successful_interruption_ratio": 1.5},
        {"utterances_per_turn": ()},
    ],
)
def test_impossible_scenarios_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ScenarioError):
        ScenarioConfig(**changes)  # type: ignore[arg-type]


def test_an_unknown_voice_is_refused_with_the_known_ones_listed() -> None:
    with pytest.raises(UnknownVoiceError) as error:
        ScenarioConfig(client_voice="nobody")
    assert isinstance(error.value, FeltsafeError)
    assert "hi-en" in str(error.value)


# -- the bundled example --------------------------------------------------------------------


def test_the_bundled_example_is_a_fixed_two_minute_conversation_with_every_event() -> None:
    example = bundled_example()
    again = bundled_example()
    np.testing.assert_array_equal(example.therapist, again.therapist)
    assert 120.0 <= example.duration <= 170.0
    truth = example.truth
    assert any(e.successful for e in truth.interruptions)
    assert any(not e.successful for e in truth.interruptions)
    assert truth.backchannels
    assert any(m.by is Role.CLIENT for m in truth.monologues)
    assert example.config.echo_leak_db is not None
