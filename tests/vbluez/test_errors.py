"""Errors named as BlueZ names them; nothing is left unanswered."""

from __future__ import annotations

import pytest
from bleak import BleakClient
from bleak.exc import BleakGATTProtocolError
from dbus_fast import Variant

from vbluez import VirtualBluez

from .conftest import CMD, EVT, INFO, Peripheral, RawBus, dev_path


async def test_unknown_object_and_method_are_answered(raw: RawBus) -> None:
    name, _ = await raw.error("/org/bluez/hci9", "org.bluez.Adapter1", "StartDiscovery")
    assert name == "org.freedesktop.DBus.Error.UnknownObject"
    name, _ = await raw.error("/org/bluez/hci0", "org.bluez.Adapter1", "Explode")
    assert name == "org.freedesktop.DBus.Error.UnknownMethod"
    name, _ = await raw.error("/org/bluez/hci0", "org.bluez.Adapter1", "RemoveDevice", "s",
                              ["not-a-path"])
    assert name == "org.bluez.Error.InvalidArguments"


async def test_adapter_errors(raw: RawBus) -> None:
    hci0 = "/org/bluez/hci0"
    assert (await raw.error(hci0, "org.bluez.Adapter1", "StopDiscovery"))[0] == \
        "org.bluez.Error.Failed"
    await raw.ok(hci0, "org.bluez.Adapter1", "StartDiscovery")
    assert (await raw.error(hci0, "org.bluez.Adapter1", "StartDiscovery"))[0] == \
        "org.bluez.Error.InProgress"
    assert (await raw.error(hci0, "org.bluez.Adapter1", "SetDiscoveryFilter", "a{sv}",
                            [{"Colour": Variant("s", "red")}]))[0] == \
        "org.bluez.Error.InvalidArguments"
    assert (await raw.error(hci0, "org.bluez.Adapter1", "RemoveDevice", "o",
                            [hci0 + "/dev_00_00_00_00_00_00"]))[0] == \
        "org.bluez.Error.DoesNotExist"
    assert (await raw.error(hci0, "org.freedesktop.DBus.Properties", "Set", "ssv",
                            ["org.bluez.Adapter1", "Address", Variant("s", "x")]))[0] == \
        "org.freedesktop.DBus.Error.PropertyReadOnly"
    await raw.set(hci0, "org.bluez.Adapter1", "Powered", "b", False)
    assert (await raw.error(hci0, "org.bluez.Adapter1", "StartDiscovery"))[0] == \
        "org.bluez.Error.NotReady"


async def test_gatt_operation_errors(peripheral: Peripheral, raw: RawBus) -> None:
    async with BleakClient(peripheral.address, bluez={"adapter": "hci0"}) as client:
        # bleak recognises BlueZ's texts and raises its GATT protocol errors for them.
        with pytest.raises(BleakGATTProtocolError) as gatt_err:
            await client.read_gatt_char(CMD)  # write-only
        assert "Read Not Permitted" in str(gatt_err.value)
        with pytest.raises(BleakGATTProtocolError) as gatt_err:
            await client.write_gatt_char(INFO, b"x", response=True)  # read-only
        assert "Write Not Permitted" in str(gatt_err.value)
        evt = client.services.get_characteristic(EVT)
        assert evt is not None
        assert (await raw.error(evt.obj[0], "org.bluez.GattCharacteristic1",
                                "StopNotify"))[0] == "org.bluez.Error.Failed"
        info = client.services.get_characteristic(INFO)
        assert info is not None
        assert (await raw.error(info.obj[0], "org.bluez.GattCharacteristic1",
                                "StartNotify"))[0] == "org.bluez.Error.NotSupported"
        cccd = evt.descriptors[0]
        assert (await raw.error(cccd.obj[0], "org.bluez.GattDescriptor1", "WriteValue", "aya{sv}",
                                [b"\x01\x00", {}]))[0] == "org.bluez.Error.NotPermitted"
        device = dev_path("hci0", peripheral.address)
        assert (await raw.error(device, "org.bluez.Device1", "Connect"))[0] == \
            "org.bluez.Error.AlreadyConnected"


@pytest.mark.needs_vbluez_control("set_responsive")
@pytest.mark.vbluez(connect_timeout=0.5)
async def test_connect_to_a_silent_device_fails_like_bluez(vbluez: VirtualBluez,
                                                           peripheral: Peripheral,
                                                           raw: RawBus) -> None:
    from bleak import BleakScanner
    await BleakScanner.find_device_by_address(peripheral.address, timeout=5,
                                              bluez={"adapter": "hci0"})
    await vbluez.control.set_responsive("hci1", False)
    name, text = await raw.error(dev_path("hci0", peripheral.address), "org.bluez.Device1",
                                 "Connect")
    assert (name, text) == ("org.bluez.Error.Failed", "le-connection-abort-by-local")


@pytest.mark.needs_vbluez_control("configure, link_loss")
async def test_control_errors(vbluez: VirtualBluez) -> None:
    from vbluez import BluezError
    with pytest.raises(BluezError, match="no link"):
        await vbluez.control.link_loss("hci0", "11:22:33:44:55:66")
    with pytest.raises(BluezError, match="mtu"):
        await vbluez.control.configure(mtu=4)
