"""The key hierarchy: issuer master key -> card key (at issue) -> process key (per message).

* **Card key** (issuer side, once per card and key version): the PBOC/EMV block-cipher
  diversification (EMV Book 2 Annex A1.4.1 option A, its two halves in one 16-byte block as
  PBOC 3.0 does for SM4): ``card_key = E_IMK(D || NOT D)``, one block of the suite's cipher in
  ECB, where ``D`` is the 16-digit card number in packed BCD (8 bytes) and ``NOT D`` its bitwise
  complement. The issuer keeps one master key per key version and suite, not a key per card,
  and an HSM performs exactly this operation natively.
* **Process key** (both sides, per message): HKDF (RFC 5869) with the suite's hash,
  ``salt = channel id`` (16 bytes), ``IKM = card key``, ``info = "blegw/card-process-key/v1"
  || u8 suite || u8 message type || u8 key version || card ref (8 bytes) || u64be(time
  factor)``, 24 bytes out: the first 16 are the AEAD key, the last 8 the verification code.
  Binding the message type keeps the directions' keys apart; binding the card ref and key
  version keeps a code made for one card from passing for another.

Key bytes live in :class:`CardKey` and :class:`ProcessKey`, whose ``repr`` shows none of them.
"""

from __future__ import annotations

import hmac
import struct
from dataclasses import dataclass, field

from .suites import KEY_SIZE, CardSuite, ecb_encrypt_block, hkdf

__all__ = ["CARD_NUMBER_DIGITS", "CARD_REF_SIZE", "CHANNEL_ID_SIZE", "CODE_SIZE",
           "PROCESS_KEY_INFO", "CardKey", "ProcessKey", "diversification_block",
           "diversify", "is_card_number", "luhn_digit", "luhn_ok", "process_key"]

CARD_NUMBER_DIGITS = 16
CARD_REF_SIZE = 8
CHANNEL_ID_SIZE = 16
CODE_SIZE = 8
PROCESS_KEY_INFO = b"blegw/card-process-key/v1"
MAX_TIME_FACTOR = 2**40


class CardKey:
    """A card's 16-byte symmetric key. Its bytes leave only through :meth:`material`, for the
    card's own 0600 state file and the KDF; ``repr`` and ``str`` never show them."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("a card key is 16 bytes")
        self._key = bytes(key)

    def material(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "CardKey(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class ProcessKey:
    """One message's AEAD key and the verification code the seed sends beside it."""

    key: bytes = field(repr=False)
    code: bytes = field(repr=False)

    def code_matches(self, received: bytes) -> bool:
        """Constant-time comparison: the time it takes says nothing about how many bytes of
        a guessed code were right."""
        return hmac.compare_digest(self.code, received)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_digit(partial: str) -> str:
    """The check digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = ord(ch) - 48
        if i % 2 == 0:                      # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def is_card_number(value: object) -> bool:
    """16 ASCII digits whose last is the Luhn check digit (ISO/IEC 7812)."""
    return (isinstance(value, str) and len(value) == CARD_NUMBER_DIGITS
            and value.isascii() and value.isdigit() and luhn_ok(value))


def diversification_block(card_number: str) -> bytes:
    """``D || NOT D``: the card number in packed BCD and its complement (16 bytes)."""
    if not is_card_number(card_number):
        raise ValueError("a card number is 16 digits with a valid Luhn check digit")
    d = bytes.fromhex(card_number)                      # packed BCD: two digits a byte
    return d + bytes(b ^ 0xFF for b in d)


def diversify(suite: CardSuite, master: bytes, card_number: str) -> CardKey:
    """The card key of ``card_number`` under the issuer master key ``master``."""
    return CardKey(ecb_encrypt_block(suite, master, diversification_block(card_number)))


def process_key_info(suite: CardSuite, message_type: int, key_version: int, card_ref: bytes,
                     time_factor: int) -> bytes:
    if len(card_ref) != CARD_REF_SIZE or not 0 <= key_version <= 0xFF \
            or not 0 <= message_type <= 0xFF or not 0 < time_factor < MAX_TIME_FACTOR:
        raise ValueError("process key inputs out of range")
    return (PROCESS_KEY_INFO + bytes([suite, message_type, key_version]) + card_ref
            + struct.pack(">Q", time_factor))


def process_key(suite: CardSuite, card_key: CardKey, *, message_type: int, key_version: int,
                card_ref: bytes, channel_id: bytes, time_factor: int) -> ProcessKey:
    """Diversify the card key with the time factor and the channel id (seed steps s11, s31,
    s41, s51)."""
    if len(channel_id) != CHANNEL_ID_SIZE:
        raise ValueError("a channel id is 16 bytes")
    out = hkdf(suite, card_key.material(), salt=channel_id,
               info=process_key_info(suite, message_type, key_version, card_ref, time_factor),
               length=KEY_SIZE + CODE_SIZE)
    return ProcessKey(out[:KEY_SIZE], out[KEY_SIZE:])
