"""A monitored session: both participants' probes, the tick, and the Snapshot.

Theory of operation (the aioquic pattern, STYLE.md): this class is the session's core. It
does no I/O and reads no clock: every input and :meth:`on_timer` take ``now``, monotonic
seconds on the event loop's clock; :meth:`next_deadline` says when it next wants waking.
The asyncio driver (monitor/sessions.py, :class:`~monitor.sessions.LiveSession`) arms one
``loop.call_at`` timer on it, and re-arms earlier when an input calls the ``wake``
callback (a new video frame moves the freeze deadline before the next regular tick).

Ticks (DESIGN.md, "Data flow"): every ``tick_interval`` (0.25 s) on a fixed grid, and at
once when any deadline passes (a freeze begins, media stops, a participant goes), so an
ongoing freeze is in a snapshot within milliseconds of its W3C threshold, not at the
next grid point. :meth:`on_timer` returns the snapshot when it ticked, else None; the
events raised since the previous tick are then in :meth:`drain_events`.

Inputs (all take ``now``):

================================  ====================================================
``attach`` / ``detach``           a WHIP publisher or a beacon connection comes or goes
``configure_media``               negotiated payload types and RTX mapping (from SDP)
``on_rtp``                        one RTP header (both modes)
``on_audio_frame``                decoded PCM (full mode), placed in time by its pts
``on_video_frame``                a Y-plane thumbnail of a decoded frame (full mode)
``on_beacon_report``              a validated beacon report from one browser
``on_audio_level``                a microphone level sample from one browser's beacon
``on_path_rtt``                   the round trip of an ICE consent check (WHIP)
``set_marker``                    the therapist's "sensitive moment" marker
================================  ====================================================

Presence and the end of a session: a participant's media is *interrupted* after
``interrupted_after`` (2 s) without packets; a participant with nothing arriving for
``gone_after`` (20 s) is *gone* (``ParticipantLeft(reason=no_media)``: the driver closes
their publisher); a session in which nobody has been present for ``end_after`` (10 s)
*ends*. So a session whose participants both vanish ends 30 s after the last packet,
within the 40 s DESIGN.md allows, and a participant who reconnects within 10 s of the
other leaving keeps the session (and its conversation history).

Snapshot: every name of probes/signals.py's catalogue, ``None`` where unknown. Media
figures come from the monitor's own RTP statistics when it receives the stream (WHIP),
else from the other participant's browser (beacon).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitor.config import Mode
from monitor.live_speech import LiveSpeech, SpeechSource
from monitor.observations import BeaconReport, MediaSpec
from monitor.participant import Attachment, LeftReason, Participant
from monitor.sinks import SessionEvent
from probes.base import MediaKind, Role
from probes.content_freeze import Thumbnail
from probes.quality import estimate_quality
from probes.rtp import RtpHeader
from probes.signals import CATALOGUE, SignalValue

Snapshot = dict[str, SignalValue]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    tick_interval: float = 0.25  # DESIGN.md: a snapshot every 250 ms
    interrupted_after: float = 2.0  # DESIGN.md, Jitsi, mediasoup: 2 s without packets
    gone_after: float = 20.0
    end_after: float = 10.0  # gone_after + end_after <= 40 s (issue 4)


# Session events (past tense, content-free).
@dataclass(frozen=True, slots=True)
class ParticipantJoined:
    via: Attachment


@dataclass(frozen=True, slots=True)
class ParticipantLeft:
    via: Attachment | None  # None: every attachment at once (no media, session end)
    reason: LeftReason


@dataclass(frozen=True, slots=True)
class MediaInterrupted:
    last_packet: float


@dataclass(frozen=True, slots=True)
class MediaResumed:
    gap: float


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: str


def _nothing(_: float) -> None:
    return None


class Session:
    """The session's core state machine (see the module docstring)."""

    def __init__(
        self,
        session_id: str,
        *,
        mode: Mode,
        now: float,
        config: SessionConfig | None = None,
    ) -> None:
        self.id = session_id
        self.mode = mode
        self.config = config or SessionConfig()
        self.started_at = now
        self.ended = False
        self._wake: Callable[[float], None] = _nothing
        self.participants = {
            role: Participant(role, mode=mode, wake=self._request_wake) for role in Role
        }
        self._events: list[SessionEvent] = []
        self._next_tick = now + self.config.tick_interval
        self._nobody_since: float | None = now
        self._interrupted: dict[Role, bool] = dict.fromkeys(Role, False)
        self.speech = LiveSpeech(start=now)
        self._input_due = False
        self.bad_level_samples = 0

    # -- the driver's side --------------------------------------------------------------

    def set_wake(self, wake: Callable[[float], None]) -> None:
        """Install the driver's callback: "call on_timer no later than this time"."""
        self._wake = wake

    def _request_wake(self, at: float) -> None:
        self._wake(at)

    def _wake_now(self, now: float) -> None:
        # An input changed what the next tick reports (a participant left, media resumed):
        # that is not a deadline, so on_timer must not take the wake for an early one.
        self._input_due = True
        self._wake(now)

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`on_timer` has something to do; None once ended."""
        return None if self.ended else self._earliest_deadline()

    def _earliest_deadline(self) -> float:
        deadlines = [self._next_tick]
        config = self.config
        for role, participant in self.participants.items():
            deadline = participant.next_deadline()
            if deadline is not None:
                deadlines.append(deadline)
            if participant.present:
                deadlines.append(participant.last_seen + config.gone_after)
                if Attachment.WHIP in participant.attachments and not self._interrupted[role]:
                    deadlines.append(participant.last_packet + config.interrupted_after)
        if self._nobody_since is not None:
            deadlines.append(self._nobody_since + config.end_after)
        return min(deadlines)

    def on_timer(self, *, now: float) -> Snapshot | None:
        """Run what is due at ``now``; return a snapshot if the session ticked."""
        if self.ended:
            return None
        if not self._input_due and now < self._earliest_deadline():
            # Woken for a deadline that has since moved (each video frame pushes the
            # freeze deadline on): nothing is due, the driver re-arms.
            return None
        self._input_due = False
        fired = False
        for participant in self.participants.values():
            deadline = participant.next_deadline()
            if deadline is not None and deadline <= now:
                participant.on_timer(now=now)
                fired = True
        fired |= self._check_presence(now)
        self._update_delay(now)
        self.speech.advance(now=now)
        self._collect_probe_events(now)
        if not (fired or now >= self._next_tick or self.ended):
            return None
        if now >= self._next_tick:
            periods = math.floor((now - self._next_tick) / self.config.tick_interval) + 1
            self._next_tick += periods * self.config.tick_interval
        return self.snapshot(now=now)

    def drain_events(self) -> list[SessionEvent]:
        events, self._events = self._events, []
        return events

    def close(self, *, now: float, reason: str) -> None:
        """End the session now (server shutdown, or every participant gone)."""
        if self.ended:
            return
        for role, participant in self.participants.items():
            if participant.present:
                participant.attachments.clear()
                participant.left_reason = LeftReason.SESSION_ENDED
                self._emit(now, role, None, ParticipantLeft(None, LeftReason.SESSION_ENDED))
        self.ended = True
        self._emit(now, None, None, SessionEnded(reason))

    # -- presence -----------------------------------------------------------------------

    def attach(self, role: Role, via: Attachment, *, now: float) -> None:
        participant = self.participants[role]
        participant.attach(via, now=now)
        self._interrupted[role] = False
        self._nobody_since = None
        self._emit(now, role, None, ParticipantJoined(via))

    def detach(self, role: Role, via: Attachment, *, now: float, reason: LeftReason) -> None:
        participant = self.participants[role]
        if via not in participant.attachments:
            return
        participant.detach(via, reason=reason)
        self._emit(now, role, None, ParticipantLeft(via, reason))
        self._update_nobody(now)
        self._wake_now(now)

    def is_present(self, role: Role) -> bool:
        return self.participants[role].present

    def _check_presence(self, now: float) -> bool:
        changed = False
        config = self.config
        for role, participant in self.participants.items():
            # Compared as the deadline is computed (t0 + d), so a timer armed at the
            # deadline finds it due: float subtraction can fall a hair short.
            if participant.present and now >= participant.last_seen + config.gone_after:
                participant.attachments.clear()
                participant.left_reason = LeftReason.NO_MEDIA
                self._emit(now, role, None, ParticipantLeft(None, LeftReason.NO_MEDIA))
                changed = True
            interrupted = participant.media_interrupted(now=now, after=config.interrupted_after)
            if bool(interrupted) != self._interrupted[role]:
                self._interrupted[role] = bool(interrupted)
                event: object = (
                    MediaInterrupted(participant.last_packet)
                    if interrupted
                    else MediaResumed(now - participant.last_packet)
                )
                self._emit(now, role, None, event)
                changed = True
        self._update_nobody(now)
        if self._nobody_since is not None and now >= self._nobody_since + config.end_after:
            self.ended = True
            self._emit(now, None, None, SessionEnded("nobody present"))
            changed = True
        return changed

    def _update_nobody(self, now: float) -> None:
        anyone = any(p.present for p in self.participants.values())
        if anyone:
            self._nobody_since = None
        elif self._nobody_since is None:
            self._nobody_since = now

    # -- inputs -------------------------------------------------------------------------

    def configure_media(self, role: Role, spec: MediaSpec) -> None:
        self.participants[role].configure_media(spec)

    def on_rtp(self, role: Role, kind: MediaKind, header: RtpHeader, *, now: float) -> None:
        participant = self.participants[role]
        participant.on_rtp(kind, header, now=now)
        if (
            kind is MediaKind.AUDIO
            and self.mode is Mode.METADATA
            and header.audio_level_dbov is not None
        ):
            interval = participant.level_interval(header, now=now)
            if interval is not None:
                end, duration = interval
                self.speech.on_level(
                    role,
                    -float(header.audio_level_dbov),
                    now=end,
                    duration=duration,
                    source=SpeechSource.RTP_LEVEL,
                )
        if self._interrupted[role]:
            self._wake_now(now)  # resumed: say so at once rather than at the next tick

    def on_audio_frame(
        self, role: Role, samples: npt.NDArray[np.int16], sample_rate: int, *, now: float
    ) -> None:
        """Decoded mono PCM of ``role``'s audio, ``now`` being the frame's start (by pts)."""
        self.speech.on_pcm(role, samples, sample_rate=sample_rate, channels=1, t=now)

    def on_video_frame(
        self, role: Role, thumbnail: Thumbnail | None, *, now: float, frame_id: int | None = None
    ) -> None:
        self.participants[role].on_video_frame(thumbnail, now=now, frame_id=frame_id)

    def on_beacon_report(self, role: Role, report: BeaconReport, *, now: float) -> None:
        """One validated report from ``role``'s browser (monitor/observations.py).

        Its inbound streams describe the *other* participant's media as ``role`` receives
        it; its round-trip time is ``role``'s own path.
        """
        subject = self.participants[role.other]
        for stats in report.inbound:
            subject.on_inbound_report(stats, now=now)
        reporter = self.participants[role]
        reporter.last_seen = max(reporter.last_seen, now)
        if report.round_trip_time is not None:
            reporter.on_rtt(report.round_trip_time * 1000.0, now=now)

    def on_audio_level(
        self, role: Role, level_db: float, *, now: float, duration: float = 0.1
    ) -> None:
        """``role``'s microphone level from their beacon, in dBov (0 loudest, <= 0).

        The level describes ``[now - duration, now)`` (the beacon samples ten times a
        second); :func:`monitor.observations.level_db_from_energy` converts W3C
        ``totalAudioEnergy`` deltas. Used for speech only when the monitor has no better
        source for this role (its own decode, or RFC 6464 levels).
        """
        if not (math.isfinite(level_db) and math.isfinite(duration) and 0 < duration <= 1.0):
            self.bad_level_samples += 1
            return
        self.speech.on_level(
            role, min(0.0, level_db), now=now, duration=duration, source=SpeechSource.BEACON_LEVEL
        )
        participant = self.participants[role]
        participant.last_seen = max(participant.last_seen, now)

    def on_path_rtt(self, role: Role, rtt_ms: float, *, now: float) -> None:
        """The round trip of ``role``'s WHIP connection (ICE consent), used for their
        ``network.rtt_ms`` when their browser's beacon gives none."""
        self.participants[role].on_path_rtt(rtt_ms, now=now)

    def set_marker(self, on: bool, *, now: float) -> None:
        """The therapist's "sensitive moment" marker (opens the disclosure window)."""
        self.speech.set_marker(on, now=now)

    # -- output -------------------------------------------------------------------------

    def snapshot(self, *, now: float) -> Snapshot:
        values: Snapshot = dict.fromkeys(CATALOGUE)
        for role, participant in self.participants.items():
            values.update(self._media_signals(role, participant, now))
        values.update(self.speech.snapshot(now=now).to_signals())
        values["session.elapsed_s"] = now - self.started_at
        delay = self._one_way_delay(now)
        values["session.one_way_delay_ms"] = None if delay is None else delay * 1000.0
        return values

    def _one_way_delay(self, now: float) -> float | None:
        """Half the mean of the known RTTs, seconds (P2P: both browsers measure one path)."""
        rtts = [r for p in self.participants.values() if (r := p.rtt_ms(now=now)) is not None]
        return sum(rtts) / len(rtts) / 2000.0 if rtts else None

    def _update_delay(self, now: float) -> None:
        self.speech.set_one_way_delay(self._one_way_delay(now))

    def _media_signals(self, role: Role, participant: Participant, now: float) -> Snapshot:
        values: Snapshot = {}
        whip = Attachment.WHIP in participant.attachments
        for kind in MediaKind:
            prefix = f"{role}.{kind}"
            stream = participant.rtp_stream(kind, now=now) if whip else None
            seen = participant.beacon_signals(kind, now=now)
            if stream is not None:
                values[f"{prefix}.jitter_ms"] = stream.jitter_ms
                values[f"{prefix}.loss_ratio"] = stream.loss_ratio
                values[f"{prefix}.bitrate_bps"] = stream.bitrate_bps
                if kind is MediaKind.AUDIO:
                    values[f"{prefix}.loss_ratio_total"] = stream.loss_ratio_total
                    values[f"{prefix}.since_last_packet_s"] = stream.since_last_packet
            else:
                values[f"{prefix}.jitter_ms"] = seen.jitter_ms
                values[f"{prefix}.loss_ratio"] = seen.loss_ratio
                if kind is MediaKind.AUDIO:
                    values[f"{prefix}.loss_ratio_total"] = seen.loss_ratio_total
            if kind is MediaKind.AUDIO:
                values[f"{prefix}.concealment_ratio"] = seen.concealment_ratio
        video = participant.video_snapshot(now=now)
        if whip and video.frozen is not None:
            values.update(video.signals(role))
        else:
            seen_video = participant.beacon_signals(MediaKind.VIDEO, now=now)
            values[f"{role}.video.fps"] = seen_video.fps
            values[f"{role}.video.freeze_count"] = seen_video.freeze_count
            values[f"{role}.video.total_freezes_s"] = seen_video.total_freezes_s
        rtt_ms = participant.rtt_ms(now=now)
        values[f"{role}.network.rtt_ms"] = rtt_ms
        values[f"{role}.network.mos"] = _mos(
            rtt_ms, values[f"{role}.audio.jitter_ms"], values[f"{role}.audio.loss_ratio"]
        )
        values[f"{role}.media.interrupted"] = participant.media_interrupted(
            now=now, after=self.config.interrupted_after
        )
        values[f"{role}.speech.active"] = self.speech.active(role)
        values[f"{role}.speech.level_db"] = self.speech.level_db(role)
        values[f"{role}.audio.echo_leak_db"] = self.speech.echo_leak_db(role)
        return values

    # -- events -------------------------------------------------------------------------

    def _emit(self, at: float, role: Role | None, kind: MediaKind | None, event: object) -> None:
        self._events.append(SessionEvent(at, role, kind, event))

    def _collect_probe_events(self, now: float) -> None:
        for role, participant in self.participants.items():
            for event in participant.drain_video_events():
                self._emit(now, role, MediaKind.VIDEO, event)
        voice, conversation = self.speech.drain_events()
        for voice_event in voice:
            self._emit(now, voice_event.role, MediaKind.AUDIO, voice_event)
        for conversation_event in conversation:
            self._emit(now, None, None, conversation_event)


def _number(value: SignalValue) -> float | None:
    return None if value is None or isinstance(value, bool) else float(value)


def _mos(rtt_ms: SignalValue, jitter_ms: SignalValue, loss_ratio: SignalValue) -> float | None:
    """E-model MOS when all three inputs are known; never from a made-up RTT of zero."""
    rtt, jitter, loss = _number(rtt_ms), _number(jitter_ms), _number(loss_ratio)
    if rtt is None or jitter is None or loss is None:
        return None
    return estimate_quality(rtt_ms=rtt, jitter_ms=jitter, loss_ratio=loss).mos
