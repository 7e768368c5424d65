"""Decode received audio straight to what webrtcvad takes: 16-bit mono PCM at 16 kHz.

Theory of operation: in full mode the monitor needs one thing from a participant's audio,
16 kHz mono for the speech detector (probes/speech.py). aiortc's own path decodes every
Opus frame to 48 kHz interleaved stereo in a thread per receiver and hands each frame
back to the event loop as a task (``run_coroutine_threadsafe``), after which the monitor
takes one channel and the detector averages three samples into one. The publisher
(monitor/publisher.py) takes the encoded frames off aiortc's receiver instead
(monitor/rtp_hook.py, :func:`~monitor.rtp_hook.tap_decoding`) and decodes them here:

- Opus with libopus itself (ctypes), asked for 16 kHz mono: libopus decodes SILK at its
  native rate and resamples CELT internally, no stereo, no decimation. FFmpeg's libopus
  wrapper (PyAV) always asks libopus for 48 kHz, so it cannot do this. About 40 % less
  decoding than 48 kHz stereo here, and no thread hop per frame;
- G.711 (PCMU, PCMA) with the ITU-T G.711 expansion tables, each 8 kHz sample repeated
  twice to 16 kHz (webrtcvad would take 8 kHz, the detector's grid is 16 kHz; the band
  above 4 kHz is empty either way).

libopus is the Debian ``libopus0`` library when the system has one, else the copy PyAV's
wheel bundles (aiortc's own decoder uses that copy): :func:`load_libopus` finds either.
Without libopus, :func:`new_decoder` returns None and the publisher leaves decoding to
aiortc (its previous path: slower, same results).

Content: PCM lives in the caller's buffer and goes to the speech probes; nothing here
keeps, logs or writes audio. A frame the decoder rejects (corrupt, empty) raises
:class:`AudioDecodeError`, which the caller counts; the decoder stays usable.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os
import weakref
from typing import Final, Protocol

import av
import numpy as np
import numpy.typing as npt

from probes.base import FeltsafeError

PCM_RATE: Final = 16000  # what the speech detector runs at (probes/speech.py VAD_RATE)
MAX_FRAME: Final = PCM_RATE * 120 // 1000  # the longest Opus packet: 120 ms, 1920 samples

Pcm = npt.NDArray[np.int16]


class AudioDecodeError(FeltsafeError):
    """One encoded frame could not be decoded (counted by the caller)."""


class AudioDecoder(Protocol):
    """Decodes one encoded frame into ``out`` (int16, at :data:`PCM_RATE`); returns samples."""

    def decode_into(self, data: bytes, out: Pcm) -> int: ...


# -- libopus ------------------------------------------------------------------------------


@functools.cache
def load_libopus() -> ctypes.CDLL | None:
    """The libopus shared library (system first, then PyAV's bundled copy), or None."""
    candidates = []
    system = ctypes.util.find_library("opus")
    if system:
        candidates.append(system)
    package = os.path.dirname(av.__file__)  # where PyAV's wheel put its libraries
    for pattern in ("../av.libs/libopus*.so*", ".dylibs/libopus*.dylib"):
        candidates += sorted(glob.glob(os.path.join(package, pattern)))
    for name in candidates:
        try:
            lib = ctypes.CDLL(name)
            _declare(lib)
        except (OSError, AttributeError):
            continue
        return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    lib.opus_decoder_create.restype = ctypes.c_void_p
    lib.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.opus_decoder_destroy.restype = None
    lib.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    lib.opus_decode.restype = ctypes.c_int
    lib.opus_decode.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_int32,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.opus_strerror.restype = ctypes.c_char_p
    lib.opus_strerror.argtypes = [ctypes.c_int]


class OpusDecoder:
    """One Opus stream decoded by libopus to mono at :data:`PCM_RATE` (state across frames)."""

    __slots__ = ("__weakref__", "_decode", "_lib", "_state")

    def __init__(self, lib: ctypes.CDLL) -> None:
        error = ctypes.c_int()
        state = lib.opus_decoder_create(PCM_RATE, 1, ctypes.byref(error))
        if not state or error.value != 0:
            raise AudioDecodeError(f"libopus refused a decoder: {_strerror(lib, error.value)}")
        self._lib = lib
        self._state = state
        self._decode = lib.opus_decode
        weakref.finalize(self, lib.opus_decoder_destroy, state)

    def decode_into(self, data: bytes, out: Pcm) -> int:
        # An empty frame would ask libopus to conceal a lost one: not audio we received.
        if not data:
            raise AudioDecodeError("empty Opus frame")
        if len(out) < MAX_FRAME or out.dtype != np.int16 or not out.flags.c_contiguous:
            raise ValueError("out must be contiguous int16 with room for 120 ms")
        samples: int = self._decode(self._state, data, len(data), out.ctypes.data, len(out), 0)
        if samples < 0:
            raise AudioDecodeError(f"corrupt Opus frame: {_strerror(self._lib, samples)}")
        return samples


def _strerror(lib: ctypes.CDLL, code: int) -> str:
    message = lib.opus_strerror(code)
    return message.decode("ascii", "replace") if message else f"error {code}"


# -- G.711 --------------------------------------------------------------------------------


def _ulaw_table() -> Pcm:
    """ITU-T G.711 mu-law expansion of each of the 256 codes (the classic reference)."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    magnitude = (((code & 0x0F) << 3) + 0x84) << exponent
    value = magnitude - 0x84
    return np.where(code & 0x80, -value, value).astype(np.int16)


def _alaw_table() -> Pcm:
    """ITU-T G.711 A-law expansion of each of the 256 codes."""
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code & 0x70) >> 4
    mantissa = (code & 0x0F) << 4
    value = np.where(exponent == 0, mantissa + 8, (mantissa + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(code & 0x80, value, -value).astype(np.int16)


_G711_TABLES: Final = {"pcmu": _ulaw_table(), "pcma": _alaw_table()}


class G711Decoder:
    """PCMU or PCMA at 8 kHz, each sample repeated to :data:`PCM_RATE` (stateless)."""

    __slots__ = ("_table",)

    def __init__(self, name: str) -> None:
        self._table = _G711_TABLES[name.lower()]

    def decode_into(self, data: bytes, out: Pcm) -> int:
        if not data:
            raise AudioDecodeError("empty G.711 frame")
        count = 2 * len(data)
        if count > len(out):
            raise AudioDecodeError(f"G.711 frame of {len(data)} samples is too long")
        expanded = self._table[np.frombuffer(data, dtype=np.uint8)]
        out[0:count:2] = expanded
        out[1:count:2] = expanded
        return count


def new_decoder(codec_name: str) -> AudioDecoder | None:
    """A decoder for an RTP audio codec (``opus``, ``PCMU``, ``PCMA``); None if not here."""
    name = codec_name.lower()
    if name in _G711_TABLES:
        return G711Decoder(name)
    if name == "opus":
        lib = load_libopus()
        return None if lib is None else OpusDecoder(lib)
    return None


def opus_available() -> bool:
    return load_libopus() is not None
