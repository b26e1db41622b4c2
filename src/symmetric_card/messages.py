"""The card protocol's messages and their strict CBOR codecs (docs/cddl/symmetric-card.cddl).

Every message is the end-to-end layer's envelope shape, ``{1: version 1, 2: type, 3: body}``,
in deterministic CBOR, decoded with ``e2e.cbor.loads`` (size first, no tags, floats or simple
values, canonical form re-checked) and then field by field: unknown or missing keys, wrong
types and out-of-range values are :class:`~symmetric_card.errors.Malformed`.

| type | value | direction | seed step |
|---|---|---|---|
| card challenge | 0x40 | server -> card, clear | gives a card without a clock the server's time |
| card hello | 0x41 | card -> server, sealed card info | s1, s2 |
| transaction request | 0x42 | server -> card, sealed transaction info | s4 |
| card result | 0x43 | card -> server, sealed decision | s6 |
| card error | 0x44 | card -> server, clear | a refusal, with its code |

The three sealed messages share one body: ``{1 suite, 2 key version, 3 card ref, 4 channel id,
5 time factor, 6 verification code, 7 nonce, 8 ciphertext || tag}``; a card result also
carries ``9 transaction id`` in clear, so a result for another transaction is named as such
before any key is derived, and a card hello may carry ``10 connection random`` in clear (the
card's share of the channel id, authenticated by the AEAD), so the server can recompute the
channel id from the link's addresses the gateway reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import E2EError

from .channel import CONNECTION_RANDOM_SIZE
from .errors import CardErrorCode, Malformed
from .keys import CARD_REF_SIZE, CHANNEL_ID_SIZE, CODE_SIZE, MAX_TIME_FACTOR, is_card_number
from .suites import NONCE_SIZE, TAG_SIZE, CardSuite

__all__ = ["MAX_CARD_MESSAGE", "PROTOCOL_VERSION", "TRANSACTION_ID_SIZE", "CardChallenge",
           "CardErrorMessage", "CardInfo", "Decision", "MessageType", "ResultBody", "SealedMessage",
           "TransactionInfo", "UserVerification", "decode", "decode_plain", "encode"]

PROTOCOL_VERSION = 1
MAX_CARD_MESSAGE = 1024
"""No card message is longer; a low-power card's buffer is small, and this is checked before
decoding."""
MAX_PLAINTEXT = 512
TRANSACTION_ID_SIZE = 16
MAX_ERROR_DETAIL = 200
MAX_AMOUNT = 10**15


class MessageType(IntEnum):
    CHALLENGE = 0x40
    HELLO = 0x41
    TRANSACTION = 0x42
    RESULT = 0x43
    ERROR = 0x44


class Decision(IntEnum):
    APPROVE = 1
    DECLINE = 2
    TIMEOUT = 3
    """The owner did not press the button in time: the card's own decline."""


class UserVerification(IntEnum):
    NONE = 0
    BUTTON = 1


def _field(body: dict[Any, Any], key: int, kind: type, name: str) -> Any:
    value = body.get(key)
    if type(value) is not kind:
        raise Malformed(f"{name} is missing or of the wrong type")
    return value


def _sized(body: dict[Any, Any], key: int, name: str, size: int) -> bytes:
    value: bytes = _field(body, key, bytes, name)
    if len(value) != size:
        raise Malformed(f"{name} must be {size} bytes")
    return value


def _uint(body: dict[Any, Any], key: int, name: str, low: int, high: int) -> int:
    value: int = _field(body, key, int, name)
    if not low <= value <= high:
        raise Malformed(f"{name} out of range")
    return value


def _text(body: dict[Any, Any], key: int, name: str, low: int, high: int) -> str:
    value: str = _field(body, key, str, name)
    if not low <= len(value) <= high:
        raise Malformed(f"{name} must be {low}-{high} characters")
    return value


def _keys(body: Any, allowed: set[int], name: str) -> dict[Any, Any]:
    if type(body) is not dict:
        raise Malformed(f"{name} is not a map")
    if any(type(k) is not int or k not in allowed for k in body):
        raise Malformed(f"{name} has an unknown key")
    return body


def _suite(body: dict[Any, Any]) -> CardSuite:
    return CardSuite.parse(_uint(body, 1, "suite", 0, 0xFFFF))


def _check_time(value: int, name: str) -> None:
    if not 0 < value < MAX_TIME_FACTOR:
        raise Malformed(f"{name} out of range")


@dataclass(frozen=True, slots=True)
class CardChallenge:
    """The server's clock, for a card that has none. Not authenticated: a false time only
    yields a time factor the server refuses (see docs/symmetric-card.md)."""

    suite: CardSuite
    server_time: int

    message_type = MessageType.CHALLENGE

    def __post_init__(self) -> None:
        _check_time(self.server_time, "server time")

    def body(self) -> dict[int, Any]:
        return {1: int(self.suite), 2: self.server_time}

    @classmethod
    def from_body(cls, body: Any) -> CardChallenge:
        body = _keys(body, {1, 2}, "card challenge")
        return cls(_suite(body), _uint(body, 2, "server time", 1, MAX_TIME_FACTOR - 1))


@dataclass(frozen=True, slots=True)
class SealedMessage:
    """A card hello, a transaction request or a card result."""

    message_type: MessageType
    suite: CardSuite
    key_version: int
    card_ref: bytes
    channel_id: bytes
    time_factor: int
    code: bytes
    nonce: bytes
    ciphertext: bytes
    transaction_id: bytes | None = None
    connection_random: bytes | None = None
    """A hello's only: the card's random of this connection (``symmetric_card.channel``)."""

    def __post_init__(self) -> None:
        if self.message_type not in (MessageType.HELLO, MessageType.TRANSACTION,
                                     MessageType.RESULT):
            raise Malformed("not a sealed message type")
        if not 1 <= self.key_version <= 0xFF:
            raise Malformed("key version out of range")
        if (len(self.card_ref), len(self.channel_id), len(self.code), len(self.nonce)) != (
                CARD_REF_SIZE, CHANNEL_ID_SIZE, CODE_SIZE, NONCE_SIZE):
            raise Malformed("a header field has the wrong size")
        _check_time(self.time_factor, "time factor")
        if not TAG_SIZE < len(self.ciphertext) <= MAX_PLAINTEXT + TAG_SIZE:
            raise Malformed("ciphertext size out of range")
        is_result = self.message_type is MessageType.RESULT
        if is_result != (self.transaction_id is not None) or (
                self.transaction_id is not None
                and len(self.transaction_id) != TRANSACTION_ID_SIZE):
            raise Malformed("a card result, and only it, names its 16-byte transaction id")
        if self.connection_random is not None and (
                self.message_type is not MessageType.HELLO
                or len(self.connection_random) != CONNECTION_RANDOM_SIZE):
            raise Malformed("only a card hello carries its 16-byte connection random")

    def header(self) -> dict[int, Any]:
        """The body without the ciphertext: what the AEAD authenticates beside it."""
        out: dict[int, Any] = {1: int(self.suite), 2: self.key_version, 3: self.card_ref,
                               4: self.channel_id, 5: self.time_factor, 6: self.code,
                               7: self.nonce}
        if self.transaction_id is not None:
            out[9] = self.transaction_id
        if self.connection_random is not None:
            out[10] = self.connection_random
        return out

    def body(self) -> dict[int, Any]:
        return {**self.header(), 8: self.ciphertext}

    @classmethod
    def from_body(cls, message_type: MessageType, body: Any) -> SealedMessage:
        is_result = message_type is MessageType.RESULT
        is_hello = message_type is MessageType.HELLO
        body = _keys(body, set(range(1, 10 if is_result else 9)) | ({10} if is_hello else set()),
                     "sealed message")
        return cls(message_type, _suite(body), _uint(body, 2, "key version", 1, 0xFF),
                   _sized(body, 3, "card ref", CARD_REF_SIZE),
                   _sized(body, 4, "channel id", CHANNEL_ID_SIZE),
                   _uint(body, 5, "time factor", 1, MAX_TIME_FACTOR - 1),
                   _sized(body, 6, "verification code", CODE_SIZE),
                   _sized(body, 7, "nonce", NONCE_SIZE),
                   _field(body, 8, bytes, "ciphertext"),
                   _sized(body, 9, "transaction id", TRANSACTION_ID_SIZE)
                   if is_result else None,
                   _sized(body, 10, "connection random", CONNECTION_RANDOM_SIZE)
                   if is_hello and 10 in body else None)


@dataclass(frozen=True, slots=True)
class CardErrorMessage:
    """The card's refusal of what it received, with the error's wire code. Not authenticated:
    a gateway can forge one as it can drop a message, so it only ever ends a payment unpaid."""

    code: CardErrorCode
    detail: str = ""

    message_type = MessageType.ERROR

    def __post_init__(self) -> None:
        if len(self.detail) > MAX_ERROR_DETAIL:
            raise Malformed("an error detail is at most 200 characters")

    def body(self) -> dict[int, Any]:
        return {1: int(self.code), 2: self.detail}

    @classmethod
    def from_body(cls, body: Any) -> CardErrorMessage:
        body = _keys(body, {1, 2}, "card error")
        try:
            code = CardErrorCode(_uint(body, 1, "error code", 0, 0xFFFF))
        except ValueError:
            raise Malformed("unknown card error code") from None
        return cls(code, _text(body, 2, "detail", 0, MAX_ERROR_DETAIL))


Message = CardChallenge | SealedMessage | CardErrorMessage


def encode(message: Message) -> bytes:
    return dumps({1: PROTOCOL_VERSION, 2: int(message.message_type), 3: message.body()})


def decode(data: bytes) -> Message:
    """One card message from hostile bytes; only :class:`Malformed` or
    :class:`~symmetric_card.errors.UnsupportedSuite` for anything else."""
    try:
        envelope = loads(data, max_size=MAX_CARD_MESSAGE)
    except E2EError:
        raise Malformed("not a deterministic CBOR card message") from None
    envelope = _keys(envelope, {1, 2, 3}, "envelope")
    if _field(envelope, 1, int, "version") != PROTOCOL_VERSION:
        raise Malformed("unknown protocol version")
    kind = _field(envelope, 2, int, "message type")
    if kind == MessageType.CHALLENGE:
        return CardChallenge.from_body(envelope.get(3))
    if kind in (MessageType.HELLO, MessageType.TRANSACTION, MessageType.RESULT):
        return SealedMessage.from_body(MessageType(kind), envelope.get(3))
    if kind == MessageType.ERROR:
        return CardErrorMessage.from_body(envelope.get(3))
    raise Malformed("not a card message type")


def decode_plain(data: bytes) -> Any:
    """A decrypted plaintext: strict CBOR too (the AEAD proves who made it, not that it is
    well formed)."""
    try:
        return loads(data, max_size=MAX_PLAINTEXT)
    except E2EError:
        raise Malformed("the plaintext is not deterministic CBOR") from None


@dataclass(frozen=True, slots=True)
class CardInfo:
    """What the card tells the server about itself (seed s1, s33): card number, certificate
    number, issue time and the user the card is bound to."""

    card_number: str
    certificate_number: str
    issue_time: int
    bound_user: str

    def __post_init__(self) -> None:
        if not is_card_number(self.card_number):
            raise Malformed("a card number is 16 digits with a valid Luhn check digit")
        body = self.body()
        _text(body, 2, "certificate number", 1, 32)
        _text(body, 4, "bound user", 1, 64)
        _check_time(self.issue_time, "issue time")

    def body(self) -> dict[int, Any]:
        return {1: self.card_number, 2: self.certificate_number, 3: self.issue_time,
                4: self.bound_user}

    def encode(self) -> bytes:
        return dumps(self.body())

    @classmethod
    def decode(cls, data: bytes) -> CardInfo:
        body = _keys(decode_plain(data), {1, 2, 3, 4}, "card info")
        return cls(_text(body, 1, "card number", 16, 16), _text(body, 2, "certificate", 1, 32),
                   _uint(body, 3, "issue time", 1, MAX_TIME_FACTOR - 1),
                   _text(body, 4, "bound user", 1, 64))


def _is_currency(value: str) -> bool:
    return len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()


@dataclass(frozen=True, slots=True)
class TransactionInfo:
    """What the server asks the card to approve (seed s33): transaction id, time, place,
    amount, payee, and the card and user it is for."""

    transaction_id: bytes
    amount_minor: int
    currency: str
    payee: str
    transaction_time: int
    place: str
    card_number: str
    bound_user: str

    def __post_init__(self) -> None:
        if len(self.transaction_id) != TRANSACTION_ID_SIZE:
            raise Malformed("a transaction id is 16 bytes")
        if not 0 <= self.amount_minor <= MAX_AMOUNT:
            raise Malformed("amount out of range")
        if not _is_currency(self.currency):
            raise Malformed("currency is three letters A-Z")
        if not is_card_number(self.card_number):
            raise Malformed("a card number is 16 digits with a valid Luhn check digit")
        body = self.body()
        _text(body, 4, "payee", 1, 64)
        _text(body, 6, "place", 0, 64)
        _text(body, 8, "bound user", 1, 64)
        _check_time(self.transaction_time, "transaction time")

    def body(self) -> dict[int, Any]:
        return {1: self.transaction_id, 2: self.amount_minor, 3: self.currency, 4: self.payee,
                5: self.transaction_time, 6: self.place, 7: self.card_number,
                8: self.bound_user}

    def encode(self) -> bytes:
        return dumps(self.body())

    @classmethod
    def decode(cls, data: bytes) -> TransactionInfo:
        body = _keys(decode_plain(data), set(range(1, 9)), "transaction info")
        return cls(_sized(body, 1, "transaction id", TRANSACTION_ID_SIZE),
                   _uint(body, 2, "amount", 0, MAX_AMOUNT), _text(body, 3, "currency", 3, 3),
                   _text(body, 4, "payee", 1, 64),
                   _uint(body, 5, "transaction time", 1, MAX_TIME_FACTOR - 1),
                   _text(body, 6, "place", 0, 64), _text(body, 7, "card number", 16, 16),
                   _text(body, 8, "bound user", 1, 64))


@dataclass(frozen=True, slots=True)
class ResultBody:
    """The card's answer inside a card result."""

    decision: Decision
    user_verification: UserVerification

    def encode(self) -> bytes:
        return dumps({1: int(self.decision), 2: int(self.user_verification)})

    @classmethod
    def decode(cls, data: bytes) -> ResultBody:
        body = _keys(decode_plain(data), {1, 2}, "result")
        try:
            return cls(Decision(_uint(body, 1, "decision", 1, 3)),
                       UserVerification(_uint(body, 2, "user verification", 0, 1)))
        except ValueError:
            raise Malformed("unknown decision or user verification") from None
