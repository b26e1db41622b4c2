"""Advertising service data and module info codecs."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble_profile import AdvertData, AdvertisementError, ModuleInfo, ModuleInfoError

INFO = ModuleInfo(model="wearable-sim", firmware="0.1.0", protocol_versions=(1,), suites=(1, 2),
                  module_id=bytes(range(16)), max_message_size=4096)


@given(short_id=st.binary(min_size=4, max_size=4), pairing=st.booleans())
def test_advert_round_trip(short_id: bytes, pairing: bool) -> None:
    data = AdvertData(short_id, pairing).encode()
    assert len(data) == 6
    assert AdvertData.decode(data) == AdvertData(short_id, pairing)


@pytest.mark.parametrize("data", [b"", b"\x01abcd", b"\x02abcd\x00", b"\x01abcd\x80",
                                  b"\x01abcd\x00\x00"])
def test_advert_garbage(data: bytes) -> None:
    with pytest.raises(AdvertisementError):
        AdvertData.decode(data)


def test_module_info_round_trip_is_canonical() -> None:
    encoded = INFO.encode()
    assert ModuleInfo.decode(encoded) == INFO
    assert encoded == cbor2.dumps(cbor2.loads(encoded), canonical=True)


@pytest.mark.parametrize("data", [
    b"", b"\xff", cbor2.dumps([1, 2]), cbor2.dumps({1: "m"}),
    cbor2.dumps({1: 5, 2: "f", 3: [1], 4: [1], 5: bytes(8), 6: 100}),
    cbor2.dumps({1: "m", 2: "f", 3: [True], 4: [1], 5: bytes(8), 6: 100}),
    cbor2.dumps({1: "m", 2: "f", 3: [1], 4: [1], 5: bytes(2), 6: 100}),
    cbor2.dumps({1: "m", 2: "f", 3: [1], 4: [1], 5: bytes(8), 6: 100, 7: 0}),
    bytes(600),
])
def test_module_info_garbage(data: bytes) -> None:
    with pytest.raises(ModuleInfoError):
        ModuleInfo.decode(data)


def test_non_canonical_module_info_is_refused() -> None:
    fields = {6: 4096, 5: bytes(range(16)), 4: [1, 2], 3: [1], 2: "0.1.0", 1: "wearable-sim"}
    loose = cbor2.dumps(fields)  # key order as given, not canonical
    assert loose != INFO.encode()
    with pytest.raises(ModuleInfoError, match="canonical"):
        ModuleInfo.decode(loose)
