"""The messages module and platform exchange through the gateway, as deterministic CBOR.

Every MSG on the BLE link (and every MQTT payload body carrying one) is an *envelope*:
``{1: version, 2: message type, 3: body}``. Bodies are maps with small integer keys. Decoding
checks types, ranges and canonical form; anything else is :class:`MalformedMessage`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, TypeGuard

from .cbor import dumps, loads, peek, peeked_field, typed_field
from .errors import ErrorCode, MalformedMessage
from .suites import Suite

__all__ = [
    "ACCOUNT_RULE",
    "MAX_ACCOUNT",
    "MAX_AMOUNT_MINOR",
    "MAX_ORDER_DESCRIPTION",
    "MAX_ORDER_REFERENCE",
    "PROTOCOL_VERSION",
    "CertificateRequest",
    "CertificateResponse",
    "CodeSignRequest",
    "CodeSignResponse",
    "ConfirmationRequest",
    "ConfirmationResponse",
    "CountersignRequest",
    "Decision",
    "ErrorResponse",
    "MessageType",
    "UserVerification",
    "decode_envelope",
    "encode_envelope",
    "is_account_name",
    "is_currency",
    "readable_transaction_id",
]

PROTOCOL_VERSION = 1
MAX_AMOUNT_MINOR = 10**15
MAX_ACCOUNT = 64
"""Longest payer or payee account name, in characters."""
MAX_ORDER_REFERENCE = 64
MAX_ORDER_DESCRIPTION = 140
_CURRENCY = re.compile(r"[A-Z]{3}")
_ACCOUNT = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_ACCOUNT - 1}}}")
ACCOUNT_RULE = f"1-{MAX_ACCOUNT} of A-Z a-z 0-9 . _ @ -, starting with a letter or digit"
"""The one rule for account (and terminal) names, wherever a message or the ledger names one."""
MAX_PLATFORM_CERTIFICATE = 1024
MAX_PLATFORM_SIGNATURE = 80


class MessageType(IntEnum):
    CONFIRMATION_REQUEST = 1
    CONFIRMATION_RESPONSE = 2
    ERROR_RESPONSE = 3
    CERTIFICATE_REQUEST = 4
    CERTIFICATE_RESPONSE = 5
    # 0x20..0x3F are reserved for the secure channel of flow F-B (handshake and records).
    # 0x40..0x4F are the symmetric-key card's messages of flow F-C (symmetric_card.messages):
    # never decoded here, and kept apart so one protocol's message is never read as the other's.
    # 0x50..0x5F: transaction codes of flow F-D, asked by an app on the gateway's host
    # (docs/transaction-codes.md).
    CODE_SIGN_REQUEST = 0x50
    COUNTERSIGN_REQUEST = 0x51
    CODE_SIGN_RESPONSE = 0x52


class Decision(IntEnum):
    APPROVE = 1
    DECLINE = 2


class UserVerification(IntEnum):
    NONE = 0
    PRESENCE = 1
    PIN = 2
    FINGERPRINT = 3


def _get(body: dict[int, Any], key: int, kind: type, name: str) -> Any:
    """One body field of exactly ``kind`` (``type(...) is``: no bool for int, no subclass)."""
    return typed_field(body, key, kind, name)


def _small(body: dict[int, Any], key: int, name: str, limit: int = 0xFFFF) -> int:
    """An integer code (suite, decision, ...) checked for range before any enum sees it, so no
    enum ever formats an attacker's number into its error message."""
    value: int = _get(body, key, int, name)
    if not 0 <= value <= limit:
        raise MalformedMessage(f"{name} out of range")
    return value


def _suite(body: dict[int, Any], key: int) -> Suite:
    return Suite.parse(_small(body, key, "suite"))


def is_account_name(value: object) -> TypeGuard[str]:
    """Whether ``value`` may name an account or a terminal (see :data:`ACCOUNT_RULE`); a
    whole-string match."""
    return isinstance(value, str) and _ACCOUNT.fullmatch(value) is not None


def is_currency(value: object) -> TypeGuard[str]:
    """Whether ``value`` is an ISO 4217 alphabetic code: exactly three capital letters (a
    whole-string match, so no trailing newline slips through)."""
    return isinstance(value, str) and _CURRENCY.fullmatch(value) is not None


def _text(value: str, name: str, limit: int) -> None:
    if not 0 < len(value) <= limit:
        raise MalformedMessage(f"{name} must be 1..{limit} characters")


@dataclass(frozen=True, slots=True)
class ConfirmationRequest:
    """What the owner approves: every field here is bound by the module's signature."""

    transaction_id: bytes
    payer_account: str
    payee_account: str
    order_reference: str
    order_description: str
    amount_minor: int
    currency: str
    nonce: bytes
    expires_at: int
    suite: Suite
    platform_certificate: bytes = b""
    """The platform's request-signing certificate (see e2e.request_auth); empty: unsigned."""
    platform_signature: bytes = b""
    """The platform's signature over every other field; a module prompts only if it verifies."""

    TYPE = MessageType.CONFIRMATION_REQUEST

    def __post_init__(self) -> None:
        if len(self.transaction_id) != 16:
            raise MalformedMessage("transaction id is 16 bytes")
        _text(self.payer_account, "payer account", MAX_ACCOUNT)
        _text(self.payee_account, "payee account", MAX_ACCOUNT)
        _text(self.order_reference, "order reference", MAX_ORDER_REFERENCE)
        _text(self.order_description, "order description", MAX_ORDER_DESCRIPTION)
        if not 0 <= self.amount_minor <= MAX_AMOUNT_MINOR:
            raise MalformedMessage("amount out of range")
        if not is_currency(self.currency):
            raise MalformedMessage("currency must be an ISO 4217 alphabetic code")
        if not 16 <= len(self.nonce) <= 32:
            raise MalformedMessage("nonce is 16..32 bytes")
        if not 0 < self.expires_at < 2**40:
            raise MalformedMessage("expiry out of range")
        if bool(self.platform_certificate) != bool(self.platform_signature):
            raise MalformedMessage("platform certificate and signature come together")
        if len(self.platform_certificate) > MAX_PLATFORM_CERTIFICATE:
            raise MalformedMessage("platform certificate too long")
        if len(self.platform_signature) > MAX_PLATFORM_SIGNATURE:
            raise MalformedMessage("platform signature too long")

    def signed_body(self) -> dict[int, Any]:
        """Every field but the platform's signature: what the platform signs."""
        body = {1: self.transaction_id, 2: self.payer_account, 3: self.payee_account,
                4: self.order_reference, 5: self.order_description, 6: self.amount_minor,
                7: self.currency, 8: self.nonce, 9: self.expires_at, 10: int(self.suite)}
        if self.platform_certificate:
            body[11] = self.platform_certificate
        return body

    def body(self) -> dict[int, Any]:
        body = self.signed_body()
        if self.platform_signature:
            body[12] = self.platform_signature
        return body

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> ConfirmationRequest:
        return cls(_get(body, 1, bytes, "transaction id"), _get(body, 2, str, "payer account"),
                   _get(body, 3, str, "payee account"), _get(body, 4, str, "order reference"),
                   _get(body, 5, str, "order description"), _get(body, 6, int, "amount"),
                   _get(body, 7, str, "currency"), _get(body, 8, bytes, "nonce"),
                   _get(body, 9, int, "expiry"), _suite(body, 10),
                   _optional_bytes(body, 11, "platform certificate"),
                   _optional_bytes(body, 12, "platform signature"))


def _optional_bytes(body: dict[int, Any], key: int, name: str) -> bytes:
    """An optional field: absent means empty; present means non-empty (one encoding each)."""
    if key not in body:
        return b""
    value: bytes = _get(body, key, bytes, name)
    if not value:
        raise MalformedMessage(f"{name} (key {key}) is present but empty")
    return value


@dataclass(frozen=True, slots=True)
class ConfirmationResponse:
    transaction_id: bytes
    decision: Decision
    counter: int
    user_verification: UserVerification
    suite: Suite
    module_id: bytes
    signature: bytes

    TYPE = MessageType.CONFIRMATION_RESPONSE

    def __post_init__(self) -> None:
        if len(self.transaction_id) != 16:
            raise MalformedMessage("transaction id is 16 bytes")
        if not 0 < self.counter < 2**63:
            raise MalformedMessage("counter out of range")
        if not 4 <= len(self.module_id) <= 32:
            raise MalformedMessage("module id is 4..32 bytes")
        if not 0 < len(self.signature) <= 80:
            raise MalformedMessage("signature length out of range")

    def signed_fields(self) -> dict[int, Any]:
        """Everything but the signature: the response half of what is signed."""
        return {1: self.transaction_id, 2: int(self.decision), 3: self.counter,
                4: int(self.user_verification), 5: int(self.suite), 6: self.module_id}

    def body(self) -> dict[int, Any]:
        return {**self.signed_fields(), 7: self.signature}

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> ConfirmationResponse:
        try:
            decision = Decision(_small(body, 2, "decision"))
            uv = UserVerification(_small(body, 4, "user verification"))
        except ValueError:
            raise MalformedMessage("unknown decision or user verification") from None
        return cls(_get(body, 1, bytes, "transaction id"), decision,
                   _get(body, 3, int, "counter"), uv, _suite(body, 5),
                   _get(body, 6, bytes, "module id"), _get(body, 7, bytes, "signature"))


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    """The module could not answer a request (busy, cancelled, expired, malformed, ...)."""

    code: ErrorCode
    transaction_id: bytes = b""
    detail: str = ""

    TYPE = MessageType.ERROR_RESPONSE

    def body(self) -> dict[int, Any]:
        return {1: int(self.code), 2: self.transaction_id, 3: self.detail[:200]}

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> ErrorResponse:
        detail: str = _get(body, 3, str, "detail")
        if len(detail) > 200:
            raise MalformedMessage("detail is at most 200 characters")
        code = _small(body, 1, "code")
        if code not in _ERROR_CODES:
            raise MalformedMessage("unknown error code")  # refused, never mapped to another
        return cls(ErrorCode(code),
                   _get(body, 2, bytes, "transaction id"), detail)

    def __post_init__(self) -> None:
        if len(self.transaction_id) not in (0, 16):
            raise MalformedMessage("transaction id is empty or 16 bytes")


@dataclass(frozen=True, slots=True)
class CertificateRequest:
    suite: Suite

    TYPE = MessageType.CERTIFICATE_REQUEST

    def body(self) -> dict[int, Any]:
        return {1: int(self.suite)}

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> CertificateRequest:
        return cls(_suite(body, 1))


@dataclass(frozen=True, slots=True)
class CertificateResponse:
    certificate: bytes

    TYPE = MessageType.CERTIFICATE_RESPONSE

    def body(self) -> dict[int, Any]:
        return {1: self.certificate}

    def __post_init__(self) -> None:
        if not 0 < len(self.certificate) <= 1024:
            raise MalformedMessage("certificate is 1..1024 bytes")

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> CertificateResponse:
        return cls(_get(body, 1, bytes, "certificate"))


MAX_CODE_LIFETIME = 86400
MAX_SIGNED_CODE = 768
"""Longest transaction code or countersigned request a module returns (transaction_code
checks the exact formats; here only their size)."""


def _request_id(body: dict[int, Any]) -> bytes:
    value: bytes = _get(body, 1, bytes, "request id")
    if len(value) != 16:
        raise MalformedMessage("request id is 16 bytes")
    return value


@dataclass(frozen=True, slots=True)
class CodeSignRequest:
    """An app on the gateway's host asks the module for a transaction code (first transaction
    info, flow F-D). The module picks the time and the random itself, shows what it is asked
    to its owner, and signs only with the owner's approval."""

    request_id: bytes
    kind: int
    """1: a payment code (the owner pays), 2: a collection code (the owner is paid)."""
    suite: Suite
    account: str
    amount_minor: int | None
    currency: str | None
    lifetime: int
    """Seconds the code stays valid, 1..86400."""

    TYPE = MessageType.CODE_SIGN_REQUEST

    def __post_init__(self) -> None:
        if len(self.request_id) != 16:
            raise MalformedMessage("request id is 16 bytes")
        if self.kind not in (1, 2):
            raise MalformedMessage("kind: 1 (payment) or 2 (collection)")
        _text(self.account, "account", MAX_ACCOUNT)
        if (self.amount_minor is None) != (self.currency is None):
            raise MalformedMessage("amount and currency come together or not at all")
        if self.amount_minor is not None and not 0 < self.amount_minor <= MAX_AMOUNT_MINOR:
            raise MalformedMessage("amount out of range")
        if self.currency is not None and not is_currency(self.currency):
            raise MalformedMessage("currency must be an ISO 4217 alphabetic code")
        if not 0 < self.lifetime <= MAX_CODE_LIFETIME:
            raise MalformedMessage(f"lifetime: 1..{MAX_CODE_LIFETIME} s")

    def body(self) -> dict[int, Any]:
        body: dict[int, Any] = {1: self.request_id, 2: self.kind, 3: int(self.suite),
                                4: self.account, 7: self.lifetime}
        if self.amount_minor is not None:
            body[5] = self.amount_minor
            body[6] = self.currency
        return body

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> CodeSignRequest:
        has_amount = 5 in body or 6 in body
        return cls(_request_id(body), _small(body, 2, "kind"), _suite(body, 3),
                   _get(body, 4, str, "account"),
                   _get(body, 5, int, "amount") if has_amount else None,
                   _get(body, 6, str, "currency") if has_amount else None,
                   _get(body, 7, int, "lifetime"))


@dataclass(frozen=True, slots=True)
class CountersignRequest:
    """An app asks the module to countersign a scanned code (second transaction info): the
    module decodes the code itself and shows its owner who pays whom and how much."""

    request_id: bytes
    code: bytes
    suite: Suite
    account: str
    amount_minor: int
    currency: str

    TYPE = MessageType.COUNTERSIGN_REQUEST

    def __post_init__(self) -> None:
        if len(self.request_id) != 16:
            raise MalformedMessage("request id is 16 bytes")
        if not 0 < len(self.code) <= MAX_SIGNED_CODE:
            raise MalformedMessage("the code is 1..768 bytes")
        _text(self.account, "account", MAX_ACCOUNT)
        if not 0 < self.amount_minor <= MAX_AMOUNT_MINOR:
            raise MalformedMessage("amount out of range")
        if not is_currency(self.currency):
            raise MalformedMessage("currency must be an ISO 4217 alphabetic code")

    def body(self) -> dict[int, Any]:
        return {1: self.request_id, 2: self.code, 3: int(self.suite), 4: self.account,
                5: self.amount_minor, 6: self.currency}

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> CountersignRequest:
        return cls(_request_id(body), _get(body, 2, bytes, "code"), _suite(body, 3),
                   _get(body, 4, str, "account"), _get(body, 5, int, "amount"),
                   _get(body, 6, str, "currency"))


@dataclass(frozen=True, slots=True)
class CodeSignResponse:
    """The module's answer: the signed transaction code or countersigned request, exactly the
    bytes the platform verifies."""

    request_id: bytes
    signed: bytes

    TYPE = MessageType.CODE_SIGN_RESPONSE

    def __post_init__(self) -> None:
        if len(self.request_id) != 16:
            raise MalformedMessage("request id is 16 bytes")
        if not 0 < len(self.signed) <= MAX_SIGNED_CODE:
            raise MalformedMessage("the signed code is 1..768 bytes")

    def body(self) -> dict[int, Any]:
        return {1: self.request_id, 2: self.signed}

    @classmethod
    def from_body(cls, body: dict[int, Any]) -> CodeSignResponse:
        return cls(_request_id(body), _get(body, 2, bytes, "signed code"))


_ERROR_CODES = frozenset(int(code) for code in ErrorCode)

Message = (ConfirmationRequest | ConfirmationResponse | ErrorResponse | CertificateRequest
           | CertificateResponse | CodeSignRequest | CountersignRequest | CodeSignResponse)
_TYPES: dict[MessageType, Any] = {
    MessageType.CONFIRMATION_REQUEST: ConfirmationRequest,
    MessageType.CONFIRMATION_RESPONSE: ConfirmationResponse,
    MessageType.ERROR_RESPONSE: ErrorResponse,
    MessageType.CERTIFICATE_REQUEST: CertificateRequest,
    MessageType.CERTIFICATE_RESPONSE: CertificateResponse,
    MessageType.CODE_SIGN_REQUEST: CodeSignRequest,
    MessageType.COUNTERSIGN_REQUEST: CountersignRequest,
    MessageType.CODE_SIGN_RESPONSE: CodeSignResponse,
}


def encode_envelope(message: Message) -> bytes:
    return dumps({1: PROTOCOL_VERSION, 2: int(message.TYPE), 3: message.body()})


def decode_envelope(data: bytes) -> Message:
    """Decode an envelope; raise MalformedMessage (or UnsupportedSuite) for anything else.

    Never anything else, whatever ``data`` holds: the module's request task and the platform's
    MQTT reader call this on bytes an attacker chose.
    """
    raw = loads(data)
    if type(raw) is not dict or raw.keys() != {1, 2, 3} or not all(type(k) is int for k in raw):
        raise MalformedMessage("an envelope is a map with keys 1, 2 and 3")
    if type(raw[1]) is not int or raw[1] != PROTOCOL_VERSION:
        raise MalformedMessage("unsupported protocol version")
    try:
        kind = MessageType(_small(raw, 2, "message type"))
    except ValueError:
        raise MalformedMessage("unknown message type") from None
    body = raw[3]
    if type(body) is not dict or not all(type(k) is int for k in body):
        raise MalformedMessage("a message body is a map with integer keys")
    message: Message = _TYPES[kind].from_body(body)
    expected = len(message.body())
    if len(body) != expected:
        raise MalformedMessage("unknown keys in the message body")
    return message


def readable_transaction_id(data: bytes) -> bytes:
    """The transaction id of an envelope that failed to decode, if it can be read at all.

    Lets an error answer name the request it refuses (``b""`` when the id is unreadable); it
    never raises.
    """
    tx = peeked_field(peeked_field(peek(data), 3), 1)
    return tx if type(tx) is bytes and len(tx) == 16 else b""
