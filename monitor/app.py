"""The monitor's ASGI application (Starlette), served by uvicorn with the websockets library.

Theory of operation: one asyncio process holds the session registry; HTTP routes and
websockets reach sessions through it. :func:`create_app` builds the app from
:class:`~monitor.config.Settings`; later issues add their routes (indicator, review UI,
``/metrics``) through ``routes=`` or by mounting on the returned app, and reach shared
state as ``app.state.registry`` (:class:`~monitor.sessions.SessionRegistry`) and
``app.state.settings``.

Routes from the start:

- ``GET /healthz``: liveness, ``{"status": "ok", "sessions": N}`` (no ids);
- WHIP (monitor/whip.py): ``POST /whip/{session}/{role}``, ``DELETE``/``PATCH``
  ``/whip/{session}/{role}/{resource}``;
- ``GET /api/sessions/{id}/snapshot``: the latest snapshot of a live session, 404 once
  it ended (the therapist of that session or a supervisor: monitor/access.py);
- ``/ws/indicator/{session}``: the therapist's live indicator (monitor/indicator_ws.py),
  fed by an indicator sink on every session (monitor/indicator_feed.py);
- ``/ws/beacon/{session}/{role}``: browser stats in (monitor/beacon_ws.py, mounted last);
- ``GET /metrics``: the fleet metrics for Prometheus (monitor/metrics_app.py, mounted
  after the beacon);
- ``/static/``: the ``<feltsafe-indicator>`` web component and the demo call page;
- the REST API over the flag store and its OpenAPI document (monitor/api.py), the
  supervisor's review page at ``/review`` (monitor/review/), and the revocation gate
  with ``app.state.revocations`` (monitor/access.py, monitor/revocation.py).

CORS (RFC 9725 §4.3 expects it of endpoints that browsers reach): Starlette's
``CORSMiddleware`` answers preflight ``OPTIONS`` for the configured ``allowed_origins``
only, allows ``Authorization`` and ``Content-Type``, and exposes ``Location`` (a
browser publisher needs it to ``DELETE``), ``ETag``, ``Link`` and ``Accept-Post``.

Rules and flags (monitor/rules_sink.py): every session gets one rules sink running one
rules engine over the pack from ``settings.rules`` (hot-reloaded; the bundled default
pack when unset) for ``settings.profile``. Its flag events feed the session's indicator
(the hub runs no engine of its own) and, when ``create_app`` is given a ``store``, the
flag store through one :class:`~monitor.flag_writer.FlagWriter` per process (off the
event loop), along with the session's start, timeline and end summary; with
``trace_dir`` set it writes the session's trace too. The caller that opened the store
closes it; ``app.state.store`` is what the REST API reads.

Shutdown (lifespan) ends every live session, then drains the flag writer, so no peer
connection, thread or task outlives the server and every flag raised is stored.
Start-up checks the aiortc internals the RTP hook needs and fails loudly if they moved.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from monitor import access, api, beacon_ws, metrics_app, review
from monitor.config import Settings
from monitor.flag_writer import FlagWriter
from monitor.indicator_feed import IndicatorHub
from monitor.indicator_ws import IndicatorEndpoint
from monitor.rtp_hook import check_aiortc_internals
from monitor.rules_sink import PackSource, RulesSinkFactory
from monitor.session import SessionConfig
from monitor.sessions import SessionRegistry
from monitor.sinks import SinkFactory
from monitor.store import Store
from monitor.whip import WhipEndpoint

CORS_METHODS = ("GET", "POST", "DELETE", "PATCH", "OPTIONS")
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type", "If-Match")
CORS_EXPOSED_HEADERS = ("Location", "ETag", "Link", "Accept-Post")


def create_app(
    settings: Settings,
    *,
    registry: SessionRegistry | None = None,
    sink_factories: Sequence[SinkFactory] = (),
    routes: Sequence[BaseRoute] = (),
    store: Store | None = None,
) -> Starlette:
    """Build the monitor app. ``settings.secret`` must be set (publisher tokens).

    With ``store``, flags and session records are written to it (the caller closes it).
    """
    check_aiortc_internals()
    secret = settings.require_secret()
    packs = PackSource.from_path(settings.rules)  # a broken rule file fails here
    indicator = IndicatorHub(pack=None)  # fed by the rules sink's one engine per session
    writer = FlagWriter(store) if store is not None else None
    rules = RulesSinkFactory(
        packs=packs,
        indicator=indicator,
        writer=writer,
        trace_dir=settings.trace_dir,
        tick=settings.tick_interval,
        profile=settings.profile,
    )
    if registry is None:
        registry = SessionRegistry(
            mode=settings.mode,
            ice_servers=settings.ice_servers,
            session_config=SessionConfig(tick_interval=settings.tick_interval),
            sink_factories=[rules, *sink_factories],
        )
    indicator_ws = IndicatorEndpoint(
        indicator, registry, secret=secret, allowed_origins=settings.allowed_origins
    )
    whip = WhipEndpoint(registry, secret=secret)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "sessions": len(registry)})

    async def snapshot(request: Request) -> Response:
        live = registry.get(request.path_params["session"])
        if live is None or live.closed:
            return JSONResponse({"error": "no live session with this id"}, status_code=404)
        latest = live.latest
        return JSONResponse(
            {
                "session": live.id,
                "mode": live.session.mode.value,
                "elapsed_s": None if latest.at is None else latest.at - live.session.started_at,
                "signals": None if latest.snapshot is None else dict(latest.snapshot),
            }
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await registry.aclose()
            if writer is not None:
                await writer.aclose()

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *whip.routes(),
            Route(
                "/api/sessions/{session}/snapshot",
                access.protect(snapshot, access.Resource.SNAPSHOT),
                methods=["GET"],
            ),
            *indicator_ws.routes(),
            Mount("/static", app=StaticFiles(packages=[("monitor", "static")]), name="static"),
            *routes,
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=list(CORS_METHODS),
                allow_headers=list(CORS_REQUEST_HEADERS),
                expose_headers=list(CORS_EXPOSED_HEADERS),
                max_age=600,
            )
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.indicator = indicator
    app.state.packs = packs
    app.state.store = store
    app.state.flag_writer = writer
    app.state.indicator_ws = indicator_ws
    app.state.whip = whip
    beacon_ws.mount(app)  # /ws/beacon/{session}/{role} (monitor/beacon_ws.py)
    metrics_app.mount(app)  # /metrics (monitor/metrics_app.py)
    access.mount(app)  # the revocation gate, app.state.revocations (monitor/access.py)
    api.mount(app)  # /api/sessions..., /api/flags/{key}/ack, /api/openapi.json (monitor/api.py)
    review.mount(app)  # /review (monitor/review/)
    return app
