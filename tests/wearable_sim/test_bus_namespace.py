"""A central on the same bus as the simulator reads only BlueZ's objects as BlueZ's.

bleak's object manager takes every ``InterfacesAdded`` whose path starts with ``/org/bluez/`` for
BlueZ's, whoever sends it. bless exports its GATT application there by default, so a bleak central
on the same bus (the demo, a rig with both adapters on one machine) met a ``GattService1`` with no
``Device`` and logged a traceback from its signal handler. The simulator keeps its objects under
its own path; this test starts bleak's manager first and the module (a real `wearable-sim run`)
after it, and reads the log of the handler that failed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from bleak import BleakScanner

from ble_profile import uuids
from vbluez import VirtualBluez
from wearable_sim.element import SecureElement
from wearable_sim.state import ModuleState

from .conftest import provision
from .test_bond_downgrade import module_process

HCI0 = {"adapter": "hci0"}


async def test_a_central_on_the_same_bus_takes_no_simulator_object_for_bluez(
        vbluez: VirtualBluez, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "module"
    provision(SecureElement(ModuleState(state)))
    await BleakScanner.discover(timeout=0.2, bluez=HCI0)  # bleak's manager is now listening
    caplog.set_level(logging.ERROR, logger="dbus_fast")
    async with module_process(vbluez, state):
        device = await BleakScanner.find_device_by_filter(
            lambda d, adv: uuids.SERVICE in adv.service_uuids, timeout=10, bluez=HCI0)
        assert device is not None and device.address == vbluez.adapters[1].address
    failures = [r.getMessage() for r in caplog.records if "handler raised" in r.getMessage()]
    assert failures == []
