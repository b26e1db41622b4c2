"""What a module puts in its advertisement, and how a gateway reads it.

Legacy advertising carries 31 bytes: flags (3) + the 128-bit service UUID (18) leaves 10, so the
service data goes under the 16-bit UUID 0xFFFD-style short form: 2 (AD header) + 2 (UUID) + 6
bytes of data = 10. The local name travels in the scan response.

Service data layout (6 bytes): ``version (1) | short module id (4) | flags (1)``; flags bit 0 is
pairing mode (the module accepts a new bond).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AdvertisementError

__all__ = ["ADVERT_VERSION", "FLAG_PAIRING_MODE", "AdvertData"]

ADVERT_VERSION = 1
FLAG_PAIRING_MODE = 0x01
_LEN = 6


@dataclass(frozen=True, slots=True)
class AdvertData:
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
        flags = FLAG_PAIRING_MODE if self.pairing_mode else 0
        return bytes([self.version]) + self.short_id + bytes([flags])

    @classmethod
    def decode(cls, data: bytes) -> AdvertData:
        if len(data) != _LEN:
            raise AdvertisementError(f"service data is {_LEN} bytes, got {len(data)}")
        if data[0] != ADVERT_VERSION:
            raise AdvertisementError(f"unsupported advertisement version {data[0]}")
        if data[5] & ~FLAG_PAIRING_MODE:
            raise AdvertisementError(f"unknown advertisement flags 0x{data[5]:02x}")
        return cls(short_id=bytes(data[1:5]), pairing_mode=bool(data[5] & FLAG_PAIRING_MODE))
