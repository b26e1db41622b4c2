"""Settings of a virtual radio, with the defaults BlueZ and typical controllers use."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from .errors import VBluezError

__all__ = ["ConfigError", "RadioConfig"]


class ConfigError(VBluezError):
    """A setting of the virtual radio is missing, unknown or out of range."""


@dataclass(slots=True)
class RadioConfig:
    adapters: int = 2
    """How many adapters (hci0, hci1, ...) the radio has; each is a separate host."""
    mtu: int = 247
    """ATT MTU every new link negotiates (BlueZ's default towards modern peers is 247 or 517)."""
    conn_interval_ms: float = 0.0
    """Connection interval of new links; 0 switches the on-air latency model off."""
    att_timeout: float = 30.0
    """ATT transaction timeout (Core Vol 3 Part F 3.3.3): then the link is dropped."""
    connect_timeout: float = 20.0
    """How long Device1.Connect waits for a connectable advertiser before giving up."""
    agent_timeout: float = 25.0
    """How long an Agent1 may take to answer before pairing fails with a timeout."""
    temporary_timeout: float = 180.0
    """BlueZ's TemporaryTimeout: unpaired, unconnected devices are forgotten after this long."""
    report_interval: float = 1.0
    """How often discovering adapters re-report advertisers (RSSI refresh)."""
    rssi: int = -60
    """RSSI reported for every advertiser unless set per pair of adapters."""
    rssi_noise: float = 0.0
    """Standard deviation in dB of Gaussian noise added to each RSSI report."""
    notification_loss: float = 0.0
    """Probability in [0, 1) that a notification is lost on air."""
    max_links: int = 7
    """Connections one controller holds at once (about 5 to 7 on common dongles)."""
    max_adv_len: int = 31
    """Legacy advertising payload limit; 251 models extended advertising."""
    max_adv_instances: int = 4
    gatt_cache: bool = False
    """Centrals keep each peer's GATT database across connections (BlueZ's main.conf
    ``[GATT] Cache``: ``always`` when true, ``no`` when false) and mirror the cached one at
    the next connect; a peer whose database changed meanwhile is stale until it indicates
    Service Changed (it does so to bonded centrals only). Off by default."""
    service_changed_delay: float = 0.1
    """Seconds after a connect with a stale cache until a bonded peer's Service Changed
    indication has made the central rediscover (at least two connection events)."""
    seed: int | None = None
    """Seed for RSSI noise and notification loss, for reproducible runs."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks: list[tuple[bool, str]] = [
            (1 <= self.adapters <= 16, "adapters must be 1..16"),
            (23 <= self.mtu <= 517, "mtu must be 23..517"),
            (self.conn_interval_ms == 0 or 7.5 <= self.conn_interval_ms <= 4000,
             "conn_interval_ms must be 0 (off) or 7.5..4000"),
            (self.att_timeout > 0, "att_timeout must be > 0"),
            (self.connect_timeout > 0, "connect_timeout must be > 0"),
            (self.agent_timeout > 0, "agent_timeout must be > 0"),
            (self.temporary_timeout > 0, "temporary_timeout must be > 0"),
            (self.report_interval > 0, "report_interval must be > 0"),
            (-127 <= self.rssi <= 20, "rssi must be -127..20"),
            (self.rssi_noise >= 0, "rssi_noise must be >= 0"),
            (0 <= self.notification_loss < 1, "notification_loss must be in [0, 1)"),
            (1 <= self.max_links <= 64, "max_links must be 1..64"),
            (31 <= self.max_adv_len <= 251, "max_adv_len must be 31..251"),
            (1 <= self.max_adv_instances <= 16, "max_adv_instances must be 1..16"),
            (0 <= self.service_changed_delay <= 10, "service_changed_delay must be 0..10"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def update(self, values: dict[str, Any]) -> None:
        """Apply ``values`` atomically: either all are valid and applied, or none is."""
        known = {f.name: f for f in fields(self)}
        candidate = asdict(self)
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
            candidate[key] = value
        checked = RadioConfig(**candidate)
        for key in values:
            setattr(self, key, getattr(checked, key))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RadioConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"radio config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("radio config must be a JSON object")
        config = cls()
        config.update(data)
        return config
