"""A real Chromium shows the therapist's indicator: calm, red within 1 s of a freeze, calm again.

The monitor runs as `feltsafe serve` does (create_app under uvicorn, on 127.0.0.1), with
a simulated therapist and client publishing media into a live session
(tests/monitor/indicator_sim.py). Chromium (Debian's, through Playwright) loads the demo
call page with the ``<feltsafe-indicator>`` component. The therapist turns on
"Sensitive moment" with the component's own button (the marker goes over the
websocket to the session), then the therapist's video frames stop: the session's W3C
freeze deadline finds it, the rules raise "your picture froze while they were speaking"
at alert, and the component must turn red with that message within 1 s of the last
frame. When the frames come back, the indicator must recover, and slowly: not before
10 s after it turned red (DESIGN.md: at most one level change per 10 s).

Screenshots of the three states go to a temporary directory, or to docs/ (checked in,
shown in the README) when FELTSAFE_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.app import create_app
from monitor.config import Mode, Settings
from monitor.media_host import media_host
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.browser.indicator_helpers import MonitorThread
from tests.monitor.indicator_sim import SimulatedParticipant

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SECRET = "browser-secret-" + "y" * 32
SESSION = "demo-session"
FROZE_WHILE_SPEAKING = "Your client may not see you: your picture froze while they were speaking"
RED = "rgb(198, 40, 40)"  # --fs-alert
NEUTRAL = "rgb(139, 148, 158)"  # --fs-neutral
LEVEL_IS = "level => document.getElementById('indicator')?.getAttribute('level') === level"
DOT = "document.querySelector('#indicator').shadowRoot.querySelector('.dot')"
DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("FELTSAFE_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        return DOCS
    return tmp_path


@pytest.fixture
def monitor() -> Iterator[MonitorThread]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install chromium (see .ci)")
    with (
        media_host("127.0.0.2"),
        MonitorThread(create_app(Settings(secret=SECRET, mode=Mode.FULL))) as thread,
    ):
        yield thread


def test_the_indicator_turns_red_within_a_second_of_a_freeze_and_recovers_slowly(
    monitor: MonitorThread, shots: Path
) -> None:
    registry = monitor.app.state.registry

    def start() -> dict[Role, SimulatedParticipant]:
        live = registry.open(SESSION)
        people = {role: SimulatedParticipant(live, role) for role in Role}
        for participant in people.values():
            participant.start()
        return people

    token = issue_token(SECRET, role=TokenRole.THERAPIST, session=SESSION, ttl=600)
    url = f"http://127.0.0.1:{monitor.port}/static/demo-call.html#session={SESSION}&token={token}"
    people: dict[Role, SimulatedParticipant] = {}

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 720, "height": 480})
            # Every state the component receives, on the page's clock.
            page.add_init_script(
                "window.levels = [];"
                "document.addEventListener('feltsafe-state',"
                " e => window.levels.push([e.detail.level, performance.now()]));"
            )
            page.goto(url)
            indicator = page.locator("#indicator")
            stage = page.locator("#stage")

            # Calm: connected, a neutral dot, no words on screen, an accessible status.
            page.wait_for_function(
                "document.getElementById('indicator')?.getAttribute('connection') === 'open'",
                timeout=10_000,
            )
            # The call starts once the browser is up (its start-up starves this small
            # machine, and a starved feeder makes real W3C freezes).
            people.update(monitor.call(start))
            therapist = people[Role.THERAPIST]
            time.sleep(1.5)
            assert indicator.get_attribute("level") == "ok"
            status = page.locator("feltsafe-indicator [role=status]")
            assert status.get_attribute("aria-live") == "polite"
            assert page.locator("feltsafe-indicator .message").inner_text() == ""
            assert token not in page.url  # the page took the token out of the address bar
            page.wait_for_function(f"getComputedStyle({DOT}).backgroundColor === '{NEUTRAL}'")
            stage.screenshot(path=str(shots / "indicator-ok.png"))

            # The therapist marks a sensitive moment; the session hears of it.
            button = page.get_by_role("button", name="Sensitive moment")
            button.click()
            page.wait_for_function(
                "document.querySelector('#indicator').shadowRoot"
                ".querySelector('.marker').getAttribute('aria-pressed') === 'true'",
                timeout=5_000,
            )
            time.sleep(0.5)  # a tick carries the marker into the snapshots

            monitor.call(therapist.freeze)
            page.wait_for_function(
                f"getComputedStyle({DOT}).backgroundColor === '{RED}'", timeout=3_000, polling=20
            )
            red_at = monitor.clock()
            assert indicator.get_attribute("level") == "alert"
            assert therapist.last_frame_at is not None
            assert red_at - therapist.last_frame_at < 1.0
            message = page.locator("feltsafe-indicator .message").inner_text()
            assert message == FROZE_WHILE_SPEAKING
            hint = page.locator("feltsafe-indicator .hint").inner_text()
            assert hint.startswith("When your picture is back")
            stage.screenshot(path=str(shots / "indicator-alert.png"))

            monitor.call(therapist.resume)
            page.wait_for_function(LEVEL_IS, arg="ok", timeout=20_000, polling=50)
            levels = page.evaluate("window.levels")
            alert_ms = next(t for level, t in levels if level == "alert")
            ok_ms = next(t for level, t in levels if level == "ok" and t > alert_ms)
            assert {level for level, t in levels if alert_ms <= t <= ok_ms} == {"alert", "ok"}
            # Recovers slowly: the next change comes 10 s (the interval) after the red.
            assert (ok_ms - alert_ms) / 1000.0 >= 10.0 - 0.25
            assert page.locator("feltsafe-indicator .message").inner_text() == ""
            assert indicator.get_attribute("connection") == "open"
            page.wait_for_function(f"getComputedStyle({DOT}).backgroundColor === '{NEUTRAL}'")
            page.wait_for_timeout(400)  # the panel's fade (300 ms) has run
            stage.screenshot(path=str(shots / "indicator-recovered.png"))

            # Reduced motion: no fades at all.
            assert page.evaluate(f"getComputedStyle({DOT}).transitionDuration") != "0s"
            page.emulate_media(reduced_motion="reduce")
            assert page.evaluate(f"getComputedStyle({DOT}).transitionDuration") == "0s"
        finally:
            browser.close()
            for participant in people.values():
                monitor.call(participant.stop)
