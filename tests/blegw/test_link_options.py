"""The link's options and the words it uses for BlueZ's stale-cache errors."""

from __future__ import annotations

import pytest
from bleak.exc import BleakDBusError, BleakError

from blegw.config import ConfigError, parse_config
from blegw.faults import classify
from blegw.link import is_stale

GOOD = {"gateway": {"id": "gw-1"}, "mqtt": {"url": "mqtt://broker:1884"}}


def test_keep_links_up_is_off_by_default_and_must_be_a_boolean() -> None:
    assert parse_config(GOOD, env={}).keep_links_up is False
    assert parse_config({**GOOD, "ble": {"keep_links_up": True}}, env={}).keep_links_up
    with pytest.raises(ConfigError, match=r"ble\.keep_links_up: expected bool"):
        parse_config({**GOOD, "ble": {"keep_links_up": "yes"}}, env={})
    with pytest.raises(ConfigError, match=r"ble\.keep_links_up: expected bool"):
        parse_config({**GOOD, "ble": {"keep_links_up": 1}}, env={})


@pytest.mark.parametrize("error", [
    BleakError("GATT Protocol Error: Invalid Handle"),  # bleak 3.1's ATT 0x01
    BleakDBusError("org.bluez.Error.Failed", ["Operation failed with ATT error: 0x01"]),
    BleakDBusError("org.freedesktop.DBus.Error.UnknownObject",
                   ['Method "WriteValue" with signature "aya{sv}" on interface '
                    '"org.bluez.GattCharacteristic1" doesn\'t exist']),
])
def test_stale_cache_errors_are_recognised_and_named(error: Exception) -> None:
    assert is_stale(error)
    fault = classify(error, "hci0", "5A:00:00:00:00:02")
    assert (fault.code, fault.transient) == ("stale_cache", True)
    assert "`blegw forget`" in fault.advice


@pytest.mark.parametrize("error", [
    BleakDBusError("org.bluez.Error.NotPermitted", ["Not paired"]),
    BleakError("Not connected"),
    TimeoutError(),
])
def test_other_errors_are_not_taken_for_a_stale_cache(error: Exception) -> None:
    assert not is_stale(error)
    assert classify(error, "hci0", "5A:00:00:00:00:02").code != "stale_cache"
