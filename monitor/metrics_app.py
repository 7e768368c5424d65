"""``GET /metrics``: the fleet metrics of this process, in Prometheus' text format.

Theory of operation (prometheus/client_python, "custom collectors"): one
:class:`MetricsEndpoint` per app holds the process-wide
:class:`~monitor.metrics.FleetMetrics` and a private ``CollectorRegistry`` with one
:class:`~monitor.metrics.FeltsafeCollector` (no default process collectors: every
series comes from the catalogue). It wires itself into the app (:func:`mount`):

- every new session gets a :class:`~monitor.metrics_sink.MetricsSink`
  (``SessionRegistry.add_sink_factory``), which also listens to the session's
  indicator sink for the rules engine's flag events and to its indicator channel for
  level changes (monitor/indicator_feed.py), and reads the session's own bad-input
  counts (RTP packets the probes dropped, bad microphone levels);
- every firing of a session's timer reports (scheduled, ran) to :meth:`observe_tick`
  (``SessionRegistry.tick_observers``): the tick lag histogram, how late the event loop
  ran the session behind its schedule;
- at scrape time, before the families are built, the process-wide bad-input counters
  of the WHIP endpoint (4xx answers, by status) and of the beacon endpoint
  (``BeaconCounters``) are brought into ``feltsafe_ingest_errors_total`` by difference,
  and the gauges are read from the live session registry and the websocket endpoints:
  sessions active by mode, participants connected by role (present, media not
  interrupted), websocket clients by kind.

Ingest error kinds (a closed set, monitor/metrics.py): WHIP 401/403 ``bad_token``,
400/413/415 ``malformed_sdp``, 406 ``unsupported_codec`` (404, an unknown path, and 409,
a second publisher or another mode, are not bad input); beacon frames that are binary,
not JSON or not the schema ``bad_beacon_message``, too large ``oversized_message``,
over the rate ``rate_limited``; beacon handshakes refused for their Origin
``bad_origin``, for a missing, bad or foreign token ``bad_token``; inside sessions,
RTP packets dropped by the probes (RtpDropReason) or of an unnegotiated kind
``bad_rtp``, unusable microphone levels ``bad_audio``.

Cost: collection is O(series) plus one pass over the live sessions, on the event loop
(bench/bench_metrics.py measures it at 50 sessions against the 10 ms target). Clock:
``time.perf_counter`` times the collection itself (``feltsafe_scrape_duration_seconds``);
session figures use each session's own clock. No session id reaches a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from alerts.indicator import IndicatorState, Level
from alerts.pack import Pack
from monitor.beacon import BeaconCounters, BeaconError, BeaconRefusal
from monitor.beacon_ws import BeaconEndpoint
from monitor.indicator_feed import IndicatorHub
from monitor.indicator_ws import IndicatorEndpoint
from monitor.metrics import FeltsafeCollector, FleetMetrics, LabelKey
from monitor.metrics_sink import CumulativeTally, IngestCount, MetricsSink
from monitor.sessions import SessionRegistry
from monitor.sinks import SessionInfo, SessionSink
from monitor.whip import WhipEndpoint

METRICS_PATH = "/metrics"

WHIP_STATUS_ERRORS: Mapping[int, str] = {
    400: "malformed_sdp",
    401: "bad_token",
    403: "bad_token",
    406: "unsupported_codec",
    413: "malformed_sdp",
    415: "malformed_sdp",
}
BEACON_REJECTION_ERRORS: Mapping[BeaconError, str] = {
    BeaconError.BINARY: "bad_beacon_message",
    BeaconError.MALFORMED_JSON: "bad_beacon_message",
    BeaconError.SCHEMA: "bad_beacon_message",
    BeaconError.OVERSIZED: "oversized_message",
    BeaconError.RATE_LIMITED: "rate_limited",
}
BEACON_REFUSAL_ERRORS: Mapping[BeaconRefusal, str] = {
    BeaconRefusal.ORIGIN: "bad_origin",
    BeaconRefusal.AUTH_TIMEOUT: "bad_token",
    BeaconRefusal.TOKEN_INVALID: "bad_token",
    BeaconRefusal.TOKEN_FORBIDDEN: "bad_token",
}

SESSIONS_ACTIVE = "feltsafe_sessions_active"
PARTICIPANTS = "feltsafe_participants_connected"
WEBSOCKETS = "feltsafe_websocket_clients"
TICK_LAG = "feltsafe_tick_lag_seconds"
INGEST_ERRORS = "feltsafe_ingest_errors"


class MetricsEndpoint:
    """The fleet metrics of one app (see the module docstring)."""

    def __init__(
        self,
        registry: SessionRegistry,
        *,
        rules: Iterable[str] = (),
        indicator: IndicatorHub | None = None,
        whip: WhipEndpoint | None = None,
        beacon: BeaconEndpoint | None = None,
        indicator_ws: IndicatorEndpoint | None = None,
        current_pack: Callable[[], Pack | None] = lambda: None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.fleet = FleetMetrics(rules=tuple(rules))
        self.collectors = CollectorRegistry()
        self.collectors.register(FeltsafeCollector(self.fleet, self._read_live, clock))
        self._registry = registry
        self._indicator = indicator
        self._whip = whip
        self._beacon = beacon
        self._indicator_ws = indicator_ws
        self._current_pack = current_pack
        self._pack: Pack | None = None
        self._tally = CumulativeTally()
        self._sinks: dict[str, MetricsSink] = {}
        self._unsubscribe: dict[MetricsSink, Callable[[], None]] = {}
        self.refresh_rules()

    def attach(self) -> None:
        """Give every session started from now on a metrics sink, and time their ticks."""
        self._registry.add_sink_factory(self.sink_factory)
        self._registry.tick_observers.append(self.observe_tick)

    def routes(self) -> list[Route]:
        return [Route(METRICS_PATH, self.metrics, methods=["GET"])]

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.collectors), media_type=CONTENT_TYPE_LATEST)

    def on_pack_loaded(self, pack: Pack) -> None:
        """A (re)loaded rule pack: its rule ids join the closed ``rule`` label set."""
        self.fleet.add_rules(rule.id for rule in pack.rules)

    def refresh_rules(self) -> None:
        """Follow the current pack (at start-up and each scrape: hot reloads)."""
        pack = self._current_pack()
        if pack is not None and pack is not self._pack:
            self._pack = pack
            self.on_pack_loaded(pack)

    # -- per session --------------------------------------------------------------------

    def sink_factory(self, info: SessionInfo) -> SessionSink:
        """A :data:`~monitor.sinks.SinkFactory`: the metrics sink of a new session.

        Registered after the indicator's factory, so the session's indicator sink (and
        the rules engine in it) already exists; without one, flags and level changes
        are simply not counted.
        """
        channel = self._indicator.get(info.session_id) if self._indicator else None
        indicator_sink = channel.sink if channel is not None else None
        sink = MetricsSink(
            self.fleet,
            info,
            read_ingest=partial(self._session_ingest, info),
            indicator_level=channel.state.level if channel is not None else Level.OK,
            on_ended=self._forget,
        )
        if channel is not None and indicator_sink is not None and not indicator_sink.ended:
            indicator_sink.flag_listeners.append(sink.on_flag_events)
            live_indicator = indicator_sink

            def on_state(state: IndicatorState) -> None:
                # The indicator resets to ok when its session ends: not a level change
                # anyone saw during the session.
                if not live_indicator.ended:
                    sink.on_indicator_state(state)

            self._unsubscribe[sink] = channel.subscribe(on_state)
        self._sinks[info.session_id] = sink
        return sink

    def sink_of(self, session_id: str) -> MetricsSink | None:
        """The metrics sink of a live session (for tests and tools; never exported)."""
        return self._sinks.get(session_id)

    def _forget(self, sink: MetricsSink) -> None:
        unsubscribe = self._unsubscribe.pop(sink, None)
        if unsubscribe is not None:
            unsubscribe()
        for session_id, known in list(self._sinks.items()):
            if known is sink:
                del self._sinks[session_id]

    def _session_ingest(self, info: SessionInfo) -> list[IngestCount]:
        """Bad-input counts kept inside the session's core (cumulative)."""
        live = self._registry.get(info.session_id)
        if live is None or live.session.started_at != info.started_at:
            return []  # the session this sink serves is gone (or replaced)
        session = live.session
        counts = [IngestCount("bad_audio", "levels", session, session.bad_level_samples)]
        for role, participant in session.participants.items():
            counts.append(
                IngestCount("bad_rtp", (role, None), participant, participant.unknown_media_packets)
            )
            for kind, stats in participant.rtp.items():
                counts.append(
                    IngestCount("bad_rtp", (role, kind), stats, sum(stats.drops.values()))
                )
        return counts

    def observe_tick(self, scheduled: float, ran: float) -> None:
        """A session timer armed for ``scheduled`` ran at ``ran`` (the loop's clock)."""
        if scheduled != float("inf"):
            self.fleet.observe(TICK_LAG, max(0.0, ran - scheduled))

    # -- at scrape time -----------------------------------------------------------------

    def _read_live(self) -> Iterator[tuple[str, LabelKey, float]]:
        """Called first in each collection: sync rules and ingest counters, yield gauges."""
        self.refresh_rules()
        self._sync_ingest()
        for live in self._registry:
            if live.closed:
                continue
            session = live.session
            yield SESSIONS_ACTIVE, (session.mode.value,), 1.0
            now = live.clock()
            after = session.config.interrupted_after
            for role, participant in session.participants.items():
                if participant.present and not participant.media_interrupted(now=now, after=after):
                    yield PARTICIPANTS, (role.value,), 1.0
        if self._beacon is not None:
            yield WEBSOCKETS, ("beacon",), float(self._beacon.connection_count)
        if self._indicator_ws is not None:
            yield WEBSOCKETS, ("indicator",), float(self._indicator_ws.connections)

    def _sync_ingest(self) -> None:
        if self._whip is not None:
            for status, count in list(self._whip.rejected.items()):
                self._sync(WHIP_STATUS_ERRORS.get(status), ("whip", status), count)
        if self._beacon is not None:
            counters: BeaconCounters = self._beacon.counters
            for error, count in list(counters.rejected.items()):
                self._sync(BEACON_REJECTION_ERRORS.get(error), ("beacon", error), count)
            for reason, count in list(counters.refused.items()):
                self._sync(BEACON_REFUSAL_ERRORS.get(reason), ("refused", reason), count)

    def _sync(self, error: str | None, key: tuple[str, object], count: int) -> None:
        if error is None:
            return
        increment = self._tally.increment(key, count)
        if increment > 0:
            self.fleet.inc(INGEST_ERRORS, increment, error=error)


def mount(app: Starlette) -> MetricsEndpoint:
    """Add ``GET /metrics`` to an app made by :func:`monitor.app.create_app`.

    Uses ``app.state.registry`` and, when present, ``packs`` (the sessions' rule pack,
    followed through hot reloads: its rule ids are the ``rule`` label set), ``indicator``,
    ``whip``, ``beacon`` and ``indicator_ws``; keeps the endpoint as ``app.state.metrics``.
    Mount it after the beacon endpoint.
    """
    state = app.state
    indicator: IndicatorHub | None = getattr(state, "indicator", None)
    packs = getattr(state, "packs", None)

    def current_pack() -> Pack | None:
        if packs is not None:
            pack: Pack = packs.pack
            return pack
        return indicator.pack if indicator is not None else None

    endpoint = MetricsEndpoint(
        state.registry,
        indicator=indicator,
        whip=getattr(state, "whip", None),
        beacon=getattr(state, "beacon", None),
        indicator_ws=getattr(state, "indicator_ws", None),
        current_pack=current_pack,
    )
    endpoint.attach()
    app.router.routes.extend(endpoint.routes())
    state.metrics = endpoint
    return endpoint
