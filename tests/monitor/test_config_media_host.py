"""The media bind address setting makes aioice offer exactly the configured address."""

from __future__ import annotations

import aioice.ice
import pytest

from monitor.media_host import apply_media_host, current_media_host, media_host
from probes.base import ConfigError


def test_aioice_offers_only_the_configured_loopback_alias() -> None:
    original = aioice.ice.get_host_addresses
    with media_host("127.0.0.2"):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.2"]
        assert current_media_host() == "127.0.0.2"
    assert aioice.ice.get_host_addresses is original
    assert current_media_host() is None


def test_an_ipv4_media_host_offers_nothing_when_only_ipv6_is_gathered() -> None:
    with media_host("127.0.0.3"):
        assert aioice.ice.get_host_addresses(False, True) == []


def test_none_restores_aioices_own_list() -> None:
    original = aioice.ice.get_host_addresses
    with media_host("127.0.0.2"):
        apply_media_host(None)
        assert aioice.ice.get_host_addresses is original


def test_a_hostname_is_refused() -> None:
    with pytest.raises(ConfigError, match="IP address"):
        apply_media_host("localhost")


async def test_a_gathered_connection_offers_the_media_host_as_its_host_candidate() -> None:
    with media_host("127.0.0.2"):
        connection = aioice.Connection(ice_controlling=True)
        try:
            await connection.gather_candidates()
            hosts = [c.host for c in connection.local_candidates]
        finally:
            await connection.close()
    assert hosts == ["127.0.0.2"]
