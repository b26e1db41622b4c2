"""Signing and verifying a confirmation: what binds an approval to exactly what was shown.

The module signs (with its suite's hash, SHA-256 or SM3 with Z)::

    "blegw/confirmation-response/v1" || u32be(len(R)) || R || CBOR(response fields)

where R is the request envelope exactly as the module received it (so any change by the gateway
to payee, amount, currency, nonce, expiry, order or transaction id breaks the signature), and the
response fields are the canonical CBOR of the response without its signature (decision, counter,
user verification, suite, module id, transaction id). The platform recomputes this from the
request it sent, never from bytes the gateway returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cbor import dumps
from .certificates import Certificate, CertificateChecks, verify_certificate
from .errors import BadSignature, Expired, Replay, WrongRequest
from .messages import (
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    UserVerification,
    decode_envelope,
)
from .suites import PrivateKey, PublicKey

__all__ = ["DOMAIN", "VerifiedApproval", "sign_confirmation", "signed_bytes",
           "verify_confirmation"]

DOMAIN = b"blegw/confirmation-response/v1"


def signed_bytes(request_envelope: bytes, response: ConfirmationResponse) -> bytes:
    return (DOMAIN + len(request_envelope).to_bytes(4, "big") + request_envelope
            + dumps(response.signed_fields()))


def sign_confirmation(request_envelope: bytes, request: ConfirmationRequest, *,
                      decision: Decision, counter: int, user_verification: UserVerification,
                      key: PrivateKey, module_id: bytes) -> ConfirmationResponse:
    unsigned = ConfirmationResponse(request.transaction_id, decision, counter,
                                    user_verification, key.suite, module_id, b"\x00")
    signature = key.sign(signed_bytes(request_envelope, unsigned))
    return ConfirmationResponse(request.transaction_id, decision, counter, user_verification,
                                key.suite, module_id, signature)


@dataclass(frozen=True, slots=True)
class VerifiedApproval:
    request: ConfirmationRequest
    response: ConfirmationResponse

    @property
    def approved(self) -> bool:
        return self.response.decision is Decision.APPROVE


def verify_confirmation(request_envelope: bytes, response: ConfirmationResponse,
                        certificate: Certificate, ca_public: PublicKey, *, now: int,
                        last_counter: int, checks: CertificateChecks | None = None
                        ) -> VerifiedApproval:
    """Accept ``response`` only if it answers exactly ``request_envelope``, in time, once.

    Order of checks: certificate, request match, signature, expiry, counter. Raises
    CertificateInvalid, WrongRequest, BadSignature, Expired or Replay. ``checks`` remembers
    the certificates whose CA signature verified (:class:`~e2e.certificates.CertificateChecks`).
    """
    module_key = verify_certificate(certificate, ca_public, now=now, checks=checks)
    request = decode_envelope(request_envelope)
    if not isinstance(request, ConfirmationRequest):
        raise WrongRequest("the envelope is not a confirmation request")
    if response.transaction_id != request.transaction_id:
        raise WrongRequest("the response answers another transaction")
    if response.suite is not request.suite or response.suite is not certificate.suite:
        raise WrongRequest("the response uses another suite than requested")
    if response.module_id != certificate.module_id:
        raise WrongRequest("the response comes from another module")
    if not module_key.verify(response.signature, signed_bytes(request_envelope, response)):
        raise BadSignature("the signature does not verify for this request")
    if now > request.expires_at:
        raise Expired("the approval arrived after the request expired")
    if response.counter <= last_counter:
        raise Replay(f"counter {response.counter} is not above {last_counter}")
    return VerifiedApproval(request, response)
