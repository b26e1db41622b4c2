"""The GATT layout of the secure-module link profile (see docs/ble-profile.md).

The 128-bit UUIDs were generated once with uuid4 and are fixed forever: changing one breaks every
deployed module. Characteristics share the service UUID's tail so they are easy to spot in logs.
Strings, lower case, because that is how bleak, bless and BlueZ name them.
"""

from __future__ import annotations

__all__ = [
    "CONTROL_POINT",
    "CONTROL_POINT_LENGTH",
    "MODULE_INFO",
    "SERVICE",
    "SERVICE_DATA_UUID",
    "SERVICE_DATA_UUID16",
    "STATUS",
]

SERVICE = "9b1e0001-5d2c-4f7a-a3e8-6c41b0d27f15"
"""The profile's 128-bit primary service, advertised by every module."""
CONTROL_POINT = "9b1e0002-5d2c-4f7a-a3e8-6c41b0d27f15"
"""Write / write-without-response, encrypted: request fragments, gateway to module."""
STATUS = "9b1e0003-5d2c-4f7a-a3e8-6c41b0d27f15"
"""Notify: response fragments, module to gateway."""
CONTROL_POINT_LENGTH = "9b1e0004-5d2c-4f7a-a3e8-6c41b0d27f15"
"""Read: 2 bytes big-endian, the largest fragment the module accepts."""
MODULE_INFO = "9b1e0005-5d2c-4f7a-a3e8-6c41b0d27f15"
"""Read: CBOR ModuleInfo."""
SERVICE_DATA_UUID16 = "fcd1"
"""16-bit UUID the advertised service data is carried under (a 128-bit one would not fit in a
legacy 31-byte advertisement beside the 128-bit service UUID).

PLACEHOLDER: every 16-bit UUID belongs to the Bluetooth SIG's space; a shipping product needs a
SIG-assigned member UUID here. Deliberately *not* 0xFFFD (FIDO) or 0xFFF9 (FIDO hybrid): phones
and browsers scanning for authenticators would take our modules for FIDO ones. A gateway only
trusts this service data when the same advertisement also lists :data:`SERVICE`.
"""
SERVICE_DATA_UUID = f"0000{SERVICE_DATA_UUID16}-0000-1000-8000-00805f9b34fb"
"""The same UUID in the 128-bit form bleak uses as the key of ``service_data``."""
