"""Module-signed transaction codes (flow F-D): payload, signed bytes, text form, checks.

Sans-IO: no asyncio, sockets, files or images here (rendering and reading QR images is the
``transaction_code_image`` adapter). See docs/transaction-codes.md.
"""

from __future__ import annotations

from .app import (
    ModuleRefused,
    code_request,
    countersign_request,
    read_code_answer,
    read_countersign_answer,
)
from .checks import CLOCK_SKEW, CodePayment, Resolver, check_countersigned, check_presented, parties
from .errors import (
    AmountMismatch,
    BadCodeSignature,
    BadScannerSignature,
    CodeError,
    CodeExpired,
    MalformedCode,
    NotYetValid,
    PartiesRefused,
    ScannerNotEnrolled,
    UnknownSigner,
    UnsignedCodeRefused,
    UnsupportedCode,
)
from .payload import (
    CODE_DOMAINS,
    COUNTERSIGN_DOMAIN,
    MAX_LIFETIME,
    RANDOM_SIZE,
    SIGNER_REF_SIZE,
    VERSION,
    CodeKind,
    CountersignedCode,
    TransactionCode,
    signer_reference,
)
from .text import PREFIX, from_text, to_text

__all__ = [
    "CLOCK_SKEW",
    "CODE_DOMAINS",
    "COUNTERSIGN_DOMAIN",
    "MAX_LIFETIME",
    "PREFIX",
    "RANDOM_SIZE",
    "SIGNER_REF_SIZE",
    "VERSION",
    "AmountMismatch",
    "BadCodeSignature",
    "BadScannerSignature",
    "CodeError",
    "CodeExpired",
    "CodeKind",
    "CodePayment",
    "CountersignedCode",
    "MalformedCode",
    "ModuleRefused",
    "NotYetValid",
    "PartiesRefused",
    "Resolver",
    "ScannerNotEnrolled",
    "TransactionCode",
    "UnknownSigner",
    "UnsignedCodeRefused",
    "UnsupportedCode",
    "check_countersigned",
    "check_presented",
    "code_request",
    "countersign_request",
    "from_text",
    "parties",
    "read_code_answer",
    "read_countersign_answer",
    "signer_reference",
    "to_text",
]
