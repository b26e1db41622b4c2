"""vbluez fails the way BlueZ does, as seen on the bus by bleak and by a raw D-Bus client.

Each test checks BlueZ's observable behaviour (src/device.c, bleak 3.1's BlueZ backend):
write commands keep their order on a timed link; ``le-connection-abort-by-local`` comes with
``Connected`` true then false; Disconnect cancels a pending Connect without leaving a link;
a second Connect while one is pending is ``InProgress``. Each ends by showing the honest path
still works.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from dbus_fast import Message, MessageType

from vbluez import VirtualBluez

from .conftest import (
    CMD,
    INFO,
    Peripheral,
    RawBus,
    dev_path,
    eventually,
    start_peripheral,
    stop_peripheral,
)

HCI0 = {"adapter": "hci0"}
DEVICE1 = "org.bluez.Device1"


async def _true(value: bool) -> bool:
    return value


async def _discover(address: str) -> None:
    assert await BleakScanner.find_device_by_address(address, timeout=5, bluez=HCI0)


async def _watch_connected(raw: RawBus, path: str) -> list[bool]:
    """Record every ``Connected`` value the device at ``path`` announces, in order."""
    seen: list[bool] = []

    def handler(msg: Message) -> None:
        if (msg.message_type == MessageType.SIGNAL and msg.path == path
                and msg.member == "PropertiesChanged" and msg.body[0] == DEVICE1
                and "Connected" in msg.body[1]):
            seen.append(bool(msg.body[1]["Connected"].value))

    raw.bus.add_message_handler(handler)
    await raw.ok("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                 [f"type='signal',path='{path}',member='PropertiesChanged'"],
                 dest="org.freedesktop.DBus")
    return seen


@pytest.mark.vbluez(conn_interval_ms=7.5)
async def test_write_commands_reordered_on_a_timed_link(vbluez: VirtualBluez) -> None:
    """A multi-fragment message sent as write commands must arrive in order (else INVALID_SEQ)."""
    periph = await start_peripheral(vbluez, "hci1", "Ordered", on_write=lambda _p, _v: None)
    try:
        sent = [bytes([0x80 | (i & 0x7F)]) + bytes(18) for i in range(60)]
        async with BleakClient(periph.address, bluez=HCI0) as client:
            for fragment in sent:
                await client.write_gatt_char(CMD, fragment, response=False)
            await eventually(lambda: _true(len(periph.writes) >= len(sent)))
            assert periph.writes == sent
            # The honest path on the same link: a write request after the commands.
            await client.write_gatt_char(CMD, b"after", response=True)
            assert periph.writes[-1] == b"after"
    finally:
        await stop_peripheral(periph)


@pytest.mark.needs_vbluez_control("abort_connects, links")
async def test_abort_by_local_announces_connected_true_then_false(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus) -> None:
    """Interference ends a connect: BlueZ shows the brief link, then fails the Connect."""
    await _discover(peripheral.address)
    path = dev_path("hci0", peripheral.address)
    seen = await _watch_connected(raw, path)
    await vbluez.control.abort_connects("hci0", peripheral.address, 1)
    assert await raw.error(path, DEVICE1, "Connect") == (
        "org.bluez.Error.Failed", "le-connection-abort-by-local")
    await eventually(lambda: _true(len(seen) >= 2), timeout=2)
    assert seen == [True, False]
    assert await raw.get(path, DEVICE1, "Connected") is False
    assert await vbluez.control.links() == []
    # The next connect is a clean one.
    await raw.ok(path, DEVICE1, "Connect")
    assert await raw.get(path, DEVICE1, "ServicesResolved") is True


@pytest.mark.needs_vbluez_control("abort_connects")
async def test_abort_by_local_is_retried_by_bleak_at_once(
        vbluez: VirtualBluez, peripheral: Peripheral) -> None:
    """bleak 3.1 retries abort-by-local itself once it sees Connected false; no hang."""
    await _discover(peripheral.address)
    await vbluez.control.abort_connects("hci0", peripheral.address, 2)
    started = time.monotonic()
    async with BleakClient(peripheral.address, bluez=HCI0, timeout=8) as client:
        assert time.monotonic() - started < 3
        assert await client.read_gatt_char(INFO) == b"module-info"


@pytest.mark.needs_vbluez_control("links, set_responsive")
@pytest.mark.vbluez(connect_timeout=30)
async def test_disconnect_cancels_a_pending_connect_without_a_ghost_link(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus) -> None:
    """A Disconnect during a pending Connect ends it: Connect fails br-connection-canceled,
    Disconnect succeeds, and no link appears when the peer comes back."""
    await _discover(peripheral.address)
    path = dev_path("hci0", peripheral.address)
    await vbluez.control.set_responsive("hci1", False)
    pending = asyncio.ensure_future(raw.call(path, DEVICE1, "Connect"))
    await asyncio.sleep(0.3)
    assert not pending.done()
    second = await raw.error(path, DEVICE1, "Connect")
    assert second[0] == "org.bluez.Error.InProgress"
    await raw.ok(path, DEVICE1, "Disconnect")
    reply = await asyncio.wait_for(pending, 5)
    assert (reply.message_type, reply.error_name, reply.body) == (
        MessageType.ERROR, "org.bluez.Error.Failed", ["br-connection-canceled"])
    await vbluez.control.set_responsive("hci1", True)
    await asyncio.sleep(0.6)
    assert await vbluez.control.links() == []
    assert await raw.get(path, DEVICE1, "Connected") is False
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        assert await client.read_gatt_char(INFO) == b"module-info"


@pytest.mark.needs_vbluez_control("links")
@pytest.mark.vbluez(conn_interval_ms=60)
async def test_disconnect_during_link_setup_leaves_no_ghost_to_delete_the_live_gatt(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus) -> None:
    """Cancelled mid-setup (discovery rounds on a slow link), the attempt must not finish
    later: a ghost link's loss would unexport the GATT objects of the link in use."""
    await _discover(peripheral.address)
    path = dev_path("hci0", peripheral.address)
    pending = asyncio.ensure_future(raw.call(path, DEVICE1, "Connect"))
    await asyncio.sleep(0.1)
    await raw.ok(path, DEVICE1, "Disconnect")
    reply = await asyncio.wait_for(pending, 5)
    assert reply.error_name == "org.bluez.Error.Failed"
    assert reply.body == ["br-connection-canceled"]
    async with BleakClient(peripheral.address, bluez=HCI0) as client:
        await asyncio.sleep(1.0)  # longer than the cancelled attempt's setup would take
        links: list[Any] = await vbluez.control.links()
        assert len(links) == 1
        assert await client.read_gatt_char(INFO) == b"module-info"


@pytest.mark.needs_vbluez_control("connect_fault, links")
async def test_connect_faults_last_until_lifted_and_counted_ones_run_out(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus) -> None:
    """``connect-fault``: InProgress N times then a clean connect; abort-by-local until
    lifted keeps bleak retrying to its own timeout (each abort a Connected true/false); once
    lifted the next connect is clean. A bad kind or count is InvalidArguments."""
    await _discover(peripheral.address)
    path = dev_path("hci0", peripheral.address)
    await vbluez.control.connect_fault("hci0", peripheral.address, "in-progress", 2)
    for _ in range(2):
        assert (await raw.error(path, DEVICE1, "Connect"))[0] == "org.bluez.Error.InProgress"
    await raw.ok(path, DEVICE1, "Connect")
    await raw.ok(path, DEVICE1, "Disconnect")
    await vbluez.control.connect_fault("hci0", peripheral.address, "in-progress", -1)
    for _ in range(5):
        assert (await raw.error(path, DEVICE1, "Connect"))[0] == "org.bluez.Error.InProgress"
    await vbluez.control.connect_fault("hci0", peripheral.address, "in-progress", 0)
    seen = await _watch_connected(raw, path)
    await vbluez.control.connect_fault("hci0", peripheral.address, "abort-by-local", -1)
    with pytest.raises(TimeoutError):
        async with BleakClient(peripheral.address, bluez=HCI0, timeout=1.0):
            pass
    assert seen.count(True) >= 3 and seen[-1] is False  # bleak retried each abort itself
    assert await vbluez.control.links() == []
    for bad in (("sneeze", -1), ("in-progress", -2)):
        with pytest.raises(Exception, match="InvalidArguments"):
            await vbluez.control.connect_fault("hci0", peripheral.address, *bad)
    await vbluez.control.connect_fault("hci0", peripheral.address, "abort-by-local", 0)
    async with BleakClient(peripheral.address, bluez=HCI0, timeout=5) as client:
        assert await client.read_gatt_char(INFO) == b"module-info"


@pytest.mark.needs_vbluez_control("runs vbluez ctl")
async def test_ctl_connect_fault_sets_and_lifts(
        vbluez: VirtualBluez, peripheral: Peripheral, raw: RawBus) -> None:
    from .test_host_loss import _ctl

    await _discover(peripheral.address)
    path = dev_path("hci0", peripheral.address)
    code, _, err = await _ctl(vbluez, "connect-fault", "hci0", peripheral.address,
                              "in-progress", "twice")
    assert code == 2 and "until-lifted or off" in err
    assert (await _ctl(vbluez, "connect-fault", "hci0", peripheral.address,
                       "in-progress"))[0] == 0  # until lifted, the default
    assert (await raw.error(path, DEVICE1, "Connect"))[0] == "org.bluez.Error.InProgress"
    assert (await _ctl(vbluez, "connect-fault", "hci0", peripheral.address,
                       "in-progress", "off"))[0] == 0
    await raw.ok(path, DEVICE1, "Connect")
