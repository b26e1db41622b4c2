"""A module takes a new bond only in pairing mode: nobody can replace its bond behind the owner.

The module runs as a real subprocess (`wearable-sim run`) on hci1; a central in this process
on hci0 tries to bond with it, by numeric comparison (its own agent, DisplayYesNo) and by just
works (no agent). Outside pairing mode both fail, the module's adapter is `Pairable=false`, its
agent is never asked, and nothing reaches the control point. In pairing mode the same attempts
succeed (the honest path), and a just-works request is not shown as a "000000" code.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError, BleakError
from dbus_fast.aio import MessageBus

from ble_profile import uuids
from bluez_pairing import PairingAgent, register_agent, unregister_agent
from vbluez import VirtualBluez
from wearable_sim.element import SecureElement
from wearable_sim.state import ModuleState

from .conftest import provision

HCI0 = {"adapter": "hci0"}
AGENT = "/test/central_agent"


@contextlib.asynccontextmanager
async def module_process(vbluez: VirtualBluez, state: Path, *extra: str
                         ) -> AsyncIterator[list[str]]:
    """`wearable-sim run` on hci1; yields the lines it printed (complete once it stopped)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wearable_sim", "run", "--adapter", "hci1", "--state", str(state),
        "--policy", "approve", "--bus", vbluez.bus_address, "--pairing-consent", "accept",
        *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        first = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert first.startswith("ready module_id="), first
        yield lines
    finally:
        proc.terminate()
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
        lines.extend(out.decode().splitlines())
        assert proc.returncode == 0


@contextlib.asynccontextmanager
async def central_agent(vbluez: VirtualBluez) -> AsyncIterator[list[int]]:
    """A DisplayYesNo agent for this process (hci0): the central confirms any code."""
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()

    async def confirm(_device: str, _code: int) -> bool:
        return True

    agent = PairingAgent(confirm)
    await register_agent(bus, agent, AGENT)
    try:
        yield agent.codes
    finally:
        await unregister_agent(bus, AGENT)
        bus.disconnect()


async def _pair(address: str) -> None:
    device = await BleakScanner.find_device_by_address(address, timeout=10, bluez=HCI0)
    assert device is not None
    async with BleakClient(device, bluez=HCI0, pair=True, timeout=10):
        pass


async def _pairable(vbluez: VirtualBluez) -> bool:
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()
    try:
        from bluez_pairing import bluez_call
        reply = await bluez_call(bus, "/org/bluez/hci1", "org.freedesktop.DBus.Properties",
                                 "Get", "ss", ["org.bluez.Adapter1", "Pairable"])
        return bool(reply.body[0].value)
    finally:
        bus.disconnect()


async def _is_paired(vbluez: VirtualBluez, address: str) -> bool:
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()
    try:
        from bluez_pairing import is_bonded
        return await is_bonded(bus, "hci0", address)
    finally:
        bus.disconnect()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "module"
    provision(SecureElement(ModuleState(path)))
    return path


async def test_numeric_comparison_bond_refused_outside_pairing_mode(
        vbluez: VirtualBluez, state: Path) -> None:
    address = vbluez.adapters[1].address
    async with module_process(vbluez, state) as printed, central_agent(vbluez) as codes:
        assert await _pairable(vbluez) is False
        with pytest.raises((BleakDBusError, BleakError)) as err:
            await _pair(address)
        assert "org.bluez.Error.AuthenticationRejected" in str(err.value)
        assert codes == []  # no code was ever computed: the module refused at once
        assert not await _is_paired(vbluez, address)
    assert not any("pairing" in line for line in printed)
    # The honest path: in pairing mode the same central bonds, both ends see the same code.
    async with module_process(vbluez, state, "--pairing-mode") as printed, \
            central_agent(vbluez) as codes:
        assert await _pairable(vbluez) is True
        await _pair(address)
        assert await _is_paired(vbluez, address)
    assert len(codes) == 1
    assert f"pairing code {codes[0]:06d}: accepted" in printed


async def test_just_works_bond_refused_outside_pairing_mode(
        vbluez: VirtualBluez, state: Path) -> None:
    """A central with no agent (just works) cannot bond either, and cannot reach the control
    point, which needs an encrypted link."""
    address = vbluez.adapters[1].address
    async with module_process(vbluez, state) as printed:
        with pytest.raises((BleakDBusError, BleakError)):
            await _pair(address)
        device = await BleakScanner.find_device_by_address(address, timeout=10, bluez=HCI0)
        assert device is not None
        async with BleakClient(device, bluez=HCI0) as client:
            with pytest.raises(BleakDBusError) as err:
                await client.write_gatt_char(uuids.CONTROL_POINT, b"\x81\x00\x01x",
                                             response=True)
            assert err.value.dbus_error == "org.bluez.Error.NotPermitted"
        assert not await _is_paired(vbluez, address)
    assert not any("pairing" in line for line in printed)
    async with module_process(vbluez, state, "--pairing-mode") as printed:
        await _pair(address)
        assert await _is_paired(vbluez, address)
    assert "pairing request (just works, no code to compare): accepted" in printed
    assert not any("000000" in line for line in printed)
    # The bond made in pairing mode still works once the module is out of it.
    async with module_process(vbluez, state) as _printed:
        device = await BleakScanner.find_device_by_address(address, timeout=10, bluez=HCI0)
        assert device is not None
        async with BleakClient(device, bluez=HCI0) as client:
            await client.write_gatt_char(uuids.CONTROL_POINT, b"\x81\x00\x01x", response=True)
