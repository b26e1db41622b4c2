"""The relay request and response payloads between the platform and gateways (see
docs/mqtt-contract.md).

Payloads are deterministic CBOR maps with integer keys. The gateway never needs a key: it moves
the module's envelope bytes unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from e2e.cbor import MAX_MESSAGE_SIZE, dumps, loads, peek, peeked_field
from e2e.errors import MalformedMessage

__all__ = ["MAX_DETAIL", "MAX_ENVELOPE", "MAX_PAYLOAD", "MAX_TIMINGS", "MalformedRelayMessage",
           "RelayRequest", "RelayResponse", "RelayStatus", "readable_request_id"]


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



_STATUSES = frozenset(int(status) for status in RelayStatus)


MAX_PAYLOAD = 16384
"""Largest relay request or response payload either side decodes (an envelope is at most 8 KiB:
see e2e.cbor). Anything larger is refused before decoding."""
MAX_ENVELOPE = MAX_MESSAGE_SIZE
"""Largest module envelope a relay payload carries: the largest e2e message."""
MAX_DETAIL = 200
MAX_TIMINGS = 16
_DEADLINE_MAX = float(2**40)


class MalformedRelayMessage(MalformedMessage):
    """A relay payload that breaks the contract; ``request_id`` is set when it could be read, so
    the gateway can still answer that request (status 7)."""

    def __init__(self, message: str, request_id: bytes | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


def _field(raw: dict[int, Any], key: int, kind: type) -> Any:
    value = raw.get(key)
    if type(value) is not kind:
        raise MalformedMessage(f"field {key} must be {kind.__name__}")
    return value


def _bytes(raw: dict[int, Any], key: int, low: int, high: int) -> bytes:
    value: bytes = _field(raw, key, bytes)
    if not low <= len(value) <= high:
        raise MalformedMessage(f"field {key} must be {low}..{high} bytes")
    return value


def _printable(text: str) -> str:
    """Detail text as valid UTF-8 (a lone surrogate in an exception message must not make the
    answer unencodable: the outbox would retry it for ever)."""
    return text.encode("utf-8", "replace").decode("utf-8")


def readable_request_id(data: bytes) -> bytes | None:
    """Key 1 of a payload the strict decoder refused (a NaN deadline, a 5000-digit module id,
    a non-canonical encoding...) if it is still plainly a 16-byte request id: the request can
    then be answered. Size was checked by the caller; nothing here raises."""
    rid = peeked_field(peek(data, max_size=MAX_PAYLOAD), 1)
    return rid if type(rid) is bytes and len(rid) == 16 else None


def _decode_map(data: bytes, keys: set[int], what: str) -> tuple[dict[int, Any], bytes | None]:
    """The payload's map and its request id (``None`` if unreadable); refuses oversize input
    before decoding."""
    if len(data) > MAX_PAYLOAD:
        raise MalformedRelayMessage(f"{what} of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    try:
        raw = loads(data, max_size=MAX_PAYLOAD, floats=True)
    except MalformedMessage as exc:
        raise MalformedRelayMessage(str(exc), readable_request_id(data)) from None
    if type(raw) is not dict:
        raise MalformedRelayMessage(f"a {what} is a map")
    rid = raw.get(1)
    request_id = rid if type(rid) is bytes and len(rid) == 16 else None
    if raw.keys() != keys or not all(type(k) is int for k in raw):
        raise MalformedRelayMessage(f"a {what} is a map with keys {min(keys)}..{max(keys)}",
                                    request_id)
    return raw, request_id


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
        """Decode one relay request; :class:`MalformedRelayMessage` (carrying the request id
        when it was readable) for anything that breaks the contract."""
        raw, request_id = _decode_map(data, {1, 2, 3, 4}, "relay request")
        if request_id is None:
            raise MalformedRelayMessage("request id must be 16 bytes")
        try:
            deadline: float = _field(raw, 4, float)
            if not 0.0 < deadline < _DEADLINE_MAX:  # loads refused NaN and infinities
                raise MalformedMessage("deadline out of range")
            return cls(request_id, _bytes(raw, 2, 4, 32), _bytes(raw, 3, 1, MAX_ENVELOPE),
                       deadline)
        except MalformedMessage as exc:
            raise MalformedRelayMessage(str(exc), request_id) from None


@dataclass(frozen=True, slots=True)
class RelayResponse:
    request_id: bytes
    status: RelayStatus
    envelope: bytes = b""
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    def encode(self) -> bytes:
        return dumps({1: self.request_id, 2: int(self.status), 3: self.envelope,
                      4: _printable(self.detail[:MAX_DETAIL]),
                      5: {k: float(v) for k, v in self.timings.items()}})

    @classmethod
    def decode(cls, data: bytes) -> RelayResponse:
        """Decode one relay response; :class:`MalformedRelayMessage` for anything else."""
        raw, request_id = _decode_map(data, {1, 2, 3, 4, 5}, "relay response")
        if request_id is None:
            raise MalformedRelayMessage("request id must be 16 bytes")
        try:
            status: int = _field(raw, 2, int)
            detail: str = _field(raw, 4, str)
            if len(detail) > MAX_DETAIL:
                raise MalformedMessage(f"detail is at most {MAX_DETAIL} characters")
            timings: dict[str, float] = _field(raw, 5, dict)
            if len(timings) > MAX_TIMINGS or not all(
                    type(k) is str and 0 < len(k) <= 32 and type(v) is float and v >= 0.0
                    for k, v in timings.items()):
                raise MalformedMessage(f"timings map up to {MAX_TIMINGS} names to seconds")
            if status not in _STATUSES:
                # Refused, not mapped: a status this side does not know could mean anything,
                # and bytes that would re-encode differently are not the bytes that were sent.
                raise MalformedMessage("unknown relay status")
            return cls(request_id, RelayStatus(status), _bytes(raw, 3, 0, MAX_ENVELOPE),
                       detail, timings)
        except MalformedMessage as exc:
            raise MalformedRelayMessage(str(exc), request_id) from None
