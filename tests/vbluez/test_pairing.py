"""Pairing through Agent1, and encrypt-only characteristics, as BlueZ does them.

bleak (central) and bless (peripheral) run in this one test process, so one agent registered
here answers for both hosts (agent affinity is per process; see docs/vbluez.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from bleak import BleakClient
from bleak.exc import BleakDBusError
from dbus_fast.aio import MessageBus

from vbluez import VirtualBluez

from .agent import RecordingAgent
from .conftest import SECRET, Peripheral, RawBus, dev_path

HCI0 = {"adapter": "hci0"}
AGENT_PATH = "/test/agent"


@contextlib.asynccontextmanager
async def agent(vbluez: VirtualBluez, capability: str, accept: bool = True,
                ) -> AsyncIterator[RecordingAgent]:
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()
    a = RecordingAgent(accept=accept)
    bus.export(AGENT_PATH, a)
    raw = RawBus(bus)
    await raw.ok("/org/bluez", "org.bluez.AgentManager1", "RegisterAgent", "os",
                 [AGENT_PATH, capability])
    await raw.ok("/org/bluez", "org.bluez.AgentManager1", "RequestDefaultAgent", "o",
                 [AGENT_PATH])
    try:
        yield a
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()


@pytest_asyncio.fixture
async def central_dev(peripheral: Peripheral) -> str:
    return dev_path("hci0", peripheral.address)


@pytest.mark.needs_vbluez_control("links")
async def test_numeric_comparison_accepted(vbluez: VirtualBluez, peripheral: Peripheral,
                                           raw: RawBus, central_dev: str) -> None:
    async with agent(vbluez, "DisplayYesNo") as a:
        async with BleakClient(peripheral.address, bluez=HCI0, pair=True) as client:
            assert client.is_connected
            confirmations = [c for c in a.calls if c[0] == "RequestConfirmation"]
            assert len(confirmations) == 2  # one per host, the same six-digit code
            assert confirmations[0][1][1] == confirmations[1][1][1]
            for prop in ("Paired", "Bonded", "Trusted"):
                assert await raw.get(central_dev, "org.bluez.Device1", prop) is True
                assert await raw.get(dev_path("hci1", "5A:00:00:00:00:01"),
                                     "org.bluez.Device1", prop) is True
            assert await client.read_gatt_char(SECRET) == b"secret"
        links = await vbluez.control.links()
        assert links == []


async def test_numeric_comparison_rejected(vbluez: VirtualBluez, peripheral: Peripheral,
                                           raw: RawBus, central_dev: str) -> None:
    async with agent(vbluez, "DisplayYesNo", accept=False) as a:
        client = BleakClient(peripheral.address, bluez=HCI0, pair=True)
        with pytest.raises(BleakDBusError) as err:
            await client.connect()
        assert err.value.dbus_error == "org.bluez.Error.AuthenticationFailed"
        assert any(c[0] == "RequestConfirmation" for c in a.calls)
        assert await raw.get(central_dev, "org.bluez.Device1", "Paired") is False
        await client.disconnect()


@pytest.mark.needs_vbluez_control("links")
async def test_just_works_without_agent(vbluez: VirtualBluez, peripheral: Peripheral,
                                        raw: RawBus,
                                        central_dev: str) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0, pair=True):
        assert await raw.get(central_dev, "org.bluez.Device1", "Bonded") is True
        (link,) = await vbluez.control.links()
        assert link.encrypted
        assert not link.authenticated  # just works gives no MITM protection


@pytest.mark.needs_vbluez_control("links")
async def test_encrypted_characteristic_refused_while_not_pairable(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus, central_dev: str) -> None:
    await raw.set("/org/bluez/hci1", "org.bluez.Adapter1", "Pairable", "b", False)
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        with pytest.raises(BleakDBusError) as err:
            await client.read_gatt_char(SECRET)
        assert err.value.dbus_error == "org.bluez.Error.NotPermitted"
        assert await raw.get(central_dev, "org.bluez.Device1", "Paired") is False
        await raw.set("/org/bluez/hci1", "org.bluez.Adapter1", "Pairable", "b", True)
        # Access to the encrypt-only characteristic now elevates security by pairing.
        assert await client.read_gatt_char(SECRET) == b"secret"
        assert await raw.get(central_dev, "org.bluez.Device1", "Bonded") is True
    # A bonded device reconnects encrypted at once.
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        (link,) = await vbluez.control.links()
        assert link.encrypted
        await client.write_gatt_char(SECRET, b"x", response=True)


@pytest.mark.needs_vbluez_control("links")
async def test_remove_device_forgets_the_bond(vbluez: VirtualBluez, peripheral: Peripheral,
                                              raw: RawBus, central_dev: str) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0, pair=True):
        pass
    await raw.ok("/org/bluez/hci0", "org.bluez.Adapter1", "RemoveDevice", "o", [central_dev])
    assert central_dev not in await raw.objects()
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        (link,) = await vbluez.control.links()
        assert not link.encrypted
        assert client.is_connected


async def test_pair_twice_is_already_exists(peripheral: Peripheral, raw: RawBus,
                                            central_dev: str) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0, pair=True):
        name, _ = await raw.error(central_dev, "org.bluez.Device1", "Pair")
        assert name == "org.bluez.Error.AlreadyExists"


async def test_agent_registration_errors(vbluez: VirtualBluez, raw: RawBus) -> None:
    name, _ = await raw.error("/org/bluez", "org.bluez.AgentManager1", "RegisterAgent", "os",
                              ["/a", "Telepathy"])
    assert name == "org.bluez.Error.InvalidArguments"
    await raw.ok("/org/bluez", "org.bluez.AgentManager1", "RegisterAgent", "os", ["/a", ""])
    name, _ = await raw.error("/org/bluez", "org.bluez.AgentManager1", "RegisterAgent", "os",
                              ["/a", ""])
    assert name == "org.bluez.Error.AlreadyExists"
    name, _ = await raw.error("/org/bluez", "org.bluez.AgentManager1", "UnregisterAgent", "o",
                              ["/other"])
    assert name == "org.bluez.Error.DoesNotExist"
