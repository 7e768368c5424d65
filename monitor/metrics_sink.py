"""The fleet metrics of one live session: a session sink that observes into FleetMetrics.

Theory of operation (prometheus/client_python "custom collectors", monitor/metrics.py):
a session owns no Prometheus object. Its :class:`MetricsSink` reads what the session
already produces and observes it into the one process-wide
:class:`~monitor.metrics.FleetMetrics`, whose series are keyed by closed label sets only;
the scrape (monitor/metrics_app.py) then costs O(series), whatever the number of sessions.

What is observed, and when (the session clock: the ``now`` of each tick, monotonic
seconds; the sink reads no clock):

- **stream figures**, at most once per ``sample_interval`` (1 s) on a grid from the
  session's start, from the tick's snapshot: per ``(role, kind)`` the RFC 3550 jitter
  (``<role>.<kind>.jitter_ms``, converted to seconds) and the 5-s loss ratio; per role
  the RTT (``<role>.network.rtt_ms``, in seconds) and the E-model MOS. Unknown values
  (None, booleans, NaN) are skipped, never taken as zero; so are the figures of a role
  whose media is interrupted (``<role>.media.interrupted``), which are stale. Four ticks
  a second thus give one sample per stream-second, so ``rate(..._count)`` counts
  stream-seconds;
- **freezes and frozen seconds**, by difference of the snapshot's cumulative W3C
  counters (``<role>.video.freeze_count``, ``<role>.video.total_freezes_s``) with
  :class:`CumulativeTally`: a count adds only what it grew by; a count that went down
  belongs to a new stream (a new publisher) and counts whole, as Prometheus treats a
  counter reset; an unknown count (None) keeps its baseline, so nothing is counted
  twice when it comes back;
- **session-minutes** (by the session's mode), continuously: each sample adds the time
  since the previous one, in minutes, so the denominator of per-session-hour rates is
  right within a second, also for short sessions;
- **talk share and interruptions per session-minute**, at each minute boundary of the
  session (``minute``, 60 s, from its start): a role's share of the talk time in that
  minute, from the growth of ``conversation.<role>.talk_time_s`` (no sample for a
  minute nobody spoke: a share of nothing is undefined), and the successful
  interruptions *by* each role (``InterruptionDetected`` events, scaled to a minute),
  only for minutes whose conversation figures are known. The last, partial minute
  counts when it lasted at least ``MIN_PARTIAL_MINUTE`` (30 s);
- **flags** raised by the rules engine, by rule and the severity they were raised at
  (``FlagRaised``; a later escalation is the same flag), through
  :meth:`MetricsSink.on_flag_events`, which the wiring registers with the session's
  indicator sink, where the engine runs (monitor/indicator_feed.py);
- **indicator level changes**, by the new level, through
  :meth:`MetricsSink.on_indicator_state` (a channel subscriber; a change of words at the
  same level is not a level change);
- **ingest errors** counted inside the session (RTP packets the probes dropped, bad
  microphone-level samples), by difference of the cumulative counts an
  :data:`IngestReader` reports, per source object: a new publisher's stream starts at
  zero.

Edge cases: ticks that arrive more than a minute apart close one minute, not several
(nothing was measured in between). At the end (:meth:`MetricsSink.on_ended`) the
counters are brought up to date once more from the last snapshot; histograms are not
(a partial second is not a stream-second). A sink never raises on odd values: they are
skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from alerts.engine import EngineEvent, FlagRaised
from alerts.indicator import IndicatorState, Level
from monitor.metrics import FleetMetrics
from monitor.sinks import SessionEvent, SessionInfo
from probes.base import MediaKind, Role
from probes.conversation import InterruptionDetected
from probes.signals import SignalValue, Snapshot

SAMPLE_INTERVAL = 1.0  # one sample per stream-second (monitor/metrics.py's help texts)
SESSION_MINUTE = 60.0
MIN_PARTIAL_MINUTE = 30.0

JITTER = "feltsafe_stream_jitter_seconds"
LOSS = "feltsafe_stream_loss_ratio"
RTT = "feltsafe_path_rtt_seconds"
MOS = "feltsafe_audio_mos"
FREEZES = "feltsafe_video_freezes"
FROZEN = "feltsafe_video_frozen_seconds"
TALK_SHARE = "feltsafe_talk_share_ratio"
INTERRUPTIONS = "feltsafe_interruptions_per_minute"
SESSION_MINUTES = "feltsafe_session_minutes"
FLAGS = "feltsafe_flags"
LEVEL_CHANGES = "feltsafe_indicator_level_changes"
INGEST_ERRORS = "feltsafe_ingest_errors"


@dataclass(frozen=True, slots=True)
class IngestCount:
    """A cumulative count of bad input inside one session.

    ``error`` is an ingest error kind (monitor/metrics.py ``INGEST_ERROR_KINDS``), ``key``
    tells the session's counts apart, ``source`` is the object that owns the count (a
    new object starts from zero).
    """

    error: str
    key: Hashable
    source: object
    count: int


IngestReader = Callable[[], Iterable[IngestCount]]


class CumulativeTally:
    """Turns cumulative counts into increments, never counting anything twice.

    ``increment(key, value, source=...)`` returns what ``value`` grew by since the last
    call for ``key``. The first value counts whole; so does a value that went down or
    now comes from another ``source`` object (a stream that started afresh).
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[object, float]] = {}

    def increment(self, key: Hashable, value: float, *, source: object = None) -> float:
        last = self._last.get(key)
        self._last[key] = (source, value)
        if last is None:
            return value
        last_source, last_value = last
        if last_source is not source or value < last_value:
            return value
        return value - last_value


def _number(value: SignalValue) -> float | None:
    """A known, finite number; None for unknown, booleans and NaN or infinities."""
    if value is None or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _no_ingest() -> Iterable[IngestCount]:
    return ()


class MetricsSink:
    """Observes one live session into the fleet aggregates (see the module docstring)."""

    def __init__(
        self,
        fleet: FleetMetrics,
        info: SessionInfo,
        *,
        read_ingest: IngestReader = _no_ingest,
        indicator_level: Level = Level.OK,
        on_ended: Callable[[MetricsSink], None] | None = None,
        sample_interval: float = SAMPLE_INTERVAL,
        minute: float = SESSION_MINUTE,
    ) -> None:
        self._fleet = fleet
        self._mode = info.mode
        self._read_ingest = read_ingest
        self._on_ended = on_ended
        self._interval = sample_interval
        self._minute = minute
        self._next_sample = info.started_at  # the first tick samples
        self._counted_until = info.started_at  # session-minutes counted up to here
        self._minute_start = info.started_at
        # Talk times at the start of the current minute (since the session began: 0).
        self._minute_talk: dict[Role, float | None] = dict.fromkeys(Role, 0.0)
        self._interruptions = dict.fromkeys(Role, 0)
        self._tally = CumulativeTally()
        self._level = indicator_level
        self._last: Snapshot | None = None
        self.ended = False

    # -- SessionSink ------------------------------------------------------------------

    def on_snapshot(self, now: float, snapshot: Snapshot) -> None:
        if self.ended:
            return
        self._last = snapshot
        self._advance_minute(now, snapshot)
        if now >= self._next_sample:
            self._sample_streams(snapshot)
            self._update_counters(now, snapshot)
            steps = math.floor((now - self._next_sample) / self._interval) + 1
            self._next_sample += steps * self._interval

    def on_events(self, now: float, events: Sequence[SessionEvent]) -> None:
        if self.ended:
            return
        for item in events:
            event = item.event
            if isinstance(event, InterruptionDetected) and event.successful:
                self._interruptions[event.by] += 1

    def on_ended(self, now: float) -> None:
        if self.ended:
            return
        if self._last is not None:
            self._update_counters(now, self._last)
            if now - self._minute_start >= MIN_PARTIAL_MINUTE:
                self._close_minute(self._last, length=now - self._minute_start)
        self.ended = True
        if self._on_ended is not None:
            self._on_ended(self)

    # -- from the rules engine and the indicator ----------------------------------------

    def on_flag_events(self, events: Iterable[EngineEvent]) -> None:
        """Count ``FlagRaised`` by rule and severity (an IndicatorSink flag listener)."""
        if self.ended:
            return
        for event in events:
            if isinstance(event, FlagRaised):
                flag = event.flag
                if flag.rule_id not in self._fleet.rules:
                    # Only a loaded pack makes rule ids: a hot-reloaded one's new rule.
                    self._fleet.add_rules([flag.rule_id])
                self._fleet.inc(FLAGS, rule=flag.rule_id, severity=flag.severity.value)

    def on_indicator_state(self, state: IndicatorState) -> None:
        """Count a change of the therapist's indicator level (a channel subscriber)."""
        if self.ended or state.level is self._level:
            return
        self._level = state.level
        self._fleet.inc(LEVEL_CHANGES, level=state.level.value)

    # -- per stream-second --------------------------------------------------------------

    def _sample_streams(self, snapshot: Snapshot) -> None:
        fleet = self._fleet
        for role in Role:
            if snapshot.get(f"{role}.media.interrupted") is True:
                continue  # no packets: the figures are stale, not measurements
            for kind in MediaKind:
                jitter_ms = _number(snapshot.get(f"{role}.{kind}.jitter_ms"))
                if jitter_ms is not None and jitter_ms >= 0:
                    fleet.observe(JITTER, jitter_ms / 1000.0, role=role, kind=kind)
                loss = _number(snapshot.get(f"{role}.{kind}.loss_ratio"))
                if loss is not None and 0 <= loss <= 1:
                    fleet.observe(LOSS, loss, role=role, kind=kind)
            rtt_ms = _number(snapshot.get(f"{role}.network.rtt_ms"))
            if rtt_ms is not None and rtt_ms >= 0:
                fleet.observe(RTT, rtt_ms / 1000.0, role=role)
            mos = _number(snapshot.get(f"{role}.network.mos"))
            if mos is not None:
                fleet.observe(MOS, mos, role=role)

    def _update_counters(self, now: float, snapshot: Snapshot) -> None:
        fleet, tally = self._fleet, self._tally
        for role in Role:
            for name, signal in ((FREEZES, "freeze_count"), (FROZEN, "total_freezes_s")):
                value = _number(snapshot.get(f"{role}.video.{signal}"))
                if value is not None and value >= 0:
                    increment = tally.increment((name, role), value)
                    if increment > 0:
                        fleet.inc(name, increment, role=role)
        if now > self._counted_until:
            fleet.inc(SESSION_MINUTES, (now - self._counted_until) / 60.0, mode=self._mode)
            self._counted_until = now
        for count in self._read_ingest():
            increment = tally.increment(("ingest", count.key), count.count, source=count.source)
            if increment > 0:
                fleet.inc(INGEST_ERRORS, increment, error=count.error)

    # -- per session-minute -------------------------------------------------------------

    def _advance_minute(self, now: float, snapshot: Snapshot) -> None:
        elapsed = now - self._minute_start
        if elapsed >= self._minute:
            self._close_minute(snapshot, length=self._minute)
            self._minute_start += math.floor(elapsed / self._minute) * self._minute

    def _close_minute(self, snapshot: Snapshot, *, length: float) -> None:
        before, after = self._minute_talk, self._talk_times(snapshot)
        interruptions, self._interruptions = self._interruptions, dict.fromkeys(Role, 0)
        self._minute_talk = after
        talked: dict[Role, float] = {}
        for role in Role:
            start, end = before.get(role), after[role]
            if start is None or end is None:
                return  # the conversation was not measured across this minute
            talked[role] = max(0.0, end - start)
        total = sum(talked.values())
        for role in Role:
            if total > 0:
                self._fleet.observe(TALK_SHARE, talked[role] / total, role=role)
            per_minute = interruptions[role] * SESSION_MINUTE / length
            self._fleet.observe(INTERRUPTIONS, per_minute, role=role)

    @staticmethod
    def _talk_times(snapshot: Snapshot) -> dict[Role, float | None]:
        return {role: _number(snapshot.get(f"conversation.{role}.talk_time_s")) for role in Role}
