"""Faults and timing: link loss, power, lost notifications, a silent peripheral, latency."""

from __future__ import annotations

import asyncio
import time

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError, BleakError

from vbluez import VirtualBluez

from .conftest import CMD, EVT, INFO, Peripheral, RawBus, dev_path

HCI0 = {"adapter": "hci0"}
CENTRAL = "5A:00:00:00:00:01"


@pytest.mark.needs_vbluez_control("link_loss, set_responsive")
async def test_link_loss_mid_write(vbluez: VirtualBluez, peripheral: Peripheral,
                                   raw: RawBus) -> None:
    lost = asyncio.Event()
    async with BleakClient(peripheral.address, bluez=HCI0,
                           disconnected_callback=lambda _c: lost.set()) as client:
        await vbluez.control.set_responsive("hci1", False)
        write = asyncio.ensure_future(client.write_gatt_char(CMD, b"never", response=True))
        await asyncio.sleep(0.2)
        assert not write.done()
        await vbluez.control.link_loss("hci0", peripheral.address)
        with pytest.raises((BleakDBusError, BleakError)) as err:
            await asyncio.wait_for(write, 5)
        if isinstance(err.value, BleakDBusError):
            assert err.value.dbus_error == "org.bluez.Error.Failed"
        await asyncio.wait_for(lost.wait(), 5)
        assert await raw.get(dev_path("hci1", CENTRAL), "org.bluez.Device1", "Connected") is False
        assert peripheral.writes == []
    await vbluez.control.set_responsive("hci1", True)
    async with BleakClient(peripheral.address, bluez=HCI0) as client:  # recovery
        assert await client.read_gatt_char(INFO) == b"module-info"


@pytest.mark.needs_vbluez_control("links, set_responsive")
@pytest.mark.vbluez(att_timeout=0.5)
async def test_silent_peripheral_times_out_and_drops_the_link(vbluez: VirtualBluez,
                                                              peripheral: Peripheral) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await vbluez.control.set_responsive("hci1", False)
        started = time.monotonic()
        with pytest.raises(BleakDBusError) as err:
            await client.read_gatt_char(INFO)
        assert err.value.dbus_error == "org.bluez.Error.Failed"
        assert time.monotonic() - started >= 0.5
        assert await vbluez.control.links() == []


@pytest.mark.needs_vbluez_control("set_powered")
async def test_power_off_and_on(vbluez: VirtualBluez, peripheral: Peripheral,
                                raw: RawBus) -> None:
    lost = asyncio.Event()
    async with BleakClient(peripheral.address, bluez=HCI0,
                           disconnected_callback=lambda _c: lost.set()):
        await vbluez.control.set_powered("hci1", False)
        await asyncio.wait_for(lost.wait(), 5)
    assert await raw.get("/org/bluez/hci1", "org.bluez.Adapter1", "Powered") is False
    assert await BleakScanner.find_device_by_address(peripheral.address, timeout=0.5,
                                                     bluez=HCI0) is None
    await vbluez.control.set_powered("hci1", True)
    device = await BleakScanner.find_device_by_address(peripheral.address, timeout=5,
                                                       bluez=HCI0)
    assert device is not None
    name, _ = await raw.error("/org/bluez/hci1", "org.bluez.Adapter1", "StopDiscovery")
    assert name == "org.bluez.Error.Failed"


@pytest.mark.needs_vbluez_control("drop_notifications")
async def test_dropped_notifications(vbluez: VirtualBluez, peripheral: Peripheral) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await client.start_notify(EVT, lambda _c, d: got.put_nowait(bytes(d)))
        await vbluez.control.drop_notifications("hci0", peripheral.address, 2)
        for word in (b"one", b"two", b"three"):
            await client.write_gatt_char(CMD, word, response=True)
        assert await asyncio.wait_for(got.get(), 5) == b"eerht"
        await asyncio.sleep(0.1)
        assert got.empty()


@pytest.mark.vbluez(conn_interval_ms=15)
async def test_latency_model_never_beats_the_air(peripheral: Peripheral) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await client.start_notify(EVT, lambda _c, d: got.put_nowait(bytes(d)))
        times = []
        for _ in range(10):
            start = time.perf_counter()
            await client.write_gatt_char(CMD, b"ping", response=True)
            await asyncio.wait_for(got.get(), 5)
            times.append(time.perf_counter() - start)
    # A write request and its answer are at least one connection interval apart.
    assert min(times) >= 0.015


@pytest.mark.needs_vbluez_control("link_loss")
async def test_killed_peripheral_process_disconnects(vbluez: VirtualBluez,
                                                     peripheral: Peripheral) -> None:
    lost = asyncio.Event()
    async with BleakClient(peripheral.address, bluez=HCI0,
                           disconnected_callback=lambda _c: lost.set()):
        await vbluez.control.link_loss("hci1", CENTRAL)  # from the peripheral's side
        await asyncio.wait_for(lost.wait(), 5)
