"""Configuration errors name their key; the MQTT contract refuses malformed payloads."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from blegw.config import ConfigError, load_config, parse_config
from blegw.service import backoff
from e2e import MalformedMessage
from relay_contract import RelayRequest, RelayResponse, RelayStatus

GOOD = {"gateway": {"id": "gw-1"}, "mqtt": {"url": "mqtt://broker:1884"},
        "modules": [{"id": "00112233445566778899aabbccddeeff", "address": "5a:00:00:00:00:02"}]}


def test_valid_config_and_environment_overrides() -> None:
    cfg = parse_config(GOOD, env={"BLEGW_ADAPTER": "hci3"})
    assert (cfg.gateway_id, cfg.mqtt.host, cfg.mqtt.port, cfg.adapter) == \
        ("gw-1", "broker", 1884, "hci3")
    assert cfg.modules[0].address == "5A:00:00:00:00:02"
    assert parse_config(GOOD, env={"BLEGW_GATEWAY_ID": "gw-2"}).gateway_id == "gw-2"


def test_the_broker_settings_are_checked_once(tmp_path: Path) -> None:
    """A reconnect uses the endpoint read at start-up: a CA file briefly missing while it is
    rotated does not stop it."""
    ca = tmp_path / "ca.pem"
    ca.write_text("CA")
    cfg = parse_config({**GOOD, "mqtt": {"url": "mqtts://broker", "tls_ca": str(ca)}}, env={})
    ca.unlink()
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.tls, cfg.mqtt.ca) == \
        ("broker", 8883, True, str(ca))


@pytest.mark.parametrize(("data", "key"), [
    ({}, "gateway.id"),
    ({**GOOD, "gateway": {"id": "bad id!"}}, "gateway.id"),
    ({**GOOD, "mqtt": {"url": "http://x"}}, "mqtt.url"),
    ({**GOOD, "modules": [{"id": "zz", "address": "5A:00:00:00:00:02"}]}, "modules[0].id"),
    ({**GOOD, "modules": [{"id": "00112233", "address": "nope"}]}, "modules[0].address"),
    ({**GOOD, "relay": {"queue_size": 0}}, "relay.queue_size"),
    ({**GOOD, "ble": {"connect_timeout": "soon"}}, "ble.connect_timeout"),
    ({**GOOD, "colour": {}}, "colour"),
])
def test_invalid_config_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data, env={})


def test_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nid=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_paths_in_the_file_are_next_to_the_file(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc" / "blegw.toml"
    conf.parent.mkdir()
    conf.write_text('[gateway]\nid = "gw-1"\nregistry = "state/registry.json"\n'
                    'control_socket = "/run/x/control.sock"\n')
    monkeypatch.chdir(tmp_path)          # another working directory: the file still decides
    cfg = load_config(conf, env={})
    assert cfg.registry == str(conf.parent / "state" / "registry.json")
    assert cfg.control_socket == "/run/x/control.sock"
    # The environment's paths are the caller's, taken as given.
    assert load_config(conf, env={"BLEGW_REGISTRY": "r.json"}).registry == "r.json"


def test_contract_round_trips_and_refuses_garbage() -> None:
    req = RelayRequest(bytes(16), bytes(16), b"envelope", 123.0)
    assert RelayRequest.decode(req.encode()) == req
    resp = RelayResponse(bytes(16), RelayStatus.QUEUE_FULL, b"", "full", {"queue": 0.5})
    assert RelayResponse.decode(resp.encode()) == resp
    for junk in (b"", b"\xff", cbor2.dumps({1: 1}), cbor2.dumps([1, 2, 3, 4])):
        with pytest.raises(MalformedMessage):
            RelayRequest.decode(junk)
        with pytest.raises(MalformedMessage):
            RelayResponse.decode(junk)


def test_backoff_is_capped_and_jittered() -> None:
    import random
    rng = random.Random(1)
    delays = [backoff(n, rng) for n in range(12)]
    assert all(0 < d <= 10.0 for d in delays)
    assert delays[0] <= 0.25
    assert delays[-1] >= 5.0


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from blegw.logs import setup_logging

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(logging.INFO, "json")
        logging.getLogger("blegw.test").info("relay %s done", "abc")
        line = capsys.readouterr().err.strip().splitlines()[-1]
        entry = json.loads(line)
        assert (entry["level"], entry["logger"], entry["message"]) == \
            ("info", "blegw.test", "relay abc done")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
