"""A module that lost its key, as the gateway reads it from BlueZ (no radio here).

BlueZ 5.83 answers the connect ``br-connection-key-missing``; older versions answer
``br-connection-canceled`` (which bleak-retry-connector retries) and say why only in the
``Device1.Disconnected`` signal (``org.bluez.Reason.Authentication``). Both must read as a lost
bond, not a transient fault, and a spoofed signal for another adapter or device, or with another
reason, must change nothing.
"""

from __future__ import annotations

import time

from dbus_fast import Message, MessageType

from blegw.faults import classify, is_key_missing, is_security_failure
from blegw.pairing_guard import PairingGuard

MODULE = bytes.fromhex("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
ADDRESS = "5A:00:00:00:00:02"
PATH = "/org/bluez/hci0/dev_5A_00_00_00_00_02"


def _disconnected(reason: str, path: str = PATH) -> Message:
    return Message(message_type=MessageType.SIGNAL, path=path, member="Disconnected",
                   interface="org.bluez.Device1", signature="ss",
                   body=[reason, "Connection terminated due to authentication failure"])


def test_key_missing_is_a_lost_bond_never_retried() -> None:
    error = "connect failed: BleakDBusError('org.bluez.Error.Failed', 'br-connection-key-missing')"
    assert is_key_missing(error) and is_security_failure(error)
    fault = classify(error, "hci0", ADDRESS)
    assert (fault.code, fault.transient) == ("key_missing", False)
    assert "PIN or Key Missing" in fault.cause and "pair" in fault.advice
    # Interference stays transient; a canceled connect alone is not a lost key.
    assert classify("br-connection-canceled", "hci0", ADDRESS).transient
    assert not is_key_missing("br-connection-canceled")


def test_an_authentication_disconnect_is_remembered_for_its_device_only() -> None:
    guard = PairingGuard("hci0")
    guard.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9)
    before = time.monotonic()
    for spoof in (_disconnected("org.bluez.Reason.Remote"),             # another reason
                  _disconnected("org.bluez.Reason.Authentication",     # another adapter
                                "/org/bluez/hci1/dev_5A_00_00_00_00_02"),
                  _disconnected("org.bluez.Reason.Authentication",     # not a device
                                "/org/bluez/hci0"),
                  Message(message_type=MessageType.SIGNAL, path=PATH, member="Disconnected",
                          interface="org.bluez.Device1", signature="s", body=["x"])):
        assert guard._on_message(spoof) is False
    assert not guard.auth_failed_since(ADDRESS, before)
    guard._on_message(_disconnected("org.bluez.Reason.Authentication"))
    assert guard.auth_failed_since(ADDRESS, before)
    assert not guard.auth_failed_since(ADDRESS, time.monotonic() + 1)
    assert not guard.records[MODULE].needs_re_pairing  # the signal alone marks nothing
