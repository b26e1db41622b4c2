"""The simulator outlives bluetoothd: it registers again when ``org.bluez`` comes back.

The module runs as a real subprocess (`wearable-sim run`) on hci1; vbluez restarts bluetoothd
(every registration is lost, ``Pairable`` is back to BlueZ's default, yes). The module must
advertise again, set ``Pairable`` again before it does (so nobody can bond with it outside
pairing mode meanwhile), and register its pairing agent again; the process keeps running.
"""

from __future__ import annotations

import asyncio
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
from .test_bond_downgrade import (
    AGENT,
    _is_paired,
    _pair,
    _pairable,
    central_agent,
    module_process,
)

HCI0 = {"adapter": "hci0"}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "module"
    provision(SecureElement(ModuleState(path)))
    return path


async def _advertising_again(address: str) -> None:
    device = await BleakScanner.find_device_by_filter(
        lambda d, adv: d.address == address and uuids.SERVICE in adv.service_uuids,
        timeout=10, bluez=HCI0)
    assert device is not None, "the module never advertised again"


@pytest.mark.needs_vbluez_control("restart_bluetoothd")
async def test_simulator_advertises_again_after_bluetoothd_restarts_and_stays_unpairable(
        vbluez: VirtualBluez, state: Path) -> None:
    address = vbluez.adapters[1].address
    async with module_process(vbluez, state) as printed, central_agent(vbluez) as codes:
        assert await _pairable(vbluez) is False
        await vbluez.control.restart_bluetoothd(0.3)
        await _advertising_again(address)
        assert await _pairable(vbluez) is False  # set again before the advert came back
        with pytest.raises((BleakDBusError, BleakError)) as err:
            await _pair(address)
        assert "org.bluez.Error.AuthenticationRejected" in str(err.value)
        assert codes == []
        assert not await _is_paired(vbluez, address)
        # The honest path: its GATT service answers on a fresh link.
        async with BleakClient(address, bluez=HCI0) as client:
            assert client.services.get_characteristic(uuids.CONTROL_POINT) is not None
    assert not any("lost the D-Bus connection" in line for line in printed)


@pytest.mark.needs_vbluez_control("restart_bluetoothd")
async def test_simulator_in_pairing_mode_registers_its_agent_again(
        vbluez: VirtualBluez, state: Path) -> None:
    """After the restart a gateway still bonds by numeric comparison: the module's agent is
    registered again (without it BlueZ would pair just works, with no code). The central's
    own agent went with the old bluetoothd too, so it registers again as well."""
    address = vbluez.adapters[1].address
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()

    async def confirm(_device: str, _code: int) -> bool:
        return True

    agent = PairingAgent(confirm)
    try:
        async with module_process(vbluez, state, "--pairing-mode") as printed:
            await vbluez.control.restart_bluetoothd(0.3)
            await _advertising_again(address)
            await register_agent(bus, agent, AGENT)
            assert await _pairable(vbluez) is True
            await _pair(address)
            assert await _is_paired(vbluez, address)
            await unregister_agent(bus, AGENT)
    finally:
        bus.disconnect()
    assert len(agent.codes) == 1
    assert f"pairing code {agent.codes[0]:06d}: accepted" in printed


@pytest.mark.needs_vbluez_control("remove_adapter, restore_adapter")
async def test_simulator_registers_again_when_its_adapter_comes_back(
        vbluez: VirtualBluez, state: Path) -> None:
    """The module's own controller goes and comes back (a USB reset): same as a restart for
    it: advert, Pairable off and service again, the process still running."""
    address = vbluez.adapters[1].address
    async with module_process(vbluez, state):
        await vbluez.control.remove_adapter("hci1")
        await vbluez.control.restore_adapter("hci1")
        await _advertising_again(address)
        assert await _pairable(vbluez) is False
        async with BleakClient(address, bluez=HCI0) as client:
            assert client.services.get_characteristic(uuids.CONTROL_POINT) is not None


@pytest.mark.needs_vbluez_control("restart_bluetoothd")
async def test_a_module_that_cannot_register_again_says_so(vbluez: VirtualBluez) -> None:
    """If anything fails while registering again, the module must not run on silently with
    no advert: the peripheral reports why (`wearable-sim run` then exits 1 with it)."""
    from bless import GATTAttributePermissions, GATTCharacteristicProperties

    from wearable_sim.peripheral import CharacteristicSpec, ModulePeripheral, PeripheralError

    async def refuse() -> None:
        raise PeripheralError("cannot set hci1 Pairable")

    periph = ModulePeripheral(
        name="failing", adapter="hci1", service_uuid=uuids.SERVICE,
        characteristics=[CharacteristicSpec(uuids.STATUS, GATTCharacteristicProperties.notify,
                                            GATTAttributePermissions.readable)],
        on_read=lambda _u, _o: b"", on_write=lambda _u, _v, _o: None, on_bluez_back=refuse)
    await periph.start({})
    try:
        await vbluez.control.restart_bluetoothd(0.2)
        reason = await asyncio.wait_for(periph.wait_unreachable(), 10)
        assert reason == "PeripheralError: cannot set hci1 Pairable"
        assert periph.restarts_seen == 0
    finally:
        await periph.stop()
    # The honest path: a module whose registration works comes back.
    ok = ModulePeripheral(
        name="working", adapter="hci1", service_uuid=uuids.SERVICE,
        characteristics=[CharacteristicSpec(uuids.STATUS, GATTCharacteristicProperties.notify,
                                            GATTAttributePermissions.readable)],
        on_read=lambda _u, _o: b"", on_write=lambda _u, _v, _o: None)
    await ok.start({})
    try:
        await vbluez.control.restart_bluetoothd(0.2)
        await _advertising_again(vbluez.adapters[1].address)
        assert ok.restarts_seen == 1
    finally:
        await ok.stop()
