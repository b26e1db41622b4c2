"""Connections and GATT operations: unmodified bleak (central, hci0) against bless (hci1)."""

from __future__ import annotations

import asyncio
import re

import pytest
from bleak import BleakClient
from bleak.exc import BleakDBusError

from vbluez import VirtualBluez
from vbluez.hil_guard import hil_active

from .conftest import CMD, EVT, IND, INFO, SVC, Peripheral, RawBus, dev_path, eventually

HCI0 = {"adapter": "hci0"}


async def test_connect_discover_read(peripheral: Peripheral) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        service = client.services.get_service(SVC)
        assert service is not None
        uuids = {c.uuid for c in service.characteristics}
        assert {CMD, EVT, INFO, IND} <= uuids
        evt = service.get_characteristic(EVT)
        assert evt is not None
        assert [d.uuid for d in evt.descriptors] == ["00002902-0000-1000-8000-00805f9b34fb"]
        assert await client.read_gatt_char(INFO) == b"module-info"
        assert client.services.get_characteristic(CMD).max_write_without_response_size == 244


async def test_bluez_style_paths_and_handles(peripheral: Peripheral, raw: RawBus) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        char = client.services.get_characteristic(CMD)
        path = char.obj[0]
        # A fresh BlueZ numbers the first service 0x000a; one that outlived other tests' GATT
        # applications (HIL mode, a rig's bluetoothd) numbers on from where it is.
        first = "000a" if not hil_active() else path.split("/service")[1][:4]
        assert re.fullmatch(dev_path("hci0", peripheral.address)
                            + f"/service{first}/char[0-9a-f]{{4}}", path), path
        assert char.handle == int(path[-4:], 16)
        assert "write-without-response" in char.properties


async def test_write_with_and_without_response_and_notify(peripheral: Peripheral) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await client.start_notify(EVT, lambda _c, d: got.put_nowait(bytes(d)))
        await client.write_gatt_char(CMD, b"hello", response=True)
        assert await asyncio.wait_for(got.get(), 5) == b"olleh"
        for i in range(20):
            await client.write_gatt_char(CMD, b"n%02d" % i, response=False)
        echoed = [await asyncio.wait_for(got.get(), 5) for _ in range(20)]
        assert echoed == [(b"n%02d" % i)[::-1] for i in range(20)]  # in order
        await client.stop_notify(EVT)
        await client.write_gatt_char(CMD, b"quiet", response=True)
        await asyncio.sleep(0.1)
        assert got.empty()


async def test_indications_are_delivered_in_order(peripheral: Peripheral) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await client.start_notify(IND, lambda _c, d: got.put_nowait(bytes(d)))
        for i in range(5):
            peripheral.notify(IND, bytes([i]))
        assert [await asyncio.wait_for(got.get(), 5) for _ in range(5)] == [bytes([i])
                                                                             for i in range(5)]


@pytest.mark.vbluez(mtu=23)
async def test_long_write_and_oversized_command(peripheral: Peripheral) -> None:
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        value = bytes(range(100))
        await client.write_gatt_char(CMD, value, response=True)
        # BlueZ's server hands each prepared part (MTU-5 = 18 bytes) to the application.
        assert b"".join(peripheral.writes) == value
        assert all(len(w) <= 18 for w in peripheral.writes)
        with pytest.raises(BleakDBusError) as err:
            await client.write_gatt_char(CMD, bytes(21), response=False)
        assert err.value.dbus_error == "org.bluez.Error.Failed"
        await client.write_gatt_char(CMD, bytes(20), response=False)


async def test_acquire_write_and_notify(peripheral: Peripheral) -> None:
    got: asyncio.Queue[bytes] = asyncio.Queue()
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await client._backend._acquire_mtu()  # type: ignore[attr-defined]
        assert client.mtu_size == 247
        await client.start_notify(EVT, lambda _c, d: got.put_nowait(bytes(d)),
                                  bluez={"use_start_notify": False})
        await client.write_gatt_char(CMD, b"acq", response=True)
        assert await asyncio.wait_for(got.get(), 5) == b"qca"


async def test_disconnect_from_the_central(peripheral: Peripheral, raw: RawBus) -> None:
    client = BleakClient(peripheral.address, bluez=HCI0)
    await client.connect()
    p_side = dev_path("hci1", "5A:00:00:00:00:01")
    assert await raw.get(p_side, "org.bluez.Device1", "Connected") is True
    await client.disconnect()
    assert await raw.get(p_side, "org.bluez.Device1", "Connected") is False
    objs = await raw.objects()
    assert not [p for p in objs if p.startswith(dev_path("hci0", peripheral.address) + "/")]


async def test_disconnect_from_the_peripheral(peripheral: Peripheral, raw: RawBus) -> None:
    lost = asyncio.Event()
    async with BleakClient(peripheral.address, bluez=HCI0,
                           disconnected_callback=lambda _c: lost.set()) as client:
        await raw.ok(dev_path("hci1", "5A:00:00:00:00:01"), "org.bluez.Device1", "Disconnect")
        await asyncio.wait_for(lost.wait(), 5)
        assert not client.is_connected


@pytest.mark.needs_vbluez_control("configure, links")
async def test_two_peripherals_and_two_centrals(vbluez: VirtualBluez) -> None:
    from .conftest import start_peripheral, stop_peripheral
    await vbluez.control.configure(max_links=7)
    p1 = await start_peripheral(vbluez, "hci1", "P-one")
    p2 = await start_peripheral(vbluez, "hci2", "P-two")
    try:
        got: dict[tuple[str, str], list[bytes]] = {}
        clients = []
        for central in ("hci0", "hci3"):
            for p in (p1, p2):
                c = BleakClient(p.address, bluez={"adapter": central})
                await c.connect()
                key = (central, p.address)
                got[key] = []
                await c.start_notify(EVT, lambda _c, d, key=key: got[key].append(bytes(d)))
                clients.append((key, c))
        for (central, addr), c in clients:
            await c.write_gatt_char(CMD, f"{central}>{addr[-2:]}".encode(), response=True)

        async def all_in() -> bool:
            return all(len(v) == 2 for v in got.values())
        await eventually(all_in)
        # every write is echoed to each subscribed central of that peripheral, none elsewhere
        for (central, addr), values in got.items():
            expected = sorted(f"{c}>{addr[-2:]}".encode()[::-1] for c in ("hci0", "hci3"))
            assert sorted(values) == expected, (central, addr, values)
        links = await vbluez.control.links()
        assert len(links) == 4
        for _key, c in clients:
            await c.disconnect()
    finally:
        await stop_peripheral(p1)
        await stop_peripheral(p2)


test_two_peripherals_and_two_centrals = pytest.mark.vbluez(adapters=4)(
    test_two_peripherals_and_two_centrals)
