"""CrosstalkGate: a leak is taken only if the echo shows where it predicts itself.

With the echo buried under the near side's noise, a few dozen of the near side's own
double-talk frames can line up with the far side at some lag and give a narrow shorth
and a leak of a few dB. Taken as the echo, such a leak would report a false echo problem
and make the gate drop the near side's speech over the far side.
"""

from __future__ import annotations

import numpy as np

from probes.base import Role
from probes.crosstalk import CrosstalkConfig, CrosstalkGate
from probes.speech import FRAME, SpeechFrame

A, B = Role.THERAPIST, Role.CLIENT
NOISE_DB = -41.0
SECONDS = 40.0
LAG = 7  # frames (210 ms)


def frames(levels: np.ndarray, voiced: np.ndarray) -> list[SpeechFrame]:
    return [
        SpeechFrame(k * FRAME, float(level), bool(v), NOISE_DB)
        for k, (level, v) in enumerate(zip(levels, voiced, strict=True))
    ]


def session(*, fake_echo_leak_db: float | None, true_leak_db: float | None) -> CrosstalkGate:
    """B talks throughout (syllable levels -35..-18 dBFS); A's track is noise, plus either
    A's own speech copying B's level ``fake_echo_leak_db`` down at LAG in 80 frames only
    (a chance alignment), or a real echo of B ``true_leak_db`` down at LAG everywhere."""
    rng = np.random.default_rng(5)
    n = round(SECONDS / FRAME)
    far = rng.uniform(-35.0, -18.0, n)
    near = NOISE_DB + rng.normal(0.0, 0.5, n)
    near_voiced = np.zeros(n, dtype=bool)
    if true_leak_db is not None:
        echo = np.full(n, -np.inf)
        echo[LAG:] = far[:-LAG] - true_leak_db
        near = 10.0 * np.log10(10.0 ** (near / 10.0) + 10.0 ** (echo / 10.0))
    if fake_echo_leak_db is not None:
        for start in range(40, n - 20, n // 10):  # ten bursts of eight frames
            k = np.arange(start, start + 8)
            near[k] = far[k - LAG] - fake_echo_leak_db
            near_voiced[k] = True
    gate = CrosstalkGate(CrosstalkConfig())
    gate.on_frames(B, frames(far, np.ones(n, dtype=bool)))
    gate.on_frames(A, frames(near, near_voiced))
    gate.flush()
    return gate


def test_a_chance_alignment_of_double_talk_is_not_taken_for_an_echo() -> None:
    gate = session(fake_echo_leak_db=2.0, true_leak_db=None)
    assert gate.echo_leak_db(A) is None  # not a measured 2 dB leak
    assert not gate.echo_problem(A)
    estimate = gate.echo_leak(A)
    assert estimate is None or estimate.lower_bound


def test_a_real_echo_above_the_noise_is_still_measured_beside_such_frames() -> None:
    gate = session(fake_echo_leak_db=2.0, true_leak_db=10.0)
    leak = gate.echo_leak_db(A)
    assert leak is not None
    assert abs(leak - 10.0) <= 1.5
    estimate = gate.echo_leak(A)
    assert estimate is not None
    assert estimate.delay is not None
    assert abs(estimate.delay - LAG * FRAME) <= FRAME + 1e-9
    assert gate.echo_problem(A)
