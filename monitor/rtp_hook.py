"""The two places where feltsafe reaches inside aiortc's RTCRtpReceiver (pinned ~=1.16.0).

Theory of operation: aiortc parses every received RTP packet, RFC 6464 audio level
included (``packet.extensions.audio_level``), then keeps all of it private. The DTLS
transport's router hands each packet to ``receiver._handle_rtp_packet(packet,
arrival_time_ms=...)``, looked up *on the instance* at call time. So :func:`install_rtp_hook`
sets an instance attribute on the receivers the monitor creates (never on the class:
other receivers in the process, a test's own peers for one, are untouched) that first
passes the header fields and the arrival time, read from the monitor's monotonic clock, to
a callback, then calls aiortc's own method (NACK, PLI, REMB, RTCP receiver reports and
decoding keep working).

Metadata mode decodes nothing (DESIGN.md, non-negotiable 2). aiortc starts one decoder
thread per receiver and feeds it through ``__decoder_queue``; :func:`disable_decoding`
swaps that queue, before the receiver starts, for one that drops encoded frames and lets
only the stop sentinel through, so the thread idles (no CPU) and still ends, and ends the
track, when the receiver stops. :func:`tap_decoding` swaps in one that hands each
encoded frame to the monitor instead (full mode's audio: monitor/audio_decode.py
decodes it to 16 kHz mono itself, cheaper than aiortc's 48 kHz stereo and its thread
hop per frame). Depacketisation and the jitter buffer still run in
aiortc's Python path: they cost microseconds a packet (bench/bench_ingest.py measures it).

Both touch private names. :func:`check_aiortc_internals` fails loudly at start-up if
they moved, and tests/monitor/test_hook_aiortc.py fails if packets stop reaching the
hook. A callback that raises is counted and logged once, never propagated: an exception
inside ``_handle_rtp_packet`` would end aiortc's transport loop for the whole connection.
"""

from __future__ import annotations

import functools
import inspect
import logging
import queue
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from probes.base import FeltsafeError

logger = logging.getLogger(__name__)

RtpCallback = Callable[[RtpPacket, float], None]
EncodedFrameCallback = Callable[[RTCRtpCodecParameters, JitterFrame], None]
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_RTP_FIXED_HEADER_BYTES = 12
_SRTP_AUTH_TAG_BYTES = 10  # AES_CM_128_HMAC_SHA1_80, the profile aiortc negotiates


class HookUnavailableError(FeltsafeError):
    """aiortc's internals moved: the monitor cannot see RTP packets with this version."""


@functools.cache
def check_aiortc_internals() -> None:
    """Raise HookUnavailableError unless the private members this module uses are as expected."""
    method = getattr(RTCRtpReceiver, "_handle_rtp_packet", None)
    if method is None or not inspect.iscoroutinefunction(method):
        raise HookUnavailableError("aiortc RTCRtpReceiver._handle_rtp_packet is gone")
    parameters = list(inspect.signature(method).parameters)
    if parameters != ["self", "packet", "arrival_time_ms"]:
        raise HookUnavailableError(
            f"aiortc RTCRtpReceiver._handle_rtp_packet changed signature: {parameters}"
        )
    source = inspect.getsource(RTCRtpReceiver.__init__)
    if "self.__decoder_queue" not in source:
        raise HookUnavailableError("aiortc RTCRtpReceiver no longer has a decoder queue")
    if "self.__decoder_queue.put((codec, encoded_frame))" not in inspect.getsource(method):
        raise HookUnavailableError(
            "aiortc RTCRtpReceiver no longer queues (codec, encoded_frame) for decoding"
        )


def wire_size(packet: RtpPacket) -> int:
    """The size of the packet as it arrived (SRTP), from its parsed fields.

    aiortc keeps no copy of the datagram; header extensions are not counted (a few
    bytes), which only matters for bit rates, never for loss or jitter.
    """
    return (
        _RTP_FIXED_HEADER_BYTES
        + 4 * len(packet.csrc)
        + len(packet.payload)
        + packet.padding_size
        + _SRTP_AUTH_TAG_BYTES
    )


def audio_level_dbov(packet: RtpPacket) -> int | None:
    """The RFC 6464 level (0..127, meaning -dBov), ignoring the V bit (LAB.md)."""
    level = packet.extensions.audio_level
    if level is None:
        return None
    return int(level[1])


class RtpHook:
    """One installed hook; counts what it saw so a watchdog or a test can check it."""

    __slots__ = ("_original", "_receiver", "callback_errors", "packets_seen")

    def __init__(self, receiver: RTCRtpReceiver, original: Callable[..., Awaitable[None]]):
        self._receiver: RTCRtpReceiver | None = receiver
        self._original = original
        self.packets_seen = 0
        self.callback_errors = 0

    def uninstall(self) -> None:
        """Remove the instance attribute (breaks the receiver -> hook reference cycle)."""
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.__dict__.pop("_handle_rtp_packet", None)


def install_rtp_hook(
    receiver: RTCRtpReceiver, callback: RtpCallback, *, clock: Callable[[], float]
) -> RtpHook:
    """Call ``callback(packet, now)`` for every RTP packet ``receiver`` is handed."""
    check_aiortc_internals()
    if "_handle_rtp_packet" in receiver.__dict__:
        raise HookUnavailableError("this receiver is already hooked")
    original = receiver._handle_rtp_packet
    hook = RtpHook(receiver, original)

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        hook.packets_seen += 1
        try:
            callback(packet, clock())
        except Exception:
            hook.callback_errors += 1
            if hook.callback_errors == 1:
                logger.exception("RTP hook callback failed (counted; further failures quiet)")
        await original(packet, arrival_time_ms=arrival_time_ms)

    # An instance attribute shadows the class's method for this receiver only.
    receiver.__dict__["_handle_rtp_packet"] = handle_rtp_packet
    return hook


class _DiscardingQueue(queue.Queue[Any]):
    """A decoder input queue that drops encoded frames and passes the stop sentinel."""

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)


class DecoderTap(_DiscardingQueue):
    """A decoder input queue that hands each encoded frame to a callback instead.

    aiortc puts ``(codec, encoded_frame)`` from ``_handle_rtp_packet``, on the event
    loop, so the callback runs there, synchronously. Like the RTP hook, a callback that
    raises is counted and logged once, never propagated into aiortc's transport loop.
    """

    def __init__(self, callback: EncodedFrameCallback) -> None:
        super().__init__()
        self._callback = callback
        self.frames_seen = 0
        self.callback_errors = 0

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(item, block, timeout)
            return
        self.frames_seen += 1
        codec, frame = item
        try:
            self._callback(codec, frame)
        except Exception:
            self.callback_errors += 1
            if self.callback_errors == 1:
                logger.exception("encoded-frame callback failed (counted; further failures quiet)")


def disable_decoding(receiver: RTCRtpReceiver) -> None:
    """Make ``receiver`` decode nothing. Call before it starts (before ICE completes)."""
    _replace_decoder_queue(receiver, _DiscardingQueue())


def tap_decoding(receiver: RTCRtpReceiver, callback: EncodedFrameCallback) -> DecoderTap:
    """Hand ``receiver``'s encoded frames to ``callback`` instead of aiortc's decoder.

    ``callback(codec, frame)`` gets the negotiated codec (``codec.name``, ``clockRate``)
    and aiortc's reassembled frame (``frame.data``; ``frame.timestamp``, the RTP
    timestamp unwrapped from the stream's first frame). The track yields no frames and
    ends when the receiver stops, as with :func:`disable_decoding`.
    """
    tap = DecoderTap(callback)
    _replace_decoder_queue(receiver, tap)
    return tap


def _replace_decoder_queue(receiver: RTCRtpReceiver, replacement: queue.Queue[Any]) -> None:
    """Swap aiortc's decoder input queue; before the receiver starts (before ICE completes)."""
    check_aiortc_internals()
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise HookUnavailableError("the receiver's decoder already started")
    if not isinstance(getattr(receiver, _DECODER_QUEUE, None), queue.Queue):
        raise HookUnavailableError("aiortc RTCRtpReceiver decoder queue not found")
    setattr(receiver, _DECODER_QUEUE, replacement)
