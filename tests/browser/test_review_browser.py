"""A real Chromium reviews a session: the list, the timeline, an acknowledgement that sticks.

The monitor runs as `feltsafe serve` does (create_app with an SQLite store, uvicorn on
127.0.0.1: plain HTTP, no network namespace needed), the store filled through its own
API (tests/monitor/review_data.py). Chromium (Debian's, through Playwright) opens the
review page with a supervisor token in the URL fragment, as `feltsafe demo` prints it,
and does what a supervisor does: filters the list, opens a session, reads its timeline
(plotly: freeze and disclosure bands, flag markers), acknowledges a flag with a note,
reloads and sees it acknowledged; the store then holds the acknowledgement and its
audit row, in the token's name. Along the way: the token leaves the address bar, no
request leaves the monitor's origin (plotly comes from the package, not a CDN), the page
logs no error (its Content-Security-Policy included), and the CSV export downloads.

The screenshot of the session page goes to a temporary directory, or to
docs/review-session.png (checked in, shown in the README) with
FELTSAFE_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import Settings
from monitor.store import AuditAction, Store
from monitor.tokens import TokenRole
from tests.monitor import review_data
from tests.monitor.review_data import SECRET, SESSION_A, token
from tests.monitor.test_access import Server

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
SUBJECT = "acct-supervisor-7"
NOTE = "Talked this through with the therapist on Monday."


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("FELTSAFE_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS
    return tmp_path


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[tuple[Server, Store, review_data.Filled]]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (see .ci)")
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        filled = review_data.fill(store)
        with Server(Settings(secret=SECRET), store) as server:
            yield server, store, filled


def test_a_supervisor_acknowledges_a_flag_and_it_stays_acknowledged(
    monitor: tuple[Server, Store, review_data.Filled], shots: Path, tmp_path: Path
) -> None:
    server, store, filled = monitor
    supervisor = token(TokenRole.SUPERVISOR, subject=SUBJECT, ttl=600)
    requests: list[str] = []
    errors: list[str] = []

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(
                viewport={"width": 1100, "height": 900}, accept_downloads=True
            )
            page = context.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "response",
                lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )

            # The list: the token arrives in the fragment and leaves the address bar.
            page.goto(f"{server.http}/review#token={supervisor}")
            rows = page.locator("#sessions tbody tr")
            rows.first.wait_for(timeout=10_000)
            assert rows.count() == 3
            assert supervisor not in page.url
            assert page.evaluate("sessionStorage.length") == 1
            row_a = page.locator(f"tr[data-session='{SESSION_A}']")
            assert "1 alert" in row_a.inner_text()
            assert "3 min 00 s" in row_a.inner_text()

            # Filters: flags at least "alert" leaves session A alone.
            page.select_option("select[name=min_severity]", "alert")
            page.get_by_role("button", name="Apply").click()
            # (Locators, not wait_for_function: the page's CSP forbids eval, rightly.)
            playwright_api.expect(rows).to_have_count(1)
            assert "min_severity=alert" in page.url

            # The session page: overview, timeline, flags.
            row_a.locator("a").click()
            page.wait_for_url(f"**/review/session.html?id={SESSION_A}")
            chart = page.locator("#chart")
            page.wait_for_selector("#chart[data-points='36'][data-flags='3']", timeout=10_000)
            assert chart.locator(".main-svg").count() >= 1
            shapes = page.evaluate(
                "document.getElementById('chart').layout.shapes"
                ".filter(s => s.type === 'rect').map(s => [s.name, s.x0, s.x1])"
            )
            # Frozen at the 95-110 s points: the band starts at the point before (90 s).
            bands = sorted((name, round(x0 * 60, 3), round(x1 * 60, 3)) for name, x0, x1 in shapes)
            assert bands == [
                ("disclosure window", 75.0, 125.0),
                ("therapist video frozen", 90.0, 110.0),
            ]
            traces = page.evaluate(
                "document.getElementById('chart').data.map(t => [t.name, t.x.length])"
            )
            assert ["alert flag", 1] in traces
            assert ["warn flag", 1] in traces
            flags = page.locator("li.flag")
            assert flags.count() == 3
            freeze = page.locator(f"li.flag[data-key='{filled.freeze_alert}']")
            assert "froze while the client was sharing" in freeze.inner_text()
            assert "therapist.video.freeze_s" in freeze.inner_text()  # its evidence
            assert "session.disclosure" in freeze.inner_text()  # its context

            # Acknowledge with a note.
            freeze.locator("textarea[name=note]").fill(NOTE)
            freeze.get_by_role("button", name="Acknowledge").click()
            acknowledged = f"li.flag[data-key='{filled.freeze_alert}'][data-acknowledged='true']"
            page.wait_for_selector(acknowledged, timeout=10_000)
            # The overview and the timeline, small enough for the README.
            page.screenshot(
                path=str(shots / "review-session.png"),
                full_page=True,
                clip={"x": 0, "y": 0, "width": 1100, "height": 1180},
            )

            # After a reload (same tab: the token is still in sessionStorage).
            page.reload()
            page.wait_for_selector(acknowledged, timeout=10_000)
            status = page.locator(f"{acknowledged} .ack-status").inner_text()
            assert f"Acknowledged by {SUBJECT}" in status
            assert NOTE in status

            # The export downloads with the token in a header, not in a link.
            with page.expect_download() as download_info:
                page.get_by_role("button", name="Export CSV").click()
            saved = tmp_path / "export.csv"
            download_info.value.save_as(saved)
            assert saved.read_text().startswith("key,rule_id,rule_version,severity,title")

            # The API docs page renders the OpenAPI document.
            page.goto(f"{server.http}/api/docs")
            page.wait_for_selector("#operations section")
            assert page.locator("#operations section").count() >= 9
        finally:
            browser.close()

    stored = store.get_flag(filled.freeze_alert)
    assert stored is not None
    assert stored.acknowledgement is not None
    assert (stored.acknowledgement.by, stored.acknowledgement.note) == (SUBJECT, NOTE)
    audit = [e for e in store.list_audit(limit=500) if e.actor.subject == SUBJECT]
    acks = [e for e in audit if e.action is AuditAction.ACK]
    assert [(e.resource, e.session_id, e.actor.role) for e in acks] == [
        (f"flag/{filled.freeze_alert}", SESSION_A, "supervisor")
    ]
    views = {e.resource for e in audit if e.action is AuditAction.VIEW}
    assert {f"session/{SESSION_A}/flags", f"session/{SESSION_A}/timeline", "sessions"} <= views
    assert any(e.action is AuditAction.EXPORT for e in audit)
    foreign = [url for url in requests if not url.startswith((server.http, "blob:", "data:"))]
    assert foreign == []
    assert any(url.endswith("/review/vendor/plotly.min.js") for url in requests)
    assert all(supervisor not in url for url in requests)
    assert errors == []
