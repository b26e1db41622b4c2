"""The transaction code and its countersigned request: compact CBOR, exact signed bytes.

A **transaction code** is what a generating terminal shows as a QR code: first transaction
info (account, optional amount and currency, time, expiry, a 16-byte random) signed by the
terminal's secure module. Its ``kind`` says who generated it: a *payment* code is shown by a
payer (the scanner collects), a *collection* code by a payee (the scanner pays). A payee
without a module may show an **unsigned** collection code (no signer, no signature): only the
payer's countersignature then authorises the payment, and the platform pays such codes only
into a registered merchant's account. A payment code is always signed: without its payer's
signature nobody consented to the debit.

A **countersigned request** is what the scanning terminal sends to the platform: second
transaction info (the scanned code's exact bytes, which carry the first account and signature;
the scanner's account; the amount, from the code or entered by the scanner) signed by the
scanner's own module.

Signed bytes (document: docs/transaction-codes.md)::

    code:          "blegw/transaction-code/payment/v1" 0x00 || CBOR(code fields 1..10)
                   "blegw/transaction-code/collection/v1" 0x00 || CBOR(code fields 1..10)
    countersigned: "blegw/transaction-code/countersign/v1" 0x00 || CBOR(request fields 1..8)

The tags are distinct from each other and from the confirmation approval's
(``blegw/confirmation-response/v1``) and the platform's request signature
(``blegw/confirmation-request/v1``) from their first differing byte on, and none is a prefix of
another: a signature made for one purpose never verifies for another, with the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads, typed_field
from e2e.errors import MalformedMessage, UnsupportedSuite
from e2e.messages import MAX_ACCOUNT, MAX_AMOUNT_MINOR, is_currency
from e2e.suites import PrivateKey, PublicKey, Suite

from .errors import BadCodeSignature, BadScannerSignature, MalformedCode, UnsupportedCode

__all__ = [
    "CODE_DOMAINS",
    "COUNTERSIGN_DOMAIN",
    "MAX_CODE_SIZE",
    "MAX_LIFETIME",
    "MAX_REQUEST_SIZE",
    "RANDOM_SIZE",
    "SIGNER_REF_SIZE",
    "VERSION",
    "CodeKind",
    "CountersignedCode",
    "TransactionCode",
    "signer_reference",
]

VERSION = 1
SIGNER_REF_SIZE = 16
"""Bytes of SHA-256 of the enrolled certificate that name the signer (not the certificate
itself: 16 bytes instead of about 200 keep the QR code small)."""
RANDOM_SIZE = 16
MAX_SIGNATURE = 80
"""A DER ECDSA or SM2 signature is at most 72 bytes."""
MAX_LIFETIME = 86400
"""A code lives at most a day (a printed collection code at a till is renewed daily)."""
MAX_CODE_SIZE = 320
"""The longest valid code: 64-character account, amount, 72-byte signature, with room."""
MAX_REQUEST_SIZE = 768
MAX_TIME = 2**40

_ACCOUNT = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._@-]{{0,{MAX_ACCOUNT - 1}}}")
"""The platform's account rule (blegw_platform.ledger.ACCOUNT_RULE): printable ASCII only,
because the module shows the account to its owner before signing."""


class CodeKind(IntEnum):
    PAYMENT = 1
    """Shown by the payer; the scanner is the payee."""
    COLLECTION = 2
    """Shown by the payee; the scanner is the payer."""


CODE_DOMAINS = {
    CodeKind.PAYMENT: b"blegw/transaction-code/payment/v1\x00",
    CodeKind.COLLECTION: b"blegw/transaction-code/collection/v1\x00",
}
COUNTERSIGN_DOMAIN = b"blegw/transaction-code/countersign/v1\x00"


def signer_reference(certificate: bytes) -> bytes:
    """How a code names its signer: the first 16 bytes of SHA-256 of the enrolled certificate
    exactly as enrolled. The platform finds the certificate among the account's enrolments."""
    return hashlib.sha256(certificate).digest()[:SIGNER_REF_SIZE]


def _field(body: dict[Any, Any], key: int, kind: type, name: str) -> Any:
    return typed_field(body, key, kind, name, MalformedCode)


def _suite(value: int) -> Suite:
    if not 0 <= value <= 0xFFFF:
        raise MalformedCode("suite out of range")
    try:
        return Suite.parse(value)
    except UnsupportedSuite as exc:
        raise UnsupportedCode(str(exc)) from None


def _check_account(account: str, name: str) -> None:
    if _ACCOUNT.fullmatch(account) is None:
        raise MalformedCode(f"{name}: 1-{MAX_ACCOUNT} of A-Z a-z 0-9 . _ @ -, "
                            "starting with a letter or digit")


def _check_amount(amount: int, currency: str) -> None:
    if not 0 < amount <= MAX_AMOUNT_MINOR:
        raise MalformedCode(f"amount: 1..{MAX_AMOUNT_MINOR} minor units")
    if not is_currency(currency):
        raise MalformedCode("currency: an ISO 4217 code")


def _map(data: bytes, max_size: int, what: str) -> dict[int, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedCode(f"a {what} is bytes")
    try:
        raw = loads(bytes(data), max_size=max_size)
    except MalformedMessage as exc:
        raise MalformedCode(f"{what}: {exc}") from None
    if type(raw) is not dict or not all(type(k) is int for k in raw):
        raise MalformedCode(f"a {what} is a map with integer keys")
    version = _field(raw, 1, int, "version")
    if version != VERSION:
        raise UnsupportedCode("unsupported transaction-code version")
    return raw


@dataclass(frozen=True, slots=True)
class TransactionCode:
    """First transaction info and the generating module's signature over it."""

    kind: CodeKind
    suite: Suite
    """The generating module's suite (an unsigned code keeps one, for a uniform format)."""
    signer: bytes | None
    """None: an unsigned collection code."""
    account: str
    amount_minor: int | None
    currency: str | None
    issued_at: int
    expires_at: int
    random: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        if self.signer is None:
            if self.kind is not CodeKind.COLLECTION or self.signature:
                raise MalformedCode("only a collection code may be unsigned")
        elif len(self.signer) != SIGNER_REF_SIZE:
            raise MalformedCode(f"signer reference is {SIGNER_REF_SIZE} bytes")
        _check_account(self.account, "account")
        if (self.amount_minor is None) != (self.currency is None):
            raise MalformedCode("amount and currency come together or not at all")
        if self.amount_minor is not None and self.currency is not None:
            _check_amount(self.amount_minor, self.currency)
        if not 0 < self.issued_at < self.expires_at < MAX_TIME:
            raise MalformedCode("times: 0 < issued < expires")
        if self.expires_at - self.issued_at > MAX_LIFETIME:
            raise MalformedCode(f"a code lives at most {MAX_LIFETIME} s")
        if len(self.random) != RANDOM_SIZE:
            raise MalformedCode(f"the random is {RANDOM_SIZE} bytes")
        if len(self.signature) > MAX_SIGNATURE:
            raise MalformedCode("signature too long")

    def signed_fields(self) -> dict[int, Any]:
        fields: dict[int, Any] = {1: VERSION, 2: int(self.kind), 3: int(self.suite),
                                  5: self.account}
        if self.signer is not None:
            fields[4] = self.signer
        if self.amount_minor is not None:
            fields[6] = self.amount_minor
            fields[7] = self.currency
        fields.update({8: self.issued_at, 9: self.expires_at, 10: self.random})
        return fields

    def signed_bytes(self) -> bytes:
        """Exactly what the generating module signs (its kind's tag, then the fields)."""
        return CODE_DOMAINS[self.kind] + dumps(self.signed_fields())

    def code_id(self) -> bytes:
        """The single-use key: a hash of the signed bytes, never of the signature (an ECDSA
        signature can be re-encoded into another valid one; the signed fields cannot)."""
        return hashlib.sha256(b"blegw/transaction-code/id/v1\x00" + self.signed_bytes()).digest()

    @property
    def signed(self) -> bool:
        """Whether a module signed it (False: an unsigned collection code)."""
        return self.signer is not None

    def sign(self, key: PrivateKey) -> TransactionCode:
        if key.suite is not self.suite:
            raise MalformedCode("the key is of another suite than the code")
        if self.signer is None:
            raise MalformedCode("a code without a signer reference is not signed")
        return dataclasses.replace(self, signature=key.sign(self.signed_bytes()))

    def verify(self, public: PublicKey) -> None:
        """Raise :class:`BadCodeSignature` unless ``public`` signed exactly these fields."""
        if public.suite is not self.suite or not self.signature \
                or not public.verify(self.signature, self.signed_bytes()):
            raise BadCodeSignature("the code's signature does not verify")

    def encode(self) -> bytes:
        if self.signer is None:
            return dumps(self.signed_fields())
        if not self.signature:
            raise MalformedCode("a code naming a signer is never encoded without its signature")
        return dumps({**self.signed_fields(), 11: self.signature})

    @classmethod
    def decode(cls, data: bytes) -> TransactionCode:
        """Strict: deterministic CBOR, exact types, known keys only, every range checked."""
        raw = _map(data, MAX_CODE_SIZE, "transaction code")
        signed = 4 in raw or 11 in raw
        expected = {1, 2, 3, 5, 8, 9, 10} | ({4, 11} if signed else set()) \
            | ({6, 7} if 6 in raw or 7 in raw else set())
        if set(raw) != expected:
            raise MalformedCode("unknown or missing keys in the transaction code")
        kind_value = _field(raw, 2, int, "kind")
        if kind_value not in (1, 2):
            raise MalformedCode("kind: 1 (payment) or 2 (collection)")
        amount = _field(raw, 6, int, "amount") if 6 in raw else None
        currency = _field(raw, 7, str, "currency") if 7 in raw else None
        signer = _field(raw, 4, bytes, "signer") if signed else None
        signature = _field(raw, 11, bytes, "signature") if signed else b""
        if signed and not signature:
            raise MalformedCode("signature is empty")
        return cls(CodeKind(kind_value), _suite(_field(raw, 3, int, "suite")),
                   signer, _field(raw, 5, str, "account"), amount,
                   currency, _field(raw, 8, int, "issued at"), _field(raw, 9, int, "expires at"),
                   _field(raw, 10, bytes, "random"), signature)


@dataclass(frozen=True, slots=True)
class CountersignedCode:
    """Second transaction info and the scanner's module's signature over it.

    ``code`` holds the scanned code's exact bytes: the scanner's signature binds the first
    account, amount, random and signature together with its own account and amount, so neither
    half can be moved to another request.
    """

    code: bytes
    suite: Suite
    signer: bytes
    account: str
    amount_minor: int
    currency: str
    signed_at: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        if not 0 < len(self.code) <= MAX_CODE_SIZE:
            raise MalformedCode(f"the embedded code is 1..{MAX_CODE_SIZE} bytes")
        if len(self.signer) != SIGNER_REF_SIZE:
            raise MalformedCode(f"signer reference is {SIGNER_REF_SIZE} bytes")
        _check_account(self.account, "scanner account")
        _check_amount(self.amount_minor, self.currency)
        if not 0 < self.signed_at < MAX_TIME:
            raise MalformedCode("signing time out of range")
        if len(self.signature) > MAX_SIGNATURE:
            raise MalformedCode("signature too long")

    @property
    def scanned(self) -> TransactionCode:
        """The embedded code, decoded strictly (raises MalformedCode)."""
        return TransactionCode.decode(self.code)

    def signed_fields(self) -> dict[int, Any]:
        return {1: VERSION, 2: self.code, 3: int(self.suite), 4: self.signer, 5: self.account,
                6: self.amount_minor, 7: self.currency, 8: self.signed_at}

    def signed_bytes(self) -> bytes:
        return COUNTERSIGN_DOMAIN + dumps(self.signed_fields())

    def sign(self, key: PrivateKey) -> CountersignedCode:
        if key.suite is not self.suite:
            raise MalformedCode("the key is of another suite than the request")
        return dataclasses.replace(self, signature=key.sign(self.signed_bytes()))

    def verify(self, public: PublicKey) -> None:
        if public.suite is not self.suite or not self.signature \
                or not public.verify(self.signature, self.signed_bytes()):
            raise BadScannerSignature("the scanner's signature does not verify")

    def encode(self) -> bytes:
        if not self.signature:
            raise MalformedCode("an unsigned request is never encoded")
        return dumps({**self.signed_fields(), 9: self.signature})

    @classmethod
    def decode(cls, data: bytes) -> CountersignedCode:
        raw = _map(data, MAX_REQUEST_SIZE, "countersigned code")
        if set(raw) != set(range(1, 10)):
            raise MalformedCode("unknown or missing keys in the countersigned code")
        signature = _field(raw, 9, bytes, "signature")
        if not signature:
            raise MalformedCode("signature is empty")
        request = cls(_field(raw, 2, bytes, "code"), _suite(_field(raw, 3, int, "suite")),
                      _field(raw, 4, bytes, "signer"), _field(raw, 5, str, "account"),
                      _field(raw, 6, int, "amount"), _field(raw, 7, str, "currency"),
                      _field(raw, 8, int, "signed at"), signature)
        request.scanned  # noqa: B018  -- the embedded code must decode too
        return request
