"""vbluez loses an adapter or bluetoothd itself as BlueZ does, seen by bleak and a raw client.

BlueZ's observable behaviour (src/adapter.c ``adapter_remove``, src/main.c, the ObjectManager
of gdbus): a controller that goes takes its links (``Connected`` false), then its devices, then
its own interfaces off the bus (InterfacesRemoved, deepest first); when it comes back the
adapter is announced again with one device per stored bond. A bluetoothd restart releases
``org.bluez`` (NameOwnerChanged to ""), every object goes, and the new daemon owns the name
again and re-announces the adapters; what peers registered (applications, advertisements,
agents) is gone; bonds survive unless ``/var/lib/bluetooth`` was wiped. Each test ends with the
honest path working again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError
from dbus_fast import Message, MessageType

from vbluez import VirtualBluez

from .conftest import (
    INFO,
    SECRET,
    SVC,
    Peripheral,
    RawBus,
    dev_path,
    eventually,
    start_peripheral,
    stop_peripheral,
)

HCI0 = {"adapter": "hci0"}
DEVICE1 = "org.bluez.Device1"
ADAPTER1 = "org.bluez.Adapter1"
OM = "org.freedesktop.DBus.ObjectManager"


async def _true(value: bool) -> bool:
    return value


async def _record(raw: RawBus, rule: str) -> list[Message]:
    """Every signal matching ``rule`` this client receives from now on, in order."""
    seen: list[Message] = []
    member = rule.split("member='")[1].split("'")[0]

    def handler(msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.member == member:
            seen.append(msg)

    raw.bus.add_message_handler(handler)
    await raw.ok("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", [rule],
                 dest="org.freedesktop.DBus")
    return seen


async def _bond(raw: RawBus, address: str) -> str:
    """A just-works bond from hci0 to ``address`` (no agents anywhere), link left up."""
    assert await BleakScanner.find_device_by_address(address, timeout=5, bluez=HCI0)
    path = dev_path("hci0", address)
    await raw.ok(path, DEVICE1, "Pair")
    assert await raw.get(path, DEVICE1, "Paired") is True
    return path


def _removed(signals: list[Message]) -> list[str]:
    return [m.body[0] for m in signals if m.member == "InterfacesRemoved"]


@pytest.mark.needs_vbluez_control("links, remove_adapter, restore_adapter")
async def test_adapter_removed_drops_its_links_and_objects_then_returns_with_its_bonds(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus) -> None:
    """The gateway's dongle is pulled: bleak sees the disconnect, the adapter and its devices
    leave the ObjectManager, bleak cannot scan on it; plugged back, the bond is there and a
    connect re-encrypts without pairing again."""
    path = await _bond(raw, peripheral.address)
    removed = await _record(raw, f"type='signal',interface='{OM}',member='InterfacesRemoved'")
    added = await _record(raw, f"type='signal',interface='{OM}',member='InterfacesAdded'")
    lost = asyncio.Event()
    client = BleakClient(peripheral.address, bluez=HCI0,
                         disconnected_callback=lambda _c: lost.set())
    await client.connect()
    try:
        await vbluez.control.remove_adapter("hci0")
        await asyncio.wait_for(lost.wait(), 3)
    finally:
        await client.disconnect()
    await eventually(lambda: _true("/org/bluez/hci0" in _removed(removed)))
    gone = _removed(removed)
    assert gone.index(path) < gone.index("/org/bluez/hci0")  # devices first, as BlueZ
    assert not any(p.startswith("/org/bluez/hci0") for p in await raw.objects())
    assert (await raw.error("/org/bluez/hci0", ADAPTER1, "StartDiscovery"))[0] == \
        "org.freedesktop.DBus.Error.UnknownObject"
    with pytest.raises(BleakError, match="adapter 'hci0' not found"):
        await BleakScanner.find_device_by_address(peripheral.address, timeout=1, bluez=HCI0)
    assert await vbluez.control.links() == []
    # The peripheral's side keeps its bond and its device for hci0.
    assert await raw.get(dev_path("hci1", "5A:00:00:00:00:01"), DEVICE1, "Paired") is True

    await vbluez.control.restore_adapter("hci0")
    await eventually(lambda: _true(any(m.body[0] == path for m in added)))
    first = next(m for m in added if m.body[0] == "/org/bluez/hci0")
    assert added.index(first) < next(i for i, m in enumerate(added) if m.body[0] == path)
    assert await raw.get(path, DEVICE1, "Paired") is True
    assert await raw.get("/org/bluez/hci0", ADAPTER1, "Powered") is True
    async with BleakClient(peripheral.address, bluez=HCI0) as again:
        assert await again.read_gatt_char(SECRET) == b"secret"  # encrypted, no new pairing
        assert await again.read_gatt_char(INFO) == b"module-info"


@pytest.mark.needs_vbluez_control("adapters, remove_adapter, restore_adapter")
async def test_removing_an_unknown_or_absent_adapter_is_does_not_exist(
        vbluez: VirtualBluez) -> None:
    from vbluez import BluezError

    with pytest.raises(BluezError, match="DoesNotExist"):
        await vbluez.control.remove_adapter("hci7")
    with pytest.raises(BluezError, match="DoesNotExist"):
        await vbluez.control.restore_adapter("hci0")  # it was never removed
    await vbluez.control.remove_adapter("hci0")
    with pytest.raises(BluezError, match="DoesNotExist"):
        await vbluez.control.remove_adapter("hci0")
    await vbluez.control.restore_adapter("hci0")
    assert [a.name for a in await vbluez.control.adapters()] == ["hci0", "hci1"]


async def _stopped_by_restart(periph: Peripheral) -> None:
    """Close a bless peripheral whose registrations a restart already dropped (its own
    Unregister calls then fail with DoesNotExist, as on a real BlueZ)."""
    with contextlib.suppress(Exception):
        await stop_peripheral(periph)


async def _restart_watching_the_name(vbluez: VirtualBluez, raw: RawBus,
                                     **kwargs: Any) -> list[tuple[str, str]]:
    owners = await _record(raw, "type='signal',sender='org.freedesktop.DBus',"
                                "member='NameOwnerChanged',arg0='org.bluez'")
    restart = asyncio.ensure_future(vbluez.control.restart_bluetoothd(0.5, **kwargs))
    await eventually(lambda: _true(len(owners) >= 1), timeout=3)
    # While bluetoothd is down the bus itself answers: nobody owns org.bluez.
    name, _body = await raw.error("/", OM, "GetManagedObjects")
    assert name == "org.freedesktop.DBus.Error.ServiceUnknown"
    await asyncio.wait_for(restart, 5)
    await eventually(lambda: _true(len(owners) >= 2), timeout=3)
    return [(m.body[1], m.body[2]) for m in owners]


@pytest.mark.needs_vbluez_control("links")
@pytest.mark.vbluez(connect_timeout=1.0)
async def test_bluetoothd_restart_loses_every_registration_and_keeps_the_bonds(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    """org.bluez goes and comes back: the peripheral's application and advertisement are
    gone (nothing to connect to until it registers again), Pairable is BlueZ's default
    again, the bond on both sides survives and re-encrypts the next link."""
    peripheral = await start_peripheral(vbluez, "hci1", "VPeriph")
    path = await _bond(raw, peripheral.address)
    await raw.set("/org/bluez/hci1", ADAPTER1, "Pairable", "b", False)
    removed = await _record(raw, f"type='signal',interface='{OM}',member='InterfacesRemoved'")
    owners = await _restart_watching_the_name(vbluez, raw)
    (old, none), (none2, new) = owners
    # Lost, then owned again by a new process: a new unique name, as a restarted bluetoothd.
    assert old and new and none == none2 == "" and new != old
    assert old.startswith(":") and new.startswith(":")

    async def old_gone() -> bool:  # the old bluetoothd's connection ends too
        reply = await raw.call("/org/freedesktop/DBus", "org.freedesktop.DBus",
                               "NameHasOwner", "s", [old], dest="org.freedesktop.DBus")
        return reply.body == [False]

    await eventually(old_gone, timeout=5)
    assert {"/org/bluez/hci0", "/org/bluez/hci1", path} <= set(_removed(removed))
    objects = await raw.objects()
    assert {"/org/bluez/hci0", "/org/bluez/hci1"} <= set(objects)
    assert objects[path][DEVICE1]["Paired"].value is True
    assert objects[dev_path("hci1", "5A:00:00:00:00:01")][DEVICE1]["Bonded"].value is True
    assert SVC not in objects["/org/bluez/hci1"][ADAPTER1]["UUIDs"].value
    assert objects["/org/bluez/hci1"]["org.bluez.LEAdvertisingManager1"][
        "ActiveInstances"].value == 0
    assert objects["/org/bluez/hci1"][ADAPTER1]["Pairable"].value is True
    assert await raw.error(path, DEVICE1, "Connect") == (
        "org.bluez.Error.Failed", "le-connection-abort-by-local")  # no advertiser any more
    # The honest path: the peripheral registers again; the old bond re-encrypts at once.
    await _stopped_by_restart(peripheral)
    again = await start_peripheral(vbluez, "hci1", "VPeriph2")
    try:
        async with BleakClient(again.address, bluez=HCI0) as client:
            (link,) = await vbluez.control.links()
            assert link.encrypted
            assert await client.read_gatt_char(SECRET) == b"secret"
    finally:
        await stop_peripheral(again)


@pytest.mark.needs_vbluez_control("via _restart_watching_the_name")
@pytest.mark.vbluez(connect_timeout=2.0)
async def test_bluetoothd_restart_with_wiped_bonds_needs_pairing_again(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    """/var/lib/bluetooth of hci0 wiped: hci0 knows no device; the peripheral still holds
    its bond and, not pairable, refuses the new pairing an encrypted read needs."""
    peripheral = await start_peripheral(vbluez, "hci1", "VPeriph")
    path = await _bond(raw, peripheral.address)
    await _restart_watching_the_name(vbluez, raw, wipe_bonds=("hci0",))
    objects = await raw.objects()
    assert path not in objects
    assert objects[dev_path("hci1", "5A:00:00:00:00:01")][DEVICE1]["Paired"].value is True
    await _stopped_by_restart(peripheral)
    again = await start_peripheral(vbluez, "hci1", "VPeriph2")
    try:
        await raw.set("/org/bluez/hci1", ADAPTER1, "Pairable", "b", False)
        async with BleakClient(again.address, bluez=HCI0) as client:
            assert await client.read_gatt_char(INFO) == b"module-info"  # no security needed
            with pytest.raises(BleakError, match="NotPermitted"):
                await client.read_gatt_char(SECRET)
        assert await raw.get(dev_path("hci0", again.address), DEVICE1, "Paired") is False
        # The honest path: the peripheral in pairing mode takes the new bond.
        await raw.set("/org/bluez/hci1", ADAPTER1, "Pairable", "b", True)
        async with BleakClient(again.address, bluez=HCI0) as client:
            assert await client.read_gatt_char(SECRET) == b"secret"
    finally:
        await stop_peripheral(again)


@pytest.mark.needs_vbluez_control("adapters, add_adapter")
async def test_an_adapter_plugged_in_is_announced_and_usable(
        vbluez: VirtualBluez, raw: RawBus) -> None:
    added = await _record(raw, f"type='signal',interface='{OM}',member='InterfacesAdded'")
    info = await vbluez.control.add_adapter()
    assert (info.name, info.address) == ("hci2", "5A:00:00:00:00:03")
    await eventually(lambda: _true(any(m.body[0] == "/org/bluez/hci2" for m in added)))
    assert [a.name for a in await vbluez.control.adapters()] == ["hci0", "hci1", "hci2"]
    vbluez.adapters.append(info)
    periph = await start_peripheral(vbluez, "hci2", "Plugged")
    try:
        async with BleakClient(periph.address, bluez=HCI0) as client:
            assert await client.read_gatt_char(INFO) == b"module-info"
    finally:
        await stop_peripheral(periph)


async def _ctl(vbluez: VirtualBluez, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vbluez", "ctl", "--bus", vbluez.bus_address, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.needs_vbluez_control("runs vbluez ctl")
async def test_ctl_removes_restores_adds_adapters_and_restarts_bluetoothd(
        vbluez: VirtualBluez) -> None:
    assert (await _ctl(vbluez, "adapter-remove", "hci0"))[0] == 0
    assert (await _ctl(vbluez, "adapters"))[1].split()[0::2] == ["hci1"]
    assert (await _ctl(vbluez, "adapter-restore", "hci0"))[0] == 0
    code, out, _ = await _ctl(vbluez, "adapter-add")
    assert (code, out.split()) == (0, ["hci2", "5A:00:00:00:00:03"])
    code, _, err = await _ctl(vbluez, "restart", "--downtime", "0.2", "--wipe-bonds", "hci9")
    assert code == 1 and "DoesNotExist" in err and "hci9" in err  # nothing restarted
    assert (await _ctl(vbluez, "restart", "--downtime", "0.2", "--wipe-bonds", "hci0"))[0] == 0
    assert (await _ctl(vbluez, "adapters"))[1].split()[0::2] == ["hci0", "hci1", "hci2"]
