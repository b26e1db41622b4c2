"""MQTT topics of the relay contract, per gateway id ``G`` (see docs/mqtt-contract.md):

* ``blegw/v1/gw/G/req``    platform -> gateway, QoS 1: a relay request
* ``blegw/v1/gw/G/resp``   gateway -> platform, QoS 1: the outcome of one relay request
* ``blegw/v1/gw/G/note``   platform -> gateway, QoS 1: how a transaction code of a side this
  gateway serves ended (``notices``)
* ``blegw/v1/gw/G/status`` gateway, retained, with a last will: ``online`` / ``offline``

Apart from the payload codecs so that reading a gateway configuration (which checks the gateway
id) loads no CBOR codec.
"""

from __future__ import annotations

import re

from e2e.errors import MalformedMessage

__all__ = ["GATEWAY_ID_RULE", "PLATFORM_USER", "PREFIX", "gateway_of", "is_gateway_id", "topic"]

PREFIX = "blegw/v1/gw"

GATEWAY_ID_RULE = "1-64 of A-Z a-z 0-9 _ -"
"""A gateway id becomes one MQTT topic level (and a broker user name): no ``/``, ``+``, ``#``,
NUL or spaces can reach the broker from a configuration file, the registry or the API."""
_GATEWAY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

PLATFORM_USER = "blegw.platform"
"""The platform's broker account. The dot keeps it apart from every gateway id (which has none),
so no gateway can ever be given the platform's name or its ACL rules."""


def is_gateway_id(value: object) -> bool:
    """Whether ``value`` may be a gateway id (see :data:`GATEWAY_ID_RULE`)."""
    return isinstance(value, str) and _GATEWAY_ID.fullmatch(value) is not None


def topic(gateway_id: str, leaf: str) -> str:
    """The topic ``leaf`` of one gateway; refuses an id that would name other topics."""
    if not is_gateway_id(gateway_id) and gateway_id != "+":
        raise MalformedMessage(f"not a gateway id ({GATEWAY_ID_RULE})")
    return f"{PREFIX}/{gateway_id}/{leaf}"


def gateway_of(topic_name: str, leaf: str) -> str | None:
    """The gateway id in ``blegw/v1/gw/<id>/<leaf>``, or None if the topic is not that shape."""
    parts = topic_name.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != PREFIX or parts[4] != leaf:
        return None
    return parts[3] if is_gateway_id(parts[3]) else None
