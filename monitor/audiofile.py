"""Read recorded session audio for offline analysis (``feltsafe analyze``).

Theory of operation: anything FFmpeg (through PyAV) can decode is accepted: wav, flac,
ogg/opus, webm, mp4, ... The first audio stream is decoded and converted by PyAV's
``AudioResampler`` to signed 16-bit PCM at the requested rate (16 kHz by default, what
webrtcvad takes), either downmixed to mono (``read_audio``) or as exactly two channels
(``read_stereo``: the therapist on the left, the client on the right). Frames already
in that form skip the resampler, and a plain 16-bit PCM wav at the requested rate and
channel count is read with the standard library's ``wave`` (a 50-minute 16 kHz mono wav
in about 0.3-0.6 s here, against 3-5 s packet by packet). Samples are concatenated in
decoding order; presentation timestamps are not used to re-insert gaps, so a recording
with holes in its timeline comes out shorter than wall-clock time.

Content rule (DESIGN.md, "Content never leaves the probe"): these functions hand PCM to
the caller in memory only. Nothing here writes, caches or logs audio.

Errors, each a one-line ``AudioFileError`` (a ``FeltsafeError``) naming the file and the
problem, never a traceback from FFmpeg:

- the file does not exist, or is a directory;
- FFmpeg cannot open or decode it (random bytes, a truncated container);
- it has no audio stream (a video-only file);
- its audio stream decodes to zero samples (a wav holding only a header);
- it is silent: the peak of the decoded PCM is below ``SILENCE_PEAK_DBFS`` (-60 dBFS,
  i.e. |sample| < 33 of 32768). A real microphone recording, even of a quiet room, has
  dither, hiss or breath above that; a file below it holds no usable speech and would
  only yield a confident-looking "nobody spoke". For stereo files each channel is
  checked on its own, since a dead channel is one participant missing;
- ``read_stereo`` on a file that does not have exactly two channels.

``check_lengths`` compares the two participants' tracks: recordings of the same session
end within ``max(1 s, 2 % of the longer)`` of each other (encoder start-up, one side
stopping the recorder a moment later); a larger difference means the files do not belong
together, or one was cut, and the analysis would attribute turns to the wrong moments.
"""

from __future__ import annotations

import math
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from probes.base import FeltsafeError

DEFAULT_SAMPLE_RATE = 16000
SILENCE_PEAK_DBFS = -60.0
LENGTH_TOLERANCE = 1.0
LENGTH_TOLERANCE_RATIO = 0.02
_FULL_SCALE = 32768.0
_PROGRESS_STEP = 1.0  # seconds of decoded audio between progress callbacks

ProgressCallback = Callable[[float, float | None], None]
"""Called with (seconds decoded so far, total seconds if the container knows it)."""


class AudioFileError(FeltsafeError):
    """An audio file cannot be analysed; the message is one line naming file and problem."""


class AudioFileNotFoundError(AudioFileError):
    pass


class AudioFileUnreadableError(AudioFileError):
    pass


class NoAudioStreamError(AudioFileError):
    pass


class EmptyAudioError(AudioFileError):
    pass


class SilentAudioError(AudioFileError):
    pass


class NotStereoError(AudioFileError):
    pass


class MismatchedLengthsError(AudioFileError):
    pass


@dataclass(frozen=True, slots=True, eq=False)
class AudioTrack:
    """Decoded mono PCM, int16, in memory only."""

    samples: npt.NDArray[np.int16]
    sample_rate: int
    name: str

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def peak_dbfs(self) -> float:
        return _peak_dbfs(self.samples)

    def as_float(self) -> npt.NDArray[np.float32]:
        """Samples scaled to [-1, 1)."""
        return (self.samples.astype(np.float32) / np.float32(_FULL_SCALE)).astype(np.float32)


def read_audio(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    progress: ProgressCallback | None = None,
) -> AudioTrack:
    """Decode the first audio stream of ``path`` to mono int16 at ``sample_rate``."""
    name = os.fspath(path)
    pcm = _decode(name, layout="mono", sample_rate=sample_rate, progress=progress)
    track = AudioTrack(samples=pcm[0], sample_rate=sample_rate, name=name)
    _refuse_silent(track, what=name)
    return track


def read_stereo(
    path: str | os.PathLike[str],
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    progress: ProgressCallback | None = None,
) -> tuple[AudioTrack, AudioTrack]:
    """Decode a two-channel file: (left = therapist, right = client), int16 at the rate."""
    name = os.fspath(path)
    pcm = _decode(name, layout="stereo", sample_rate=sample_rate, progress=progress)
    left = AudioTrack(samples=pcm[0], sample_rate=sample_rate, name=f"{name} (left)")
    right = AudioTrack(samples=pcm[1], sample_rate=sample_rate, name=f"{name} (right)")
    _refuse_silent(left, what=f"{name}: left channel (therapist)")
    _refuse_silent(right, what=f"{name}: right channel (client)")
    return left, right


def length_tolerance(a_duration: float, b_duration: float) -> float:
    """Largest length difference (seconds) two tracks of one session may have."""
    return max(LENGTH_TOLERANCE, LENGTH_TOLERANCE_RATIO * max(a_duration, b_duration))


def check_lengths(a: AudioTrack, b: AudioTrack, *, tolerance: float | None = None) -> None:
    """Raise ``MismatchedLengthsError`` if the tracks differ by more than the tolerance.

    ``tolerance`` in seconds; by default ``length_tolerance`` (max of 1 s and 2 %).
    """
    allowed = length_tolerance(a.duration, b.duration) if tolerance is None else tolerance
    difference = abs(a.duration - b.duration)
    if difference > allowed:
        raise MismatchedLengthsError(
            f"{a.name} lasts {a.duration:.1f} s but {b.name} lasts {b.duration:.1f} s; "
            f"tracks of one session must end within {allowed:.1f} s of each other"
        )


def trim_to_common_length(a: AudioTrack, b: AudioTrack) -> tuple[AudioTrack, AudioTrack]:
    """Cut the longer track to the shorter one (after ``check_lengths`` accepted them)."""
    if a.sample_rate != b.sample_rate:
        raise AudioFileError(f"{a.name} and {b.name} have different sample rates")
    n = min(len(a.samples), len(b.samples))
    return (
        AudioTrack(samples=a.samples[:n], sample_rate=a.sample_rate, name=a.name),
        AudioTrack(samples=b.samples[:n], sample_rate=b.sample_rate, name=b.name),
    )


def _decode(
    name: str, *, layout: str, sample_rate: int, progress: ProgressCallback | None
) -> npt.NDArray[np.int16]:
    """Decode to an array of shape (channels, samples); raise one-line errors."""
    path = Path(name)
    if not path.exists():
        raise AudioFileNotFoundError(f"{name}: no such file")
    if path.is_dir():
        raise AudioFileUnreadableError(f"{name}: is a directory, not an audio file")
    channels = 1 if layout == "mono" else 2
    interleaved = _read_pcm_wav(name, channels=channels, sample_rate=sample_rate)
    if interleaved is None:
        interleaved = _decode_with_av(
            name, layout=layout, channels=channels, sample_rate=sample_rate, progress=progress
        )
    if interleaved.size == 0:
        raise EmptyAudioError(f"{name}: the audio stream holds no samples")
    if progress is not None:
        progress(interleaved.size / channels / sample_rate, None)
    pcm: npt.NDArray[np.int16] = np.ascontiguousarray(interleaved.reshape(-1, channels).T)
    return pcm


def _read_pcm_wav(name: str, *, channels: int, sample_rate: int) -> npt.NDArray[np.int16] | None:
    """Fast path: a 16-bit PCM wav already at the rate and channel count, read with the
    standard library (10x faster than decoding packet by packet). None: use PyAV."""
    try:
        with wave.open(name, "rb") as wav:
            if (
                wav.getsampwidth() != 2
                or wav.getframerate() != sample_rate
                or wav.getnchannels() != channels
            ):
                return None
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, OSError):
        return None  # not a plain PCM wav: PyAV decides, and explains failures
    count = len(data) // (2 * channels) * channels  # whole sample frames only
    return np.frombuffer(data, dtype="<i2", count=count).astype(np.int16)


def _decode_with_av(
    name: str, *, layout: str, channels: int, sample_rate: int, progress: ProgressCallback | None
) -> npt.NDArray[np.int16]:
    try:
        container = av.open(name, mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise AudioFileUnreadableError(
            f"{name}: cannot be opened as audio ({_reason(exc)})"
        ) from None
    with container:
        if not container.streams.audio:
            raise NoAudioStreamError(f"{name}: has no audio stream")
        stream = container.streams.audio[0]
        source_channels = stream.codec_context.layout.nb_channels
        if layout == "stereo" and source_channels != 2:
            raise NotStereoError(
                f"{name}: has {source_channels} audio channel(s); a stereo file needs "
                "exactly two (therapist left, client right)"
            )
        total = float(container.duration / av.time_base) if container.duration else None
        resampler: av.AudioResampler | None = None
        chunks: list[npt.NDArray[np.int16]] = []
        decoded = 0
        reported = 0.0
        try:
            for frame in container.decode(stream):
                if resampler is None and _already(frame, channels, sample_rate):
                    # Pass-through: the resampler would only copy (a third of the time).
                    chunks.append(_s16(frame))
                    decoded += frame.samples
                else:
                    resampler = resampler or av.AudioResampler(
                        format="s16", layout=layout, rate=sample_rate
                    )
                    for out in resampler.resample(frame):
                        chunks.append(_s16(out))
                        decoded += out.samples
                if progress is not None and decoded / sample_rate - reported >= _PROGRESS_STEP:
                    reported = decoded / sample_rate
                    progress(reported, total)
            if resampler is not None:
                chunks += [_s16(out) for out in resampler.resample(None)]
        except (av.FFmpegError, ValueError) as exc:
            raise AudioFileUnreadableError(f"{name}: decoding failed ({_reason(exc)})") from None
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def _already(frame: av.AudioFrame, channels: int, sample_rate: int) -> bool:
    return (
        frame.format.name == "s16"
        and frame.sample_rate == sample_rate
        and frame.layout.nb_channels == channels
    )


def _s16(frame: av.AudioFrame) -> npt.NDArray[np.int16]:
    """A packed s16 frame's samples, interleaved."""
    return np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1)


def _refuse_silent(track: AudioTrack, *, what: str) -> None:
    peak = track.peak_dbfs
    if peak < SILENCE_PEAK_DBFS:
        shown = "-inf" if math.isinf(peak) else f"{peak:.0f}"
        raise SilentAudioError(
            f"{what} is silent (peak {shown} dBFS, below {SILENCE_PEAK_DBFS:.0f} dBFS)"
        )


def _peak_dbfs(samples: npt.NDArray[np.int16]) -> float:
    if samples.size == 0:
        return -math.inf
    peak = int(np.max(np.abs(samples.astype(np.int32))))
    return 20.0 * math.log10(peak / _FULL_SCALE) if peak else -math.inf


def _reason(exc: BaseException) -> str:
    """FFmpeg's reason without the path it repeats; always one line."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(reason).split())
