"""monitor/audiofile.py: what `feltsafe analyze` reads, and how it refuses bad files."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest

from monitor.audiofile import (
    AudioFileError,
    AudioFileNotFoundError,
    AudioFileUnreadableError,
    AudioTrack,
    EmptyAudioError,
    MismatchedLengthsError,
    NoAudioStreamError,
    NotStereoError,
    SilentAudioError,
    check_lengths,
    length_tolerance,
    read_audio,
    read_stereo,
    trim_to_common_length,
)
from probes.base import FeltsafeError

RATE = 16000


def tone(
    frequency: float, seconds: float, level_dbfs: float, rate: int = RATE
) -> npt.NDArray[np.int16]:
    """A sine whose peak is ``level_dbfs``."""
    t = np.arange(round(seconds * rate)) / rate
    amplitude = 32767 * 10 ** (level_dbfs / 20)
    return np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def encode(
    path: Path,
    channels: list[npt.NDArray[np.int16]],
    *,
    codec: str,
    rate: int = RATE,
    container_format: str | None = None,
) -> Path:
    """Encode planar int16 channels with PyAV (its encoder converts to the codec's format)."""
    layout = "mono" if len(channels) == 1 else "stereo"
    planar = np.stack(channels)
    interleaved = planar.T.reshape(1, -1)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=48000 if "opus" in codec else rate)
        stream.layout = layout
        step = 960
        for start in range(0, planar.shape[1], step):
            chunk = np.ascontiguousarray(
                interleaved[:, start * len(channels) : (start + step) * len(channels)]
            )
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def dominant_frequency(samples: npt.NDArray[np.int16], rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def rms_dbfs(samples: npt.NDArray[np.int16]) -> float:
    x = samples.astype(np.float64) / 32768
    return 10 * math.log10(float(np.mean(x * x)))


def assert_one_line_naming(error: pytest.ExceptionInfo[AudioFileError], path: Path) -> None:
    message = str(error.value)
    assert isinstance(error.value, FeltsafeError)
    assert "\n" not in message
    assert str(path) in message
    assert "Traceback" not in message


FORMATS = [
    ("wav", "pcm_s16le", None),
    ("flac", "flac", None),
    ("ogg", "libopus", "ogg"),
    ("opus", "libopus", "ogg"),
    ("webm", "libopus", "webm"),
    ("mp4", "aac", "mp4"),
]


@pytest.mark.parametrize(
    ("suffix", "codec", "container_format"), FORMATS, ids=[f[0] for f in FORMATS]
)
def test_every_container_reads_as_16k_mono_with_the_tone_intact(
    tmp_path: Path, suffix: str, codec: str, container_format: str | None
) -> None:
    source = tone(440, 2.0, -12)
    path = encode(
        tmp_path / f"tone.{suffix}", [source], codec=codec, container_format=container_format
    )

    track = read_audio(path)

    assert track.sample_rate == RATE
    assert track.samples.dtype == np.int16
    assert track.samples.ndim == 1
    assert abs(track.duration - 2.0) < 0.1  # codec priming and padding only
    middle = track.samples[RATE // 2 : 3 * RATE // 2]
    assert abs(dominant_frequency(middle) - 440) <= 2
    assert abs(rms_dbfs(middle) - (-12 - 3.01)) < 1.0  # a sine's RMS is 3 dB under its peak


def test_a_48k_recording_is_resampled_to_16k_keeping_pitch_and_length(tmp_path: Path) -> None:
    path = encode(
        tmp_path / "hi.wav", [tone(1000, 3.0, -6, rate=48000)], codec="pcm_s16le", rate=48000
    )

    track = read_audio(path)

    assert track.sample_rate == RATE
    assert abs(track.duration - 3.0) < 0.01
    assert abs(dominant_frequency(track.samples[RATE : 2 * RATE]) - 1000) <= 2


def test_a_stereo_file_downmixes_to_mono_for_read_audio(tmp_path: Path) -> None:
    path = encode(tmp_path / "two.flac", [tone(440, 1.0, -12), tone(1000, 1.0, -12)], codec="flac")

    spectrum = np.abs(np.fft.rfft(read_audio(path).samples.astype(np.float64)))
    freqs = np.fft.rfftfreq(RATE, 1 / RATE)

    for frequency in (440, 1000):
        assert spectrum[np.argmin(np.abs(freqs - frequency))] > 0.2 * spectrum.max()


@pytest.mark.parametrize(
    ("suffix", "codec", "container_format"), FORMATS, ids=[f[0] for f in FORMATS]
)
def test_stereo_left_is_the_therapist_and_right_the_client(
    tmp_path: Path, suffix: str, codec: str, container_format: str | None
) -> None:
    left, right = tone(440, 2.0, -10), tone(1000, 2.0, -22)
    path = encode(
        tmp_path / f"s.{suffix}", [left, right], codec=codec, container_format=container_format
    )

    therapist, client = read_stereo(path)

    assert len(therapist.samples) == len(client.samples)
    mid = slice(RATE // 2, 3 * RATE // 2)
    assert abs(dominant_frequency(therapist.samples[mid]) - 440) <= 2
    assert abs(dominant_frequency(client.samples[mid]) - 1000) <= 2
    assert abs(rms_dbfs(therapist.samples[mid]) - rms_dbfs(client.samples[mid]) - 12) < 1.0


def test_a_plain_wav_reads_back_sample_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    left = rng.integers(-20000, 20000, RATE, dtype=np.int16)
    right = rng.integers(-20000, 20000, RATE, dtype=np.int16)
    path = tmp_path / "exact.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(np.stack([left, right], axis=1).astype("<i2").tobytes())

    therapist, client = read_stereo(path)

    np.testing.assert_array_equal(therapist.samples, left)
    np.testing.assert_array_equal(client.samples, right)
    therapist.samples[0] = 0  # the caller owns the arrays (writable copies)


def test_progress_reports_increasing_seconds_up_to_the_end(tmp_path: Path) -> None:
    path = encode(tmp_path / "long.flac", [tone(300, 4.0, -12)], codec="flac")
    seen: list[float] = []

    track = read_audio(path, progress=lambda done, total: seen.append(done))

    assert seen == sorted(seen)
    assert len(seen) >= 3
    assert seen[-1] == pytest.approx(track.duration)


def test_reading_writes_nothing(tmp_path: Path) -> None:
    path = encode(
        tmp_path / "t.ogg", [tone(440, 1.0, -12)], codec="libopus", container_format="ogg"
    )
    before = sorted(p.name for p in tmp_path.iterdir())

    read_audio(path)

    assert sorted(p.name for p in tmp_path.iterdir()) == before


# -- refusals: one line, naming the file, never a traceback from FFmpeg -------------------


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioFileNotFoundError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)
    assert "no such file" in str(error.value)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioFileUnreadableError) as error:
        read_audio(tmp_path)
    assert_one_line_naming(error, tmp_path)


@pytest.mark.parametrize("suffix", ["wav", "ogg", "mp4", "bin"])
def test_random_bytes_are_refused_as_unreadable(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"noise.{suffix}"
    path.write_bytes(np.random.default_rng(7).bytes(4096))
    with pytest.raises(AudioFileUnreadableError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)


def test_a_wav_header_with_garbage_after_it_is_refused(tmp_path: Path) -> None:
    good = encode(
        tmp_path / "good.ogg", [tone(440, 2.0, -12)], codec="libopus", container_format="ogg"
    )
    data = bytearray(good.read_bytes())
    data[200:] = np.random.default_rng(1).bytes(len(data) - 200)
    path = tmp_path / "broken.ogg"
    path.write_bytes(bytes(data))
    with pytest.raises(AudioFileError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)


def test_a_video_only_file_has_no_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "video.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index in range(5):
            frame = av.VideoFrame.from_ndarray(
                np.full((32, 32, 3), index * 40, dtype=np.uint8), format="rgb24"
            )
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(NoAudioStreamError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)
    assert "no audio stream" in str(error.value)


def test_an_empty_wav_holds_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
    with pytest.raises(EmptyAudioError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioFileError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)


@pytest.mark.parametrize("peak_dbfs", [None, -70.0, -61.0])
def test_a_silent_file_is_refused(tmp_path: Path, peak_dbfs: float | None) -> None:
    samples = np.zeros(RATE, dtype=np.int16) if peak_dbfs is None else tone(200, 1.0, peak_dbfs)
    path = encode(tmp_path / "quiet.wav", [samples], codec="pcm_s16le")
    with pytest.raises(SilentAudioError) as error:
        read_audio(path)
    assert_one_line_naming(error, path)
    assert "silent" in str(error.value)


def test_a_quiet_but_audible_file_is_accepted(tmp_path: Path) -> None:
    path = encode(tmp_path / "soft.wav", [tone(200, 1.0, -55.0)], codec="pcm_s16le")
    assert read_audio(path).peak_dbfs == pytest.approx(-55.0, abs=0.5)


def test_a_stereo_file_with_a_dead_channel_names_the_channel(tmp_path: Path) -> None:
    path = encode(
        tmp_path / "half.wav", [tone(440, 1.0, -12), np.zeros(RATE, np.int16)], codec="pcm_s16le"
    )
    with pytest.raises(SilentAudioError) as error:
        read_stereo(path)
    assert_one_line_naming(error, path)
    assert "right channel (client)" in str(error.value)


def test_a_mono_file_is_not_a_stereo_session(tmp_path: Path) -> None:
    path = encode(
        tmp_path / "mono.ogg", [tone(440, 1.0, -12)], codec="libopus", container_format="ogg"
    )
    with pytest.raises(NotStereoError) as error:
        read_stereo(path)
    assert_one_line_naming(error, path)


# -- lengths ------------------------------------------------------------------------------


def track(seconds: float, name: str) -> AudioTrack:
    return AudioTrack(
        samples=np.zeros(round(seconds * RATE), np.int16), sample_rate=RATE, name=name
    )


def test_length_tolerance_is_one_second_or_two_percent() -> None:
    assert length_tolerance(10.0, 10.5) == 1.0
    assert length_tolerance(3000.0, 2990.0) == pytest.approx(60.0)


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [(20.0, 20.9, True), (20.0, 21.2, False), (300.0, 305.9, True), (300.0, 306.5, False)],
)
def test_check_lengths_accepts_small_differences_only(a: float, b: float, ok: bool) -> None:
    if ok:
        check_lengths(track(a, "t.wav"), track(b, "c.wav"))
    else:
        with pytest.raises(MismatchedLengthsError) as error:
            check_lengths(track(a, "t.wav"), track(b, "c.wav"))
        message = str(error.value)
        assert "\n" not in message
        assert "t.wav" in message
        assert "c.wav" in message


def test_an_explicit_tolerance_overrides_the_default() -> None:
    with pytest.raises(MismatchedLengthsError):
        check_lengths(track(60.0, "a"), track(60.5, "b"), tolerance=0.25)


def test_trim_to_common_length_cuts_the_longer_track() -> None:
    a, b = trim_to_common_length(track(10.0, "a"), track(10.4, "b"))
    assert len(a.samples) == len(b.samples) == 10 * RATE
