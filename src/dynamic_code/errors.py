"""Errors of the dynamic-code layer (flow F-E), each with the code that crosses the wire.

The platform answers a merchant device with ``{"error": <code>}``; the units raise the same
classes, so a refusal is told apart without parsing text wherever it happens.
"""

from __future__ import annotations

__all__ = [
    "AmountMismatch",
    "BadDynamicSignature",
    "CodeExpired",
    "DecryptFailed",
    "DeviceCertificateRefused",
    "DeviceRevoked",
    "DynamicCodeError",
    "FingerprintMismatch",
    "MalformedDynamicCode",
    "NoFingerPresented",
    "OwnerBindingMismatch",
    "PerturbationMismatch",
    "StalePerturbation",
    "UnsupportedDynamicCode",
    "VerificationRefused",
    "WrongMerchant",
]


class DynamicCodeError(Exception):
    """A dynamic code, payment code or settlement request that must not be acted on."""

    code = "dynamic_code_refused"


class MalformedDynamicCode(DynamicCodeError, ValueError):
    """Bytes or text that are not such a message: CBOR, types, ranges, keys, text form."""

    code = "malformed_dynamic_code"


class UnsupportedDynamicCode(DynamicCodeError):
    """A version or suite this implementation does not know, or a suite the unit has no key
    for."""

    code = "unsupported_dynamic_code"


class DecryptFailed(DynamicCodeError):
    """The ciphertext is not for this unit's key or this purpose, or was altered."""

    code = "decrypt_failed"


class BadDynamicSignature(DynamicCodeError):
    """A unit's signature does not verify for these exact bytes and this purpose."""

    code = "bad_signature"


class DeviceCertificateRefused(DynamicCodeError):
    """A device certificate not issued by the trusted CA, expired, of the wrong role, or whose
    fields do not match what it is used for."""

    code = "device_certificate_refused"


class DeviceRevoked(DeviceCertificateRefused):
    """A device certificate the platform revoked (or never enrolled)."""

    code = "device_revoked"


class CodeExpired(DynamicCodeError):
    """A consumption or payment code past its expiry (or issued in the future)."""

    code = "dynamic_code_expired"


class StalePerturbation(DynamicCodeError):
    """The perturbation code was already used or expired: a consumption code replayed."""

    code = "stale_perturbation"


class PerturbationMismatch(DynamicCodeError):
    """The perturbation code is none the merchant's unit issued."""

    code = "perturbation_mismatch"


class AmountMismatch(DynamicCodeError):
    """The amount, currency or merchant account differs from what the merchant's unit asked
    for."""

    code = "amount_mismatch"


class WrongMerchant(DynamicCodeError):
    """A payment code made for another merchant device."""

    code = "wrong_merchant"


class FingerprintMismatch(DynamicCodeError):
    """The presented finger does not match the owner's enrolled template."""

    code = "fingerprint_mismatch"


class OwnerBindingMismatch(DynamicCodeError):
    """The mobile certificate's owner binding does not open to the template the settlement
    server holds for the device."""

    code = "owner_binding_mismatch"


class VerificationRefused(DynamicCodeError):
    """The payment's owner verification is not the one the platform's policy requires for the
    payer (features where the payer's unit must match, or the other way round, or none)."""

    code = "verification_refused"


class NoFingerPresented(DynamicCodeError):
    """A sensor was asked to capture while no finger was on it."""

    code = "no_finger"
