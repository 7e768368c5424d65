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
  it ended;
- ``/ws/indicator/{session}``: the therapist's live indicator (monitor/indicator_ws.py),
  fed by an indicator sink on every session (monitor/indicator_feed.py);
- ``/ws/beacon/{session}/{role}``: browser stats in (monitor/beacon_ws.py, mounted last);
- ``GET /metrics``: the fleet metrics for Prometheus (monitor/metrics_app.py, mounted
  after the beacon);
- ``/static/``: the ``<feltsafe-indicator>`` web component and the demo call page.

CORS (RFC 9725 §4.3 expects it of endpoints that browsers reach): Starlette's
``CORSMiddleware`` answers preflight ``OPTIONS`` for the configured ``allowed_origins``
only, allows ``Authorization`` and ``Content-Type``, and exposes ``Location`` (a
browser publisher needs it to ``DELETE``), ``ETag``, ``Link`` and ``Accept-Post``.

Shutdown (lifespan) ends every live session, so no peer connection, thread or task
outlives the server. Start-up checks the aiortc internals the RTP hook needs and fails
loudly if they moved.
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

from monitor import beacon_ws, metrics_app, trace_sink
from monitor.config import Settings
from monitor.indicator_feed import IndicatorHub
from monitor.indicator_ws import IndicatorEndpoint
from monitor.rtp_hook import check_aiortc_internals
from monitor.rulefile import load_default_pack
from monitor.session import SessionConfig
from monitor.sessions import SessionRegistry
from monitor.sinks import SinkFactory
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
) -> Starlette:
    """Build the monitor app. ``settings.secret`` must be set (publisher tokens)."""
    check_aiortc_internals()
    secret = settings.require_secret()
    indicator = IndicatorHub(pack=load_default_pack())
    if registry is None:
        registry = SessionRegistry(
            mode=settings.mode,
            ice_servers=settings.ice_servers,
            session_config=SessionConfig(tick_interval=settings.tick_interval),
            sink_factories=[*_default_sinks(settings), indicator.sink_factory, *sink_factories],
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

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *whip.routes(),
            Route("/api/sessions/{session}/snapshot", snapshot, methods=["GET"]),
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
    app.state.indicator_ws = indicator_ws
    app.state.whip = whip
    beacon_ws.mount(app)  # /ws/beacon/{session}/{role} (monitor/beacon_ws.py)
    metrics_app.mount(app)  # /metrics (monitor/metrics_app.py)
    return app


def _default_sinks(settings: Settings) -> list[SinkFactory]:
    """The content-free JSONL trace, when ``trace_dir`` is set (monitor/trace.py)."""
    if settings.trace_dir is None:
        return []
    return [trace_sink.factory(settings.trace_dir, tick=settings.tick_interval)]
