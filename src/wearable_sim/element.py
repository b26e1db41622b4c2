"""The soft secure element: keys that never leave it, certificates, a monotonic counter.

The only operations offered are "give me your public key / certificate", "is this request one
the platform vouched for", "sign this approval" and "sign this transaction code / countersign
this scanned code" (flow F-D: those signed bytes carry their own domain tags, so neither kind
of signature can pass as the other). No message or command exports a private
key; key files are 0600 in a 0700 directory. Trust anchors (the platform's CA roots and
identity) are written only by provisioning.
"""

from __future__ import annotations

import secrets

from e2e import (
    Certificate,
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    E2EError,
    MalformedMessage,
    PrivateKey,
    PublicKey,
    SeenRequests,
    Suite,
    TrustAnchors,
    UnsupportedSuite,
    UserVerification,
    generate_private_key,
    load_private_key,
    sign_confirmation,
    verify_request,
)
from e2e.errors import CertificateInvalid, WrongRequest
from secure_channel import ModuleCredentials
from transaction_code import CountersignedCode, TransactionCode, signer_reference

from .state import ModuleState, StateError

__all__ = ["SecureElement"]


class SecureElement:
    def __init__(self, state: ModuleState, suites: tuple[Suite, ...] = tuple(Suite)) -> None:
        self.state = state
        self.suites = suites
        self.module_id = self._module_id()
        self._keys = {suite: self._load_or_create(suite) for suite in suites}
        self._anchors = self._load_anchors()
        self._seen = SeenRequests(entries=state.seen_requests())

    def _module_id(self) -> bytes:
        path = self.state.directory / "module_id"
        raw = self.state.read_file(path)
        if raw is None:
            raw = secrets.token_bytes(16)
            self.state.write_file(path, raw)
        if len(raw) != 16:
            raise StateError(f"{path} is corrupt")
        return raw

    def _load_or_create(self, suite: Suite) -> PrivateKey:
        path = self.state.key_path(suite.label)
        raw = self.state.read_secret(path)
        if raw is None:
            key = generate_private_key(suite)
            self.state.write_secret(path, key.private_bytes())
            return key
        try:
            return load_private_key(suite, raw)
        except MalformedMessage as exc:
            raise StateError(f"{path} does not hold a {suite.name} key") from exc

    def public_key(self, suite: Suite) -> PublicKey:
        return self._key(suite).public_key

    def _key(self, suite: Suite) -> PrivateKey:
        key = self._keys.get(suite)
        if key is None:
            raise UnsupportedSuite(f"this module has no {suite.name} key")
        return key

    def certificate(self, suite: Suite) -> bytes | None:
        return self.state.read_file(self.state.cert_path(suite.label))

    def install_certificate(self, data: bytes) -> Certificate:
        """Store a certificate issued for one of this module's keys (refuse any other)."""
        cert = Certificate.decode(data)
        if cert.module_id != self.module_id:
            raise ValueError("certificate is for another module id")
        if cert.public_key != self.public_key(cert.suite).encode():
            raise ValueError("certificate is for another key")
        self.state.write_file(self.state.cert_path(cert.suite.label), data)
        return cert

    # -- trust in the platform ------------------------------------------------------------------
    def _load_anchors(self) -> TrustAnchors | None:
        raw = self.state.read_file(self.state.trust_anchors_path)
        if raw is None:
            return None
        try:
            return TrustAnchors.decode(raw)
        except E2EError as exc:
            raise StateError(f"{self.state.trust_anchors_path} is corrupt: {exc}") from exc

    @property
    def trust_anchors(self) -> TrustAnchors | None:
        """None until provisioning installed them: then every request is refused."""
        return self._anchors

    def install_trust_anchors(self, anchors: TrustAnchors) -> None:
        """Provisioning's step: the CA roots and platform id requests are checked against."""
        self.state.write_file(self.state.trust_anchors_path, anchors.encode())
        self._anchors = anchors

    def authenticate(self, request: ConfirmationRequest, *, now: float) -> None:
        """Raise UntrustedRequest unless the platform signed ``request`` (see
        e2e.request_auth); the owner must never be prompted for one that fails."""
        verify_request(request, self._anchors, now=int(now))

    def admit(self, request: ConfirmationRequest, *, now: float) -> None:
        """Remember an authenticated request before its owner is prompted; raise Replay if
        it was admitted before (kept until it expires, across restarts)."""
        self._seen.admit(request, now=now)
        self.state.write_seen_requests(self._seen.entries())

    def sign(self, envelope: bytes, request: ConfirmationRequest, *, decision: Decision,
             user_verification: UserVerification) -> ConfirmationResponse:
        key = self._key(request.suite)
        counter = self.state.next_counter()  # persisted before the signature exists
        return sign_confirmation(envelope, request, decision=decision, counter=counter,
                                 user_verification=user_verification, key=key,
                                 module_id=self.module_id)

    def channel_credentials(self, suite: Suite) -> ModuleCredentials | None:
        """What the secure channel's handshake (flow F-B) signs with: this suite's key and
        installed certificate, with the provisioned CA roots for the platform's channel
        certificate; None without a certificate or trust anchors."""
        certificate = self.certificate(suite)
        if certificate is None or self._anchors is None or suite not in self._keys:
            return None
        return ModuleCredentials(self._keys[suite], Certificate.decode(certificate),
                                 dict(self._anchors.ca_keys))

    # -- transaction codes (flow F-D) -----------------------------------------------------------
    def code_signer(self, suite: Suite) -> bytes:
        """How a code names this module: the reference to its installed certificate."""
        certificate = self.certificate(suite)
        if certificate is None:
            raise CertificateInvalid(f"no {suite.name} certificate installed")
        return signer_reference(certificate)

    def sign_code(self, code: TransactionCode) -> TransactionCode:
        """Sign a transaction code that names this module as its signer (and no other)."""
        if code.signer != self.code_signer(code.suite):
            raise WrongRequest("the code names another signer")
        return code.sign(self._key(code.suite))

    def countersign(self, request: CountersignedCode) -> CountersignedCode:
        """Countersign a scanned code, naming this module as the scanner's signer."""
        if request.signer != self.code_signer(request.suite):
            raise WrongRequest("the request names another signer")
        return request.sign(self._key(request.suite))
