"""Errors of the transaction-code layer, each with the code that crosses the wire.

The platform answers a scanning terminal with ``{"error": <code>}`` and the module answers a
terminal with the same names, so every refusal is told apart without parsing text.
"""

from __future__ import annotations

__all__ = [
    "AmountMismatch",
    "BadCodeSignature",
    "BadScannerSignature",
    "CodeError",
    "CodeExpired",
    "MalformedCode",
    "NotYetValid",
    "PartiesRefused",
    "ScannerNotEnrolled",
    "UnknownSigner",
    "UnsignedCodeRefused",
    "UnsupportedCode",
]


class CodeError(Exception):
    """A transaction code or a countersigned request that must not be acted on."""

    code = "code_refused"


class MalformedCode(CodeError, ValueError):
    """Bytes or text that are not a code: wrong CBOR, types, ranges, extra keys, bad text."""

    code = "malformed_code"


class UnsupportedCode(CodeError):
    """A version or signature suite this implementation does not know."""

    code = "unsupported_code"


class BadScannerSignature(CodeError):
    """The scanner's countersignature does not verify for these exact bytes."""

    code = "bad_scanner_signature"


class BadCodeSignature(CodeError):
    """The generating module's signature does not verify for the code's fields."""

    code = "bad_code_signature"


class CodeExpired(CodeError):
    """The code (or the countersignature) is past its expiry."""

    code = "code_expired"


class NotYetValid(CodeError):
    """The code says it was made in the future (beyond the allowed clock skew)."""

    code = "code_not_yet_valid"


class AmountMismatch(CodeError):
    """The countersigned amount or currency differs from the amount the code fixed."""

    code = "amount_mismatch"


class UnknownSigner(CodeError):
    """The generating module's certificate reference names no module enrolled for the code's
    account in the code's suite (revoked, another account's module, or never enrolled)."""

    code = "signer_not_enrolled"


class ScannerNotEnrolled(UnknownSigner):
    """The scanner's certificate reference names no module enrolled for the scanner's account."""

    code = "scanner_not_enrolled"


class UnsignedCodeRefused(CodeError):
    """An unsigned collection code whose account may not be paid so (not a registered
    merchant's)."""

    code = "unsigned_code_refused"


class PartiesRefused(CodeError):
    """The two accounts cannot be payer and payee of this code (the same account, or a
    scanner that may not collect with a payment code)."""

    code = "parties_refused"
