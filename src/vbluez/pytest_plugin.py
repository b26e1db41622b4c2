"""pytest fixtures for code that uses bleak or bless: a fresh virtual radio per test.

Installed as a pytest plugin (entry point ``vbluez``). Needs pytest-asyncio.

* ``vbluez`` yields a running :class:`~vbluez.VirtualBluez` with two adapters and points
  ``DBUS_SYSTEM_BUS_ADDRESS`` at it for the test's duration.
* ``@pytest.mark.vbluez(adapters=4, mtu=23, conn_interval_ms=15, ...)`` sets
  :class:`~vbluez.RadioConfig` fields for one test.
* ``--hil`` (hardware in the loop, ``docs/hil.md``): the same tests on the BlueZ of
  ``BLEGW_HIL_BUS``; ``vbluez`` then yields a :class:`~vbluez.hil.HilRadio` and starts nothing,
  tests marked ``needs_vbluez_control`` are skipped with the reason, and anything else that
  reaches a vbluez-only interface fails.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Generator

import pytest
import pytest_asyncio

from .config import RadioConfig
from .hil import HilRadio, RigTooSmall
from .hil_guard import HIL_ENV
from .runtime import VirtualBluez

CONTROL_MARKER = "needs_vbluez_control"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--hil", action="store_true", default=False,
                     help="hardware in the loop: run on the BlueZ of BLEGW_HIL_BUS (default the "
                          "system bus), start no virtual radio (docs/hil.md)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "vbluez(**settings): RadioConfig settings for the vbluez fixture")
    config.addinivalue_line(
        "markers", f"{CONTROL_MARKER}(why): uses the vbluez control API (fault injection, "
                   "link inspection); skipped in HIL mode")
    if config.getoption("hil"):
        # The harness (running_chain) and the guards read the mode from the environment.
        os.environ[HIL_ENV] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("hil"):
        return
    for item in items:
        marker = item.get_closest_marker(CONTROL_MARKER)
        if marker is not None:
            why = marker.args[0] if marker.args else "fault injection or link inspection"
            item.add_marker(pytest.mark.skip(
                reason=f"HIL mode: needs the vbluez control API ({why})"))
            continue
        # A radio model setting (MTU, timing, advertising length...) cannot be set on a BlueZ
        # the suite did not start; the adapter count is the rig's.
        radio = item.get_closest_marker("vbluez")
        settings = sorted(set(radio.kwargs) - {"adapters"}) if radio is not None else []
        if settings:
            item.add_marker(pytest.mark.skip(
                reason=f"HIL mode: needs vbluez radio settings ({', '.join(settings)})"))


def _rig_too_small_skips() -> Generator[None, object, object]:
    """A test (or its fixture) asking for more adapters than the rig has is skipped, with
    the count in the reason: a two-dongle rig cannot run a four-adapter test. Only a HIL
    radio raises :class:`RigTooSmall`, so this changes nothing outside HIL mode."""
    try:
        return (yield)
    except RigTooSmall as exc:
        pytest.skip(str(exc))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _rig_too_small_skips())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _rig_too_small_skips())


@pytest_asyncio.fixture
async def vbluez(request: pytest.FixtureRequest,
                 monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[VirtualBluez | HilRadio]:
    marker = request.node.get_closest_marker("vbluez")
    settings = dict(marker.kwargs) if marker else {}
    config = RadioConfig()
    config.update(settings)
    radio: VirtualBluez | HilRadio = (HilRadio(config) if request.config.getoption("hil")
                                      else VirtualBluez(config=config))
    async with radio:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", radio.bus_address)
        yield radio
