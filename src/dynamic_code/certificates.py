"""Device certificates (flow F-E): the CA binds a device's key to its role, its device
information, an account and, for a mobile device, its owner's enrolled fingerprint.

The same compact CBOR shape as a module certificate (``e2e.certificates``), so the same CA key
and reader budget serve both, but never mistakable for one: the TBS map has keys 1..11 or 1..12
(a module certificate's has exactly 1..8, so neither decoder accepts the other), its usage is
:data:`USAGE_DEVICE`, and the CA signs ``DEVICE_CERT_DOMAIN || TBS`` where a module certificate's
signature covers the bare TBS.

TBS ``{1: serial, 2: issuer key id, 3: device id (16 bytes), 4: suite, 5: public key (SEC1,
65 bytes), 6: not before, 7: not after, 8: usage = 4, 9: role, 10: device information (text),
11: account (text), ? 12: owner binding (32 bytes, mobile devices whose owner is verified at the
settlement server)}``.

**The owner binding reveals nothing about the finger.** It is a salted commitment
``SHA-256(OWNER_BINDING_DOMAIN || salt || template)`` with a 32-byte salt drawn at enrollment;
salt and template are stored only at the settlement server, encrypted under its template key
(:mod:`dynamic_code.fingerprint`). A reader of the certificate learns that the device's owner
enrolled a finger, nothing about the template, and cannot link two certificates of the same
finger (each has its own salt). The server can open the commitment, so a certificate binds
exactly one stored template: a template swapped in the store no longer opens it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads, typed_field
from e2e.certificates import CertificateAuthority, key_id
from e2e.errors import E2EError, MalformedMessage
from e2e.messages import is_account_name
from e2e.suites import PublicKey, Suite

from .errors import DeviceCertificateRefused, MalformedDynamicCode, UnsupportedDynamicCode

__all__ = ["BINDING_SIZE", "DEVICE_CERT_DOMAIN", "DEVICE_ID_SIZE", "MAX_DEVICE_CERT",
           "MAX_DEVICE_INFO", "OWNER_BINDING_DOMAIN", "USAGE_DEVICE", "DeviceCertificate",
           "Role", "certificate_ref", "issue_device_certificate", "owner_binding",
           "verify_device_certificate"]

USAGE_DEVICE = 4
"""Distinct from a module's confirmation key (1), the platform's request-signing key (2) and
its secure-channel key (3)."""
DEVICE_CERT_DOMAIN = b"blegw/device-certificate/v1\x00"
OWNER_BINDING_DOMAIN = b"blegw/owner-binding/v1\x00"
DEVICE_ID_SIZE = 16
BINDING_SIZE = 32
MAX_DEVICE_INFO = 64
MAX_DEVICE_CERT = 512
REF_SIZE = 16

_TEXT = re.compile(r"[ -~]*")


class Role(IntEnum):
    MOBILE = 1
    """The payer's device: pays from its account, may carry an owner binding."""
    MERCHANT = 2
    """The merchant's payment device: collects for its account."""
    SETTLEMENT = 3
    """The settlement server: the key a merchant's unit encrypts payments to."""


def owner_binding(salt: bytes, template: bytes) -> bytes:
    """The salted commitment to an enrolled template a mobile certificate carries."""
    return hashlib.sha256(OWNER_BINDING_DOMAIN + salt + template).digest()


def certificate_ref(certificate: bytes) -> bytes:
    """How a message names a certificate without carrying it: 16 bytes of its SHA-256."""
    return hashlib.sha256(certificate).digest()[:REF_SIZE]


def _field(body: dict[Any, Any], key: int, kind: type, name: str) -> Any:
    return typed_field(body, key, kind, name, MalformedDynamicCode)


@dataclass(frozen=True, slots=True)
class DeviceCertificate:
    serial: int
    issuer: bytes
    device_id: bytes
    suite: Suite
    public_key: bytes
    not_before: int
    not_after: int
    role: Role
    device_info: str
    account: str
    binding: bytes | None = None
    signature: bytes = b""

    def tbs(self) -> bytes:
        body: dict[int, Any] = {1: self.serial, 2: self.issuer, 3: self.device_id,
                                4: int(self.suite), 5: self.public_key, 6: self.not_before,
                                7: self.not_after, 8: USAGE_DEVICE, 9: int(self.role),
                                10: self.device_info, 11: self.account}
        if self.binding is not None:
            body[12] = self.binding
        return dumps(body)

    def signed_bytes(self) -> bytes:
        return DEVICE_CERT_DOMAIN + self.tbs()

    def encode(self) -> bytes:
        return dumps({1: self.tbs(), 2: self.signature})

    @classmethod
    def decode(cls, data: bytes) -> DeviceCertificate:
        """Strict: canonical CBOR, exact keys and types, ranges; the signature is not checked
        here (:func:`verify_device_certificate` does)."""
        try:
            outer = loads(data, max_size=MAX_DEVICE_CERT)
            if not isinstance(outer, dict) or set(outer) != {1, 2}:
                raise MalformedDynamicCode("a device certificate is {1: tbs, 2: signature}")
            tbs: Any = loads(_field(outer, 1, bytes, "tbs"), max_size=MAX_DEVICE_CERT)
        except MalformedMessage as exc:
            raise MalformedDynamicCode(f"device certificate: {exc}") from None
        if not isinstance(tbs, dict) or set(tbs) not in (set(range(1, 12)), set(range(1, 13))):
            raise MalformedDynamicCode("a device certificate's TBS has keys 1..11 or 1..12")
        signature = _field(outer, 2, bytes, "signature")
        kinds = {1: int, 2: bytes, 3: bytes, 4: int, 5: bytes, 6: int, 7: int, 8: int, 9: int,
                 10: str, 11: str}
        values = {k: _field(tbs, k, kind, f"certificate field {k}") for k, kind in kinds.items()}
        if values[8] != USAGE_DEVICE:
            raise MalformedDynamicCode("not a device certificate (usage)")
        if len(values[3]) != DEVICE_ID_SIZE or len(values[2]) != 8 or len(values[5]) != 65:
            raise MalformedDynamicCode("device id, issuer or key of the wrong size")
        try:
            suite = Suite.parse(values[4])
            role = Role(values[9])
        except (E2EError, ValueError):
            raise UnsupportedDynamicCode("unknown suite or role in a device certificate") from None
        info, account = values[10], values[11]
        if len(info) > MAX_DEVICE_INFO or _TEXT.fullmatch(info) is None:
            raise MalformedDynamicCode(f"device information: 0-{MAX_DEVICE_INFO} printable "
                                       "ASCII")
        if role is not Role.SETTLEMENT and not is_account_name(account):
            raise MalformedDynamicCode("certificate account is not an account name")
        binding = None
        if 12 in tbs:
            binding = _field(tbs, 12, bytes, "owner binding")
            if role is not Role.MOBILE or len(binding) != BINDING_SIZE:
                raise MalformedDynamicCode("only a mobile certificate binds an owner (32 bytes)")
        cert = cls(values[1], values[2], values[3], suite, values[5], values[6], values[7],
                   role, info, account, binding, signature)
        if cert.encode() != bytes(data):
            raise MalformedDynamicCode("device certificate not in canonical form")
        return cert

    def verifying_key(self) -> PublicKey:
        try:
            return PublicKey(self.suite, self.public_key)
        except MalformedMessage as exc:
            raise DeviceCertificateRefused(f"certificate key invalid: {exc}") from None


def issue_device_certificate(ca: CertificateAuthority, public: PublicKey, role: Role, *,
                             device_id: bytes, device_info: str, account: str,
                             not_before: int, not_after: int, binding: bytes | None = None
                             ) -> DeviceCertificate:
    """The CA's step for one device (the platform's ``device enroll`` command calls this)."""
    if not not_before < not_after:
        raise ValueError("not_before must be before not_after")
    unsigned = DeviceCertificate(secrets.randbits(63), ca.key_id, device_id, public.suite,
                                 public.encode(), not_before, not_after, role, device_info,
                                 account, binding)
    cert = dataclasses.replace(unsigned, signature=ca.key.sign(unsigned.signed_bytes()))
    DeviceCertificate.decode(cert.encode())  # every field in range: what a reader accepts
    return cert


def verify_device_certificate(data: bytes, ca_public: PublicKey, role: Role, *, now: int
                              ) -> DeviceCertificate:
    """Decode a device certificate and check it against the trusted CA key, its validity and
    the role it must have; revocation is the caller's (the platform's registry)."""
    cert = DeviceCertificate.decode(data)
    if cert.issuer != key_id(ca_public) or cert.suite is not ca_public.suite:
        raise DeviceCertificateRefused("certificate issued by another CA")
    if not ca_public.verify(cert.signature, cert.signed_bytes()):
        raise DeviceCertificateRefused("certificate signature does not verify")
    if not cert.not_before <= now <= cert.not_after:
        raise DeviceCertificateRefused("certificate not valid now")
    if cert.role is not role:
        raise DeviceCertificateRefused(f"a {cert.role.name.lower()} certificate where a "
                                       f"{role.name.lower()} one is needed")
    cert.verifying_key()
    return cert

