"""One WHIP publisher: an aiortc peer connection that only receives, wired to a session.

Theory of operation: a participant's WHIP offer (RFC 9725 §4.2) is checked here before
aiortc sees it (:func:`parse_offer`: one audio and at most one video section, each
sending, with ICE credentials, a DTLS fingerprint and a codec aiortc can receive), so the
HTTP layer can answer 400 or 406 with a reason instead of a stack trace. Then a
``RTCPeerConnection`` (configured ICE servers only, none by default) takes the offer;
before ICE completes, every receiver it created gets the RTP hook (monitor/rtp_hook.py)
and, in metadata mode, loses its decoder.

Every track is drained by its own task for as long as the connection lives (LAB.md:
decoded frames queue without bound). In full mode, audio is decoded here: aiortc's
reassembled Opus (or G.711) frames are taken off the receiver before its decoder thread
(monitor/rtp_hook.py, ``tap_decoding``) and decoded straight to 16 kHz mono
(monitor/audio_decode.py), placed in time by their RTP timestamps (LAB.md: under loss
aiortc's jitter buffer drops frames, so arrival order and count mislead) and handed to
the session in contiguous 200 ms batches. That costs less than aiortc's 48 kHz stereo
decode and its thread hop per frame (bench/bench_ingest.py); without libopus, aiortc
decodes and the drain takes its frames by pts instead (:class:`_AudioPath`). Every video
frame aiortc decodes goes to the freeze timing rule, and at most five a second with a
Y-plane thumbnail for the identical-content check (no colour conversion: the Y plane is
already grey). In metadata mode nothing is decoded, so the drains only wait for the end
of their tracks.

The round trip of the connection's ICE consent checks is the participant's path RTT
(monitor/ice_rtt.py), for a publisher whose browser runs no beacon.

Content never leaves this module: PCM and thumbnails are handed to the probes and
dropped with the frame; nothing is logged but counts.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Protocol, cast

import numpy as np
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import CODECS
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcpeerconnection import find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket
from av import AudioFrame, VideoFrame

from monitor.audio_decode import (
    MAX_FRAME,
    PCM_RATE,
    AudioDecodeError,
    AudioDecoder,
    new_decoder,
    opus_available,
)
from monitor.config import IceServer, Mode
from monitor.ice_rtt import ConsentRtt, install_consent_rtt
from monitor.media_clock import MediaClock
from monitor.observations import MediaSpec
from monitor.rtp_hook import (
    DecoderTap,
    RtpHook,
    audio_level_dbov,
    disable_decoding,
    install_rtp_hook,
    tap_decoding,
    wire_size,
)
from monitor.session import Session
from probes.base import FeltsafeError, MediaKind, Role
from probes.content_freeze import thumbnail_from_y_plane
from probes.rtp import RtpHeader

logger = logging.getLogger(__name__)

MAX_OFFER_BYTES = 64 * 1024
AUDIO_BATCH = 0.2  # seconds of decoded audio per call into the speech probes
BATCH_TOLERANCE = 0.005  # seconds of pts mismatch that still counts as contiguous
_ENCODED_BATCH = round(AUDIO_BATCH * PCM_RATE)
THUMBNAIL_INTERVAL = 0.2 - 0.005  # at most five thumbnails a second (30 fps: every 6th)
_SENDING = {"sendonly", "sendrecv"}


class OfferError(FeltsafeError):
    """The peer's offer cannot be accepted; ``status`` is the HTTP answer (400 or 406)."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ParsedOffer:
    sdp: str
    media: tuple[MediaSpec, ...]


def parse_offer(text: str) -> ParsedOffer:
    """Check a WHIP offer; raise OfferError with a reason a publisher's developer can act on.

    Reasons never quote the offer: it is peer data (the websockets habit).
    """
    if not text.lstrip().startswith("v=0"):
        raise OfferError(HTTPStatus.BAD_REQUEST, "malformed SDP: must start with v=0")
    try:
        description = aiortc_sdp.SessionDescription.parse(text)
    except Exception as exc:  # aiortc's parser raises whatever its input provokes
        raise OfferError(
            HTTPStatus.BAD_REQUEST, f"malformed SDP: unparsable ({type(exc).__name__})"
        ) from None
    kinds = [m.kind for m in description.media]
    if not kinds:
        raise OfferError(HTTPStatus.BAD_REQUEST, "malformed SDP: no media section")
    if any(kind not in ("audio", "video") for kind in kinds):
        raise OfferError(HTTPStatus.BAD_REQUEST, "only audio and video media are accepted")
    if kinds.count("audio") > 1 or kinds.count("video") > 1:
        raise OfferError(HTTPStatus.BAD_REQUEST, "at most one audio and one video section")
    specs = []
    for media in description.media:
        specs.append(_check_media(media))
    return ParsedOffer(sdp=text, media=tuple(specs))


def _check_media(media: aiortc_sdp.MediaDescription) -> MediaSpec:
    kind = MediaKind(media.kind)
    if media.direction is not None and media.direction not in _SENDING:
        raise OfferError(HTTPStatus.BAD_REQUEST, f"the {kind} section does not send media")
    if not (media.ice and media.ice.usernameFragment and media.ice.password):
        raise OfferError(HTTPStatus.BAD_REQUEST, f"the {kind} section lacks ICE credentials")
    if not (media.dtls and media.dtls.fingerprints):
        raise OfferError(HTTPStatus.BAD_REQUEST, f"the {kind} section lacks a DTLS fingerprint")
    if not media.rtcp_mux:
        raise OfferError(HTTPStatus.BAD_REQUEST, f"the {kind} section needs a=rtcp-mux")
    common = find_common_codecs(CODECS[kind.value], media.rtp.codecs)
    media_codecs = [c for c in common if not c.mimeType.lower().endswith("/rtx")]
    if not media_codecs:
        supported = sorted(
            {c.mimeType.split("/")[1] for c in CODECS[kind.value]} - {"rtx"}, key=str.lower
        )
        raise OfferError(
            HTTPStatus.NOT_ACCEPTABLE,
            f"no supported {kind} codec offered (supported: {', '.join(supported)})",
        )
    rtx: dict[int, int] = {}
    for codec in common:
        apt = codec.parameters.get("apt")
        if codec.mimeType.lower().endswith("/rtx") and isinstance(apt, int):
            rtx[_payload_type(codec)] = apt
    fid = {
        int(group.items[1]): int(group.items[0])
        for group in media.ssrc_group
        if group.semantic == "FID" and len(group.items) == 2
    }
    return MediaSpec(
        kind=kind,
        clock_rates={_payload_type(c): int(c.clockRate) for c in media_codecs},
        rtx_payload_types=rtx,
        rtx_ssrcs=fid,
        codec_names={_payload_type(c): c.mimeType.split("/")[1] for c in media_codecs},
    )


def _payload_type(codec: RTCRtpCodecParameters) -> int:
    # Parsed from an a=rtpmap line, so always set (aiortc types it Optional).
    assert codec.payloadType is not None
    return codec.payloadType


class Publisher:
    """The receive side of one participant's WHIP session (see the module docstring)."""

    def __init__(
        self,
        session: Session,
        role: Role,
        *,
        ice_servers: Sequence[IceServer] = (),
        clock: Callable[[], float],
        on_failed: Callable[[Publisher], None],
    ) -> None:
        self.session = session
        self.role = role
        self.mode = session.mode
        self.resource_id = secrets.token_urlsafe(16)
        self._clock = clock
        self._on_failed = on_failed
        self._pc = RTCPeerConnection(
            RTCConfiguration(
                iceServers=[
                    RTCIceServer(list(s.urls), s.username, s.credential) for s in ice_servers
                ]
            )
        )
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._hooks: list[RtpHook] = []
        self._taps: list[DecoderTap] = []
        self._consent_rtt: ConsentRtt | None = None
        # Full mode decodes audio itself (monitor/audio_decode.py) when libopus is here.
        self.decode_audio_here = opus_available()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.decode_errors = 0

    @property
    def packets_seen(self) -> int:
        return sum(hook.packets_seen for hook in self._hooks)

    @property
    def encoded_frames_seen(self) -> int:
        """Audio frames taken off aiortc to decode here (0 when aiortc decodes)."""
        return sum(tap.frames_seen for tap in self._taps)

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    async def start(self, offer: ParsedOffer) -> str:
        """Accept the offer; return the answer SDP (ICE candidates gathered, no trickle)."""
        for spec in offer.media:
            self.session.configure_media(self.role, spec)
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
        except Exception as exc:
            raise OfferError(
                HTTPStatus.BAD_REQUEST, f"offer rejected by the WebRTC stack ({type(exc).__name__})"
            ) from None
        for transceiver in self._pc.getTransceivers():
            kind = MediaKind(transceiver.kind)
            receiver = transceiver.receiver
            path: _FramePath | None = None
            if self.mode is Mode.METADATA:
                disable_decoding(receiver)
            elif kind is MediaKind.VIDEO:
                path = _VideoPath(self.session, self.role)
            elif self.decode_audio_here:
                audio = _EncodedAudioPath(self.session, self.role, clock=self._clock, errors=self)
                self._taps.append(tap_decoding(receiver, audio.on_encoded))
            else:
                path = _AudioPath(self.session, self.role)
            self._hooks.append(
                install_rtp_hook(receiver, self._packet_callback(kind), clock=self._clock)
            )
            self._spawn(self._drain(kind, receiver.track, path))
        await self._pc.setLocalDescription(await self._pc.createAnswer())
        self._consent_rtt = install_consent_rtt(self._pc, self._on_path_rtt, clock=self._clock)
        return str(self._pc.localDescription.sdp)

    def _on_path_rtt(self, rtt_ms: float, now: float) -> None:
        self.session.on_path_rtt(self.role, rtt_ms, now=now)

    async def close(self) -> None:
        """Close the connection and end every task it started; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._pc.close()
        for hook in self._hooks:
            hook.uninstall()
        if self._consent_rtt is not None:
            self._consent_rtt.uninstall()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- the RTP path -------------------------------------------------------------------

    def _packet_callback(self, kind: MediaKind) -> Callable[[RtpPacket, float], None]:
        on_rtp = self.session.on_rtp
        role = self.role

        def on_packet(packet: RtpPacket, now: float) -> None:
            # Positional: a third cheaper than keywords, on every packet.
            header = RtpHeader(
                packet.ssrc,  # ssrc
                packet.sequence_number,  # sequence_number
                packet.timestamp,  # timestamp
                packet.payload_type,  # payload_type
                bool(packet.marker),  # marker
                wire_size(packet),  # size_bytes
                audio_level_dbov(packet),  # audio_level_dbov
            )
            on_rtp(role, kind, header, now=now)

        return on_packet

    # -- the decoded path ---------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(
        self, kind: MediaKind, track: MediaStreamTrack, path: _FramePath | None
    ) -> None:
        """Receive every frame of ``track`` until it ends and hand it to ``path``.

        Without a path (metadata mode, or audio decoded here from the tap) aiortc decodes
        nothing for this track: a frame would be a stray, dropped.
        """
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if path is None:
                continue
            try:
                path.on_frame(frame, self._clock())
            except Exception:
                self.count_decode_error(f"analysing a decoded {kind} frame failed")

    def count_decode_error(self, what: str) -> None:
        self.decode_errors += 1
        if self.decode_errors == 1:
            logger.warning("%s (counted; further failures quiet)", what, exc_info=True)

    def _on_connection_state(self) -> None:
        if self._pc.connectionState in ("failed", "closed") and not self._closed:
            self._on_failed(self)


class _FramePath(Protocol):
    def on_frame(self, frame: object, now: float) -> None: ...


class _ErrorCounter(Protocol):
    def count_decode_error(self, what: str) -> None: ...


class _EncodedAudioPath:
    """Encoded audio from the decoder tap -> 16 kHz mono, by RTP timestamp, ~200 ms batches.

    Decoded here (monitor/audio_decode.py) straight into one batch buffer; a batch is
    contiguous audio (a gap in RTP time, frames the jitter buffer dropped, ends it early)
    and goes to the speech probes in one call, as :class:`_AudioPath` does for frames
    aiortc decoded. A frame of a codec with no decoder here, or one that fails to
    decode, is counted and skipped.
    """

    __slots__ = (
        "_buffer",
        "_clock",
        "_decoders",
        "_errors",
        "_filled",
        "_media_clock",
        "_role",
        "_session",
        "_start",
    )

    def __init__(
        self, session: Session, role: Role, *, clock: Callable[[], float], errors: _ErrorCounter
    ) -> None:
        self._session = session
        self._role = role
        self._clock = clock
        self._errors = errors
        self._decoders: dict[str, AudioDecoder | None] = {}
        self._media_clock = MediaClock()
        self._buffer = np.empty(_ENCODED_BATCH + MAX_FRAME, dtype=np.int16)
        self._filled = 0
        self._start = 0.0

    def on_encoded(self, codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
        now = self._clock()
        name = codec.name
        if name not in self._decoders:
            self._decoders[name] = new_decoder(name)
        decoder = self._decoders[name]
        if decoder is None:
            self._errors.count_decode_error(f"no decoder here for {name} audio")
            return
        at = self._media_clock.place(frame.timestamp / codec.clockRate, now)
        filled = self._filled
        if filled and abs(at - (self._start + filled / PCM_RATE)) > BATCH_TOLERANCE:
            self._flush()
            filled = 0
        try:
            samples = decoder.decode_into(frame.data, self._buffer[filled:])
        except AudioDecodeError:
            self._errors.count_decode_error(f"undecodable {name} audio frame")
            return
        if not filled:
            self._start = at
        self._filled = filled + samples
        if self._filled >= _ENCODED_BATCH:
            self._flush()

    def _flush(self) -> None:
        pcm = self._buffer[: self._filled].copy()
        self._filled = 0
        self._session.on_audio_frame(self._role, pcm, PCM_RATE, now=self._start)


class _AudioPath:
    """Decoded audio -> mono int16, placed by pts, handed on in ~200 ms batches.

    The speech probes cost mostly per call (numpy set-up), so ten 20 ms Opus frames go
    in one call: about 1.1 % of a core per session instead of 4.5 % frame by frame
    (bench/bench_ingest.py). Their decisions wait up to 0.5 s for the crosstalk gate
    anyway. A gap in pts (frames the jitter buffer dropped) ends a batch early, so every
    batch is contiguous audio.
    """

    __slots__ = (
        "_clock",
        "_pieces",
        "_rate",
        "_role",
        "_samples",
        "_session",
        "_start",
        "_time_base",
    )

    def __init__(self, session: Session, role: Role) -> None:
        self._session = session
        self._role = role
        self._clock = MediaClock()
        self._pieces: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._start = 0.0
        self._rate = 0
        self._samples = 0
        self._time_base: tuple[object, float] = (None, 0.0)

    def on_frame(self, frame: object, now: float) -> None:
        if not isinstance(frame, AudioFrame):
            return
        samples = frame.to_ndarray()
        channels = len(frame.layout.channels)
        mono = samples[0] if frame.format.is_planar else samples[0, ::channels]
        if mono.dtype.kind == "f":  # a float decoder (not aiortc's Opus): scale to s16
            mono = np.clip(mono * 32767.0, -32768, 32767)
        time_base = frame.time_base
        if frame.pts is not None and time_base is not None:
            if time_base != self._time_base[0]:  # Fraction arithmetic is slow: once a stream
                self._time_base = (time_base, float(time_base))
            at = self._clock.place(frame.pts * self._time_base[1], now)
        else:
            at = now
        rate = frame.sample_rate
        if self._pieces and (
            rate != self._rate or abs(at - (self._start + self._samples / rate)) > BATCH_TOLERANCE
        ):
            self._flush()
        if not self._pieces:
            self._start, self._rate = at, rate
        self._pieces.append(mono.astype(np.int16, copy=False))
        self._samples += len(mono)
        if self._samples >= AUDIO_BATCH * rate:
            self._flush()

    def _flush(self) -> None:
        pcm = np.concatenate(self._pieces) if len(self._pieces) > 1 else self._pieces[0].copy()
        self._session.on_audio_frame(self._role, pcm, self._rate, now=self._start)
        self._pieces = []
        self._samples = 0


class _VideoPath:
    """Decoded video -> frame timing (every frame) and a Y-plane thumbnail (5 a second).

    The W3C timing rule needs every frame; the identical-content check needs a picture
    only often enough to see 1 s of stillness, and its comparison is the costly part, so
    thumbnails go at most every ``THUMBNAIL_INTERVAL``.
    """

    __slots__ = ("_last_thumbnail", "_role", "_session")

    def __init__(self, session: Session, role: Role) -> None:
        self._session = session
        self._role = role
        self._last_thumbnail = float("-inf")

    def on_frame(self, frame: object, now: float) -> None:
        if not isinstance(frame, VideoFrame):
            return
        thumbnail = None
        if now - self._last_thumbnail >= THUMBNAIL_INTERVAL:
            self._last_thumbnail = now
            plane = frame.planes[0]
            buffer = cast(Any, plane)  # a VideoPlane exposes the buffer protocol
            luma = np.frombuffer(buffer, dtype=np.uint8).reshape(plane.height, plane.line_size)
            thumbnail = thumbnail_from_y_plane(luma[:, : plane.width])
        self._session.on_video_frame(self._role, thumbnail, now=now, frame_id=frame.pts)
