"""The platform's checks of a scanned code, in the order the seed gives, without I/O.

The caller (the platform) resolves certificates: ``resolve(account, suite, signer_ref)`` returns
the verifying key of the module enrolled for ``account`` whose certificate ``signer_ref`` names,
or raises :class:`~transaction_code.errors.UnknownSigner`. Order of checks for a countersigned
request:

1. the scanner's module is enrolled for the scanner's account (ScannerNotEnrolled) and its
   signature verifies over the exact request bytes (BadScannerSignature);
2. the embedded code decodes; its signer is enrolled for the code's account (UnknownSigner)
   and its signature verifies (BadCodeSignature); an unsigned collection code has neither, and
   the caller decides whose unsigned codes it pays (``CodePayment.code_signed``);
3. the code is inside its validity window (NotYetValid, CodeExpired);
4. the amount: when the code fixed one, the request must carry exactly it (AmountMismatch);
5. the parties: payer and payee differ (PartiesRefused).

Single use is the ledger's: :meth:`TransactionCode.code_id` is recorded under a unique
constraint in the same database transaction as the transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from e2e.suites import PublicKey, Suite

from .errors import AmountMismatch, CodeExpired, NotYetValid, PartiesRefused
from .payload import CodeKind, CountersignedCode, TransactionCode

__all__ = ["CLOCK_SKEW", "CodePayment", "Resolver", "check_countersigned", "check_presented",
           "parties"]

CLOCK_SKEW = 30
"""Seconds a module's clock may run ahead of the platform's."""

Resolver = Callable[[str, Suite, bytes], PublicKey]


@dataclass(frozen=True, slots=True)
class CodePayment:
    """What a verified code pays: once, from payer to payee."""

    code: TransactionCode
    code_id: bytes
    payer: str
    payee: str
    amount_minor: int
    currency: str
    scanner_signed: bool
    """Whether the scanner's own module countersigned (False: API credentials only)."""
    code_signed: bool
    """Whether the generating side's module signed the code (False: an unsigned collection
    code, authorised by the payer's countersignature alone)."""


def parties(code: TransactionCode, scanner_account: str) -> tuple[str, str]:
    """(payer, payee): a payment code's account pays the scanner; a collection code's is paid."""
    if code.kind is CodeKind.PAYMENT:
        return code.account, scanner_account
    return scanner_account, code.account


def _check_code(code: TransactionCode, resolve: Resolver, now: int) -> None:
    if code.signer is not None:
        code.verify(resolve(code.account, code.suite, code.signer))
    if code.issued_at > now + CLOCK_SKEW:
        raise NotYetValid("the code was made in the future")
    if now > code.expires_at:
        raise CodeExpired("the code has expired")


def _bind(code: TransactionCode, account: str, amount_minor: int, currency: str,
          scanner_signed: bool) -> CodePayment:
    if code.amount_minor is not None and (amount_minor, currency) != (code.amount_minor,
                                                                      code.currency):
        raise AmountMismatch("the amount differs from the amount the code fixed")
    payer, payee = parties(code, account)
    if payer == payee:
        raise PartiesRefused("payer and payee are the same account")
    return CodePayment(code, code.code_id(), payer, payee, amount_minor, currency,
                       scanner_signed, code.signed)


def check_countersigned(request: CountersignedCode, resolve: Resolver, *,
                        now: int) -> CodePayment:
    """Verify a countersigned request; the scanner's signature first (see module doc)."""
    request.verify(resolve(request.account, request.suite, request.signer))
    if request.signed_at > now + CLOCK_SKEW:
        raise NotYetValid("the countersignature was made in the future")
    code = request.scanned
    _check_code(code, resolve, now)
    if request.signed_at > code.expires_at + CLOCK_SKEW:
        raise CodeExpired("the code was countersigned after it expired")
    return _bind(code, request.account, request.amount_minor, request.currency, True)


def check_presented(code_bytes: bytes, account: str, amount_minor: int, currency: str,
                    resolve: Resolver, *, now: int) -> CodePayment:
    """Verify a code presented by a scanner with no module (an authenticated terminal).

    Only a payment code may be presented so: its payer signed; a collection code scanned this
    way would debit a payer nobody asked (PartiesRefused).
    """
    code = TransactionCode.decode(code_bytes)
    if code.kind is not CodeKind.PAYMENT:
        raise PartiesRefused("a collection code is paid only with the payer's countersignature")
    _check_code(code, resolve, now)
    return _bind(code, account, amount_minor, currency, False)
