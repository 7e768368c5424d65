"""Full mode's own audio decoding (monitor/audio_decode.py) against FFmpeg's decoders."""

from __future__ import annotations

import ctypes.util
import fractions

import av
import numpy as np
import numpy.typing as npt
import pytest

from monitor import audio_decode
from monitor.audio_decode import (
    MAX_FRAME,
    PCM_RATE,
    AudioDecodeError,
    G711Decoder,
    OpusDecoder,
    load_libopus,
    new_decoder,
)


def _opus_packets(pcm: npt.NDArray[np.int16], *, layout: str = "mono") -> list[bytes]:
    """``pcm`` (48 kHz) encoded by FFmpeg's libopus encoder, 20 ms a packet."""
    encoder = av.CodecContext.create("libopus", "w")
    encoder.bit_rate = 32000
    encoder.format = "s16"
    encoder.layout = layout
    encoder.sample_rate = 48000
    encoder.time_base = fractions.Fraction(1, 48000)
    channels = 2 if layout == "stereo" else 1
    packets: list[bytes] = []
    for i in range(0, len(pcm) // channels - 960 + 1, 960):
        chunk = pcm[i * channels : (i + 960) * channels].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16", layout=layout)
        frame.sample_rate = 48000
        frame.pts = i
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def _tone(freq: float, seconds: float, rate: int = 48000) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def _decode_all(decoder: audio_decode.AudioDecoder, packets: list[bytes]) -> np.ndarray:
    out = np.empty(MAX_FRAME, dtype=np.int16)
    pieces = []
    for packet in packets:
        n = decoder.decode_into(packet, out)
        pieces.append(out[:n].copy())
    return np.concatenate(pieces)


def _dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def _rms_db(pcm: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))))


@pytest.fixture
def libopus() -> ctypes.CDLL:
    lib = load_libopus()
    assert lib is not None, "libopus not found: install libopus0 (.ci/debian-packages)"
    return lib


def test_opus_decodes_to_16_khz_mono_matching_ffmpeg_at_48_khz(libopus: ctypes.CDLL) -> None:
    packets = _opus_packets(_tone(440.0, 2.0))
    ours = _decode_all(OpusDecoder(libopus), packets)
    assert len(ours) == len(packets) * 320  # 20 ms at 16 kHz each
    # aiortc's decoder: FFmpeg's libopus wrapper, 48 kHz interleaved stereo; one channel.
    reference = av.CodecContext.create("libopus", "r")
    reference.format = "s16"
    reference.layout = "stereo"
    reference.sample_rate = 48000
    theirs = np.concatenate(
        [f.to_ndarray()[0, ::2] for p in packets for f in reference.decode(av.Packet(p))]
    )
    assert len(theirs) == 3 * len(ours)
    steady = slice(PCM_RATE // 2, None)  # past the codec's start-up
    assert _dominant_hz(ours[steady], PCM_RATE) == pytest.approx(440.0, abs=2.0)
    # The same loudness as FFmpeg's 48 kHz decode (what aiortc would have handed over).
    assert _rms_db(ours[steady]) == pytest.approx(_rms_db(theirs[3 * PCM_RATE // 2 :]), abs=0.5)


def test_a_stereo_opus_stream_comes_out_mono(libopus: ctypes.CDLL) -> None:
    left, right = _tone(300.0, 1.0), _tone(300.0, 1.0)
    stereo = np.stack([left, right], axis=1).reshape(-1)
    ours = _decode_all(OpusDecoder(libopus), _opus_packets(stereo, layout="stereo"))
    assert len(ours) == 50 * 320
    assert _dominant_hz(ours[PCM_RATE // 2 :], PCM_RATE) == pytest.approx(300.0, abs=2.0)


def test_a_bad_opus_frame_is_an_error_and_the_decoder_carries_on(libopus: ctypes.CDLL) -> None:
    decoder = OpusDecoder(libopus)
    packets = _opus_packets(_tone(440.0, 0.5))
    out = np.empty(MAX_FRAME, dtype=np.int16)
    # TOC byte 0xFF: code 3 (arbitrary frame count) with no count byte: invalid packet.
    with pytest.raises(AudioDecodeError, match="corrupt Opus frame"):
        decoder.decode_into(b"\xff", out)
    with pytest.raises(AudioDecodeError, match="empty"):  # never asks libopus to conceal
        decoder.decode_into(b"", out)
    assert decoder.decode_into(packets[0], out) == 320
    with pytest.raises(ValueError, match="120 ms"):
        decoder.decode_into(packets[1], np.empty(100, dtype=np.int16))


@pytest.mark.parametrize(("codec", "ffmpeg"), [("PCMU", "pcm_mulaw"), ("PCMA", "pcm_alaw")])
def test_g711_matches_ffmpeg_and_is_repeated_to_16_khz(codec: str, ffmpeg: str) -> None:
    every_code = bytes(range(256))
    reference = av.CodecContext.create(ffmpeg, "r")
    reference.format = "s16"
    reference.layout = "mono"
    reference.sample_rate = 8000
    expected = np.concatenate(
        [f.to_ndarray().reshape(-1) for f in reference.decode(av.Packet(every_code))]
    )
    decoder = new_decoder(codec)
    assert isinstance(decoder, G711Decoder)
    out = np.empty(MAX_FRAME, dtype=np.int16)
    n = decoder.decode_into(every_code, out)
    assert n == 512
    assert np.array_equal(out[:n:2], expected)
    assert np.array_equal(out[1:n:2], expected)
    with pytest.raises(AudioDecodeError, match="too long"):
        decoder.decode_into(bytes(MAX_FRAME), out)
    with pytest.raises(AudioDecodeError, match="empty"):
        decoder.decode_into(b"", out)


def test_codecs_without_a_decoder_here() -> None:
    assert new_decoder("VP8") is None
    assert new_decoder("G722") is None
    assert isinstance(new_decoder("opus"), OpusDecoder)


def test_libopus_is_found_in_pyavs_wheel_without_a_system_copy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    load_libopus.cache_clear()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    try:
        lib = load_libopus()
        assert lib is not None
        assert "av.libs" in lib._name or ".dylibs" in lib._name
        assert _decode_all(OpusDecoder(lib), _opus_packets(_tone(440.0, 0.2))).size == 10 * 320
    finally:
        load_libopus.cache_clear()
