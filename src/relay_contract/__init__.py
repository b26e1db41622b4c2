"""The relay contract between the platform and gateways: MQTT topics (``topics``) and the relay
request and response payloads (``messages``); docs/mqtt-contract.md.

A sans-IO core of its own, beside ``e2e`` and ``ble_profile``: the daemon (``blegw``) and the
platform (``blegw_platform``) both speak it, so it lives where both may import it without either
importing the other. It imports nothing of the project but ``e2e``'s errors and CBOR codec.

Names are loaded on first use (PEP 562), as in ``e2e``: checking a gateway id loads no codec.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .messages import (
        MAX_DETAIL,
        MAX_ENVELOPE,
        MAX_PAYLOAD,
        MAX_TIMINGS,
        CancelReason,
        LinkReport,
        MalformedRelayMessage,
        OwnerStatus,
        RelayCancel,
        RelayProgress,
        RelayRequest,
        RelayResponse,
        RelayStatus,
        decode_from_gateway,
        decode_from_platform,
    )
    from .notices import CodeNotice, MalformedNotice, NoticeRole, NoticeState
    from .topics import GATEWAY_ID_RULE, PLATFORM_USER, gateway_of, is_gateway_id, topic

_SUBMODULE = {
    "MAX_DETAIL": "messages",
    "MAX_ENVELOPE": "messages",
    "MAX_PAYLOAD": "messages",
    "MAX_TIMINGS": "messages",
    "CancelReason": "messages",
    "LinkReport": "messages",
    "MalformedRelayMessage": "messages",
    "OwnerStatus": "messages",
    "RelayCancel": "messages",
    "RelayProgress": "messages",
    "decode_from_gateway": "messages",
    "decode_from_platform": "messages",
    "RelayRequest": "messages",
    "RelayResponse": "messages",
    "RelayStatus": "messages",
    "CodeNotice": "notices",
    "MalformedNotice": "notices",
    "NoticeRole": "notices",
    "NoticeState": "notices",
    "GATEWAY_ID_RULE": "topics",
    "PLATFORM_USER": "topics",
    "gateway_of": "topics",
    "is_gateway_id": "topics",
    "topic": "topics",
}
"""Which submodule defines each public name."""


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULE])


__all__ = ["GATEWAY_ID_RULE", "MAX_DETAIL", "MAX_ENVELOPE", "MAX_PAYLOAD", "MAX_TIMINGS",
           "PLATFORM_USER", "CancelReason", "CodeNotice", "LinkReport", "MalformedNotice",
           "MalformedRelayMessage", "NoticeRole", "NoticeState", "OwnerStatus",
           "RelayCancel", "RelayProgress", "RelayRequest", "RelayResponse", "RelayStatus",
           "decode_from_gateway", "decode_from_platform", "gateway_of", "is_gateway_id",
           "topic"]
