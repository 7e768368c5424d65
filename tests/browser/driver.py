"""One real-browser run, executed *inside* the test's network namespace.

Usage: ``ip netns exec NS .venv/bin/python -m tests.browser.driver CONFIG.json``; prints
one JSON document on stdout (everything else goes to stderr and the server log).

The namespace has only ``lo``, so everything here stays on loopback: the monitor
(``feltsafe serve`` as a subprocess, media bound to ``media_host``, 127.0.0.2), headless
Chromium (Debian's /usr/bin/chromium, fake camera and microphone from the test's y4m
and wav), and the iptables rule that drops 5 % of the UDP packets to the media address.

The page (tests/browser/call.html) publishes the same camera and microphone twice via
WHIP, to a session in full mode and to one in metadata mode, and makes a peer-to-peer
call with itself that the monitor never sees, reported only by two beacons. The run is
one timeline shared by every assertion (tests/browser/test_real_browser.py):

1. set-up; the wav (4 s of silence, then speech) starts playing at getUserMedia;
2. clean phase: at ``pause_at`` s after set-up every video sender sends nothing for
   ``pause`` s (``replaceTrack(null)``); the phase lasts until the wav has ended and the
   speech decisions have settled;
3. loss phase: ``loss_duration`` s with the iptables rule in place; browser stats are
   sampled just before it starts and just after it ends;
4. fuzzing: a seeded stream of malformed, oversized, binary and flooding frames on a
   beacon connection of the metadata session; then a few more seconds of polling.

Throughout, every session's snapshot (``GET /api/sessions/{id}/snapshot``) is read every
250 ms and the browser's own ``getStats()`` every 500 ms, each stamped with the driver's
monotonic clock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from monitor.tokens import TokenRole, issue_token
from probes.base import Role

ROOT = Path(__file__).resolve().parents[2]
APP_ORIGIN = "http://localhost:8000"  # the therapy app's origin; Playwright serves the page
SESSIONS = {"full": "browser-full", "metadata": "browser-metadata", "p2p": "browser-p2p"}


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def loss_rule(media_host: str, probability: float) -> list[str]:
    return ["INPUT", "-d", media_host, "-p", "udp", "-m", "statistic", "--mode", "random",
            "--probability", str(probability), "-j", "DROP"]  # fmt: skip


class Run:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.base = f"http://127.0.0.1:{config['port']}"
        # The snapshot is a supervisor's (or the session's therapist's) to read.
        reader = issue_token(config["secret"], role=TokenRole.SUPERVISOR)
        self.http = httpx.Client(timeout=5.0, headers={"Authorization": f"Bearer {reader}"})
        self.t0 = time.monotonic()
        self.snapshots: list[dict[str, Any]] = []
        self.browser: list[dict[str, Any]] = []
        self.marks: dict[str, float] = {}
        self._last_browser = -1.0

    def clock(self) -> float:
        return time.monotonic() - self.t0

    def mark(self, name: str) -> float:
        self.marks[name] = now = self.clock()
        return now

    def token(self, session: str, role: Role) -> str:
        return issue_token(
            self.config["secret"], role=TokenRole.PUBLISHER, session=session, participant=role
        )

    # -- sampling -----------------------------------------------------------------------

    def sample_snapshots(self) -> None:
        row: dict[str, Any] = {"t": self.clock()}
        for name, session in SESSIONS.items():
            response = self.http.get(f"{self.base}/api/sessions/{session}/snapshot")
            row[name] = response.json() if response.status_code == 200 else None
        self.snapshots.append(row)

    def sample_browser(self, page: Page) -> dict[str, Any]:
        t = self.clock()
        stats: dict[str, Any] = page.evaluate("T.stats()")
        stats["driver_t"] = t
        self.browser.append(stats)
        self._last_browser = t
        return stats

    def poll(self, page: Page, until: float) -> None:
        while (now := self.clock()) < until:
            self.sample_snapshots()
            if now - self._last_browser >= 0.5:
                self.sample_browser(page)
            time.sleep(max(0.0, 0.25 - (self.clock() - now)))

    # -- the timeline -------------------------------------------------------------------

    def scenario(self, page: Page) -> dict[str, Any]:
        cfg = self.config
        full, meta, p2p = SESSIONS["full"], SESSIONS["metadata"], SESSIONS["p2p"]
        plan = {
            "publish": [
                {"name": "full", "session": full, "role": "therapist", "mode": "full",
                 "token": self.token(full, Role.THERAPIST)},
                {"name": "metadata", "session": meta, "role": "therapist", "mode": "metadata",
                 "token": self.token(meta, Role.THERAPIST)},
            ],
            "beacons": [
                {"name": "full-therapist", "pc": "full", "session": full, "role": "therapist",
                 "token": self.token(full, Role.THERAPIST)},
                {"name": "p2p-therapist", "pc": "p2pA", "session": p2p, "role": "therapist",
                 "token": self.token(p2p, Role.THERAPIST)},
                {"name": "p2p-client", "pc": "p2pB", "session": p2p, "role": "client",
                 "token": self.token(p2p, Role.CLIENT)},
            ],
        }  # fmt: skip
        self.mark("setup_start")
        locations = page.evaluate("plan => T.setup(plan)", plan)
        ready = self.mark("ready")
        log(f"set up in {ready - self.marks['setup_start']:.2f} s: {sorted(locations)}")

        self.poll(page, ready + cfg["pause_at"])
        self.mark("pause")
        page.evaluate("ms => { T.pauseVideo(ms); }", cfg["pause"] * 1000)
        clean_end = max(
            self.marks["setup_start"] + cfg["wav_duration"] + cfg["speech_settle"],
            self.marks["pause"] + cfg["pause"] + 4.0,
        )
        self.poll(page, clean_end)

        rule = loss_rule(cfg["media_host"], cfg["loss_probability"])
        self.sample_browser(page)
        self.mark("loss_on")
        subprocess.run(["iptables", "-A", *rule], check=True)
        self.poll(page, self.marks["loss_on"] + cfg["loss_duration"])
        subprocess.run(["iptables", "-D", *rule], check=True)
        self.mark("loss_off")
        self.sample_browser(page)
        self.poll(page, self.marks["loss_off"] + 3.0)

        counters_before_fuzz = self.http.get(f"{self.base}/api/beacon/counters").json()
        self.mark("fuzz_start")
        fuzz = page.evaluate(
            "([url, token, seed]) => T.fuzz(url, token, seed)",
            [
                f"ws://127.0.0.1:{cfg['port']}/ws/beacon/{meta}/client",
                self.token(meta, Role.CLIENT),
                cfg["fuzz_seed"],
            ],
        )
        self.mark("fuzz_end")
        self.poll(page, self.marks["fuzz_end"] + 3.0)
        counters = self.http.get(f"{self.base}/api/beacon/counters").json()
        health = self.http.get(f"{self.base}/healthz").json()
        events = page.evaluate("T.events")
        page.evaluate("T.teardown()")
        return {
            "marks": self.marks,
            "locations": locations,
            "page_events": events,
            "snapshots": self.snapshots,
            "browser": self.browser,
            "fuzz": fuzz,
            "counters_before_fuzz": counters_before_fuzz,
            "counters": counters,
            "health": health,
        }


def chromium_args(wav: str, y4m: str) -> list[str]:
    return [
        "--no-sandbox",  # root in a container
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        f"--use-file-for-fake-video-capture={y4m}",
        "--allow-loopback-in-peer-connection",
        # mDNS candidates cannot resolve in the namespace. Local Network Access: the page
        # comes from Playwright's router, not a socket, so Chromium counts it as public
        # and would ask the user before it reaches the loopback monitor.
        "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks",
        "--autoplay-policy=no-user-gesture-required",
    ]


def start_server(config: dict[str, Any], log_file: Any) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "FELTSAFE_SECRET": config["secret"],
        "FELTSAFE_ALLOWED_ORIGINS": APP_ORIGIN,
        "FELTSAFE_DB": f"sqlite:///{config['workdir']}/feltsafe.db",
    }
    return subprocess.Popen(
        [str(ROOT / ".venv/bin/feltsafe"), "serve", "--host", "127.0.0.1",
         "--port", str(config["port"]), "--media-host", config["media_host"]],
        env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=config["workdir"],
    )  # fmt: skip


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"feltsafe serve exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("feltsafe serve did not become healthy")


def main() -> int:
    config = json.loads(Path(sys.argv[1]).read_text())
    html = (Path(__file__).with_name("call.html")).read_text()
    run = Run(config)
    with open(config["server_log"], "ab") as server_log:
        server = start_server(config, server_log)
        try:
            wait_healthy(run.base, server)
            log(f"server healthy after {run.clock():.1f} s")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path="/usr/bin/chromium",
                    headless=True,
                    args=chromium_args(config["wav"], config["y4m"]),
                )
                page = browser.new_page()
                console: list[str] = []
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                page.on("console", lambda m: log(f"console {m.type}: {m.text}"))
                body = html.replace("__MONITOR__", run.base)
                page.route(
                    f"{APP_ORIGIN}/call.html",
                    lambda route: route.fulfill(status=200, content_type="text/html", body=body),
                )
                page.goto(f"{APP_ORIGIN}/call.html")
                try:
                    result = run.scenario(page)
                finally:
                    browser.close()
                result["console"] = console
        finally:
            rule = loss_rule(config["media_host"], config["loss_probability"])
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)
            server.terminate()
            try:
                result_code = server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                result_code = server.wait()
    result["server_exit"] = result_code
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
