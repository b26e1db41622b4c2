"""Advertising and scanning with unmodified bless (advertiser) and bleak (scanner)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from bleak import BleakScanner
from dbus_fast import Variant
from dbus_fast.aio import MessageBus

from vbluez import VirtualBluez

from .advert import HandmadeAdvertisement as _Advert
from .conftest import (
    SVC,
    Peripheral,
    RawBus,
    dev_path,
    eventually,
    start_peripheral,
    stop_peripheral,
)

HCI0 = {"adapter": "hci0"}


async def _scan(seconds: float = 0.6, **kwargs: Any) -> dict[str, Any]:
    found = await BleakScanner.discover(timeout=seconds, return_adv=True, bluez=HCI0, **kwargs)
    return {addr: adv for addr, (_dev, adv) in found.items()}


async def test_bless_advertisement_is_seen_with_its_data(peripheral: Peripheral) -> None:
    found = await _scan()
    adv = found[peripheral.address]
    assert adv.local_name == "VPeriph"
    assert SVC in adv.service_uuids
    assert adv.rssi == -60
    assert adv.tx_power is None  # bless sets TxPower but does not include it


async def test_find_device_by_filter(peripheral: Peripheral) -> None:
    device = await BleakScanner.find_device_by_filter(
        lambda _d, adv: SVC in adv.service_uuids, timeout=5, bluez=HCI0)
    assert device is not None
    assert device.address == peripheral.address
    assert device.name == "VPeriph"


async def test_uuid_filter_excludes_other_services(peripheral: Peripheral) -> None:
    assert peripheral.address in await _scan(service_uuids=[SVC])
    assert peripheral.address not in await _scan(
        service_uuids=["0000180d-0000-1000-8000-00805f9b34fb"])


@pytest.mark.needs_vbluez_control("set_rssi")
async def test_rssi_and_pattern_and_transport_filters(vbluez: VirtualBluez,
                                                      peripheral: Peripheral,
                                                      raw: RawBus) -> None:
    await vbluez.control.set_rssi("hci0", "hci1", -80)
    hci0 = "/org/bluez/hci0"

    async def discover(filters: dict[str, Variant]) -> bool:
        await raw.ok(hci0, "org.bluez.Adapter1", "SetDiscoveryFilter", "a{sv}", [filters])
        await raw.ok(hci0, "org.bluez.Adapter1", "StartDiscovery")
        await asyncio.sleep(0.2)
        objs = await raw.objects()
        await raw.ok(hci0, "org.bluez.Adapter1", "StopDiscovery")
        path = dev_path("hci0", peripheral.address)
        seen = path in objs and "RSSI" in objs[path]["org.bluez.Device1"]
        await raw.call(hci0, "org.bluez.Adapter1", "RemoveDevice", "o", [path])
        return seen

    assert await discover({"RSSI": Variant("n", -90)})
    assert not await discover({"RSSI": Variant("n", -70)})
    assert await discover({"Pattern": Variant("s", "VPer")})
    assert not await discover({"Pattern": Variant("s", "Other")})
    assert not await discover({"Transport": Variant("s", "bredr")})
    assert await discover({"Transport": Variant("s", "le")})


@pytest.mark.needs_vbluez_control("configure")
async def test_rssi_noise_varies_reports(vbluez: VirtualBluez, peripheral: Peripheral) -> None:
    await vbluez.control.configure(rssi_noise=6.0, report_interval=0.05)
    values: set[int] = set()

    def seen(_device: Any, adv: Any) -> None:
        if adv.local_name == "VPeriph":
            values.add(adv.rssi)

    async with BleakScanner(seen, bluez=HCI0):
        await asyncio.sleep(1.0)
    assert len(values) > 3, values


async def test_device_goes_away_when_advertising_stops(vbluez: VirtualBluez,
                                                       raw: RawBus) -> None:
    periph = await start_peripheral(vbluez, "hci1", "Leaving")
    path = dev_path("hci0", periph.address)
    async with BleakScanner(bluez=HCI0):
        async def present() -> bool:
            return path in await raw.objects()
        await eventually(present)
        await stop_peripheral(periph)

        async def gone() -> bool:
            return path not in await raw.objects()
        await eventually(gone)


async def _register_advert(vbluez: VirtualBluez, advert: _Advert) -> tuple[MessageBus, str]:
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()
    bus.export("/test/adv0", advert)
    raw = RawBus(bus)
    reply = await raw.call("/org/bluez/hci1", "org.bluez.LEAdvertisingManager1",
                           "RegisterAdvertisement", "oa{sv}", ["/test/adv0", {}])
    return bus, reply.error_name or ""


async def test_service_and_manufacturer_data(vbluez: VirtualBluez) -> None:
    advert = _Advert({"fffd": b"\x01\xaa\xbb"}, {0xFFFF: b"\x10\x20"})
    bus, error = await _register_advert(vbluez, advert)
    try:
        assert error == ""
        found = await _scan()
        adv = found[vbluez.adapters[1].address]
        assert adv.service_data == {"0000fffd-0000-1000-8000-00805f9b34fb": b"\x01\xaa\xbb"}
        assert adv.manufacturer_data == {0xFFFF: b"\x10\x20"}
        assert adv.local_name == "Carded"
        assert adv.tx_power == 4
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()


async def test_advertisement_over_31_bytes_is_refused(vbluez: VirtualBluez) -> None:
    advert = _Advert({"fffd": bytes(17)}, {0xFFFF: bytes(8)})
    bus, error = await _register_advert(vbluez, advert)
    try:
        assert error == "org.bluez.Error.InvalidLength"
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()


@pytest.mark.vbluez(max_adv_len=251)
async def test_extended_advertising_allows_larger_payloads(vbluez: VirtualBluez) -> None:
    advert = _Advert({"fffd": bytes(17)}, {0xFFFF: bytes(8)})
    bus, error = await _register_advert(vbluez, advert)
    try:
        assert error == ""
    finally:
        bus.disconnect()
        await bus.wait_for_disconnect()
