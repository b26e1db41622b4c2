"""Configuration, environment, registry file and relay contract values an operator or a broker
can get wrong or make hostile: each is a typed error naming what is wrong."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blegw.config import ConfigError, parse_config
from blegw.registry import Registry, RegistryError
from e2e import MalformedMessage
from relay_contract import (
    MAX_PAYLOAD,
    MalformedRelayMessage,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    gateway_of,
)

BASE: dict[str, Any] = {"gateway": {"id": "gw-1"}}


@pytest.mark.parametrize(("key", "value"), [
    ("BLEGW_QUEUE_SIZE", "abc"), ("BLEGW_QUEUE_SIZE", "1e3"), ("BLEGW_QUEUE_SIZE", "-1"),
    ("BLEGW_QUEUE_SIZE", "9" * 5000), ("BLEGW_ADAPTER", "hci0; rm -rf"),
    ("BLEGW_MQTT_URL", "mqtt://host:99999"), ("BLEGW_MQTT_URL", "http://host"),
    ("BLEGW_GATEWAY_ID", "#"), ("BLEGW_GATEWAY_ID", "a/b"), ("BLEGW_REGISTRY", "a\nb"),
])
def test_bad_environment_values_are_config_errors_naming_the_key(key: str, value: str) -> None:
    """BLEGW_QUEUE_SIZE=abc crashed the daemon with a bare ValueError."""
    with pytest.raises(ConfigError) as info:
        parse_config(BASE, {key: value})
    short = key.removeprefix("BLEGW_").lower()
    assert key in str(info.value) or short.split("_")[-1] in str(info.value)


@pytest.mark.parametrize(("data", "where"), [
    ({"gateway": "gw-1"}, "gateway"),
    ({**BASE, "relay": {"queue_size": "8"}}, "relay.queue_size"),
    ({**BASE, "relay": {"queue_size": True}}, "relay.queue_size"),
    ({**BASE, "ble": {"connect_timeout": math.nan}}, "ble.connect_timeout"),
    ({**BASE, "ble": {"connect_timeout": math.inf}}, "ble.connect_timeout"),
    ({**BASE, "modules": {"id": "00"}}, "modules"),
    ({**BASE, "modules": [{"id": "0011223344", "address": "AA:BB:CC:DD:EE:FF",
                           "name": "\x1b[2Jband"}]}, "modules[0].name"),
    ({**BASE, "modules": [{"id": "0011223344", "address": "AA:BB:CC:DD:EE:FF; rm -rf"}]},
     "modules[0].address"),
    ({**BASE, "modules": [{"id": "0011223344", "address": "AA:BB:CC:DD:EE:FF\n"}]},
     "modules[0].address"),
])
def test_bad_file_values_are_config_errors_naming_the_key(data: dict[str, Any],
                                                          where: str) -> None:
    with pytest.raises(ConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data, {})


def test_honest_configuration_still_parses() -> None:
    config = parse_config(BASE, {"BLEGW_QUEUE_SIZE": "12"})
    assert config.queue_size == 12 and config.gateway_id == "gw-1"


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"module_id": "00112233", "address": "AA:BB:CC:DD:EE:FF",
                             "name": "band", "account": "alice", "suites": ["p256"],
                             "paired_at": 1.0, "revocation_token": ""}
    entry.update(changes)
    return entry


@pytest.mark.parametrize("entry", [
    _entry(module_id="ZZ112233"), _entry(module_id=12345678), _entry(address="evil"),
    _entry(address="AA:BB:CC:DD:EE:FF; rm -rf"), _entry(address="AA:BB:CC:DD:EE:FF\n"),
    _entry(name="x" * 65), _entry(name="band\x1b[2J"), _entry(account="\u202eecila"),
    _entry(suites="p256"), _entry(suites=[1]), _entry(paired_at="now"), _entry(paired_at=True),
    _entry(paired_at=math.inf), _entry(extra=1), {"module_id": "00112233"}, "not a map",
], ids=["hex", "int-id", "address", "address-junk", "address-newline", "long-name", "ansi-name",
        "bidi-account", "suites-str", "suites-int", "paired-str", "paired-bool", "paired-inf",
        "extra", "missing", "str"])
def test_malformed_registry_entries_are_registry_errors(tmp_path: Path, entry: Any) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"modules": [entry]}))
    with pytest.raises(RegistryError, match="malformed entry 0"):
        Registry(path).load()


def test_huge_or_deep_registry_files_are_registry_errors(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("[" * 100_000)
    with pytest.raises(RegistryError):
        Registry(path).load()
    path.write_text(json.dumps({"modules": [_entry()], "pad": "x" * (2 << 20)}))
    with pytest.raises(RegistryError, match="larger than"):
        Registry(path).load()
    path.write_text(json.dumps({"modules": [_entry()]}))
    assert Registry(path).load()[0].name == "band"


# -- the relay contract -------------------------------------------------------------------------
RID = b"\x42" * 16


def _raw(value: Any) -> bytes:
    return bytes(cbor2.dumps(value, canonical=True))


@pytest.mark.parametrize("deadline", [math.nan, math.inf, -math.inf, -1.0, 0.0, 2.0**41,
                                      "soon", 1700000000, True, None])
def test_nan_infinite_and_mistyped_deadlines_are_refused_with_the_id(deadline: Any) -> None:
    payload = _raw({1: RID, 2: b"\x01" * 8, 3: b"\xa0", 4: deadline})
    with pytest.raises(MalformedRelayMessage) as info:
        RelayRequest.decode(payload)
    assert info.value.request_id == RID


@pytest.mark.parametrize("timings", [{"ble": math.nan}, {"ble": -1.0}, {"ble": math.inf},
                                     {"": 1.0}, {"x" * 33: 1.0}, {1: 1.0},
                                     {f"t{i}": 1.0 for i in range(17)}, {"ble": 1}])
def test_hostile_timings_in_a_response_are_refused(timings: Any) -> None:
    payload = _raw({1: RID, 2: 0, 3: b"", 4: "", 5: timings})
    with pytest.raises(MalformedRelayMessage) as info:
        RelayResponse.decode(payload)
    assert info.value.request_id == RID


def test_relay_payloads_over_the_limit_are_refused_before_decoding() -> None:
    payload = RelayRequest(RID, b"\x01" * 8, b"\xa0", time.time() + 9).encode()
    with pytest.raises(MalformedRelayMessage, match="exceeds"):
        RelayRequest.decode(payload + b"\x00" * MAX_PAYLOAD)
    with pytest.raises(MalformedRelayMessage):
        RelayResponse.decode(_raw({1: RID, 2: 0, 3: b"\x00" * 9000, 4: "", 5: {}}))


def test_unknown_or_huge_status_is_refused_with_its_request_id_not_remapped() -> None:
    for status in (max(RelayStatus) + 1, 17, 200, 2**63):
        with pytest.raises(MalformedRelayMessage) as caught:
            RelayResponse.decode(_raw({1: RID, 2: status, 3: b"", 4: "", 5: {}}))
        assert caught.value.request_id == RID
    assert RelayResponse.decode(_raw({1: RID, 2: 5, 3: b"", 4: "", 5: {}})).status \
        is RelayStatus.LINK_ERROR


def test_request_id_under_key_true_or_1_0_is_not_read_as_key_1() -> None:
    """Python takes ``True`` and ``1.0`` for the key ``1``: an id put there is not readable."""
    for key in (True, 1.0):
        payload = cbor2.dumps({key: RID, 2: b"\x01" * 16, 3: b"", 4: time.time() + 10})
        with pytest.raises(MalformedRelayMessage) as caught:
            RelayRequest.decode(payload)
        assert caught.value.request_id is None
    payload = cbor2.dumps({1: RID, 2.0: b"\x01" * 16, 3: b"", 4: time.time() + 10})
    with pytest.raises(MalformedRelayMessage) as caught:
        RelayRequest.decode(payload)
    assert caught.value.request_id == RID


def test_gateway_of_a_topic() -> None:
    assert gateway_of("blegw/v1/gw/gw-1/resp", "resp") == "gw-1"
    for name in ("blegw/v1/gw/gw-1/req", "blegw/v1/gw/a/b/resp", "x/v1/gw/g/resp",
                 "blegw/v1/gw/#/resp", "blegw/v1/gw//resp"):
        assert gateway_of(name, "resp") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_relay_payloads_raise_only_the_typed_error(data: bytes) -> None:
    for decoder in (RelayRequest.decode, RelayResponse.decode):
        with contextlib.suppress(MalformedMessage):
            decoder(data)


@settings(max_examples=100, deadline=None)
@given(rid=st.binary(min_size=16, max_size=16), module=st.binary(min_size=4, max_size=32),
       envelope=st.binary(min_size=1, max_size=200),
       deadline=st.floats(1.0, 2.0**39, allow_nan=False))
def test_relay_request_round_trip(rid: bytes, module: bytes, envelope: bytes,
                                  deadline: float) -> None:
    request = RelayRequest(rid, module, envelope, deadline)
    assert RelayRequest.decode(request.encode()) == request
