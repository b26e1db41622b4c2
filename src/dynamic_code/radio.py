"""The unit operations of flow F-E as envelopes a gateway carries to a module and back.

A merchant device's unit and a payer's unit live in simulated modules; the gateway on each
side moves one envelope to the module and brings exactly one back, as for every other request
(docs/mqtt-contract.md). Two envelope types of their own (docs/e2e-messages.md):

* ``0x60`` *unit request*: ``{1: op, 2: request id (16 bytes), 3: arguments}``;
* ``0x61`` *unit answer*: ``{1: request id, 2: "ok" or an error code, 3: result or text}``.

Envelope shape and CBOR rules are the end-to-end layer's (``{1: 1, 2: type, 3: body}``,
deterministic, refused unless it re-encodes to the same bytes). The gateway is hostile: it can
change any byte of a request, but every code inside is signed or encrypted by a unit, and what
the owner approves is read by the module from the signed consumption code itself, never from a
field the gateway chose. Every refusal is :class:`~dynamic_code.MalformedDynamicCode`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import MalformedMessage
from e2e.messages import MAX_AMOUNT_MINOR

from .errors import MalformedDynamicCode
from .messages import Verification

__all__ = [
    "ANSWER_ERRORS",
    "MAX_UNIT_ENVELOPE",
    "TO_GATEWAY",
    "TO_MODULE",
    "Accept",
    "AcceptResult",
    "Forward",
    "Offer",
    "Pay",
    "UnitAnswer",
    "UnitRequest",
    "decode_answer",
    "decode_request",
    "is_unit_envelope",
]

TO_MODULE = 0x60
TO_GATEWAY = 0x61
MAX_UNIT_ENVELOPE = 4096
"""The module's message limit; the largest payload (an SM2 settlement request with
64-character accounts) is about 1.2 KiB."""
MAX_CODE = 2048
_VERSION = 1
_CURRENCY_LEN = 3
MAX_LIFETIME = 600

ANSWER_ERRORS = frozenset({
    "malformed_dynamic_code", "unsupported_dynamic_code", "decrypt_failed", "bad_signature",
    "device_certificate_refused", "device_revoked", "dynamic_code_expired",
    "stale_perturbation", "perturbation_mismatch", "amount_mismatch", "wrong_merchant",
    "fingerprint_mismatch", "owner_binding_mismatch", "verification_refused", "no_finger",
    "dynamic_code_refused", "no_unit", "declined", "user_timeout", "cancelled", "internal"})
"""The codes a module answers a refused unit request with: the core's typed errors, and
``no_unit`` (the module hosts no unit of that role), ``declined`` / ``user_timeout`` (the
owner), ``cancelled`` (CANCEL from the gateway), ``internal``."""


class Op(IntEnum):
    OFFER = 1
    ACCEPT = 2
    FORWARD = 3
    PAY = 4


@dataclass(frozen=True, slots=True)
class Offer:
    """Merchant unit: make a consumption code for this amount (its perturbation code stays in
    the unit)."""

    amount_minor: int
    currency: str
    lifetime: int = 120


@dataclass(frozen=True, slots=True)
class Accept:
    """Merchant unit: decrypt and check a payer's payment code."""

    payment_code: bytes


@dataclass(frozen=True, slots=True)
class Forward:
    """Merchant unit: seal an accepted payment to the settlement server; ``till_sensor``: the
    merchant device's own sensor captures the owner's finger (seed mode)."""

    handle: int
    settlement_certificate: bytes
    till_sensor: bool


@dataclass(frozen=True, slots=True)
class Pay:
    """Payer unit: check a consumption code, ask the owner, answer with a payment code;
    ``phone_sensor``: in the features mode, the phone's sensor captures (else the till's)."""

    consumption_code: bytes
    verification: Verification
    phone_sensor: bool


Operation = Offer | Accept | Forward | Pay


@dataclass(frozen=True, slots=True)
class UnitRequest:
    request_id: bytes
    operation: Operation

    def encode(self) -> bytes:
        op = self.operation
        if isinstance(op, Offer):
            kind, args = Op.OFFER, {1: op.amount_minor, 2: op.currency, 3: op.lifetime}
        elif isinstance(op, Accept):
            kind, args = Op.ACCEPT, {1: op.payment_code}
        elif isinstance(op, Forward):
            kind, args = Op.FORWARD, {1: op.handle, 2: op.settlement_certificate,
                                      3: int(op.till_sensor)}
        else:
            kind, args = Op.PAY, {1: op.consumption_code, 2: int(op.verification),
                                  3: int(op.phone_sensor)}
        return dumps({1: _VERSION, 2: TO_MODULE, 3: {1: int(kind), 2: self.request_id,
                                                     3: args}})


@dataclass(frozen=True, slots=True)
class AcceptResult:
    """What the merchant's unit says of an accepted payment code (no key, no features)."""

    handle: int
    payer_account: str
    amount_minor: int
    currency: str
    verification: Verification
    needs_features: bool

    def to_cbor(self) -> dict[int, Any]:
        return {1: self.handle, 2: self.payer_account, 3: self.amount_minor, 4: self.currency,
                5: int(self.verification), 6: int(self.needs_features)}


@dataclass(frozen=True, slots=True)
class UnitAnswer:
    """``code`` is ``"ok"`` with ``result`` (code bytes, or an :class:`AcceptResult`), or an
    error code of :data:`ANSWER_ERRORS` with ``message``."""

    request_id: bytes
    code: str
    result: bytes | AcceptResult | None = None
    message: str = ""

    def encode(self) -> bytes:
        if self.code == "ok":
            body: Any = (self.result.to_cbor() if isinstance(self.result, AcceptResult)
                         else {1: self.result})
        else:
            body = self.message[:200]
        return dumps({1: _VERSION, 2: TO_GATEWAY, 3: {1: self.request_id, 2: self.code,
                                                      3: body}})


def is_unit_envelope(data: bytes) -> bool:
    """Whether an envelope names a unit type (cheap: for dispatch, not a check)."""
    return (isinstance(data, bytes) and len(data) >= 6 and data[:5] == b"\xa3\x01\x01\x02\x18"
            and data[5] in (TO_MODULE, TO_GATEWAY))


def _body(data: bytes, kind: int) -> dict[Any, Any]:
    try:
        m = loads(data, max_size=MAX_UNIT_ENVELOPE)
    except MalformedMessage as exc:
        raise MalformedDynamicCode(f"unit envelope: {exc}") from None
    if type(m) is not dict or set(m) != {1, 2, 3} or type(m[1]) is not int \
            or m[1] != _VERSION or type(m[2]) is not int or m[2] != kind \
            or type(m[3]) is not dict or set(m[3]) != {1, 2, 3}:
        raise MalformedDynamicCode("not a unit envelope in this direction")
    return m[3]


def _int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise MalformedDynamicCode(f"{what}: an integer {low}..{high}")
    return value


def _bytes(value: Any, what: str, high: int = MAX_CODE) -> bytes:
    if type(value) is not bytes or not 0 < len(value) <= high:
        raise MalformedDynamicCode(f"{what}: 1..{high} bytes")
    return value


def _bool(value: Any, what: str) -> bool:
    """A flag: 0 or 1 (the end-to-end CBOR rules admit no CBOR booleans)."""
    if type(value) is not int or value not in (0, 1):
        raise MalformedDynamicCode(f"{what}: 0 or 1")
    return value == 1


def _currency(value: Any) -> str:
    if type(value) is not str or len(value) != _CURRENCY_LEN or not value.isascii() \
            or not value.isupper() or not value.isalpha():
        raise MalformedDynamicCode("currency: three capital letters")
    return value


def _request_id(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != 16:
        raise MalformedDynamicCode("request id: 16 bytes")
    return value


def _args(args: Any, keys: set[int]) -> dict[int, Any]:
    if type(args) is not dict or set(args) != keys:
        raise MalformedDynamicCode(f"arguments: exactly keys {sorted(keys)}")
    return args


def decode_request(data: bytes) -> UnitRequest:
    """One unit request, every field checked; :class:`MalformedDynamicCode` otherwise."""
    body = _body(data, TO_MODULE)
    rid = _request_id(body[2])
    op = _int(body[1], 1, len(Op), "op")
    operation: Operation
    if op == Op.OFFER:
        a = _args(body[3], {1, 2, 3})
        operation = Offer(_int(a[1], 1, MAX_AMOUNT_MINOR, "amount"), _currency(a[2]),
                          _int(a[3], 1, MAX_LIFETIME, "lifetime"))
    elif op == Op.ACCEPT:
        operation = Accept(_bytes(_args(body[3], {1})[1], "payment code"))
    elif op == Op.FORWARD:
        a = _args(body[3], {1, 2, 3})
        operation = Forward(_int(a[1], 1, 2**63 - 1, "handle"),
                            _bytes(a[2], "settlement certificate", 1024),
                            _bool(a[3], "till sensor"))
    else:
        a = _args(body[3], {1, 2, 3})
        verification = Verification(_int(a[2], 1, 2, "verification"))
        operation = Pay(_bytes(a[1], "consumption code"), verification,
                        _bool(a[3], "phone sensor"))
    return UnitRequest(rid, operation)


def decode_answer(data: bytes, request: UnitRequest) -> UnitAnswer:
    """The module's answer to ``request``: the same request id, a known code, a result of the
    operation's shape; :class:`MalformedDynamicCode` otherwise."""
    body = _body(data, TO_GATEWAY)
    if _request_id(body[1]) != request.request_id:
        raise MalformedDynamicCode("an answer to another request")
    code = body[2]
    if type(code) is not str or (code != "ok" and code not in ANSWER_ERRORS):
        raise MalformedDynamicCode("answer code: ok or a known error code")
    if code != "ok":
        if type(body[3]) is not str or len(body[3]) > 200:
            raise MalformedDynamicCode("error text: up to 200 characters")
        return UnitAnswer(request.request_id, code, None, body[3])
    if isinstance(request.operation, Accept):
        a = _args(body[3], {1, 2, 3, 4, 5, 6})
        payer = a[2]
        if type(payer) is not str or not 0 < len(payer) <= 64:
            raise MalformedDynamicCode("payer account: 1..64 characters")
        return UnitAnswer(request.request_id, code, AcceptResult(
            _int(a[1], 1, 2**63 - 1, "handle"), payer,
            _int(a[3], 1, MAX_AMOUNT_MINOR, "amount"), _currency(a[4]),
            Verification(_int(a[5], 1, 2, "verification")), _bool(a[6], "needs features")))
    return UnitAnswer(request.request_id, code, _bytes(_args(body[3], {1})[1], "result"))
