"""Errors of the symmetric-key card protocol, each with a code that can cross the wire.

The codes that mean the same as the end-to-end layer's (docs/e2e-messages.md) keep its numbers
(1 malformed, 2 unsupported suite, 3 expired, 4 bad integrity, 5 wrong request, 6 replay,
8 busy, 10 user timeout); the card's own refusals take 32 and up, so a platform that reports
``card:<name>`` never confuses one for the other.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "Busy",
    "CardError",
    "CardErrorCode",
    "Expired",
    "Malformed",
    "OutOfOrder",
    "Replay",
    "StaleTimeFactor",
    "Tampered",
    "UnknownKeyVersion",
    "UnsupportedSuite",
    "UserTimeout",
    "WrongCard",
    "WrongChannel",
    "WrongKey",
    "WrongTransaction",
    "error_class",
]


class CardErrorCode(IntEnum):
    MALFORMED = 1
    UNSUPPORTED_SUITE = 2
    EXPIRED = 3
    TAMPERED = 4
    WRONG_TRANSACTION = 5
    REPLAY = 6
    BUSY = 8
    USER_TIMEOUT = 10
    WRONG_KEY = 32
    STALE_TIME_FACTOR = 33
    WRONG_CHANNEL = 34
    WRONG_CARD = 35
    UNKNOWN_KEY_VERSION = 36
    OUT_OF_ORDER = 37


class CardError(Exception):
    """Base of every refusal; ``code`` is what crosses the wire. Messages never quote bytes an
    attacker sent, and never key material."""

    code: CardErrorCode = CardErrorCode.MALFORMED


class Malformed(CardError, ValueError):
    """Bytes that are not a valid card message: not deterministic CBOR, unknown or missing
    keys, wrong types or sizes."""

    code = CardErrorCode.MALFORMED


class UnsupportedSuite(CardError):
    code = CardErrorCode.UNSUPPORTED_SUITE


class Expired(CardError):
    """A result that came after the session's deadline."""

    code = CardErrorCode.EXPIRED


class Tampered(CardError):
    """The verification code matched (right key) but the AEAD tag did not: the ciphertext,
    the nonce or a header field was altered on the way."""

    code = CardErrorCode.TAMPERED


class WrongTransaction(CardError):
    """A result for another transaction than the one this session sent."""

    code = CardErrorCode.WRONG_TRANSACTION


class Replay(CardError):
    """A message whose process key (card, channel id, time factor) was already used."""

    code = CardErrorCode.REPLAY


class Busy(CardError):
    """The replay memory is full of unexpired entries; refusing is safer than forgetting."""

    code = CardErrorCode.BUSY


class UserTimeout(CardError):
    """The owner did not press the button before the session's deadline."""

    code = CardErrorCode.USER_TIMEOUT


class WrongKey(CardError):
    """The verification code does not match the receiver's own: wrong card key, key version,
    time factor or channel id; nothing is decrypted."""

    code = CardErrorCode.WRONG_KEY


class StaleTimeFactor(CardError):
    """A time factor outside the accepted window (too old, or too far ahead)."""

    code = CardErrorCode.STALE_TIME_FACTOR


class WrongChannel(CardError):
    """A message made for another link than the one it arrived on."""

    code = CardErrorCode.WRONG_CHANNEL


class WrongCard(CardError):
    """A message for or from another card than the one expected."""

    code = CardErrorCode.WRONG_CARD


class UnknownKeyVersion(CardError):
    """A key version the issuer does not hold (never made, or retired)."""

    code = CardErrorCode.UNKNOWN_KEY_VERSION


class OutOfOrder(CardError):
    """A message the session's state does not expect now (a second request, a result before
    the request)."""

    code = CardErrorCode.OUT_OF_ORDER


def error_class(code: CardErrorCode) -> type[CardError]:
    """The refusal a wire code stands for (a card error message read by the server)."""
    for cls in CardError.__subclasses__():
        if cls.code is code:
            return cls
    return CardError
