"""The media bind address: which local address the monitor's ICE agent offers.

Theory of operation: aioice gathers host candidates from
``aioice.ice.get_host_addresses``, which lists every interface address *except*
127.0.0.1. A monitor that must receive media on one address (a loopback alias such as
127.0.0.2 in tests and in a network namespace, or the one public interface of a media
host) sets ``media_host``; this module replaces that function so that aioice offers
exactly that address. It is process-wide by nature (aioice has no per-connection
setting), so ``feltsafe serve`` applies it once at start-up, before any peer connection
exists; tests use :func:`media_host` as a context manager, which restores the original.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager

import aioice.ice

from probes.base import ConfigError

_ORIGINAL = aioice.ice.get_host_addresses


def apply_media_host(host: str | None) -> None:
    """Make aioice offer only ``host`` (None: restore aioice's own address list)."""
    if host is None:
        aioice.ice.get_host_addresses = _ORIGINAL
        return
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"media_host: expected an IP address, got {host!r}") from None
    text = str(address)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        wanted = use_ipv4 if address.version == 4 else use_ipv6
        return [text] if wanted else []

    aioice.ice.get_host_addresses = get_host_addresses


def current_media_host() -> str | None:
    """The configured media host, or None when aioice uses its own list."""
    if aioice.ice.get_host_addresses is _ORIGINAL:
        return None
    addresses = aioice.ice.get_host_addresses(True, True)
    return addresses[0] if addresses else None


@contextmanager
def media_host(host: str | None) -> Iterator[None]:
    """Apply ``host`` for the duration of a block, then restore the previous setting."""
    previous = aioice.ice.get_host_addresses
    apply_media_host(host)
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = previous
