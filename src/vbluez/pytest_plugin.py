"""pytest fixtures for code that uses bleak or bless: a fresh virtual radio per test.

Installed as a pytest plugin (entry point ``vbluez``). Needs pytest-asyncio.

* ``vbluez`` yields a running :class:`~vbluez.VirtualBluez` with two adapters and points
  ``DBUS_SYSTEM_BUS_ADDRESS`` at it for the test's duration.
* ``@pytest.mark.vbluez(adapters=4, mtu=23, conn_interval_ms=15, ...)`` sets
  :class:`~vbluez.RadioConfig` fields for one test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from .config import RadioConfig
from .runtime import VirtualBluez


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vbluez(**settings): RadioConfig settings for the vbluez fixture")


@pytest_asyncio.fixture
async def vbluez(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VirtualBluez]:
    marker = request.node.get_closest_marker("vbluez")
    settings = dict(marker.kwargs) if marker else {}
    config = RadioConfig()
    config.update(settings)
    async with VirtualBluez(config=config) as radio:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", radio.bus_address)
        yield radio
