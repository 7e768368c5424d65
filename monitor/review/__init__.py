"""The supervisor's review page: static files under ``/review``, charts by plotly.

Theory of operation: the page is plain HTML, CSS and ES modules (monitor/review/static/,
no build step), served by ``feltsafe serve`` beside the REST API it reads. It holds no
data of its own: everything comes from ``/api/...`` with the user's token as an
``Authorization: Bearer`` header, so the page itself needs no access control and the
audit log sees every view.

The token reaches the page in the URL *fragment* (``/review/#token=...``, which the
browser never sends to a server, as monitor/static/demo-call.html does) or through the
page's sign-in form; the page keeps it in ``sessionStorage`` (gone when the tab closes),
removes it from the address bar at once, and never puts it in a URL.

Pages: ``/review/`` lists sessions (date, duration, mode, flags by severity,
unacknowledged; filters by date range, mode, minimum severity and "unacknowledged
only"); ``/review/session.html?id=S`` shows one session: a timeline (talk share per
role, interruptions, network quality: MOS, loss and jitter; freezes as bands, the
disclosure window as a band, flags as markers), the flags with their evidence and
context, acknowledgement with a note, and CSV/JSON export. ``/api/docs`` (the API's
docs page) is served from here too.

Charts: plotly.js, from the ``plotly`` Python package's own bundled copy
(``plotly/package_data/plotly.min.js``) at ``/review/vendor/plotly.min.js``: no CDN and
no network, and pip keeps it current. The pages set a Content-Security-Policy that
allows scripts from this origin only.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

PLOTLY_PATH: Final = "/review/vendor/plotly.min.js"


def plotly_js() -> Path:
    """The plotly.min.js the installed ``plotly`` package ships."""
    path = Path(str(resources.files("plotly").joinpath("package_data", "plotly.min.js")))
    if not path.is_file():
        raise FileNotFoundError(f"plotly.min.js is missing from the plotly package ({path})")
    return path


async def _plotly(request: Request) -> Response:
    return FileResponse(
        plotly_js(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )


async def _to_index(request: Request) -> Response:
    # A redirect keeps the fragment (RFC 9110 §10.2.2), so /review#token=... still works.
    return RedirectResponse("/review/", status_code=307)


def routes() -> list[Route | Mount]:
    return [
        Route(PLOTLY_PATH, _plotly, methods=["GET", "HEAD"]),
        Route("/review", _to_index, methods=["GET", "HEAD"]),
        Mount(
            "/review",
            app=StaticFiles(packages=[("monitor.review", "static")], html=True),
            name="review",
        ),
    ]


def mount(app: Starlette) -> None:
    """Add ``/review`` to an app made by :func:`monitor.app.create_app`."""
    plotly_js()  # fail at start-up, not on the first page view
    app.router.routes.extend(routes())


__all__ = ["PLOTLY_PATH", "mount", "plotly_js", "routes"]
