"""The GATT layout of the secure-module link profile (see docs/ble-profile.md)."""

from __future__ import annotations

__all__ = [
    "CONTROL_POINT",
    "CONTROL_POINT_LENGTH",
    "MODULE_INFO",
    "SERVICE",
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
SERVICE_DATA_UUID16 = "fffd"
"""16-bit UUID the advertised service data is carried under (a 128-bit one would not fit in a
legacy 31-byte advertisement beside the 128-bit service UUID)."""
