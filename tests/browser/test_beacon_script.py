"""feltsafe-beacon.js in a real Chromium, against the real monitor: what it sends, when
it reconnects and when it gives up.

The peer connection is a stand-in object with ``getStats()`` and ``getSenders()`` (no
media needed, so no namespace): it reports an audio stream received, a round-trip time,
a microphone's energy, and a codec entry the beacon must leave out. The monitor runs on
its own thread (tests/browser/indicator_helpers.py), uvicorn on a free loopback port;
the page comes from the monitor itself, so the Origin is its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright
from websockets.sync.client import connect

from monitor.app import create_app
from monitor.config import Settings
from monitor.tokens import TokenRole, issue_token
from probes.base import Role
from tests.browser.conftest import skip_or_fail
from tests.browser.indicator_helpers import MonitorThread

pytestmark = pytest.mark.slow

SECRET = "j" * 40
CHROMIUM = Path("/usr/bin/chromium")  # the Debian package; never `playwright install`

FAKE_PC = """
window.fakePc = (rtt) => {
  let energy = 0, duration = 0, received = 0;
  const microphone = {
    track: { kind: "audio" },
    getStats: async () => {
      duration += 0.1;
      energy += 0.1 * 0.1 * 0.1;  // RMS 0.1 over each 100 ms: -20 dBov
      return new Map([["source", { type: "media-source", kind: "audio",
        totalAudioEnergy: energy, totalSamplesDuration: duration }]]);
    },
  };
  return {
    signalingState: "stable",
    connectionState: "connected",
    getSenders: () => [microphone],
    getStats: async () => {
      received += 50;
      return new Map([
        ["in", { type: "inbound-rtp", kind: "audio", jitter: 0.004, packetsReceived: received,
          packetsLost: 0, concealedSamples: 0, totalSamplesReceived: received * 960,
          audioLevel: 0.2, trackIdentifier: "private-track-id" }],
        ["rin", { type: "remote-inbound-rtp", kind: "audio", roundTripTime: rtt }],
        ["codec", { type: "codec", mimeType: "audio/opus", sdpFmtpLine: "useinbandfec=1" }],
      ]);
    },
  };
};
window.beacons = {};
window.startBeacon = (name, session, role, token, rtt) => {
  let first = true;
  const credential = token.bad === undefined ? token.good
    : () => { const t = first ? token.bad : token.good; first = false; return t; };
  window.beacons[name] = FeltsafeBeacon.start({
    pc: fakePc(rtt), url: `ws://${location.host}/ws/beacon/${session}/${role}`,
    token: credential, statsIntervalMs: 200, levelIntervalMs: 100,
  });
};
window.beaconState = (name) => {
  const b = window.beacons[name];
  return { state: b.state, sent: b.sent, errors: b.errors, reconnects: b.reconnects };
};
"""


def token(session: str, role: Role = Role.THERAPIST) -> str:
    return issue_token(SECRET, role=TokenRole.PUBLISHER, session=session, participant=role)


@pytest.fixture(scope="module")
def monitor() -> Iterator[MonitorThread]:
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} missing (Debian package chromium)")
    with MonitorThread(create_app(Settings(secret=SECRET))) as running:
        yield running


@pytest.fixture(scope="module")
def page(monitor: MonitorThread) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page()
            base = f"http://127.0.0.1:{monitor.port}"
            page.goto(f"{base}/healthz")  # any page of the monitor: its origin, its script
            page.add_script_tag(url=f"{base}/static/feltsafe-beacon.js")
            page.add_script_tag(content=FAKE_PC)
            yield page
        finally:
            browser.close()


def start(page: Page, name: str, session: str, credential: dict[str, str], rtt: float) -> None:
    page.evaluate("([n, s, c, r]) => startBeacon(n, s, 'therapist', c, r)",
                  [name, session, credential, rtt])  # fmt: skip


def wait_for(page: Page, name: str, condition: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        state: dict[str, Any] = page.evaluate("n => beaconState(n)", name)
        if condition(state):
            return state
        assert time.monotonic() < deadline, f"beacon {name} stuck at {state}"
        page.wait_for_timeout(50)


def snapshot(monitor: MonitorThread, session: str) -> dict[str, Any]:
    live = monitor.app.state.registry.get(session)
    assert live is not None
    return dict(monitor.call(lambda: live.session.snapshot(now=live.clock())))


def test_the_script_authenticates_then_sends_schema_valid_reports_and_levels(
    monitor: MonitorThread, page: Page
) -> None:
    start(page, "a", "js-a", {"good": token("js-a")}, 0.042)
    state = wait_for(page, "a", lambda s: s["sent"]["stats"] >= 3 and s["sent"]["level"] >= 10)
    values = snapshot(monitor, "js-a")
    counters = monitor.app.state.beacon.counters.as_dict()
    assert state["state"] == "open"
    assert state["errors"] == 0
    assert sum(counters["rejected"].values()) == 0  # strict schema: nothing extra was sent
    assert counters["levels"] >= 10
    # The therapist's browser received the client's audio; its own path has the RTT.
    assert values["client.audio.jitter_ms"] == pytest.approx(4.0)
    assert values["therapist.network.rtt_ms"] == pytest.approx(42.0)


def test_the_script_reconnects_when_the_session_ends_and_a_new_one_starts(
    monitor: MonitorThread, page: Page
) -> None:
    start(page, "b", "js-b", {"good": token("js-b")}, 0.01)
    wait_for(page, "b", lambda s: s["state"] == "open")
    first = monitor.app.state.registry.get("js-b")
    monitor.call(first.close)
    state = wait_for(page, "b", lambda s: s["reconnects"] >= 1 and s["state"] == "open")
    second = monitor.app.state.registry.get("js-b")
    assert second is not None
    assert second is not first
    assert not second.closed
    assert state["errors"] == 0


def test_a_newer_connection_for_the_same_participant_makes_the_script_stop(
    monitor: MonitorThread, page: Page
) -> None:
    start(page, "c", "js-c", {"good": token("js-c")}, 0.01)
    wait_for(page, "c", lambda s: s["state"] == "open")
    with connect(f"ws://127.0.0.1:{monitor.port}/ws/beacon/js-c/therapist") as newer:
        newer.send(json.dumps({"type": "auth", "token": token("js-c")}))
        assert json.loads(newer.recv(timeout=5)) == {"type": "ready"}
        state = wait_for(page, "c", lambda s: s["state"] == "stopped")
        page.wait_for_timeout(1500)  # longer than the first backoff: no comeback
        assert page.evaluate("n => beaconState(n)", "c")["state"] == "stopped"
    assert state["reconnects"] == 0


def test_a_refused_token_stops_the_script_unless_it_can_ask_for_a_new_one(
    monitor: MonitorThread, page: Page
) -> None:
    start(page, "d", "js-d", {"good": token("another-session")}, 0.01)
    refused = wait_for(page, "d", lambda s: s["state"] == "stopped")
    assert refused["reconnects"] == 0
    assert monitor.app.state.registry.get("js-d") is None
    start(page, "e", "js-e", {"bad": "expired-or-garbage", "good": token("js-e")}, 0.01)
    recovered = wait_for(page, "e", lambda s: s["state"] == "open")
    assert recovered["reconnects"] >= 1


def test_stop_closes_the_connection_and_the_participant_leaves(
    monitor: MonitorThread, page: Page
) -> None:
    start(page, "f", "js-f", {"good": token("js-f")}, 0.01)
    wait_for(page, "f", lambda s: s["state"] == "open")
    live = monitor.app.state.registry.get("js-f")
    assert monitor.call(lambda: live.session.is_present(Role.THERAPIST))
    page.evaluate("beacons.f.stop()")
    deadline = time.monotonic() + 5
    while monitor.call(lambda: live.session.is_present(Role.THERAPIST)):
        assert time.monotonic() < deadline, "the participant is still attached"
        time.sleep(0.05)
    assert page.evaluate("n => beaconState(n)", "f")["state"] == "stopped"
