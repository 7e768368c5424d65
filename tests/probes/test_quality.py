"""The simplified E-model: worked values, loss units, clamps and monotonicity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.quality import (
    DEFAULT_R0,
    R0_G107_DEFAULT,
    R0_TWILIO,
    QualityInputError,
    estimate_quality,
    mos_from_r,
    r_factor,
)


@pytest.mark.parametrize(
    ("rtt_ms", "jitter_ms", "loss_percent", "mos"),
    [
        (50, 10, 0, 4.40),
        (100, 20, 1, 4.30),
        (150, 30, 2, 4.02),
        (200, 30, 3, 3.70),
        (100, 20, 10, 3.41),
        (400, 30, 1, 2.96),
    ],
)
def test_worked_values_with_twilios_r0(
    rtt_ms: float, jitter_ms: float, loss_percent: float, mos: float
) -> None:
    score = estimate_quality(
        rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_ratio=loss_percent / 100, r0=R0_TWILIO
    )
    assert score.mos == pytest.approx(mos, abs=0.02)


def test_the_r_factor_of_a_good_path() -> None:
    score = estimate_quality(rtt_ms=50, jitter_ms=10, loss_ratio=0.0, r0=R0_TWILIO)
    assert score.r_factor == pytest.approx(92.8, abs=0.05)


def test_the_default_r0_is_g107s_and_is_documented() -> None:
    assert DEFAULT_R0 == R0_G107_DEFAULT == 93.2
    perfect = estimate_quality(rtt_ms=0, jitter_ms=0, loss_ratio=0.0)
    assert perfect.r_factor == pytest.approx(93.2 - 10 / 40)


def test_five_percent_loss_costs_what_five_percent_should() -> None:
    # Fed as 0.05 % (the fraction-for-percent bug) the score would be 4.36.
    five_percent = estimate_quality(rtt_ms=100, jitter_ms=20, loss_ratio=0.05, r0=R0_TWILIO)
    assert five_percent.mos == pytest.approx(3.97, abs=0.02)
    assert five_percent.r_factor == pytest.approx(94.768 - 150 / 40 - 12.5, abs=0.01)


def test_a_percentage_passed_as_the_ratio_is_refused() -> None:
    with pytest.raises(QualityInputError, match="percentage"):
        estimate_quality(rtt_ms=100, jitter_ms=20, loss_ratio=5.0)


@pytest.mark.parametrize(
    ("rtt_ms", "jitter_ms", "loss_ratio"),
    [(-1, 0, 0), (0, -1, 0), (0, 0, -0.1), (float("nan"), 0, 0), (0, float("inf"), 0)],
)
def test_impossible_inputs_are_refused(rtt_ms: float, jitter_ms: float, loss_ratio: float) -> None:
    with pytest.raises(QualityInputError):
        r_factor(rtt_ms=rtt_ms, jitter_ms=jitter_ms, loss_ratio=loss_ratio)


def test_the_latency_penalty_is_continuous_at_the_160_ms_knee() -> None:
    below = r_factor(rtt_ms=149.999, jitter_ms=0, loss_ratio=0)
    above = r_factor(rtt_ms=150.0, jitter_ms=0, loss_ratio=0)
    assert below == pytest.approx(above, abs=1e-3)


def test_a_terrible_path_scores_the_floor() -> None:
    score = estimate_quality(rtt_ms=2000, jitter_ms=200, loss_ratio=0.5)
    assert (score.r_factor, score.mos) == (0.0, 1.0)
    assert mos_from_r(150.0) == mos_from_r(100.0) == 4.5


figures = st.tuples(
    st.floats(0, 3000),  # rtt ms
    st.floats(0, 500),  # jitter ms
    st.floats(0, 1),  # loss ratio
)


@given(base=figures, extra=st.floats(0, 1000), which=st.integers(0, 2), r0=st.floats(80, 100))
def test_mos_never_increases_when_rtt_jitter_or_loss_grows(
    base: tuple[float, float, float], extra: float, which: int, r0: float
) -> None:
    worse = list(base)
    worse[which] = min(1.0, worse[which] + extra / 1000) if which == 2 else worse[which] + extra
    before = estimate_quality(rtt_ms=base[0], jitter_ms=base[1], loss_ratio=base[2], r0=r0)
    after = estimate_quality(rtt_ms=worse[0], jitter_ms=worse[1], loss_ratio=worse[2], r0=r0)
    assert after.mos <= before.mos + 1e-12
    assert after.r_factor <= before.r_factor + 1e-12


@given(figures=figures, r0=st.floats(0, 150))
def test_scores_stay_within_their_scales(figures: tuple[float, float, float], r0: float) -> None:
    score = estimate_quality(rtt_ms=figures[0], jitter_ms=figures[1], loss_ratio=figures[2], r0=r0)
    assert 0.0 <= score.r_factor <= 100.0
    assert 1.0 <= score.mos <= 4.5


@given(r=st.floats(-50, 150))
def test_mos_from_r_is_monotonic_after_clamping(r: float) -> None:
    assert mos_from_r(r) <= mos_from_r(r + 0.5) + 1e-12
    assert 1.0 <= mos_from_r(r) <= 4.5
