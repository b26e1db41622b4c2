"""The end-to-end layer shared by module and platform: messages, suites, certificates.

Sans-IO. See docs/e2e-messages.md.

Names are loaded on first use (PEP 562): ``from e2e.errors import ...`` or ``from e2e.cbor
import ...`` in a command that only reads a configuration must not load the cryptography stack
(about 90 ms). ``from e2e import Suite`` works as before; it imports the submodule then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .approval import (
        DOMAIN,
        VerifiedApproval,
        sign_confirmation,
        signed_bytes,
        verify_confirmation,
    )
    from .certificates import (
        USAGE_CONFIRMATION,
        USAGE_REQUEST_SIGNING,
        Certificate,
        CertificateAuthority,
        CertificateChecks,
        key_id,
        verify_certificate,
    )
    from .errors import (
        BadSignature,
        CertificateInvalid,
        E2EError,
        ErrorCode,
        Expired,
        MalformedMessage,
        Replay,
        UnsupportedSuite,
        UntrustedRequest,
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
    from .request_auth import (
        PLATFORM_ID_SIZE,
        REQUEST_DOMAIN,
        RequestSigner,
        SeenRequests,
        TooManyRequests,
        TrustAnchors,
        request_signed_bytes,
        verify_request,
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

_SUBMODULE = {
    "DOMAIN": "approval",
    "VerifiedApproval": "approval",
    "sign_confirmation": "approval",
    "signed_bytes": "approval",
    "verify_confirmation": "approval",
    "USAGE_CONFIRMATION": "certificates",
    "USAGE_REQUEST_SIGNING": "certificates",
    "Certificate": "certificates",
    "CertificateAuthority": "certificates",
    "CertificateChecks": "certificates",
    "key_id": "certificates",
    "verify_certificate": "certificates",
    "BadSignature": "errors",
    "CertificateInvalid": "errors",
    "E2EError": "errors",
    "ErrorCode": "errors",
    "Expired": "errors",
    "MalformedMessage": "errors",
    "Replay": "errors",
    "UnsupportedSuite": "errors",
    "UntrustedRequest": "errors",
    "VerificationError": "errors",
    "WrongRequest": "errors",
    "PROTOCOL_VERSION": "messages",
    "CertificateRequest": "messages",
    "CertificateResponse": "messages",
    "ConfirmationRequest": "messages",
    "ConfirmationResponse": "messages",
    "Decision": "messages",
    "ErrorResponse": "messages",
    "MessageType": "messages",
    "UserVerification": "messages",
    "decode_envelope": "messages",
    "encode_envelope": "messages",
    "PLATFORM_ID_SIZE": "request_auth",
    "REQUEST_DOMAIN": "request_auth",
    "RequestSigner": "request_auth",
    "SeenRequests": "request_auth",
    "TooManyRequests": "request_auth",
    "TrustAnchors": "request_auth",
    "request_signed_bytes": "request_auth",
    "verify_request": "request_auth",
    "PrivateKey": "suites",
    "PublicKey": "suites",
    "Suite": "suites",
    "generate_private_key": "suites",
    "load_private_key": "suites",
    "load_public_key": "suites",
    "sm2_backends": "suites",
}
"""Which submodule defines each public name."""


def __getattr__(name: str) -> Any:
    submodule = _SUBMODULE.get(name)
    if submodule is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULE])


__all__ = [
    "DOMAIN",
    "PLATFORM_ID_SIZE",
    "PROTOCOL_VERSION",
    "REQUEST_DOMAIN",
    "USAGE_CONFIRMATION",
    "USAGE_REQUEST_SIGNING",
    "BadSignature",
    "Certificate",
    "CertificateAuthority",
    "CertificateChecks",
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
    "RequestSigner",
    "SeenRequests",
    "Suite",
    "TooManyRequests",
    "TrustAnchors",
    "UnsupportedSuite",
    "UntrustedRequest",
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
    "request_signed_bytes",
    "sign_confirmation",
    "signed_bytes",
    "sm2_backends",
    "verify_certificate",
    "verify_confirmation",
    "verify_request",
]
