"""What a record carries between the platform and a module: payment orders, answers, pings.

Each is one deterministic CBOR map, key 1 its kind, sealed in one record padded to
:data:`PAD_TO` bytes, so every kind has the same length on the air (a gateway cannot tell a
payment from a ping; an order with an unusually long description is the exception, longer
than the pad):

* 1 order (platform -> module): 2 the platform-signed confirmation request envelope, 3 the
  verification required (e2e user verification: 0 none, 2 PIN, 3 fingerprint);
* 2 approval (module -> platform): 2 the module-signed confirmation response envelope (approve
  or decline; its user verification field says what was done);
* 3 refusal (module -> platform): 2 transaction id (16 bytes), 3 reason (1-40 of ``a-z0-9_:``);
* 4 ping (platform -> module): 2 sixteen random bytes;
* 5 pong (module -> platform): 2 the ping's bytes.

The module's signature inside an approval covers the request envelope and the verification it
reports, so neither the gateway nor anyone else can raise what it says was done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import MalformedMessage

from .errors import Malformed

__all__ = ["PAD_TO", "AppKind", "Approval", "Order", "Ping", "Pong", "Refusal", "decode_app"]

PAD_TO = 640
"""Records of every kind are padded to this many content bytes: an order with the longest
fields the e2e layer allows is about 600 bytes."""
_REASON = re.compile(r"[a-z0-9_:]{1,40}")
_MAX_ENVELOPE = 1000


class AppKind(IntEnum):
    ORDER = 1
    APPROVAL = 2
    REFUSAL = 3
    PING = 4
    PONG = 5


@dataclass(frozen=True, slots=True)
class Order:
    request: bytes
    required: int

    def encode(self) -> bytes:
        return dumps({1: AppKind.ORDER.value, 2: self.request, 3: self.required})


@dataclass(frozen=True, slots=True)
class Approval:
    response: bytes

    def encode(self) -> bytes:
        return dumps({1: AppKind.APPROVAL.value, 2: self.response})


@dataclass(frozen=True, slots=True)
class Refusal:
    transaction_id: bytes
    reason: str

    def encode(self) -> bytes:
        return dumps({1: AppKind.REFUSAL.value, 2: self.transaction_id, 3: self.reason})


@dataclass(frozen=True, slots=True)
class Ping:
    nonce: bytes

    def encode(self) -> bytes:
        return dumps({1: AppKind.PING.value, 2: self.nonce})


@dataclass(frozen=True, slots=True)
class Pong:
    nonce: bytes

    def encode(self) -> bytes:
        return dumps({1: AppKind.PONG.value, 2: self.nonce})


AppMessage = Order | Approval | Refusal | Ping | Pong


def _bytes(m: dict[Any, Any], low: int, high: int) -> bytes:
    value = m.get(2)
    if type(value) is not bytes or not low <= len(value) <= high:
        raise Malformed(f"field 2 must be {low}..{high} bytes")
    return value


def decode_app(data: bytes) -> AppMessage:
    """One application message (the plaintext of a record); :class:`Malformed` otherwise."""
    try:
        m = loads(data, max_size=1023)
    except MalformedMessage as exc:
        raise Malformed(f"application message: {exc}") from None
    if type(m) is not dict or type(m.get(1)) is not int or m[1] not in set(AppKind):
        raise Malformed("an application message is a map of a known kind")
    kind = AppKind(m[1])
    keys = {1, 2, 3} if kind in (AppKind.ORDER, AppKind.REFUSAL) else {1, 2}
    if set(m) != keys:
        raise Malformed(f"a {kind.name.lower()} has keys {sorted(keys)}")
    if kind is AppKind.ORDER:
        required = m[3]
        if type(required) is not int or not 0 <= required <= 3:
            raise Malformed("required verification is 0..3")
        return Order(_bytes(m, 1, _MAX_ENVELOPE), required)
    if kind is AppKind.APPROVAL:
        return Approval(_bytes(m, 1, _MAX_ENVELOPE))
    if kind is AppKind.REFUSAL:
        reason = m[3]
        if type(reason) is not str or not _REASON.fullmatch(reason):
            raise Malformed("a refusal's reason is 1-40 of a-z 0-9 _ :")
        return Refusal(_bytes(m, 16, 16), reason)
    nonce = _bytes(m, 16, 16)
    return Ping(nonce) if kind is AppKind.PING else Pong(nonce)
