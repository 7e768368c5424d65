"""Full mode's encoded-audio path: decode here, place by RTP time, hand on in batches."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from monitor.publisher import _EncodedAudioPath
from probes.base import Role
from tests.monitor.test_audio_decode import _opus_packets, _tone

OPUS = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
PCMU = RTCRtpCodecParameters(mimeType="audio/PCMU", clockRate=8000, channels=1, payloadType=0)


@dataclass
class Batches:
    calls: list[tuple[Role, np.ndarray, int, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_audio_frame(self, role: Role, pcm: np.ndarray, rate: int, *, now: float) -> None:
        self.calls.append((role, pcm, rate, now))

    def count_decode_error(self, what: str) -> None:
        self.errors.append(what)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _path(batches: Batches, clock: Clock) -> _EncodedAudioPath:
    return _EncodedAudioPath(batches, Role.CLIENT, clock=clock, errors=batches)  # type: ignore[arg-type]


def test_contiguous_audio_goes_on_in_200_ms_batches_placed_by_rtp_time() -> None:
    batches, clock = Batches(), Clock()
    path = _path(batches, clock)
    packets = _opus_packets(_tone(440.0, 1.0))
    for index, packet in enumerate(packets):
        # Arrival jitters by up to 15 ms; placement follows the timestamps.
        clock.now = 100.0 + 0.02 * index + (0.015 if index % 3 else 0.0)
        path.on_encoded(OPUS, JitterFrame(packet, timestamp=960 * index))
    assert [len(pcm) for _, pcm, _, _ in batches.calls] == [3200] * 5
    assert {rate for _, _, rate, _ in batches.calls} == {16000}
    assert {role for role, _, _, _ in batches.calls} == {Role.CLIENT}
    starts = [at for _, _, _, at in batches.calls]
    assert starts == pytest.approx([100.0 + 0.2 * k for k in range(5)], abs=1e-9)
    whole = np.concatenate([pcm for _, pcm, _, _ in batches.calls])
    assert not np.shares_memory(batches.calls[0][1], batches.calls[1][1])  # handed off copies
    assert np.abs(whole[8000:]).max() > 4000  # the tone, not silence
    assert batches.errors == []


def test_a_gap_in_rtp_time_ends_the_batch_early() -> None:
    batches, clock = Batches(), Clock()
    path = _path(batches, clock)
    packets = _opus_packets(_tone(440.0, 0.5))
    for index in (0, 1, 2, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14):  # frames 3 and 4 lost
        clock.now = 100.0 + 0.02 * index
        path.on_encoded(OPUS, JitterFrame(packets[index], timestamp=960 * index))
    first, second = batches.calls
    assert len(first[1]) == 3 * 320
    assert first[3] == pytest.approx(100.0)
    assert len(second[1]) == 3200
    assert second[3] == pytest.approx(100.1)


def test_undecodable_frames_are_counted_and_skipped() -> None:
    batches, clock = Batches(), Clock()
    path = _path(batches, clock)
    g722 = RTCRtpCodecParameters(mimeType="audio/G722", clockRate=8000, payloadType=9)
    path.on_encoded(g722, JitterFrame(b"\x00" * 160, timestamp=0))
    path.on_encoded(OPUS, JitterFrame(b"\xff", timestamp=960))
    path.on_encoded(OPUS, JitterFrame(b"", timestamp=1920))
    assert batches.errors == [
        "no decoder here for G722 audio",
        "undecodable opus audio frame",
        "undecodable opus audio frame",
    ]
    for index in range(25):  # then G.711 at 8 kHz: 160 samples a frame, 320 at 16 kHz
        clock.now = 101.0 + 0.02 * index
        path.on_encoded(PCMU, JitterFrame(b"\x7f" * 160, timestamp=160 * index))
    assert [len(pcm) for _, pcm, _, _ in batches.calls] == [3200, 3200]
