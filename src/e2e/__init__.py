"""The end-to-end layer shared by module and platform: messages, suites, certificates.

Sans-IO. See docs/e2e-messages.md.
"""

from .approval import DOMAIN, VerifiedApproval, sign_confirmation, signed_bytes, verify_confirmation
from .certificates import Certificate, CertificateAuthority, key_id, verify_certificate
from .errors import (
    BadSignature,
    CertificateInvalid,
    E2EError,
    ErrorCode,
    Expired,
    MalformedMessage,
    Replay,
    UnsupportedSuite,
    VerificationError,
    WrongRequest,
)
from .messages import (
    PROTOCOL_VERSION,
    CertificateRequest,
    CertificateResponse,
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    ErrorResponse,
    MessageType,
    UserVerification,
    decode_envelope,
    encode_envelope,
)
from .suites import (
    PrivateKey,
    PublicKey,
    Suite,
    generate_private_key,
    load_private_key,
    load_public_key,
    sm2_backends,
)

__all__ = [
    "DOMAIN",
    "PROTOCOL_VERSION",
    "BadSignature",
    "Certificate",
    "CertificateAuthority",
    "CertificateInvalid",
    "CertificateRequest",
    "CertificateResponse",
    "ConfirmationRequest",
    "ConfirmationResponse",
    "Decision",
    "E2EError",
    "ErrorCode",
    "ErrorResponse",
    "Expired",
    "MalformedMessage",
    "MessageType",
    "PrivateKey",
    "PublicKey",
    "Replay",
    "Suite",
    "UnsupportedSuite",
    "UserVerification",
    "VerificationError",
    "VerifiedApproval",
    "WrongRequest",
    "decode_envelope",
    "encode_envelope",
    "generate_private_key",
    "key_id",
    "load_private_key",
    "load_public_key",
    "sign_confirmation",
    "signed_bytes",
    "sm2_backends",
    "verify_certificate",
    "verify_confirmation",
]
