"""The platform vouches for each confirmation request; the module prompts only for those.

Why: anything published on a gateway's request topic, or written to a module's control point,
would otherwise reach the owner's prompt. The module's approval signature already stops such a
request from moving money, but the owner would still be asked about amounts and payees nobody
vouched for (prompt bombing, phishing text). So the platform signs every request with a
request-signing key its own CA certified (usage :data:`USAGE_REQUEST_SIGNING`, subject = the
platform id), and the module, which got the CA root keys and the platform id at provisioning,
checks before it prompts.

The platform signs (with the request's suite: ECDSA P-256/SHA-256 or SM2/SM3)::

    "blegw/confirmation-request/v1" || CBOR(request body without key 12)

i.e. the canonical CBOR of every field, the platform certificate (key 11) included, without the
signature (key 12). Sans-IO: the module's persistence of :class:`SeenRequests` is its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .cbor import dumps, loads
from .certificates import USAGE_REQUEST_SIGNING, Certificate, verify_certificate
from .errors import (
    CertificateInvalid,
    E2EError,
    ErrorCode,
    MalformedMessage,
    Replay,
    UntrustedRequest,
)
from .messages import ConfirmationRequest
from .suites import PrivateKey, PublicKey, Suite

__all__ = [
    "PLATFORM_ID_SIZE",
    "REQUEST_DOMAIN",
    "RequestSigner",
    "SeenRequests",
    "TooManyRequests",
    "TrustAnchors",
    "request_signed_bytes",
    "verify_request",
]

REQUEST_DOMAIN = b"blegw/confirmation-request/v1"
PLATFORM_ID_SIZE = 16


def request_signed_bytes(request: ConfirmationRequest) -> bytes:
    """The exact bytes the platform signs and the module verifies."""
    return REQUEST_DOMAIN + dumps(request.signed_body())


class RequestSigner:
    """The platform's request-signing key of one suite with the certificate its CA issued."""

    def __init__(self, key: PrivateKey, certificate: Certificate) -> None:
        if certificate.usage != USAGE_REQUEST_SIGNING:
            raise ValueError("the certificate is not a request-signing certificate")
        if certificate.suite is not key.suite or certificate.public_key != key.public_key.encode():
            raise ValueError("the certificate is for another key")
        self._key = key
        self.certificate = certificate
        self._encoded = certificate.encode()

    @property
    def suite(self) -> Suite:
        return self._key.suite

    def sign(self, request: ConfirmationRequest) -> ConfirmationRequest:
        """The request with this certificate and a signature over all its other fields."""
        if request.suite is not self.suite:
            raise ValueError(f"a {request.suite.name} request needs the {request.suite.name} "
                             "signer")
        with_cert = dataclasses.replace(request, platform_certificate=self._encoded,
                                        platform_signature=b"\x00")
        signature = self._key.sign(request_signed_bytes(with_cert))
        return dataclasses.replace(with_cert, platform_signature=signature)


@dataclass(frozen=True, slots=True)
class TrustAnchors:
    """What provisioning installs in a module: the CA root key of each suite and the identity
    the platform's request-signing certificates carry.

    Stored (and carried) as canonical CBOR ``{1: platform id, 2: {suite: SEC1 point}}``.
    """

    platform_id: bytes
    ca_keys: Mapping[Suite, PublicKey]

    def __post_init__(self) -> None:
        if len(self.platform_id) != PLATFORM_ID_SIZE:
            raise MalformedMessage(f"a platform id is {PLATFORM_ID_SIZE} bytes")
        if not self.ca_keys or any(k.suite is not s for s, k in self.ca_keys.items()):
            raise MalformedMessage("one CA key per suite, of that suite")

    def encode(self) -> bytes:
        return dumps({1: self.platform_id,
                      2: {int(s): k.encode() for s, k in self.ca_keys.items()}})

    @classmethod
    def decode(cls, data: bytes) -> TrustAnchors:
        raw: Any = loads(data, max_size=1024)
        if (not isinstance(raw, dict) or set(raw) != {1, 2} or not isinstance(raw[1], bytes)
                or not isinstance(raw[2], dict)):
            raise MalformedMessage("trust anchors are {1: platform id, 2: {suite: key}}")
        keys: dict[Suite, PublicKey] = {}
        for suite_id, point in raw[2].items():
            if not isinstance(suite_id, int) or isinstance(suite_id, bool) or not isinstance(
                    point, bytes):
                raise MalformedMessage("a trust anchor is {suite: SEC1 point}")
            suite = Suite.parse(suite_id)
            keys[suite] = PublicKey(suite, point)
        return cls(raw[1], keys)


def verify_request(request: ConfirmationRequest, anchors: TrustAnchors | None, *,
                   now: int) -> Certificate:
    """Accept ``request`` only if the platform signed it; return the platform's certificate.

    Order of checks: anchors installed, signature present, certificate well formed, CA root of
    the request's suite, certificate (issuer, CA signature, validity, usage), subject = the
    installed platform id, then the request signature. Any failure is UntrustedRequest.
    """
    if anchors is None:
        raise UntrustedRequest("no trust anchors installed: the module needs provisioning")
    if not request.platform_signature:
        raise UntrustedRequest("the request is not signed by the platform")
    ca = anchors.ca_keys.get(request.suite)
    if ca is None:
        raise UntrustedRequest(f"no {request.suite.name} CA root installed")
    try:
        cert = Certificate.decode(request.platform_certificate)
    except MalformedMessage as exc:
        raise UntrustedRequest(f"platform certificate unreadable: {exc}") from exc
    if cert.suite is not request.suite:
        raise UntrustedRequest("platform certificate of another suite than the request")
    try:
        key = verify_certificate(cert, ca, now=now, usage=USAGE_REQUEST_SIGNING)
    except CertificateInvalid as exc:
        raise UntrustedRequest(f"platform certificate refused: {exc}") from exc
    if cert.module_id != anchors.platform_id:
        raise UntrustedRequest("the certificate is not the platform's")
    if not key.verify(request.platform_signature, request_signed_bytes(request)):
        raise UntrustedRequest("the platform's signature does not verify for this request")
    return cert


class TooManyRequests(E2EError):
    """The module remembers as many unexpired requests as it can; it takes no more for now."""

    code = ErrorCode.BUSY


class SeenRequests:
    """Transaction ids of requests already admitted, each kept until its request expires.

    A genuine request replayed by the gateway must not prompt its owner twice. Bounded: when
    ``capacity`` unexpired ids are held, a new request is refused rather than an old id
    forgotten (only platform-signed requests get here, so filling it needs the platform).
    """

    def __init__(self, capacity: int = 1024,
                 entries: Iterable[tuple[bytes, int]] = ()) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._expiry: dict[bytes, int] = dict(entries)

    def __len__(self) -> int:
        return len(self._expiry)

    def entries(self) -> list[tuple[bytes, int]]:
        return sorted(self._expiry.items(), key=lambda item: (item[1], item[0]))

    def admit(self, request: ConfirmationRequest, *, now: float) -> None:
        """Remember the request, or raise Replay if it was admitted before.

        Raises TooManyRequests (code busy) when full of unexpired ids.
        """
        self._expiry = {tx: exp for tx, exp in self._expiry.items() if exp >= now}
        if request.transaction_id in self._expiry:
            raise Replay("this request was already answered")
        if len(self._expiry) >= self.capacity:
            raise TooManyRequests(f"{self.capacity} unexpired requests remembered; "
                                   "refusing more until some expire")
        self._expiry[request.transaction_id] = request.expires_at
