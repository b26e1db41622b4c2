"""The soft secure element: keys that never leave it, certificates, a monotonic counter.

The only operations offered are "give me your public key / certificate" and "sign this approval".
No message or command exports a private key; key files are 0600 in a 0700 directory.
"""

from __future__ import annotations

import secrets

from e2e import (
    Certificate,
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    MalformedMessage,
    PrivateKey,
    PublicKey,
    Suite,
    UnsupportedSuite,
    UserVerification,
    generate_private_key,
    load_private_key,
    sign_confirmation,
)

from .state import ModuleState, StateError

__all__ = ["SecureElement"]


class SecureElement:
    def __init__(self, state: ModuleState, suites: tuple[Suite, ...] = tuple(Suite)) -> None:
        self.state = state
        self.suites = suites
        self.module_id = self._module_id()
        self._keys = {suite: self._load_or_create(suite) for suite in suites}

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

    def sign(self, envelope: bytes, request: ConfirmationRequest, *, decision: Decision,
             user_verification: UserVerification) -> ConfirmationResponse:
        key = self._key(request.suite)
        counter = self.state.next_counter()  # persisted before the signature exists
        return sign_confirmation(envelope, request, decision=decision, counter=counter,
                                 user_verification=user_verification, key=key,
                                 module_id=self.module_id)
