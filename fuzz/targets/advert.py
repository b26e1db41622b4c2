"""``AdvertData.decode``: service data from any advertiser in radio range."""

from __future__ import annotations

from ble_profile import AdvertData, LinkProfileError

from ..engine import FuzzOracleError, Target


def one_input(data: bytes) -> None:
    advert = AdvertData.decode(data)
    if advert.encode() != data[:5] + bytes([data[5] & 1]):
        raise FuzzOracleError("service data decoded into something else")


def seeds() -> list[bytes]:
    return [AdvertData(b"\x01\x02\x03\x04", True).encode(), AdvertData(b"abcd").encode()]


TARGET = Target("advert", one_input, (LinkProfileError,), seeds, max_len=64)
