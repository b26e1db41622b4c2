"""vbluez keeps a GATT cache as BlueZ does (``[GATT] Cache = always``): a peripheral whose
database changed while the central was away is seen through stale objects at the next connect
(the device must stay known meanwhile: a temporary device's cache goes with it).

BlueZ's observable behaviour (src/gatt-client.c, src/device.c, shared/gatt-client.c): the
cached services are exported at once; an operation on an attribute the peer no longer has
fails with ATT error 0x01 (Invalid Handle); a bonded peer indicates Service Changed and the
central drops the stale objects and discovers again; a peer without a bond cannot, and the
cache stays stale until the device is removed (``Adapter1.RemoveDevice``), which is also how a
BlueZ cache is cleared. Each test ends with the honest path working.
"""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakScanner

from vbluez import VirtualBluez

from .conftest import (
    INFO,
    RawBus,
    dev_path,
    eventually,
    start_peripheral,
    stop_peripheral,
)

HCI0 = {"adapter": "hci0"}
DEVICE1 = "org.bluez.Device1"
CHAR1 = "org.bluez.GattCharacteristic1"
INVALID_HANDLE = ("org.bluez.Error.Failed", "Operation failed with ATT error: 0x01")


async def _char_path(raw: RawBus, device: str, uuid: str) -> str | None:
    for path, ifaces in (await raw.objects()).items():
        if path.startswith(device + "/") and CHAR1 in ifaces and \
                ifaces[CHAR1]["UUID"].value == uuid:
            return str(path)
    return None


async def _visit(vbluez: VirtualBluez, raw: RawBus, *, pair: bool) -> tuple[str, str]:
    """Connect to a fresh peripheral on hci1 (bonding if asked), note where INFO is, leave;
    then the peripheral restarts with its attributes at other handles."""
    periph = await start_peripheral(vbluez, "hci1", "Cached")
    assert await BleakScanner.find_device_by_address(periph.address, timeout=5, bluez=HCI0)
    device = dev_path("hci0", periph.address)
    await raw.ok(device, DEVICE1, "Pair" if pair else "Connect")
    # Trusted keeps an unbonded device (and its cache) known once it stops advertising.
    await raw.set(device, DEVICE1, "Trusted", "b", True)
    old = await _char_path(raw, device, INFO)
    assert old is not None
    await raw.ok(device, DEVICE1, "Disconnect")
    await stop_peripheral(periph)
    return device, old


@pytest.mark.vbluez(gatt_cache=True)
async def test_bonded_peer_with_a_changed_database_is_stale_until_service_changed(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    device, old = await _visit(vbluez, raw, pair=True)
    again = await start_peripheral(vbluez, "hci1", "Cached")
    try:
        await raw.ok(device, DEVICE1, "Connect")
        assert await _char_path(raw, device, INFO) == old  # the cached layout
        assert await raw.error(old, CHAR1, "ReadValue", "a{sv}", [{}]) == INVALID_HANDLE

        async def rediscovered() -> bool:
            return await _char_path(raw, device, INFO) not in (None, old)

        await eventually(rediscovered, timeout=3)
        assert (await raw.error(old, CHAR1, "ReadValue", "a{sv}", [{}]))[0] == \
            "org.freedesktop.DBus.Error.UnknownObject"
        new = await _char_path(raw, device, INFO)
        assert new is not None
        assert bytes((await raw.ok(new, CHAR1, "ReadValue", "a{sv}", [{}]))[0]) == \
            b"module-info"
        # The cache now holds the new layout: the next connect is fresh at once.
        await raw.ok(device, DEVICE1, "Disconnect")
        await raw.ok(device, DEVICE1, "Connect")
        assert await _char_path(raw, device, INFO) == new
    finally:
        await stop_peripheral(again)


@pytest.mark.vbluez(gatt_cache=True)
async def test_unbonded_peer_stays_stale_until_the_device_is_removed(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    device, old = await _visit(vbluez, raw, pair=False)
    again = await start_peripheral(vbluez, "hci1", "Cached")
    try:
        await raw.ok(device, DEVICE1, "Connect")
        await asyncio.sleep(0.4)  # longer than a bonded peer's Service Changed takes
        assert await _char_path(raw, device, INFO) == old  # no Service Changed without a bond
        assert await raw.error(old, CHAR1, "ReadValue", "a{sv}", [{}]) == INVALID_HANDLE
        await raw.ok(device, DEVICE1, "Disconnect")
        await raw.ok("/org/bluez/hci0", "org.bluez.Adapter1", "RemoveDevice", "o", [device])
        assert await BleakScanner.find_device_by_address(again.address, timeout=5,
                                                         bluez=HCI0)
        await raw.ok(device, DEVICE1, "Connect")
        new = await _char_path(raw, device, INFO)
        assert new not in (None, old)
        assert bytes((await raw.ok(new, CHAR1, "ReadValue", "a{sv}", [{}]))[0]) == \
            b"module-info"
    finally:
        await stop_peripheral(again)


async def test_without_the_cache_every_connect_discovers_afresh(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    """The default (``Cache = no``): the changed database is seen at once."""
    device, old = await _visit(vbluez, raw, pair=True)
    again = await start_peripheral(vbluez, "hci1", "Cached")
    try:
        await raw.ok(device, DEVICE1, "Connect")
        new = await _char_path(raw, device, INFO)
        assert new not in (None, old)
        assert bytes((await raw.ok(new, CHAR1, "ReadValue", "a{sv}", [{}]))[0]) == \
            b"module-info"
    finally:
        await stop_peripheral(again)



@pytest.mark.needs_vbluez_control("link_loss")
@pytest.mark.vbluez(gatt_cache=True)
async def test_a_peer_that_dropped_every_service_under_the_link_leaves_no_cache(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    """The peripheral's application goes while connected (Service Changed: nothing left),
    the link drops, the application comes back: the next connect discovers in full."""
    periph = await start_peripheral(vbluez, "hci1", "Cached")
    assert await BleakScanner.find_device_by_address(periph.address, timeout=5, bluez=HCI0)
    device = dev_path("hci0", periph.address)
    await raw.ok(device, DEVICE1, "Pair")
    await stop_peripheral(periph)  # under the live link
    assert await _char_path(raw, device, INFO) is None
    await vbluez.control.link_loss("hci0", periph.address)
    again = await start_peripheral(vbluez, "hci1", "Cached")
    try:
        await raw.ok(device, DEVICE1, "Connect")
        new = await _char_path(raw, device, INFO)
        assert new is not None
        assert bytes((await raw.ok(new, CHAR1, "ReadValue", "a{sv}", [{}]))[0]) == \
            b"module-info"
    finally:
        await stop_peripheral(again)


def test_the_cache_is_off_unless_asked_for_on_the_command_line() -> None:
    from vbluez.cli import _config_from, build_parser

    assert _config_from(build_parser().parse_args(["run"])).gatt_cache is False
    assert _config_from(build_parser().parse_args(["run", "--gatt-cache"])).gatt_cache is True
