"""Errors of the end-to-end layer, with codes that cross the wire and reach the platform's
outcomes ("rejected: bad signature", ...)."""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "BadSignature",
    "CertificateInvalid",
    "E2EError",
    "ErrorCode",
    "Expired",
    "MalformedMessage",
    "Replay",
    "UnsupportedSuite",
    "UntrustedRequest",
    "VerificationError",
    "WrongRequest",
]


class ErrorCode(IntEnum):
    MALFORMED = 1
    UNSUPPORTED_SUITE = 2
    EXPIRED = 3
    BAD_SIGNATURE = 4
    WRONG_REQUEST = 5
    REPLAY = 6
    CERTIFICATE_INVALID = 7
    BUSY = 8
    CANCELLED = 9
    USER_TIMEOUT = 10
    UNTRUSTED_REQUEST = 11
    DECLINED = 12
    """The owner refused to sign a transaction code (flow F-D); a confirmation's refusal is a
    signed DECLINE instead."""
    INTERNAL = 127


class E2EError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL


class MalformedMessage(E2EError, ValueError):
    """Bytes that are not a valid message: garbage CBOR, wrong types, missing fields, or a
    non-canonical encoding where bytes are signed."""

    code = ErrorCode.MALFORMED


class UnsupportedSuite(E2EError):
    code = ErrorCode.UNSUPPORTED_SUITE


class VerificationError(E2EError):
    """A response that must not be trusted."""


class BadSignature(VerificationError):
    code = ErrorCode.BAD_SIGNATURE


class WrongRequest(VerificationError):
    code = ErrorCode.WRONG_REQUEST


class Expired(VerificationError):
    code = ErrorCode.EXPIRED


class Replay(VerificationError):
    code = ErrorCode.REPLAY


class CertificateInvalid(VerificationError):
    code = ErrorCode.CERTIFICATE_INVALID


class UntrustedRequest(VerificationError):
    """A confirmation request the platform did not vouch for (no or a bad platform signature,
    a platform certificate the module's CA root does not certify): never shown to the owner."""

    code = ErrorCode.UNTRUSTED_REQUEST
