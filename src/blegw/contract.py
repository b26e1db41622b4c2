"""The MQTT contract between the platform and gateways (see docs/mqtt-contract.md).

Topics, per gateway id ``G``:

* ``blegw/v1/gw/G/req``    platform -> gateway, QoS 1: a relay request
* ``blegw/v1/gw/G/resp``   gateway -> platform, QoS 1: the outcome of one relay request
* ``blegw/v1/gw/G/status`` gateway, retained, with a last will: ``online`` / ``offline``

Payloads are deterministic CBOR maps with integer keys. The gateway never needs a key: it moves
the module's envelope bytes unchanged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import MalformedMessage

__all__ = ["GATEWAY_ID_RULE", "RelayRequest", "RelayResponse", "RelayStatus",
           "is_gateway_id", "topic"]

PREFIX = "blegw/v1/gw"

GATEWAY_ID_RULE = "1-64 of A-Z a-z 0-9 _ -"
"""A gateway id becomes one MQTT topic level (and a broker user name): no ``/``, ``+``, ``#``,
NUL or spaces can reach the broker from a configuration file, the registry or the API."""
_GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_gateway_id(value: object) -> bool:
    """Whether ``value`` may be a gateway id (see :data:`GATEWAY_ID_RULE`)."""
    return isinstance(value, str) and _GATEWAY_ID.fullmatch(value) is not None


def topic(gateway_id: str, leaf: str) -> str:
    """The topic ``leaf`` of one gateway; refuses an id that would name other topics."""
    if not is_gateway_id(gateway_id) and gateway_id != "+":
        raise MalformedMessage(f"not a gateway id ({GATEWAY_ID_RULE})")
    return f"{PREFIX}/{gateway_id}/{leaf}"


class RelayStatus(IntEnum):
    OK = 0
    """The module answered; ``envelope`` holds its answer, unchanged."""
    UNKNOWN_MODULE = 1
    QUEUE_FULL = 2
    MODULE_UNREACHABLE = 3
    DEADLINE_PASSED = 4
    LINK_ERROR = 5
    SHUTTING_DOWN = 6
    MALFORMED_REQUEST = 7

    @classmethod
    def parse(cls, value: int) -> RelayStatus:
        try:
            return cls(value)
        except ValueError:
            return cls.LINK_ERROR


def _field(raw: dict[int, Any], key: int, kind: type) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedMessage(f"field {key} must be {kind.__name__}")
    return value


@dataclass(frozen=True, slots=True)
class RelayRequest:
    request_id: bytes
    module_id: bytes
    envelope: bytes
    deadline: float

    def encode(self) -> bytes:
        return dumps({1: self.request_id, 2: self.module_id, 3: self.envelope,
                      4: float(self.deadline)})

    @classmethod
    def decode(cls, data: bytes) -> RelayRequest:
        raw = loads(data)
        if not isinstance(raw, dict) or set(raw) != {1, 2, 3, 4}:
            raise MalformedMessage("a relay request is a map with keys 1..4")
        return cls(_field(raw, 1, bytes), _field(raw, 2, bytes), _field(raw, 3, bytes),
                   float(_field(raw, 4, float)))


@dataclass(frozen=True, slots=True)
class RelayResponse:
    request_id: bytes
    status: RelayStatus
    envelope: bytes = b""
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def encode(self) -> bytes:
        return dumps({1: self.request_id, 2: int(self.status), 3: self.envelope,
                      4: self.detail, 5: {k: float(v) for k, v in self.timings.items()}})

    @classmethod
    def decode(cls, data: bytes) -> RelayResponse:
        raw = loads(data)
        if not isinstance(raw, dict) or set(raw) != {1, 2, 3, 4, 5}:
            raise MalformedMessage("a relay response is a map with keys 1..5")
        timings = _field(raw, 5, dict)
        if not all(isinstance(k, str) and isinstance(v, float) for k, v in timings.items()):
            raise MalformedMessage("timings map names to seconds")
        return cls(_field(raw, 1, bytes), RelayStatus.parse(_field(raw, 2, int)),
                   _field(raw, 3, bytes), _field(raw, 4, str), timings)
