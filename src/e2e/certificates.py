"""Module certificates: compact CBOR, issued by the platform's CA.

Why not X.509: ``cryptography`` cannot build or verify SM2 X.509 certificates, a module
certificate must be read over a 20-byte-fragment link, and the fields the platform needs are few.
A certificate is ``{1: TBS bytes, 2: CA signature}`` where TBS is the canonical CBOR map
``{1: serial, 2: issuer key id, 3: subject id, 4: suite, 5: public key (SEC1, 65 bytes),
6: not before, 7: not after, 8: usage}`` and the CA signs the TBS bytes with its own suite. The
issuer key id is the first 8 bytes of SHA-256 of the CA's public key. The subject id is the
module id for a module certificate (usage 1) and the platform id for the platform's
request-signing certificate (usage 2).
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from .cbor import dumps, loads
from .errors import CertificateInvalid, MalformedMessage
from .suites import PrivateKey, PublicKey, Suite, generate_private_key

__all__ = ["USAGE_CONFIRMATION", "USAGE_REQUEST_SIGNING", "Certificate", "CertificateAuthority",
           "CertificateChecks",
           "key_id", "verify_certificate"]

USAGE_CONFIRMATION = 1
"""A module's key: signs its owner's answers to confirmation requests."""
USAGE_REQUEST_SIGNING = 2
"""The platform's key: signs confirmation requests, so a module prompts only for those. A
distinct usage keeps either kind of certificate from ever passing as the other."""


def key_id(public: PublicKey) -> bytes:
    return hashlib.sha256(public.encode()).digest()[:8]


@dataclass(frozen=True, slots=True)
class Certificate:
    serial: int
    issuer: bytes
    module_id: bytes
    suite: Suite
    public_key: bytes
    not_before: int
    not_after: int
    usage: int
    signature: bytes = b""

    def tbs(self) -> bytes:
        return dumps({1: self.serial, 2: self.issuer, 3: self.module_id, 4: int(self.suite),
                      5: self.public_key, 6: self.not_before, 7: self.not_after, 8: self.usage})

    def encode(self) -> bytes:
        return dumps({1: self.tbs(), 2: self.signature})

    @classmethod
    def decode(cls, data: bytes) -> Certificate:
        outer = loads(data, max_size=1024)
        if not isinstance(outer, dict) or set(outer) != {1, 2} or not all(
                isinstance(outer[k], bytes) for k in (1, 2)):
            raise MalformedMessage("a certificate is {1: tbs, 2: signature}")
        tbs: Any = loads(outer[1], max_size=1024)
        if not isinstance(tbs, dict) or set(tbs) != set(range(1, 9)):
            raise MalformedMessage("certificate TBS must have keys 1..8")
        kinds = {1: int, 2: bytes, 3: bytes, 4: int, 5: bytes, 6: int, 7: int, 8: int}
        for k, kind in kinds.items():
            if not isinstance(tbs[k], kind) or isinstance(tbs[k], bool):
                raise MalformedMessage(f"certificate field {k} has the wrong type")
        return cls(tbs[1], tbs[2], tbs[3], Suite.parse(tbs[4]), tbs[5], tbs[6], tbs[7], tbs[8],
                   outer[2])

    def verifying_key(self) -> PublicKey:
        return PublicKey(self.suite, self.public_key)


class CertificateAuthority:
    """The platform's CA for one suite. Its private key stays with the platform."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.public_key = key.public_key
        self.key_id = key_id(key.public_key)

    @classmethod
    def generate(cls, suite: Suite) -> CertificateAuthority:
        return cls(generate_private_key(suite))

    def issue(self, module_public: PublicKey, module_id: bytes, *, not_before: int,
              not_after: int, usage: int = USAGE_CONFIRMATION) -> Certificate:
        if not not_before < not_after:
            raise ValueError("not_before must be before not_after")
        unsigned = Certificate(secrets.randbits(63), self.key_id, module_id, module_public.suite,
                               module_public.encode(), not_before, not_after, usage)
        return dataclasses.replace(unsigned, signature=self.key.sign(unsigned.tbs()))


def verify_certificate(cert: Certificate, ca_public: PublicKey, *, now: int,
                       usage: int = USAGE_CONFIRMATION,
                       checks: CertificateChecks | None = None) -> PublicKey:
    """Check a certificate against the trusted CA key and the usage it must have been issued
    for (a module's by default); return the subject's key.

    With ``checks``, the CA's signature over these exact bytes is verified once and
    remembered; the issuer, validity times, usage and key are checked on every call.
    """
    if cert.issuer != key_id(ca_public):
        raise CertificateInvalid("certificate issued by another CA")
    if checks is None or not checks.known(cert, ca_public):
        if not ca_public.verify(cert.signature, cert.tbs()):
            raise CertificateInvalid("certificate signature does not verify")
        if checks is not None:
            checks.remember(cert, ca_public)
    if now < cert.not_before:
        raise CertificateInvalid("certificate not yet valid")
    if now > cert.not_after:
        raise CertificateInvalid("certificate expired")
    if cert.usage != usage:
        raise CertificateInvalid(f"certificate issued for usage {cert.usage}, not {usage}")
    try:
        return cert.verifying_key()
    except MalformedMessage as exc:
        raise CertificateInvalid(f"certificate key invalid: {exc}") from exc


class CertificateChecks:
    """The certificates whose CA signature verified, remembered by the digest of the CA key and
    the certificate's exact bytes (TBS and signature).

    A platform verifies the same enrolled module certificate on every payment: the CA's
    signature over unchanged bytes under an unchanged key gives the same answer each time, so it
    is verified once (a P-256 or SM2 verification, as costly as the response's own). Nothing
    else is remembered: a certificate that expired, or is used for another usage, is refused on
    the next call. Bounded (the oldest forgotten first), so hostile input cannot grow it.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(cert: Certificate, ca_public: PublicKey) -> bytes:
        return hashlib.sha256(ca_public.encode() + b"\x00" + cert.encode()).digest()

    def known(self, cert: Certificate, ca_public: PublicKey) -> bool:
        digest = self._digest(cert, ca_public)
        with self._lock:
            if digest not in self._seen:
                return False
            self._seen.move_to_end(digest)
            return True

    def remember(self, cert: Certificate, ca_public: PublicKey) -> None:
        digest = self._digest(cert, ca_public)
        with self._lock:
            self._seen[digest] = None
            while len(self._seen) > self._size:
                self._seen.popitem(last=False)

