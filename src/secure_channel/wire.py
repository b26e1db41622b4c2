"""Units on the wire and the handshake messages inside them (docs/cddl/secure-channel.cddl).

A unit is one content-type byte and a body:

* ``0x16`` handshake: the body is one deterministic CBOR map (:class:`Hello`, ...);
* ``0x15`` error: the body is ``{1: code}``;
* ``0x17`` application record and ``0x18`` key update: the record header's remaining bytes and
  the AEAD output (:mod:`secure_channel.records`).

Every decoder here takes hostile bytes and raises only :class:`~secure_channel.errors.Malformed`
(or an unsupported-suite/version error while negotiating).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import MalformedMessage

from .errors import ChannelErrorCode, Malformed

__all__ = ["HANDSHAKE_LIMIT", "RANDOM_SIZE", "SESSION_ID_SIZE", "ContentType", "Finished",
           "HandshakeType", "Hello", "KeyExchange", "ServerHello", "decode_error",
           "decode_handshake", "encode_error"]

RANDOM_SIZE = 32
SESSION_ID_SIZE = 16
HANDSHAKE_LIMIT = 2048
"""No handshake unit is longer (the largest, a platform hello with its certificate and an
ephemeral key and signature, is about 450 bytes)."""


class ContentType(IntEnum):
    ERROR = 0x15
    HANDSHAKE = 0x16
    APPLICATION = 0x17
    KEY_UPDATE = 0x18


class HandshakeType(IntEnum):
    HELLO = 1
    SERVER_HELLO = 2
    SERVER_RESUME = 3
    KEY_EXCHANGE = 4
    FINISHED = 5


def _unit(body: dict[int, Any]) -> bytes:
    return bytes([ContentType.HANDSHAKE]) + dumps(body)


def _bytes(m: dict[Any, Any], key: int, size: int | None = None, *, limit: int = 1024) -> bytes:
    value = m.get(key)
    if type(value) is not bytes or (size is not None and len(value) != size) or len(
            value) > limit:
        raise Malformed(f"field {key} must be a byte string" +
                        (f" of {size} bytes" if size is not None else ""))
    return value


def _int(m: dict[Any, Any], key: int) -> int:
    value = m.get(key)
    if type(value) is not int or not 0 <= value < 2**32:
        raise Malformed(f"field {key} must be an unsigned 32-bit integer")
    return value


def _int_list(m: dict[Any, Any], key: int) -> list[int]:
    value = m.get(key)
    if type(value) is not list or not 1 <= len(value) <= 16 or any(
            type(v) is not int or not 0 <= v < 2**16 for v in value):
        raise Malformed(f"field {key} must be a list of 1 to 16 ids")
    return list(value)


def _keys(m: dict[Any, Any], required: set[int], optional: frozenset[int] = frozenset()) -> None:
    keys = set(m)
    if any(type(k) is not int for k in m) or not required <= keys or keys - required - optional:
        raise Malformed("handshake message has missing or unknown fields")


@dataclass(frozen=True, slots=True)
class Hello:
    """F1-F2: the module's versions, suites (preferred first), random, and a session id to
    resume."""

    versions: list[int]
    suites: list[int]
    random: bytes
    session_id: bytes | None = None

    def encode(self) -> bytes:
        body: dict[int, Any] = {1: HandshakeType.HELLO.value, 2: self.versions, 3: self.suites,
                                4: self.random}
        if self.session_id is not None:
            body[5] = self.session_id
        return _unit(body)

    @classmethod
    def from_map(cls, m: dict[Any, Any]) -> Hello:
        _keys(m, {1, 2, 3, 4}, frozenset({5}))
        return cls(_int_list(m, 2), _int_list(m, 3), _bytes(m, 4, RANDOM_SIZE),
                   _bytes(m, 5, SESSION_ID_SIZE) if 5 in m else None)


@dataclass(frozen=True, slots=True)
class ServerHello:
    """F3-F4 (and, in a resumption, the platform's hello without certificate): the chosen
    version and suite, the platform's random, the id the session can be resumed under, the
    session lifetime; in a full handshake the channel certificate; with ephemeral key agreement
    the platform's ephemeral key and its signature."""

    resume: bool
    version: int
    suite: int
    random: bytes
    session_id: bytes
    lifetime: int
    certificate: bytes = b""
    ephemeral: bytes = b""
    signature: bytes = b""

    def to_map(self, *, signed: bool = True) -> dict[int, Any]:
        kind = HandshakeType.SERVER_RESUME if self.resume else HandshakeType.SERVER_HELLO
        body: dict[int, Any] = {1: kind.value, 2: self.version, 3: self.suite, 4: self.random,
                                6: self.session_id, 7: self.lifetime}
        if not self.resume:
            body[5] = self.certificate
        if self.ephemeral:
            body[8] = self.ephemeral
            if signed:
                body[9] = self.signature
        return body

    def encode(self, *, signed: bool = True) -> bytes:
        return _unit(self.to_map(signed=signed))

    @classmethod
    def from_map(cls, m: dict[Any, Any]) -> ServerHello:
        resume = m.get(1) == HandshakeType.SERVER_RESUME
        if resume:
            _keys(m, {1, 2, 3, 4, 6, 7})
        else:
            _keys(m, {1, 2, 3, 4, 5, 6, 7}, frozenset({8, 9}))
            if (8 in m) != (9 in m):
                raise Malformed("an ephemeral key comes with its signature")
        return cls(resume, _int(m, 2), _int(m, 3), _bytes(m, 4, RANDOM_SIZE),
                   _bytes(m, 6, SESSION_ID_SIZE), _int(m, 7),
                   b"" if resume else _bytes(m, 5),
                   _bytes(m, 8, 65) if 8 in m else b"",
                   _bytes(m, 9, limit=80) if 9 in m else b"")


@dataclass(frozen=True, slots=True)
class KeyExchange:
    """F5-F6: the module's certificate, the transported master secret (encrypted to the channel
    certificate's key) or the module's ephemeral key, and the module's signature."""

    certificate: bytes
    exchange: bytes
    signature: bytes = b""

    def encode(self, *, signed: bool = True) -> bytes:
        body: dict[int, Any] = {1: HandshakeType.KEY_EXCHANGE.value, 2: self.certificate,
                                3: self.exchange}
        if signed:
            body[4] = self.signature
        return _unit(body)

    @classmethod
    def from_map(cls, m: dict[Any, Any]) -> KeyExchange:
        _keys(m, {1, 2, 3, 4})
        return cls(_bytes(m, 2), _bytes(m, 3, limit=256), _bytes(m, 4, limit=80))


@dataclass(frozen=True, slots=True)
class Finished:
    """F8-F10: a side's finished MAC."""

    verify_data: bytes

    def encode(self) -> bytes:
        return _unit({1: HandshakeType.FINISHED.value, 2: self.verify_data})

    @classmethod
    def from_map(cls, m: dict[Any, Any]) -> Finished:
        _keys(m, {1, 2})
        return cls(_bytes(m, 2, 32))


Message = Hello | ServerHello | KeyExchange | Finished

_DECODERS: dict[int, Any] = {
    HandshakeType.HELLO: Hello.from_map,
    HandshakeType.SERVER_HELLO: ServerHello.from_map,
    HandshakeType.SERVER_RESUME: ServerHello.from_map,
    HandshakeType.KEY_EXCHANGE: KeyExchange.from_map,
    HandshakeType.FINISHED: Finished.from_map,
}


def decode_handshake(unit: bytes) -> Message:
    """A handshake unit's message; :class:`Malformed` for anything else."""
    if not isinstance(unit, bytes) or len(unit) < 2 or unit[0] != ContentType.HANDSHAKE:
        raise Malformed("not a handshake unit")
    if len(unit) > HANDSHAKE_LIMIT:
        raise Malformed("handshake unit too long")
    try:
        m = loads(unit[1:], max_size=HANDSHAKE_LIMIT)
    except MalformedMessage as exc:
        raise Malformed(f"handshake body: {exc}") from None
    if type(m) is not dict:
        raise Malformed("a handshake message is a map")
    kind = m.get(1)
    decoder = _DECODERS.get(kind) if type(kind) is int else None
    if decoder is None:
        raise Malformed("unknown handshake message type")
    message: Message = decoder(m)
    return message


def encode_error(code: ChannelErrorCode) -> bytes:
    return bytes([ContentType.ERROR]) + dumps({1: int(code)})


def decode_error(unit: bytes) -> int:
    """The code an error unit carries (any integer: the peer's word, for logs)."""
    try:
        m = loads(unit[1:], max_size=16)
    except MalformedMessage:
        raise Malformed("bad error unit") from None
    if type(m) is not dict or set(m) != {1} or type(m[1]) is not int or not 0 <= m[1] < 256:
        raise Malformed("an error unit is {1: code}")
    return int(m[1])
