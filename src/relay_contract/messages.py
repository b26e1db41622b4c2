"""The relay request and response payloads between the platform and gateways (see
docs/mqtt-contract.md).

Payloads are deterministic CBOR maps with integer keys. The gateway never needs a key: it moves
the module's envelope bytes unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from e2e.cbor import MAX_MESSAGE_SIZE, dumps, loads, peek, peeked_field, typed_field
from e2e.errors import MalformedMessage

__all__ = ["MAX_DETAIL", "MAX_ENVELOPE", "MAX_PAYLOAD", "MAX_TIMINGS", "CancelReason",
           "LinkReport", "MalformedRelayMessage", "OwnerStatus", "RelayCancel", "RelayProgress",
           "RelayRequest", "RelayResponse", "RelayStatus", "decode_from_gateway",
           "decode_from_platform", "readable_request_id"]


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
    CANCELLED = 8
    """The platform cancelled the request (:class:`RelayCancel`): it was dropped from the
    queue, or CANCEL was sent to the module while it asked its owner."""
    NEEDS_RE_PAIRING = 9
    """The module's bond is lost or was replaced; nothing was sent to it until it is paired
    again (the gateway's operator runs ``blegw pair``)."""


class OwnerStatus(IntEnum):
    """What a module that is still deciding says it is doing (its KEEPALIVE status byte)."""

    PROCESSING = 1
    AWAITING_OWNER = 2
    """The module is asking its owner (KEEPALIVE USER_ACTION_NEEDED)."""


class CancelReason(IntEnum):
    TERMINAL = 1
    """The terminal that created the payment cancelled it (``POST .../cancel``)."""


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
    return typed_field(raw, key, kind, f"field {key}")


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
    raw, request_id = _load_map(data, what)
    _check_keys(raw, keys, what, request_id)
    return raw, request_id


def _check_keys(raw: dict[int, Any], keys: set[int], what: str, request_id: bytes | None
                ) -> None:
    if raw.keys() != keys or not all(type(k) is int for k in raw):
        raise MalformedRelayMessage(f"a {what} is a map with keys "
                                    f"{', '.join(map(str, sorted(keys)))}", request_id)


def _load_map(data: bytes, what: str) -> tuple[dict[int, Any], bytes | None]:
    """The payload's map, keys unchecked, and its request id (``None`` if unreadable)."""
    if len(data) > MAX_PAYLOAD:
        raise MalformedRelayMessage(f"{what} of {len(data)} bytes exceeds {MAX_PAYLOAD}")
    try:
        raw = loads(data, max_size=MAX_PAYLOAD, floats=True)
    except MalformedMessage as exc:
        raise MalformedRelayMessage(str(exc), readable_request_id(data)) from None
    if type(raw) is not dict:
        raise MalformedRelayMessage(f"a {what} is a map")
    rid = raw.get(1)
    return raw, rid if type(rid) is bytes and len(rid) == 16 else None


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
        return cls._from_map(raw, request_id)

    @classmethod
    def _from_map(cls, raw: dict[int, Any], request_id: bytes | None) -> RelayRequest:
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
class LinkReport:
    """The link a response came over, as the gateway's BlueZ names it (key 7 of a relay
    response, optional): the module's or card's address and the gateway adapter's own, each
    6 bytes, most significant first. The platform recomputes a card's channel id from it; a
    hostile gateway can lie here like anywhere else (docs/symmetric-card.md)."""

    peer: bytes
    central: bytes

    def __post_init__(self) -> None:
        if len(self.peer) != 6 or len(self.central) != 6:
            raise MalformedMessage("a link address is 6 bytes")

    @classmethod
    def from_text(cls, peer: str, central: str) -> LinkReport:
        """From ``AA:BB:CC:DD:EE:FF`` addresses; MalformedMessage for anything else."""
        try:
            return cls(bytes.fromhex(peer.replace(":", "")),
                       bytes.fromhex(central.replace(":", "")))
        except ValueError:
            raise MalformedMessage("a link address is AA:BB:CC:DD:EE:FF") from None


@dataclass(frozen=True, slots=True)
class RelayResponse:
    request_id: bytes
    status: RelayStatus
    envelope: bytes = b""
    detail: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    link: LinkReport | None = None
    """The link the answer came over (key 7), when the gateway reports it: absent from older
    gateways' responses."""

    def encode(self) -> bytes:
        out: dict[int, Any] = {1: self.request_id, 2: int(self.status), 3: self.envelope,
                               4: _printable(self.detail[:MAX_DETAIL]),
                               5: {k: float(v) for k, v in self.timings.items()}}
        if self.link is not None:
            out[7] = {1: self.link.peer, 2: self.link.central}
        return dumps(out)

    @classmethod
    def decode(cls, data: bytes) -> RelayResponse:
        """Decode one relay response; :class:`MalformedRelayMessage` for anything else."""
        raw, request_id = _load_map(data, "relay response")
        _check_keys(raw, _response_keys(raw), "relay response", request_id)
        return cls._from_map(raw, request_id)

    @classmethod
    def _from_map(cls, raw: dict[int, Any], request_id: bytes | None) -> RelayResponse:
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
                       detail, timings, _link(raw))
        except MalformedMessage as exc:
            raise MalformedRelayMessage(str(exc), request_id) from None


@dataclass(frozen=True, slots=True)
class RelayCancel:
    """The platform withdraws a request it sent (on the ``req`` topic, keys 1, 2 and 5).

    The gateway drops the request from its queue, or sends CANCEL to the module if the request
    is in flight, and answers the request once with status CANCELLED (or with the module's
    answer if that came first: the platform's ledger decides which outcome counts).
    """

    request_id: bytes
    module_id: bytes
    reason: CancelReason = CancelReason.TERMINAL

    def encode(self) -> bytes:
        return dumps({1: self.request_id, 2: self.module_id, 5: int(self.reason)})

    @classmethod
    def decode(cls, data: bytes) -> RelayCancel:
        raw, request_id = _decode_map(data, {1, 2, 5}, "relay cancel")
        return cls._from_map(raw, request_id)

    @classmethod
    def _from_map(cls, raw: dict[int, Any], request_id: bytes | None) -> RelayCancel:
        if request_id is None:
            raise MalformedRelayMessage("request id must be 16 bytes")
        try:
            reason: int = _field(raw, 5, int)
            if reason not in _CANCEL_REASONS:
                raise MalformedMessage("unknown cancel reason")
            return cls(request_id, _bytes(raw, 2, 4, 32), CancelReason(reason))
        except MalformedMessage as exc:
            raise MalformedRelayMessage(str(exc), request_id) from None


@dataclass(frozen=True, slots=True)
class RelayProgress:
    """A request still in flight: what its module says it is doing (on the ``resp`` topic,
    keys 1 and 6). Sent when the status changes and at most once a second otherwise; never
    an outcome (the relay response is)."""

    request_id: bytes
    status: OwnerStatus

    def encode(self) -> bytes:
        return dumps({1: self.request_id, 6: int(self.status)})

    @classmethod
    def decode(cls, data: bytes) -> RelayProgress:
        raw, request_id = _decode_map(data, {1, 6}, "relay progress")
        return cls._from_map(raw, request_id)

    @classmethod
    def _from_map(cls, raw: dict[int, Any], request_id: bytes | None) -> RelayProgress:
        if request_id is None:
            raise MalformedRelayMessage("request id must be 16 bytes")
        try:
            status: int = _field(raw, 6, int)
            if status not in _OWNER_STATUSES:
                raise MalformedMessage("unknown owner status")
            return cls(request_id, OwnerStatus(status))
        except MalformedMessage as exc:
            raise MalformedRelayMessage(str(exc), request_id) from None


def _response_keys(raw: dict[int, Any]) -> set[int]:
    """A relay response's keys: 1-5, and 7 when the gateway reports the link."""
    return {1, 2, 3, 4, 5, 7} if 7 in raw else {1, 2, 3, 4, 5}


def _link(raw: dict[int, Any]) -> LinkReport | None:
    if 7 not in raw:
        return None
    link: dict[Any, Any] = _field(raw, 7, dict)
    if link.keys() != {1, 2}:
        raise MalformedMessage("field 7 is a map with keys 1, 2")
    return LinkReport(_bytes(link, 1, 6, 6), _bytes(link, 2, 6, 6))


_CANCEL_REASONS = frozenset(int(reason) for reason in CancelReason)
_OWNER_STATUSES = frozenset(int(status) for status in OwnerStatus)


def decode_from_platform(data: bytes) -> RelayRequest | RelayCancel:
    """A payload of the ``req`` topic: a relay request (keys 1-4) or a cancel (keys 1, 2, 5).

    Told apart by key 5, which only a cancel has; anything else is decoded as a request, so a
    broken payload is refused with the request's rules (and its id, when readable).
    """
    raw, request_id = _load_map(data, "relay request")
    if 5 in raw:
        _check_keys(raw, {1, 2, 5}, "relay cancel", request_id)
        return RelayCancel._from_map(raw, request_id)
    _check_keys(raw, {1, 2, 3, 4}, "relay request", request_id)
    return RelayRequest._from_map(raw, request_id)


def decode_from_gateway(data: bytes) -> RelayResponse | RelayProgress:
    """A payload of the ``resp`` topic: a relay response (keys 1-5) or progress (keys 1, 6)."""
    raw, request_id = _load_map(data, "relay response")
    if 6 in raw:
        _check_keys(raw, {1, 6}, "relay progress", request_id)
        return RelayProgress._from_map(raw, request_id)
    _check_keys(raw, _response_keys(raw), "relay response", request_id)
    return RelayResponse._from_map(raw, request_id)
