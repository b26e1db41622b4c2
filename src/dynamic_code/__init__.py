"""Dynamic codes with device and owner binding (flow F-E, seed 001): device certificates for
three roles, the consumption and payment codes, encryption to a unit in both suites, simulated
fingerprints, and the three secure units. Sans-IO. See docs/dynamic-codes.md."""

from __future__ import annotations

from .certificates import (
    DeviceCertificate,
    Role,
    certificate_ref,
    issue_device_certificate,
    owner_binding,
    verify_device_certificate,
)
from .errors import (
    AmountMismatch,
    BadDynamicSignature,
    CodeExpired,
    DecryptFailed,
    DeviceCertificateRefused,
    DeviceRevoked,
    DynamicCodeError,
    FingerprintMismatch,
    MalformedDynamicCode,
    NoFingerPresented,
    OwnerBindingMismatch,
    PerturbationMismatch,
    StalePerturbation,
    UnsupportedDynamicCode,
    VerificationRefused,
    WrongMerchant,
)
from .fingerprint import Finger, SimulatedSensor, TemplateVault
from .messages import Verification
from .text import from_text, to_text
from .units import (
    Accepted,
    DeviceDirectory,
    MerchantUnit,
    Offer,
    PayerUnit,
    SettlementUnit,
    VerifiedPayment,
)

__all__ = [
    "Accepted", "AmountMismatch", "BadDynamicSignature", "CodeExpired", "DecryptFailed",
    "DeviceCertificate", "DeviceCertificateRefused", "DeviceDirectory", "DeviceRevoked",
    "DynamicCodeError", "Finger", "FingerprintMismatch", "MalformedDynamicCode",
    "MerchantUnit", "NoFingerPresented", "Offer", "OwnerBindingMismatch", "PayerUnit",
    "PerturbationMismatch", "Role", "SettlementUnit", "SimulatedSensor",
    "StalePerturbation", "TemplateVault", "UnsupportedDynamicCode", "Verification",
    "VerificationRefused", "VerifiedPayment", "WrongMerchant", "certificate_ref",
    "from_text", "issue_device_certificate", "owner_binding", "to_text",
    "verify_device_certificate",
]
