"""The round-trip time of a WHIP publisher's path to the monitor, from ICE consent checks.

Theory of operation: the monitor only receives, so RTCP gives it no round-trip time (a
sender computes RTT from the receiver's reports, never the other way round), and a
participant without the browser beacon had no RTT at all, hence no MOS. But aioice checks
consent to send on the nominated candidate pair every 4-6 s (RFC 7675): a STUN binding
request that the browser answers at once. Its round trip is the network round trip of
the participant's path to the monitor, plus two passes through the event loop.

aioice keeps these timings to itself: its ``Connection.query_consent`` awaits
``pair.protocol.request(..., retransmissions=0)``. :func:`install_consent_rtt` wraps
``request`` on the instances of the peer connection's STUN protocols (never the class)
and times the requests sent with ``retransmissions=0``, the consent checks; the
connectivity checks of ICE itself retransmit, so a lost first try would be timed too
long, and are left alone. A consent check that gets no answer raises in aioice as before
and gives no sample.

Private names: the ICE connection (``RTCIceTransport._connection``), its ``_protocols``
and the shape of ``query_consent``. :func:`check_aioice_internals` says whether they are
as expected; when they are not the monitor logs it once and goes without this RTT (the
beacon's still works), and tests/monitor/test_ice_rtt.py fails loudly.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

from aioice import Connection
from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

RttCallback = Callable[[float, float], None]  # (rtt_ms, now)


@functools.cache
def check_aioice_internals() -> str | None:
    """None when the private members used here are as expected, else what moved."""
    try:
        source = inspect.getsource(Connection.query_consent)
    except (AttributeError, OSError, TypeError):
        return "aioice Connection.query_consent is gone"
    if "pair.protocol.request(" not in source or "retransmissions=0" not in source:
        return "aioice no longer checks consent with protocol.request(retransmissions=0)"
    return None


class ConsentRtt:
    """The wrappers installed on one peer connection's STUN protocols."""

    __slots__ = ("callback_errors", "protocols", "samples")

    def __init__(self) -> None:
        self.protocols: list[Any] = []
        self.samples = 0
        self.callback_errors = 0

    def uninstall(self) -> None:
        """Remove the instance attributes (breaks protocol -> wrapper -> callback cycles)."""
        for protocol in self.protocols:
            protocol.__dict__.pop("request", None)
        self.protocols.clear()


def install_consent_rtt(
    pc: RTCPeerConnection, callback: RttCallback, *, clock: Callable[[], float]
) -> ConsentRtt | None:
    """Time ``pc``'s ICE consent checks; ``callback(rtt_ms, now)`` for each answered one.

    Call after the local description is set (candidates gathered). Returns None, once
    logged, when aioice's internals moved.
    """
    problem = check_aioice_internals()
    connections = {
        id(c): c
        for t in pc.getTransceivers()
        if isinstance(c := getattr(t.receiver.transport.transport, "_connection", None), Connection)
    }
    if problem is None and not connections:
        problem = "aiortc's ICE transport no longer holds an aioice Connection"
    if problem is not None:
        _warn_once(problem)
        return None
    installed = ConsentRtt()
    for connection in connections.values():
        for protocol in getattr(connection, "_protocols", ()):
            if "request" in protocol.__dict__:
                continue  # already timed (a second transceiver on the same transport)
            protocol.request = _timed(protocol.request, installed, callback, clock)
            installed.protocols.append(protocol)
    return installed


def _timed(
    original: Callable[..., Any],
    installed: ConsentRtt,
    callback: RttCallback,
    clock: Callable[[], float],
) -> Callable[..., Any]:
    async def request(
        message: Any,
        addr: tuple[str, int],
        integrity_key: bytes | None = None,
        retransmissions: int | None = None,
    ) -> Any:
        if retransmissions != 0:
            return await original(
                message, addr, integrity_key=integrity_key, retransmissions=retransmissions
            )
        sent = clock()
        response = await original(message, addr, integrity_key=integrity_key, retransmissions=0)
        now = clock()
        installed.samples += 1
        try:
            callback((now - sent) * 1000.0, now)
        except Exception:
            installed.callback_errors += 1
            if installed.callback_errors == 1:
                logger.exception("consent RTT callback failed (counted; further failures quiet)")
        return response

    return request


@functools.cache
def _warn_once(problem: str) -> None:
    logger.warning("%s: no RTT for WHIP publishers without a beacon", problem)
