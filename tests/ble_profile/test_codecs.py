"""Advertising service data and module info codecs."""

from __future__ import annotations

import uuid

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_profile import (
    LEGACY_ADVERT_SIZE,
    MAX_INFO_SIZE,
    AdvertData,
    AdvertisementError,
    LinkProfileError,
    ModuleInfo,
    ModuleInfoError,
    legacy_advertising_data,
    uuids,
)

INFO = ModuleInfo(model="wearable-sim", firmware="0.1.0", protocol_versions=(1,), suites=(1, 2),
                  module_id=bytes(range(16)), max_message_size=4096)


@given(short_id=st.binary(min_size=4, max_size=4), pairing=st.booleans())
def test_advert_round_trip(short_id: bytes, pairing: bool) -> None:
    data = AdvertData(short_id, pairing).encode()
    assert len(data) == 6
    assert AdvertData.decode(data) == AdvertData(short_id, pairing)


@pytest.mark.parametrize("data", [b"", b"\x01abcd", b"\x02abcd\x00", b"\x00abcd\x01",
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
    cbor2.dumps({1: "m", 2: "f", 3: (1,), 4: [1], 5: "12345678", 6: 100}),
    cbor2.dumps({1: "m", 2: "f", 3: [1], 4: [1], 5: bytes(8), 6: 100.0}),
    cbor2.dumps({1: "m", 2: "f", 3: [1], 4: [1], 5: bytes(8), 6: True}),
    cbor2.dumps({"1": "m", 2: "f", 3: [1], 4: [1], 5: bytes(8), 6: 100}),
    cbor2.dumps({1: "m", 2: "f", 3: [1], 4: [1], 5: bytes(8), 6: 100}, canonical=True) + b"\x00",
    b"\xa6" + b"\x9f" * 300,
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


def test_reserved_advert_flags_are_ignored() -> None:
    """A newer module may set more flag bits; an older gateway must still see it."""
    assert AdvertData.decode(b"\x01abcd\xff") == AdvertData(b"abcd", pairing_mode=True)
    assert AdvertData.decode(b"\x01abcd\xfe") == AdvertData(b"abcd", pairing_mode=False)


def test_advert_constructor_checks() -> None:
    with pytest.raises(AdvertisementError):
        AdvertData(b"abc")
    with pytest.raises(AdvertisementError):
        AdvertData(b"abcd", version=256)


def test_legacy_advertisement_is_exactly_31_bytes() -> None:
    adv = legacy_advertising_data(AdvertData(b"\xde\xad\xbe\xef", pairing_mode=True))
    assert len(adv) == LEGACY_ADVERT_SIZE == 31
    assert adv[:3] == b"\x02\x01\x06"
    assert adv[3:5] == b"\x11\x07"
    assert adv[5:21] == uuid.UUID(uuids.SERVICE).bytes[::-1]
    assert adv[21:23] == b"\x09\x16"
    assert adv[23:25] == int(uuids.SERVICE_DATA_UUID16, 16).to_bytes(2, "little")
    assert AdvertData.decode(adv[25:]) == AdvertData(b"\xde\xad\xbe\xef", pairing_mode=True)


def test_uuids_are_fixed_and_not_fido() -> None:
    service = uuid.UUID(uuids.SERVICE)
    assert service.version == 4
    tails = {u[8:] for u in (uuids.SERVICE, uuids.CONTROL_POINT, uuids.STATUS,
                             uuids.CONTROL_POINT_LENGTH, uuids.MODULE_INFO)}
    assert tails == {uuids.SERVICE[8:]}
    assert len({uuids.SERVICE, uuids.CONTROL_POINT, uuids.STATUS, uuids.CONTROL_POINT_LENGTH,
                uuids.MODULE_INFO}) == 5
    assert uuids.SERVICE_DATA_UUID16 not in {"fffd", "fff9"}  # FIDO's: phones would misread us
    assert uuid.UUID(uuids.SERVICE_DATA_UUID) == uuid.UUID(
        f"0000{uuids.SERVICE_DATA_UUID16}-0000-1000-8000-00805f9b34fb")


@given(st.binary(max_size=12))
def test_advert_fuzz_decodes_or_raises_advertisement_error(data: bytes) -> None:
    try:
        decoded = AdvertData.decode(data)
    except AdvertisementError:
        return
    assert decoded.encode()[:5] == data[:5]


texts = st.text(min_size=1, max_size=16).filter(lambda s: len(s.encode()) <= 32)
u16 = st.integers(0, 0xFFFF)
infos = st.builds(
    ModuleInfo, model=texts, firmware=texts,
    protocol_versions=st.lists(u16, min_size=1, max_size=16).map(tuple),
    suites=st.lists(u16, min_size=1, max_size=16).map(tuple),
    module_id=st.binary(min_size=4, max_size=32), max_message_size=st.integers(64, 0xFFFF))


@settings(max_examples=200, deadline=None)
@given(infos)
def test_module_info_round_trip(info: ModuleInfo) -> None:
    encoded = info.encode()
    assert len(encoded) <= MAX_INFO_SIZE
    assert ModuleInfo.decode(encoded) == info


def test_largest_module_info_fits_one_attribute() -> None:
    big = ModuleInfo(model="\u00e9" * 32, firmware="x" * 32, protocol_versions=(0xFFFF,) * 16,
                     suites=(0xFFFF,) * 16, module_id=bytes(32), max_message_size=0xFFFF)
    assert len(big.encode()) <= MAX_INFO_SIZE
    assert ModuleInfo.decode(big.encode()) == big


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_module_info_fuzz_decodes_or_raises_module_info_error(data: st.DataObject) -> None:
    encoded = bytearray(INFO.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(encoded)))
    for candidate in (bytes(encoded), bytes(encoded[:cut]), data.draw(st.binary(max_size=64))):
        try:
            decoded = ModuleInfo.decode(candidate)
        except ModuleInfoError:
            continue
        assert decoded.encode() == candidate  # only the canonical form is ever accepted


@pytest.mark.parametrize("kwargs", [
    {"model": ""}, {"model": "m" * 65}, {"firmware": "\ud800"}, {"protocol_versions": ()},
    {"suites": tuple(range(17))}, {"suites": (0x10000,)}, {"module_id": bytes(33)},
    {"max_message_size": 63},
])
def test_module_info_constructor_checks(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"model": "m", "firmware": "f", "protocol_versions": (1,),
                                 "suites": (1,), "module_id": bytes(8), "max_message_size": 100}
    fields.update(kwargs)
    with pytest.raises(ModuleInfoError):
        ModuleInfo(**fields)  # type: ignore[arg-type]
    assert issubclass(ModuleInfoError, LinkProfileError)
