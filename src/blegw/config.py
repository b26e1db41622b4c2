"""The gateway's configuration: a TOML file, then ``BLEGW_*`` environment overrides.

Every key is documented in docs/configuration.md. An invalid file or value stops start-up with a
message naming the key.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mqtt_uplink import MqttEndpoint, MqttSettingsError, read_secret_file
from relay_contract import GATEWAY_ID_RULE, is_gateway_id

from .registry import MAX_TEXT, is_address, is_display_text

__all__ = ["ConfigError", "GatewayConfig", "ModuleEntry", "load_config"]


class ConfigError(Exception):
    """The configuration is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class ModuleEntry:
    module_id: bytes
    address: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    gateway_id: str
    mqtt: MqttEndpoint = field(default_factory=MqttEndpoint)
    """The broker and this gateway's credentials, checked once when the configuration is read
    (a TLS file briefly missing while it is rotated does not stop a reconnect)."""
    adapter: str = "hci0"
    connect_timeout: float = 10.0
    keep_links_up: bool = False
    """Hold the links to registered modules open in the background, so a request does not
    wait for the connect (each held link takes one of the adapter's few connection slots)."""
    queue_size: int = 8
    modules: tuple[ModuleEntry, ...] = field(default_factory=tuple)
    registry: str = "/var/lib/blegw/registry.json"
    control_socket: str = "/run/blegw/control.sock"
    platform_url: str = "http://127.0.0.1:8080"
    metrics_listen: str = ""
    """host:port of the Prometheus endpoint; "" (the default) serves none."""


def _get(table: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = table.get(key, default)
    if value is None:
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{where}{key}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _env_int(env: dict[str, str], key: str) -> int | None:
    """An integer from the environment; ConfigError naming the variable if it is not one."""
    text = env.get(key)
    if not text:
        return None
    if not re.fullmatch(r"[0-9]{1,9}", text.strip()):
        raise ConfigError(f"{key}: expected a whole number, got {text[:40]!r}")
    return int(text)


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a table ([{key}])")
    return value


def _text_values(env: dict[str, str]) -> None:
    """Every BLEGW_* value is one line of printable text (it ends up in paths, URLs, topics)."""
    for key, value in env.items():
        if key.startswith("BLEGW_") and (len(value) > 4096 or not value.isprintable()):
            raise ConfigError(f"{key}: expected one line of printable text")


def parse_config(data: dict[str, Any], env: dict[str, str] | None = None) -> GatewayConfig:
    env = dict(os.environ if env is None else env)
    _text_values(env)
    known = {"gateway", "mqtt", "ble", "relay", "modules", "metrics"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{key}: unknown section (known: {', '.join(sorted(known))})")
    gw, mqtt = _table(data, "gateway"), _table(data, "mqtt")
    ble, relay = _table(data, "ble"), _table(data, "relay")
    modules_raw = data.get("modules", [])
    if not isinstance(modules_raw, list) or not all(isinstance(m, dict) for m in modules_raw):
        raise ConfigError("modules: expected an array of tables ([[modules]])")
    gateway_id = env.get("BLEGW_GATEWAY_ID") or _get(gw, "id", str, None, "gateway.")
    if not is_gateway_id(gateway_id):
        raise ConfigError(f"gateway.id: required, {GATEWAY_ID_RULE}")
    endpoint = _mqtt_endpoint(mqtt, env, gateway_id)
    adapter = env.get("BLEGW_ADAPTER") or _get(ble, "adapter", str, "hci0", "ble.")
    if not re.fullmatch(r"hci[0-9]{1,3}", adapter):
        raise ConfigError("ble.adapter: expected an adapter name such as hci0")
    modules = []
    for i, entry in enumerate(modules_raw):
        where = f"modules[{i}]."
        raw_id = _get(entry, "id", str, None, where)
        address = _get(entry, "address", str, None, where)
        if raw_id is None or not re.fullmatch(r"[0-9a-fA-F]{8,64}", raw_id):
            raise ConfigError(f"{where}id: required, hex module id")
        if address is None or not is_address(address.upper()):
            raise ConfigError(f"{where}address: required, AA:BB:CC:DD:EE:FF")
        name = _get(entry, "name", str, "", where)
        if not is_display_text(name):
            raise ConfigError(f"{where}name: at most {MAX_TEXT} printable characters")
        modules.append(ModuleEntry(bytes.fromhex(raw_id), address.upper(), name))
    queue_size = _env_int(env, "BLEGW_QUEUE_SIZE") or _get(relay, "queue_size", int, 8,
                                                             "relay.")
    if not 1 <= queue_size <= 1000:
        raise ConfigError("relay.queue_size: must be 1..1000")
    timeout = _get(ble, "connect_timeout", float, 10.0, "ble.")
    if not 0 < timeout <= 120:
        raise ConfigError("ble.connect_timeout: must be in (0, 120]")
    keep_up = _get(ble, "keep_links_up", bool, False, "ble.")
    metrics_listen = _metrics_listen(_table(data, "metrics"), env)
    return GatewayConfig(
        gateway_id=gateway_id, mqtt=endpoint, adapter=adapter, metrics_listen=metrics_listen,
        connect_timeout=timeout, keep_links_up=keep_up, queue_size=queue_size,
        modules=tuple(modules),
        registry=env.get("BLEGW_REGISTRY") or _get(gw, "registry", str,
                                                   "/var/lib/blegw/registry.json", "gateway."),
        control_socket=env.get("BLEGW_CONTROL_SOCKET") or _get(
            gw, "control_socket", str, "/run/blegw/control.sock", "gateway."),
        platform_url=env.get("BLEGW_PLATFORM_URL") or _get(
            gw, "platform_url", str, "http://127.0.0.1:8080", "gateway."))


METRICS_DEFAULT = "127.0.0.1:9464"


def _metrics_listen(table: dict[str, Any], env: dict[str, str]) -> str:
    """``[metrics]``: off unless ``enabled``; ``listen`` is host:port, loopback by default (the
    numbers say which modules exist and when payments happen: expose them on purpose only)."""
    for key in table:
        if key not in ("enabled", "listen"):
            raise ConfigError(f"metrics.{key}: unknown key (known: enabled, listen)")
    enabled = _get(table, "enabled", bool, False, "metrics.")
    if env.get("BLEGW_METRICS_ENABLED"):
        enabled = env["BLEGW_METRICS_ENABLED"].strip().lower() in ("1", "true", "yes")
    listen = env.get("BLEGW_METRICS_LISTEN") or _get(table, "listen", str, METRICS_DEFAULT,
                                                     "metrics.")
    match = re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]{1,253}):([0-9]{1,5})", listen)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ConfigError("metrics.listen: expected host:port, such as 127.0.0.1:9464")
    return listen if enabled else ""


_MQTT_KEYS = ("url", "username", "password", "password_file", "tls_ca", "tls_cert", "tls_key")


def _mqtt_endpoint(mqtt: dict[str, Any], env: dict[str, str], gateway_id: str) -> MqttEndpoint:
    """The ``[mqtt]`` table: broker URL, this gateway's credentials and TLS files.

    Each gateway has its own broker account, named after its id (the shipped broker ACL keeps
    user ``G`` to ``blegw/v1/gw/G/...``), so ``username`` defaults to the gateway id once a
    password is given. ``password_file`` keeps the secret out of blegw.toml, in a file only the
    service may read; a file others can read is refused.
    """
    for key in mqtt:
        if key not in _MQTT_KEYS:
            raise ConfigError(f"mqtt.{key}: unknown key (known: {', '.join(_MQTT_KEYS)})")

    def value(key: str, default: str | None = None) -> str | None:
        found: str | None = env.get(f"BLEGW_MQTT_{key.upper()}") or _get(mqtt, key, str,
                                                                          default, "mqtt.")
        return found

    password, password_file = value("password"), value("password_file")
    if password is not None and password_file is not None:
        raise ConfigError("mqtt.password_file: give password or password_file, not both")
    try:
        if password_file is not None:
            password = read_secret_file(Path(password_file), "password_file")
        username = value("username")
        if password is not None and username is None:
            username = gateway_id
        return MqttEndpoint(value("url", "mqtt://127.0.0.1:1883") or "", username, password,
                            value("tls_ca"), value("tls_cert"), value("tls_key"))
    except MqttSettingsError as exc:
        raise ConfigError(f"mqtt.{exc}") from exc


def load_config(path: Path, env: dict[str, str] | None = None) -> GatewayConfig:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    _anchor_relative_paths(data, path.resolve().parent)
    return parse_config(data, env)


_PATH_KEYS = (("gateway", "registry"), ("gateway", "control_socket"), ("mqtt", "tls_ca"),
              ("mqtt", "tls_cert"), ("mqtt", "tls_key"), ("mqtt", "password_file"))


def _anchor_relative_paths(data: dict[str, Any], base: Path) -> None:
    """A relative path in the file means next to the file, whatever directory a command runs in.

    ``blegw status`` run from another directory must find the same control socket as the
    daemon; paths from the environment stay as given (they are the caller's).
    """
    for section, key in _PATH_KEYS:
        table = data.get(section)
        if isinstance(table, dict) and isinstance(table.get(key), str) and table[key] \
                and not Path(table[key]).is_absolute():
            table[key] = str(base / table[key])
