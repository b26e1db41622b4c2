"""The messages of flow F-E: strict canonical CBOR, exact keys, exact signed bytes.

::

    consumption code  {1: version, 2: merchant certificate, 3: amount, 4: currency,
                       5: perturbation (16 bytes), 6: issued at, 7: expires at, 8: signature}
        signed by the merchant's unit: CONSUMPTION_DOMAIN || CBOR(fields 1..7)
    payment content   {1: version, 2: merchant certificate ref, 3: merchant account,
                       4: amount, 5: currency, 6: perturbation, 7: payer account,
                       8: payer certificate, 9: verification, ? 10: features, 11: issued at,
                       12: expires at, 13: signature}
        signed by the payer's unit: PAYMENT_DOMAIN || CBOR(fields 1..12)
    payment code      {1: version, 2: suite, 3: seal(merchant key, PAYMENT_PURPOSE, content)}
    forward           {1: version, 2: payment content (its bytes), ? 3: features,
                       4: settlement certificate ref, 5: signature}
        signed by the merchant's unit: FORWARD_DOMAIN || CBOR(fields 1..4)
    settlement request {1: version, 2: suite, 3: merchant certificate,
                        4: seal(server key, SETTLEMENT_PURPOSE, forward)}

docs/dynamic-codes.md has the CDDL (docs/cddl/dynamic-code.cddl). The signing tags are
distinct from each other, from the encryption purposes and from every other layer's.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads, typed_field
from e2e.errors import E2EError, MalformedMessage
from e2e.messages import MAX_AMOUNT_MINOR, is_account_name, is_currency
from e2e.suites import PrivateKey, PublicKey, Suite

from .certificates import MAX_DEVICE_CERT, REF_SIZE
from .errors import BadDynamicSignature, MalformedDynamicCode, UnsupportedDynamicCode
from .fingerprint import FEATURE_SIZE

__all__ = ["CONSUMPTION_DOMAIN", "FORWARD_DOMAIN", "MAX_LIFETIME", "PAYMENT_DOMAIN",
           "PERTURBATION_SIZE", "SIGNING_DOMAINS", "VERSION", "ConsumptionCode", "Forward",
           "PaymentCode", "PaymentContent", "SettlementRequest", "Verification"]

VERSION = 1
PERTURBATION_SIZE = 16
MAX_LIFETIME = 600
"""A consumption or payment code lives at most ten minutes: it is made at the till."""
MAX_SIGNATURE = 80
MAX_TIME = 2**40
MAX_CIPHERTEXT = 1536
MAX_MESSAGE = 2048

CONSUMPTION_DOMAIN = b"blegw/dynamic-code/consumption/v1\x00"
PAYMENT_DOMAIN = b"blegw/dynamic-code/payment/v1\x00"
FORWARD_DOMAIN = b"blegw/dynamic-code/forward/v1\x00"
SIGNING_DOMAINS = (CONSUMPTION_DOMAIN, PAYMENT_DOMAIN, FORWARD_DOMAIN)



class Verification(IntEnum):
    FEATURES = 1
    """The seed's way: captured features travel (encrypted) to the settlement server, which
    matches them against the owner's enrolled template."""
    DEVICE = 2
    """FIDO's way: the payer's unit matched the finger itself and says so under its
    signature; no features leave it."""


def _field(body: dict[Any, Any], key: int, kind: type, name: str) -> Any:
    return typed_field(body, key, kind, name, MalformedDynamicCode)


def _map(data: bytes, keys: set[int], optional: set[int], name: str) -> dict[Any, Any]:
    try:
        body = loads(data, max_size=MAX_MESSAGE)
    except MalformedMessage as exc:
        raise MalformedDynamicCode(f"{name}: {exc}") from None
    if not isinstance(body, dict) or not keys <= set(body) <= keys | optional:
        raise MalformedDynamicCode(f"{name}: keys {sorted(keys)} (and {sorted(optional)})")
    if _field(body, 1, int, "version") != VERSION:
        raise UnsupportedDynamicCode(f"{name}: version {VERSION} only")
    return body


def _bytes(body: dict[Any, Any], key: int, name: str, low: int, high: int) -> bytes:
    value: bytes = _field(body, key, bytes, name)
    if not low <= len(value) <= high:
        raise MalformedDynamicCode(f"{name}: {low}..{high} bytes")
    return value


def _amount(body: dict[Any, Any], key: int, currency_key: int) -> tuple[int, str]:
    amount: int = _field(body, key, int, "amount")
    currency: str = _field(body, currency_key, str, "currency")
    if not 0 < amount <= MAX_AMOUNT_MINOR:
        raise MalformedDynamicCode(f"amount: 1..{MAX_AMOUNT_MINOR} minor units")
    if not is_currency(currency):
        raise MalformedDynamicCode("currency: an ISO 4217 code")
    return amount, currency


def _times(body: dict[Any, Any], issued_key: int, expires_key: int) -> tuple[int, int]:
    issued: int = _field(body, issued_key, int, "issued at")
    expires: int = _field(body, expires_key, int, "expires at")
    if not 0 <= issued < expires <= issued + MAX_LIFETIME or expires > MAX_TIME:
        raise MalformedDynamicCode(f"times: issued < expires <= issued + {MAX_LIFETIME}")
    return issued, expires


def _account(body: dict[Any, Any], key: int, name: str) -> str:
    value: str = _field(body, key, str, name)
    if not is_account_name(value):
        raise MalformedDynamicCode(f"{name}: not an account name")
    return value


def _suite(body: dict[Any, Any], key: int) -> Suite:
    try:
        return Suite.parse(_field(body, key, int, "suite"))
    except E2EError:
        raise UnsupportedDynamicCode("unknown suite") from None


def _verify(key: PublicKey, domain: bytes, signature: bytes, body: bytes, what: str) -> None:
    if not key.verify(signature, domain + body):
        raise BadDynamicSignature(f"the {what} signature does not verify")


@dataclass(frozen=True, slots=True)
class ConsumptionCode:
    merchant_certificate: bytes
    amount_minor: int
    currency: str
    perturbation: bytes
    issued_at: int
    expires_at: int
    signature: bytes = b""

    def body(self) -> bytes:
        return dumps({1: VERSION, 2: self.merchant_certificate, 3: self.amount_minor,
                      4: self.currency, 5: self.perturbation, 6: self.issued_at,
                      7: self.expires_at})

    def sign(self, key: PrivateKey) -> ConsumptionCode:
        return dataclasses.replace(self, signature=key.sign(CONSUMPTION_DOMAIN + self.body()))

    def verify(self, key: PublicKey) -> None:
        _verify(key, CONSUMPTION_DOMAIN, self.signature, self.body(), "consumption code")

    def encode(self) -> bytes:
        return dumps({1: VERSION, 2: self.merchant_certificate, 3: self.amount_minor,
                      4: self.currency, 5: self.perturbation, 6: self.issued_at,
                      7: self.expires_at, 8: self.signature})

    @classmethod
    def decode(cls, data: bytes) -> ConsumptionCode:
        body = _map(data, set(range(1, 9)), set(), "consumption code")
        amount, currency = _amount(body, 3, 4)
        issued, expires = _times(body, 6, 7)
        return cls(_bytes(body, 2, "merchant certificate", 1, MAX_DEVICE_CERT), amount,
                   currency, _bytes(body, 5, "perturbation", PERTURBATION_SIZE,
                                    PERTURBATION_SIZE), issued, expires,
                   _bytes(body, 8, "signature", 1, MAX_SIGNATURE))


@dataclass(frozen=True, slots=True)
class PaymentContent:
    merchant_ref: bytes
    merchant_account: str
    amount_minor: int
    currency: str
    perturbation: bytes
    payer_account: str
    payer_certificate: bytes
    verification: Verification
    features: bytes | None
    issued_at: int
    expires_at: int
    signature: bytes = b""

    def _fields(self) -> dict[int, Any]:
        body: dict[int, Any] = {1: VERSION, 2: self.merchant_ref, 3: self.merchant_account,
                                4: self.amount_minor, 5: self.currency, 6: self.perturbation,
                                7: self.payer_account, 8: self.payer_certificate,
                                9: int(self.verification), 11: self.issued_at,
                                12: self.expires_at}
        if self.features is not None:
            body[10] = self.features
        return body

    def body(self) -> bytes:
        return dumps(self._fields())

    def sign(self, key: PrivateKey) -> PaymentContent:
        return dataclasses.replace(self, signature=key.sign(PAYMENT_DOMAIN + self.body()))

    def verify(self, key: PublicKey) -> None:
        _verify(key, PAYMENT_DOMAIN, self.signature, self.body(), "payer's")

    def encode(self) -> bytes:
        return dumps({**self._fields(), 13: self.signature})

    def payment_id(self) -> bytes:
        """The payment's single-use id at the platform: SHA-256 of the payer's signed bytes
        (a new encryption of the same content is still the same payment)."""
        return hashlib.sha256(PAYMENT_DOMAIN + self.body()).digest()

    @classmethod
    def decode(cls, data: bytes) -> PaymentContent:
        keys = {1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13}
        body = _map(data, keys, {10}, "payment content")
        amount, currency = _amount(body, 4, 5)
        issued, expires = _times(body, 11, 12)
        try:
            verification = Verification(_field(body, 9, int, "verification"))
        except ValueError:
            raise MalformedDynamicCode("verification: 1 (features) or 2 (device)") from None
        features = _bytes(body, 10, "features", FEATURE_SIZE, FEATURE_SIZE) \
            if 10 in body else None
        if features is not None and verification is not Verification.FEATURES:
            raise MalformedDynamicCode("features travel only with verification 1")
        return cls(_bytes(body, 2, "merchant ref", REF_SIZE, REF_SIZE),
                   _account(body, 3, "merchant account"), amount, currency,
                   _bytes(body, 6, "perturbation", PERTURBATION_SIZE, PERTURBATION_SIZE),
                   _account(body, 7, "payer account"),
                   _bytes(body, 8, "payer certificate", 1, MAX_DEVICE_CERT), verification,
                   features, issued, expires, _bytes(body, 13, "signature", 1, MAX_SIGNATURE))


@dataclass(frozen=True, slots=True)
class PaymentCode:
    suite: Suite
    ciphertext: bytes

    def encode(self) -> bytes:
        return dumps({1: VERSION, 2: int(self.suite), 3: self.ciphertext})

    @classmethod
    def decode(cls, data: bytes) -> PaymentCode:
        body = _map(data, {1, 2, 3}, set(), "payment code")
        return cls(_suite(body, 2), _bytes(body, 3, "ciphertext", 1, MAX_CIPHERTEXT))


@dataclass(frozen=True, slots=True)
class Forward:
    payment: bytes
    features: bytes | None
    server_ref: bytes
    signature: bytes = b""

    def _fields(self) -> dict[int, Any]:
        body: dict[int, Any] = {1: VERSION, 2: self.payment, 4: self.server_ref}
        if self.features is not None:
            body[3] = self.features
        return body

    def body(self) -> bytes:
        return dumps(self._fields())

    def sign(self, key: PrivateKey) -> Forward:
        return dataclasses.replace(self, signature=key.sign(FORWARD_DOMAIN + self.body()))

    def verify(self, key: PublicKey) -> None:
        _verify(key, FORWARD_DOMAIN, self.signature, self.body(), "merchant's")

    def encode(self) -> bytes:
        return dumps({**self._fields(), 5: self.signature})

    @classmethod
    def decode(cls, data: bytes) -> Forward:
        body = _map(data, {1, 2, 4, 5}, {3}, "forward")
        features = _bytes(body, 3, "features", FEATURE_SIZE, FEATURE_SIZE) \
            if 3 in body else None
        return cls(_bytes(body, 2, "payment", 1, MAX_MESSAGE), features,
                   _bytes(body, 4, "settlement ref", REF_SIZE, REF_SIZE),
                   _bytes(body, 5, "signature", 1, MAX_SIGNATURE))


@dataclass(frozen=True, slots=True)
class SettlementRequest:
    suite: Suite
    merchant_certificate: bytes
    ciphertext: bytes

    def encode(self) -> bytes:
        return dumps({1: VERSION, 2: int(self.suite), 3: self.merchant_certificate,
                      4: self.ciphertext})

    @classmethod
    def decode(cls, data: bytes) -> SettlementRequest:
        body = _map(data, {1, 2, 3, 4}, set(), "settlement request")
        return cls(_suite(body, 2), _bytes(body, 3, "merchant certificate", 1,
                                           MAX_DEVICE_CERT),
                   _bytes(body, 4, "ciphertext", 1, MAX_CIPHERTEXT + 512))
