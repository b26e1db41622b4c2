"""ATT error codes and how BlueZ translates them at both ends of a link.

On a real pair of machines an application error on the peripheral travels as an ATT error code
(Bluetooth Core Vol 3 Part F 3.4.1.1) and the central's BlueZ turns that code into a D-Bus error.
The virtual BlueZ does the same two translations so a bleak client sees what it would see on air,
for example ``org.bluez.Error.NotPermitted: Write not permitted`` when the peripheral refuses.
"""

from __future__ import annotations

from enum import IntEnum

from .errors import BluezError

__all__ = ["AttError", "att_error_from_app_error", "central_error_from_att"]

ATT_MAX_VALUE_LEN = 512
"""Largest attribute value ATT can carry (Core Vol 3 Part F 3.2.9)."""


class AttError(IntEnum):
    INVALID_HANDLE = 0x01
    READ_NOT_PERMITTED = 0x02
    WRITE_NOT_PERMITTED = 0x03
    INVALID_PDU = 0x04
    INSUFFICIENT_AUTHENTICATION = 0x05
    REQUEST_NOT_SUPPORTED = 0x06
    INVALID_OFFSET = 0x07
    INSUFFICIENT_AUTHORIZATION = 0x08
    PREPARE_QUEUE_FULL = 0x09
    ATTRIBUTE_NOT_FOUND = 0x0A
    ATTRIBUTE_NOT_LONG = 0x0B
    INSUFFICIENT_ENCRYPTION_KEY_SIZE = 0x0C
    INVALID_ATTRIBUTE_VALUE_LEN = 0x0D
    UNLIKELY = 0x0E
    INSUFFICIENT_ENCRYPTION = 0x0F
    UNSUPPORTED_GROUP_TYPE = 0x10
    INSUFFICIENT_RESOURCES = 0x11
    APPLICATION = 0x80


# BlueZ's gatt-database.c: the error an application returns over D-Bus becomes this ATT code.
_APP_ERROR_TO_ATT: dict[str, AttError] = {
    "org.bluez.Error.Failed": AttError.UNLIKELY,
    "org.bluez.Error.InProgress": AttError.UNLIKELY,
    "org.bluez.Error.NotPermitted": AttError.WRITE_NOT_PERMITTED,
    "org.bluez.Error.InvalidValueLength": AttError.INVALID_ATTRIBUTE_VALUE_LEN,
    "org.bluez.Error.InvalidOffset": AttError.INVALID_OFFSET,
    "org.bluez.Error.NotAuthorized": AttError.INSUFFICIENT_AUTHORIZATION,
    "org.bluez.Error.NotSupported": AttError.REQUEST_NOT_SUPPORTED,
}


def att_error_from_app_error(error_name: str, *, reading: bool) -> int:
    """ATT code for an error the peripheral application answered a read or write with.

    ``org.bluez.Error.ATT.0xNN`` names carry an application-chosen code (BlueZ 5.62+).
    Anything BlueZ does not know becomes "unlikely error", as in BlueZ.
    """
    if error_name.startswith("org.bluez.Error.ATT.0x"):
        try:
            return int(error_name.rsplit("0x", 1)[1], 16) & 0xFF
        except ValueError:
            return AttError.UNLIKELY
    code = _APP_ERROR_TO_ATT.get(error_name, AttError.UNLIKELY)
    if code == AttError.WRITE_NOT_PERMITTED and reading:
        return AttError.READ_NOT_PERMITTED
    return code


def central_error_from_att(code: int) -> BluezError:
    """The D-Bus error BlueZ's gatt-client.c gives a central for an ATT error response."""
    if code == AttError.READ_NOT_PERMITTED:
        return BluezError.not_permitted("Read not permitted")
    if code == AttError.WRITE_NOT_PERMITTED:
        return BluezError.not_permitted("Write not permitted")
    if code in (
        AttError.INSUFFICIENT_AUTHENTICATION,
        AttError.INSUFFICIENT_ENCRYPTION,
        AttError.INSUFFICIENT_ENCRYPTION_KEY_SIZE,
    ):
        return BluezError.not_permitted("Not paired")
    if code == AttError.INVALID_OFFSET:
        return BluezError.invalid_args("Invalid offset")
    if code == AttError.INVALID_ATTRIBUTE_VALUE_LEN:
        return BluezError.invalid_args("Invalid Length")
    if code == AttError.INSUFFICIENT_AUTHORIZATION:
        return BluezError.not_authorized()
    if code == AttError.REQUEST_NOT_SUPPORTED:
        return BluezError.not_supported()
    if code == 0:
        return BluezError.failed("Operation failed")
    return BluezError.failed(f"Operation failed with ATT error: 0x{code:02x}")
