"""One participant of a live session: the probes on the media they send, and presence.

Theory of operation: a participant (therapist or client) reaches the monitor through
up to two *attachments*: a WHIP publisher (their media, through the RTP hook and, in full
mode, the decoders) and a beacon (their browser's view of the *other* participant's
media, and their own microphone level). This class owns, for the media the participant
sends:

- RTP statistics per media kind (probes/rtp.py), fed header fields in both modes;
- the W3C timing freeze (probes/freeze.py), fed decoded frames in full mode and RTP
  frames (probes/rtp_frames.py) in metadata mode;
- the identical-content freeze, fed Y-plane thumbnails in full mode;
- the speech detector: webrtcvad on decoded PCM in full mode, the RFC 6464 level (or the
  beacon's microphone level) in metadata mode;
- the RTT of their path: the browser's own figure from their beacon when there is one,
  else the round trip of the WHIP connection's ICE consent checks (monitor/ice_rtt.py);
- what the other participant's browser reports about their media
  (monitor/beacon_view.py), used where the monitor does not see the stream.

Presence: ``last_seen`` moves with every packet, report and level sample. The media is
*interrupted* when a WHIP-attached participant's packets stop for ``interrupted_after``
(2 s, Jitsi and mediasoup); the participant is *gone* when nothing at all arrived for
``gone_after``; the session acts on both (monitor/session.py).

Clock: every method takes ``now``, monotonic seconds of the session's clock. Nothing here
reads a clock or does I/O; bad input is counted by the probe that sees it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from enum import StrEnum

from monitor.beacon_view import BeaconInboundSignals, BeaconInboundView
from monitor.config import Mode
from monitor.media_clock import RtpTimestampClock
from monitor.observations import InboundStreamStats, MediaSpec
from probes.base import MediaKind, Role
from probes.content_freeze import Thumbnail
from probes.rtp import RtpHeader, RtpReceiveStats, RtpStreamSnapshot
from probes.rtt import RttEstimator
from probes.video import VideoFreezeEvent, VideoFreezeProbe, VideoFreezeSnapshot


class Attachment(StrEnum):
    """How a participant reaches the monitor."""

    WHIP = "whip"
    BEACON = "beacon"


class LeftReason(StrEnum):
    DELETED = "deleted"  # WHIP DELETE: the participant hung up on purpose
    CONNECTION_FAILED = "connection_failed"  # ICE/DTLS failed or closed under us
    NO_MEDIA = "no_media"  # nothing arrived for gone_after seconds
    SESSION_ENDED = "session_ended"


Wake = Callable[[float], None]
PATH_RTT_MAX_AGE = 15.0
DEFAULT_PTIME = 0.02  # RFC 7587: Opus in WebRTC sends 20 ms packets
MIN_PTIME = 0.0025


class Participant:
    """Probes and presence of one participant's media (see the module docstring)."""

    def __init__(self, role: Role, *, mode: Mode, wake: Wake) -> None:
        self.role = role
        self.mode = mode
        self.rtp: dict[MediaKind, RtpReceiveStats] = {}
        self._wake = wake
        self.video = VideoFreezeProbe()
        self._video_ssrc: int | None = None
        self._video_payload_types: frozenset[int] = frozenset()
        self._audio_rates: dict[int, int] = {}
        self._level_clock = RtpTimestampClock()
        self._level_ssrc: int | None = None
        self._ptime: float | None = None
        self.rtt = RttEstimator()  # the beacon's: the browser's own view of its call
        # ICE consent checks of the WHIP publisher (monitor/ice_rtt.py): one every 4-6 s,
        # so a sample stays good for three of them.
        self.path_rtt = RttEstimator(max_age=PATH_RTT_MAX_AGE)
        self.beacon_view = {kind: BeaconInboundView(kind) for kind in MediaKind}
        self.attachments: set[Attachment] = set()
        self.joined_at: float | None = None
        self.last_seen = -math.inf
        self.last_packet = -math.inf
        self.left_reason: LeftReason | None = None
        self.unknown_media_packets = 0

    # -- presence ---------------------------------------------------------------------

    def attach(self, via: Attachment, *, now: float) -> None:
        if via is Attachment.WHIP:
            # A new publisher: its media starts afresh (new SSRCs, new clock).
            self.rtp.clear()
            self.video = VideoFreezeProbe()
            self._video_ssrc = None
            self._level_ssrc = None
            self.last_packet = now  # the 2 s interruption clock starts at the offer
        self.attachments.add(via)
        self.joined_at = now if self.joined_at is None else self.joined_at
        self.left_reason = None
        self.last_seen = max(self.last_seen, now)

    def detach(self, via: Attachment, *, reason: LeftReason) -> None:
        self.attachments.discard(via)
        if not self.attachments:
            self.left_reason = reason

    @property
    def present(self) -> bool:
        return bool(self.attachments)

    def media_interrupted(self, *, now: float, after: float) -> bool | None:
        """No packets for ``after`` seconds (None: we never received this participant)."""
        if Attachment.WHIP in self.attachments:
            return now >= self.last_packet + after  # as the deadline is computed
        if self.left_reason in (LeftReason.CONNECTION_FAILED, LeftReason.NO_MEDIA):
            return self.last_packet > -math.inf or self.joined_at is not None
        return None

    # -- media ------------------------------------------------------------------------

    def configure_media(self, spec: MediaSpec) -> None:
        stats = RtpReceiveStats(
            clock_rates=spec.clock_rates, rtx_payload_types=spec.rtx_payload_types
        )
        for rtx_ssrc, media_ssrc in spec.rtx_ssrcs.items():
            stats.associate_rtx(rtx_ssrc=rtx_ssrc, media_ssrc=media_ssrc)
        self.rtp[spec.kind] = stats
        if spec.kind is MediaKind.VIDEO:
            self._video_payload_types = frozenset(spec.clock_rates)
        else:
            self._audio_rates = dict(spec.clock_rates)

    def on_rtp(self, kind: MediaKind, header: RtpHeader, *, now: float) -> None:
        stats = self.rtp.get(kind)
        if stats is None:
            self.unknown_media_packets += 1
            return
        stats.on_packet(header, now=now)
        self.last_packet = now
        self.last_seen = now
        if kind is MediaKind.VIDEO and self.mode is Mode.METADATA:
            self._rtp_frame(header, now)

    def _rtp_frame(self, header: RtpHeader, now: float) -> None:
        # Frames come from the media stream only: an RTX packet repeats an old timestamp.
        if header.payload_type not in self._video_payload_types:
            return
        if self._video_ssrc is None:
            self._video_ssrc = header.ssrc
        if header.ssrc == self._video_ssrc:
            frames = self.video.rtp_frames.frame_count
            self.video.on_rtp_packet(rtp_timestamp=header.timestamp, marker=header.marker, now=now)
            if self.video.rtp_frames.frame_count != frames:
                self._wake_at_video_deadline()

    def level_interval(self, header: RtpHeader, *, now: float) -> tuple[float, float] | None:
        """(end, duration) on the session clock of the audio an RFC 6464 level describes.

        Placed by RTP timestamp, not arrival; None for a packet without a level, of an
        unknown payload type, or older than the newest (late or duplicate).
        """
        rate = self._audio_rates.get(header.payload_type)
        if rate is None or header.audio_level_dbov is None:
            return None
        if header.ssrc != self._level_ssrc:
            self._level_ssrc = header.ssrc
            self._level_clock = RtpTimestampClock()
        placed = self._level_clock.place(header.timestamp, rate, now)
        if placed is None:
            return None
        start, step = placed
        if step >= MIN_PTIME and (self._ptime is None or step < self._ptime):
            self._ptime = step  # the packet duration: the smallest step seen (loss skips)
        ptime = self._ptime or DEFAULT_PTIME
        return start + ptime, ptime

    def on_video_frame(
        self, thumbnail: Thumbnail | None, *, now: float, frame_id: int | None = None
    ) -> None:
        """A decoded frame (full mode): the timing rule, and the content check."""
        self.video.on_frame(now=now, thumbnail=thumbnail, frame_id=frame_id)
        self._wake_at_video_deadline()

    def _wake_at_video_deadline(self) -> None:
        # A new frame moves the freeze deadline, possibly before the next regular tick.
        deadline = self.video.next_deadline()
        if deadline is not None:
            self._wake(deadline)

    def on_inbound_report(self, stats: InboundStreamStats, *, now: float) -> None:
        """The other participant's browser's view of this participant's media."""
        self.beacon_view[stats.kind].on_stats(stats, now=now)
        self.last_seen = max(self.last_seen, now)

    def on_rtt(self, rtt_ms: float, *, now: float) -> None:
        self.rtt.on_external_rtt(rtt_ms, now=now)
        self.last_seen = max(self.last_seen, now)

    def on_path_rtt(self, rtt_ms: float, *, now: float) -> None:
        """The round trip of this participant's path to the monitor (an ICE consent check)."""
        self.path_rtt.on_external_rtt(rtt_ms, now=now)

    def rtt_ms(self, *, now: float) -> float | None:
        """The beacon's RTT (the browser's own measurement) if fresh, else the ICE one."""
        beacon = self.rtt.rtt_ms(now=now)
        return beacon if beacon is not None else self.path_rtt.rtt_ms(now=now)

    # -- time -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (self.video.next_deadline(),) if d is not None]
        deadlines += [d for s in self.rtp.values() if (d := s.next_deadline()) is not None]
        return min(deadlines, default=None)

    def on_timer(self, *, now: float) -> None:
        self.video.on_timer(now=now)
        for stats in self.rtp.values():
            stats.on_timer(now=now)

    def drain_video_events(self) -> list[VideoFreezeEvent]:
        return self.video.drain_events()

    # -- output -----------------------------------------------------------------------

    def rtp_stream(self, kind: MediaKind, *, now: float) -> RtpStreamSnapshot | None:
        stats = self.rtp.get(kind)
        return None if stats is None else stats.snapshot(now=now).primary

    def video_snapshot(self, *, now: float) -> VideoFreezeSnapshot:
        return self.video.snapshot(now=now)

    def beacon_signals(self, kind: MediaKind, *, now: float) -> BeaconInboundSignals:
        return self.beacon_view[kind].signals(now=now)
