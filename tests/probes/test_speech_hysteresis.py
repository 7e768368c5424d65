"""The level gate's hysteresis: 10 dB over the floor starts a voiced run, 5 dB continues it.

At 10-15 dB SNR a syllable's quieter half lies 5-10 dB above the noise; with a single
10 dB bar it is lost, the speech falls apart into fragments, and talk time, turns and
interruptions go wrong. Noise alone never stands 10 dB above its own floor, so it still
never starts a run.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
import pytest

from probes.base import ConfigError
from probes.speech import SpeechConfig, VadDetector
from tests.probes.synthetic_voice import frame_mask, pink_noise, to_int16, voice, white_noise

RATE = 16000
SECONDS = 30.0


def voiced(pcm: npt.NDArray[np.int16], config: SpeechConfig | None = None) -> npt.NDArray[np.bool_]:
    detector = VadDetector(config)
    detector.on_pcm(pcm, sample_rate=RATE, channels=1, t=0.0)
    detector.flush()
    return np.array([frame.voiced for frame in detector.drain_frames()], dtype=bool)


@cache
def noisy_speech(snr_db: float) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.bool_]]:
    speech, segments = voice(SECONDS, f0=150.0, seed=9, level_db=-26.0)
    pcm = to_int16(speech + white_noise(SECONDS, -26.0 - snr_db, seed=4))
    return pcm, frame_mask(segments, SECONDS)


@pytest.mark.parametrize(("snr_db", "at_least"), [(10.0, 0.75), (12.0, 0.9), (15.0, 0.95)])
def test_the_quiet_half_of_syllables_counts_in_noise(snr_db: float, at_least: float) -> None:
    pcm, truth = noisy_speech(snr_db)
    found = voiced(pcm)
    n = min(len(found), len(truth))
    assert found[:n][truth[:n]].mean() >= at_least
    assert found[:n][~truth[:n]].sum() <= 3  # frames of noise between phrases


@pytest.mark.parametrize("snr_db", [10.0, 12.0, 15.0])
def test_a_single_10_db_bar_would_lose_a_good_part_of_it(snr_db: float) -> None:
    pcm, truth = noisy_speech(snr_db)
    with_hysteresis = voiced(pcm)
    single_bar = voiced(pcm, SpeechConfig(continue_margin_db=10.0))
    n = min(len(with_hysteresis), len(truth))
    recall = with_hysteresis[:n][truth[:n]].mean()
    assert single_bar[:n][truth[:n]].mean() < recall - 0.1


@pytest.mark.parametrize("noise", ["white", "pink"])
def test_steady_noise_alone_never_starts_a_run(noise: str) -> None:
    make = white_noise if noise == "white" else pink_noise
    assert not voiced(to_int16(make(SECONDS, -40.0, seed=5))).any()


def test_the_continuation_margin_must_not_exceed_the_onset_margin() -> None:
    with pytest.raises(ConfigError):
        SpeechConfig(continue_margin_db=12.0)
    with pytest.raises(ConfigError):
        SpeechConfig(continue_margin_db=-1.0)
