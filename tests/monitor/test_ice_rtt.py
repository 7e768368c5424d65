"""RTT of a WHIP publisher's path from aioice's ICE consent checks (monitor/ice_rtt.py).

If the first test fails after an aioice upgrade, WHIP publishers without a beacon have
no RTT (and no MOS) again: read monitor/ice_rtt.py and find where aioice now checks
consent before changing anything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import aioice.ice
import pytest

from monitor.ice_rtt import check_aioice_internals, install_consent_rtt
from monitor.media_host import media_host
from tests.monitor.peers import ScriptedSpeechTrack
from tests.monitor.test_hook_aiortc import Pair, _until


@pytest.fixture(autouse=True)
def _loopback_media() -> Iterator[None]:
    with media_host("127.0.0.2"):
        yield


@pytest.fixture
async def pair(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Pair]:
    # Consent every 0.4-0.6 s instead of 4-6 s, so the test waits half a second, not five.
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.5)
    peers = Pair()
    yield peers
    await peers.close()


def test_aioice_checks_consent_where_the_monitor_times_it() -> None:
    assert check_aioice_internals() is None


@pytest.mark.slow
async def test_consent_checks_give_the_round_trip_of_the_path(pair: Pair) -> None:
    samples: list[tuple[float, float]] = []
    loop = asyncio.get_running_loop()
    # The receiving side (the monitor's) times its own consent checks; the sender answers.
    await pair.connect(ScriptedSpeechTrack([(0.0, 5.0)]))
    hook = install_consent_rtt(pair.receiver, lambda r, t: samples.append((r, t)), clock=loop.time)
    assert hook is not None
    assert hook.protocols
    await _until(lambda: len(samples) >= 3, timeout=5.0)
    assert len(samples) >= 3
    assert hook.samples == len(samples)
    # Loopback: well under a few milliseconds, two event-loop passes included.
    assert all(0.0 <= rtt < 50.0 for rtt, _ in samples), samples
    times = [t for _, t in samples]
    assert times == sorted(times)
    hook.uninstall()
    assert all("request" not in p.__dict__ for p in hook.protocols)
    count = len(samples)
    await asyncio.sleep(1.2)
    assert len(samples) == count  # uninstalled: nothing more is timed
    assert pair.receiver.connectionState == "connected"


@pytest.mark.slow
async def test_a_failing_callback_is_counted_and_consent_goes_on(pair: Pair) -> None:
    loop = asyncio.get_running_loop()

    def boom(rtt: float, now: float) -> None:
        raise RuntimeError("probe bug")

    await pair.connect(ScriptedSpeechTrack([(0.0, 5.0)]))
    hook = install_consent_rtt(pair.receiver, boom, clock=loop.time)
    assert hook is not None
    await _until(lambda: hook.callback_errors >= 3, timeout=5.0)
    assert hook.callback_errors >= 3
    await asyncio.sleep(0.5)
    assert pair.receiver.connectionState == "connected"  # consent never failed for it
