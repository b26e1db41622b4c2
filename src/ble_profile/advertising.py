"""What a module puts in its advertisement, and how a gateway reads it.

A gateway must tell modules apart (and see which one is in pairing mode) *without connecting*:
connecting is slow and takes one of the controller's few connection slots. So the advertisement
carries a small service-data payload beside the profile's 128-bit service UUID.

Legacy advertising carries 31 bytes, and every AD structure costs a length and a type byte:

=========================================  =====
AD structure                               bytes
=========================================  =====
flags (len, type 0x01, value)              3
complete 128-bit service UUIDs (0x07)      2 + 16 = 18
service data, 16-bit UUID (0x16)           2 + 2 + 6 = 10
total                                      31
=========================================  =====

A 128-bit service-data UUID would cost 14 more bytes, which is why the service data goes under the
16-bit :data:`ble_profile.uuids.SERVICE_DATA_UUID16`. The local name goes in the scan response.

Service data layout (6 bytes): ``version (1) | short module id (4) | flags (1)``. Flags bit 0 is
pairing mode (the module accepts a new bond); the other bits are reserved: sent as 0, ignored on
receipt so a newer module stays visible to an older gateway. A different version byte means a
different layout, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from . import uuids
from .errors import AdvertisementError

__all__ = [
    "ADVERT_VERSION",
    "FLAG_PAIRING_MODE",
    "LEGACY_ADVERT_SIZE",
    "SERVICE_DATA_SIZE",
    "AdvertData",
    "legacy_advertising_data",
]

ADVERT_VERSION = 1
FLAG_PAIRING_MODE = 0x01
SERVICE_DATA_SIZE = 6
LEGACY_ADVERT_SIZE = 31
"""The legacy (Bluetooth 4.x) advertising payload limit every controller supports."""

_AD_FLAGS = 0x01
_AD_COMPLETE_128 = 0x07
_AD_SERVICE_DATA_16 = 0x16
_LE_GENERAL_DISCOVERABLE_NO_BREDR = 0x06


@dataclass(frozen=True, slots=True)
class AdvertData:
    """The module's service data: enough to pick a module from a scan, nothing secret."""

    short_id: bytes
    """The first 4 bytes of the module id: enough to tell modules apart in a scan."""
    pairing_mode: bool = False
    version: int = ADVERT_VERSION

    def __post_init__(self) -> None:
        if len(self.short_id) != 4:
            raise AdvertisementError("the short module id is 4 bytes")
        if not 0 <= self.version <= 0xFF:
            raise AdvertisementError("version must fit in a byte")

    def encode(self) -> bytes:
        """The 6 service-data bytes (what BlueZ's ``ServiceData`` and bleak carry)."""
        flags = FLAG_PAIRING_MODE if self.pairing_mode else 0
        return bytes([self.version]) + self.short_id + bytes([flags])

    @classmethod
    def decode(cls, data: bytes) -> AdvertData:
        """Parse service data from a scan; anything not exactly ours raises AdvertisementError."""
        if len(data) != SERVICE_DATA_SIZE:
            raise AdvertisementError(
                f"service data is {SERVICE_DATA_SIZE} bytes, got {len(data)}")
        if data[0] != ADVERT_VERSION:
            raise AdvertisementError(f"unsupported advertisement version {data[0]}")
        return cls(short_id=bytes(data[1:5]), pairing_mode=bool(data[5] & FLAG_PAIRING_MODE))


def legacy_advertising_data(advert: AdvertData) -> bytes:
    """The complete 31-byte legacy advertising payload, as AD structures.

    BlueZ assembles this itself from an LEAdvertisement1 object; this function exists so the byte
    budget is checked by a test rather than by arithmetic in a comment, and for peripherals that
    take raw advertising data.
    """
    uuid16 = int(uuids.SERVICE_DATA_UUID16, 16)
    service_data = uuid16.to_bytes(2, "little") + advert.encode()
    out = (
        bytes([2, _AD_FLAGS, _LE_GENERAL_DISCOVERABLE_NO_BREDR])
        + bytes([17, _AD_COMPLETE_128]) + UUID(uuids.SERVICE).bytes[::-1]  # little-endian
        + bytes([1 + len(service_data), _AD_SERVICE_DATA_16]) + service_data
    )
    if len(out) > LEGACY_ADVERT_SIZE:  # pragma: no cover - guarded by the layout above
        raise AdvertisementError(f"advertisement of {len(out)} bytes exceeds 31")
    return out
