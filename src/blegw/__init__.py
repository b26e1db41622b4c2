"""The gateway daemon: relays confirmation requests between the platform (MQTT) and secure
modules (BLE). It holds no key; it moves bytes."""

from .config import ConfigError, GatewayConfig, ModuleEntry, load_config, parse_config
from .contract import RelayRequest, RelayResponse, RelayStatus
from .service import GatewayService

__all__ = ["ConfigError", "GatewayConfig", "GatewayService", "ModuleEntry", "RelayRequest",
           "RelayResponse", "RelayStatus", "load_config", "parse_config"]
