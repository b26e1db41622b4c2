"""A peer that lost its key: vbluez fails the encryption as BlueZ does, never pairs again.

BlueZ's observable behaviour (kernel ``hci_encrypt_change_evt``, bluetoothd 5.83
``device_remove_connection``; btmon traces of a peripheral reset while the central kept its
bond): the central encrypts a bonded LE link at once with its stored key, the peer's
controller rejects it with "PIN or Key Missing" (0x06), the kernel disconnects on
Authentication Failure, and the pending ``Connect`` is answered ``br-connection-key-missing``
after ``Connected`` went true and false again and a ``Disconnected`` signal with
``org.bluez.Reason.Authentication``. The central keeps its bond (``Paired`` stays true) and
never re-pairs on its own, whether or not it holds a GATT cache and whether or not the peer
would take a new bond: only ``RemoveDevice`` and a new pairing make the link usable again.
"""

from __future__ import annotations

from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakDBusError
from dbus_fast import Message, MessageType

from vbluez import VirtualBluez

from .conftest import SECRET, RawBus, dev_path, start_peripheral, stop_peripheral
from .test_host_loss import _restart_watching_the_name, _stopped_by_restart

HCI0 = {"adapter": "hci0"}
DEVICE1 = "org.bluez.Device1"
ADAPTER1 = "org.bluez.Adapter1"


async def _watch(raw: RawBus, path: str) -> list[tuple[str, Any]]:
    """The central device's Connected changes and Disconnected signals, in order."""
    seen: list[tuple[str, Any]] = []

    def handler(msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or msg.path != path:
            return
        if msg.member == "PropertiesChanged" and "Connected" in msg.body[1]:
            seen.append(("Connected", msg.body[1]["Connected"].value))
        elif msg.member == "Disconnected":
            seen.append(("Disconnected", tuple(msg.body)))

    raw.bus.add_message_handler(handler)
    await raw.ok("/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s",
                 [f"type='signal',sender='org.bluez',path='{path}'"],
                 dest="org.freedesktop.DBus")
    return seen


@pytest.mark.needs_vbluez_control("links")
@pytest.mark.parametrize("gatt_cache", [
    pytest.param(False, marks=pytest.mark.vbluez(connect_timeout=2.0)),
    pytest.param(True, marks=pytest.mark.vbluez(connect_timeout=2.0, gatt_cache=True))])
async def test_peer_bonds_wiped_by_a_restart_fails_encryption_key_missing_never_re_pairs(
        vbluez: VirtualBluez, raw: RawBus, gatt_cache: bool) -> None:
    """bluetoothd restarts with the peer's bonds wiped (hci1): each connect from the bonded
    central fails key-missing, with or without a GATT cache and even with the peer pairable
    and no agent anywhere (the just-works re-pairing the old vbluez made inside a write);
    no bond appears on the peer, the central's stays; then RemoveDevice + pair works."""
    peripheral = await start_peripheral(vbluez, "hci1", "VPeriph")
    assert await BleakScanner.find_device_by_address(peripheral.address, timeout=5,
                                                     bluez=HCI0)
    path = dev_path("hci0", peripheral.address)
    await raw.ok(path, DEVICE1, "Pair")
    await raw.ok(path, DEVICE1, "Disconnect")
    await _restart_watching_the_name(vbluez, raw, wipe_bonds=("hci1",))
    await _stopped_by_restart(peripheral)
    again = await start_peripheral(vbluez, "hci1", "VPeriph2")
    gateway_on_peer = dev_path("hci1", "5A:00:00:00:00:01")
    try:
        assert await raw.get("/org/bluez/hci1", ADAPTER1, "Pairable") is True  # would pair
        seen = await _watch(raw, path)
        for _ in range(2):
            with pytest.raises(BleakDBusError, match="br-connection-key-missing"):
                async with BleakClient(again.address, bluez=HCI0, timeout=5):
                    pass
        assert seen[:3] == [("Connected", True), ("Connected", False), (
            "Disconnected", ("org.bluez.Reason.Authentication",
                             "Connection terminated due to authentication failure"))]
        assert await vbluez.control.links() == []  # nothing went over any link
        assert await raw.get(path, DEVICE1, "Paired") is True  # the central keeps its key
        objects = await raw.objects()
        assert gateway_on_peer not in objects or \
            objects[gateway_on_peer][DEVICE1]["Paired"].value is False
        # The honest path: the central forgets its key and pairs anew.
        await raw.ok("/org/bluez/hci0", ADAPTER1, "RemoveDevice", "o", [path])
        assert await BleakScanner.find_device_by_address(again.address, timeout=5,
                                                         bluez=HCI0)
        async with BleakClient(again.address, bluez=HCI0, pair=True) as client:
            assert await client.read_gatt_char(SECRET) == b"secret"
            (link,) = await vbluez.control.links()
            assert link.encrypted
    finally:
        await stop_peripheral(again)
