"""Signature suites: ECDSA P-256/SHA-256 (international) and SM2/SM3 (national).

Both sign *messages* (the hash is part of the suite) and put DER ``SEQUENCE {r, s}`` on the
wire. SM2 signs ``SM3(Z || M)`` where Z covers the signer id; the id is the standard default
``1234567812345678`` (GM/T 0009), the most common cause of SM2 interop failures when it differs.

SM2 backends, chosen per operation (``sm2_backends()[0]``): ``gmalglib`` (C, builds from source
on any machine with a compiler, so also on a Raspberry Pi) signs fastest; GmSSL's C library
through ``gmssl-pyx`` (x86-64 wheels only) verifies fastest; pure-Python ``gmssl`` is the
fallback where neither is installed. All give and take DER signatures with the standard id and
run the same tests, including against ``openssl pkeyutl``.
"""

from __future__ import annotations

import importlib
import secrets
from enum import IntEnum
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from .errors import MalformedMessage, UnsupportedSuite

__all__ = [
    "SM2_DEFAULT_ID",
    "GmalglibBackend",
    "PerOperationBackend",
    "PrivateKey",
    "PublicKey",
    "Sm2Backend",
    "Suite",
    "generate_private_key",
    "load_private_key",
    "load_public_key",
    "sm2_backends",
]

SM2_DEFAULT_ID = b"1234567812345678"
_SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123


class Suite(IntEnum):
    P256_SHA256 = 1
    SM2_SM3 = 2

    @classmethod
    def parse(cls, value: int) -> Suite:
        try:
            return cls(value)
        except ValueError:
            raise UnsupportedSuite(f"unknown signature suite {value}") from None

    @property
    def label(self) -> str:
        return {Suite.P256_SHA256: "p256", Suite.SM2_SM3: "sm2"}[self]


class Sm2Backend(Protocol):
    name: str

    def generate(self) -> tuple[bytes, bytes]:
        """(private scalar 32 bytes, public x||y 64 bytes)."""
        ...

    def sign(self, private: bytes, public: bytes, message: bytes) -> bytes: ...

    def verify(self, public: bytes, message: bytes, der_signature: bytes) -> bool: ...


class GmsslCBackend:
    """GmSSL (C) through gmssl-pyx."""

    name = "gmssl-pyx"

    def generate(self) -> tuple[bytes, bytes]:
        import gmssl_pyx

        public, private = gmssl_pyx.sm2_key_generate()
        return bytes(private), bytes(public)

    def sign(self, private: bytes, public: bytes, message: bytes) -> bytes:
        import gmssl_pyx

        return bytes(gmssl_pyx.sm2_sign(private, public, message, signer_id=SM2_DEFAULT_ID))

    def verify(self, public: bytes, message: bytes, der_signature: bytes) -> bool:
        import gmssl_pyx

        try:
            return bool(gmssl_pyx.sm2_verify(public, message, der_signature,
                                             signer_id=SM2_DEFAULT_ID))
        except gmssl_pyx.GmsslInnerError:
            return False


def _crypt_sm2(sm2: Any, private_hex: str, public: bytes) -> Any:
    """gmssl's ``CryptSM2`` with the public key set as given.

    Its constructor strips a leading "04" with ``str.lstrip("04")``, which also eats every
    leading '0' and '4' of x when x's hex starts with "04" (one key in 256): the key's Z value
    is then wrong and its signatures verify nowhere else. Setting the attribute after
    construction keeps the 128 hex digits whole.
    """
    crypt = sm2.CryptSM2(private_key=private_hex, public_key="")
    crypt.public_key = public.hex()
    return crypt


class GmsslPureBackend:
    """Pure-Python gmssl: about 10x slower; kept only where no C wheel exists."""

    name = "gmssl"

    def generate(self) -> tuple[bytes, bytes]:
        from gmssl import sm2

        d = secrets.randbelow(_SM2_N - 2) + 1
        private = d.to_bytes(32, "big")
        crypt = sm2.CryptSM2(private_key=private.hex(), public_key="")
        public_hex = crypt._kg(d, sm2.default_ecc_table["g"])
        return private, bytes.fromhex(public_hex)

    def sign(self, private: bytes, public: bytes, message: bytes) -> bytes:
        from gmssl import sm2

        crypt = _crypt_sm2(sm2, private.hex(), public)
        k = secrets.randbelow(_SM2_N - 2) + 1
        rs = crypt.sign_with_sm3(message, f"{k:064x}")
        return encode_dss_signature(int(rs[:64], 16), int(rs[64:], 16))

    def verify(self, public: bytes, message: bytes, der_signature: bytes) -> bool:
        from gmssl import sm2

        try:
            r, s = decode_dss_signature(der_signature)
        except ValueError:
            return False
        crypt = _crypt_sm2(sm2, "", public)
        try:
            return bool(crypt.verify_with_sm3(f"{r:064x}{s:064x}", message))
        except Exception:  # gmssl raises bare exceptions for points off the curve
            return False


class GmalglibBackend:
    """gmalglib (C): raw ``r || s`` signatures, converted to DER at this boundary."""

    name = "gmalglib"

    def generate(self) -> tuple[bytes, bytes]:
        import gmalglib

        private, public = gmalglib.sm2_generate_keypair()
        return bytes(private), bytes(public)[1:]

    def sign(self, private: bytes, public: bytes, message: bytes) -> bytes:
        from gmalglib.sm2 import SM2

        raw = SM2(sk=private, pk=b"\x04" + public, uid=SM2_DEFAULT_ID).sign(message)
        return encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                    int.from_bytes(raw[32:], "big"))

    def verify(self, public: bytes, message: bytes, der_signature: bytes) -> bool:
        from gmalglib.sm2 import SM2

        try:
            r, s = decode_dss_signature(der_signature)
            raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
            return bool(SM2(pk=b"\x04" + public, uid=SM2_DEFAULT_ID).verify(message, raw))
        except (ValueError, OverflowError):  # not DER, r or s too long, point off the curve
            return False


class PerOperationBackend:
    """The fastest installed backend for each operation (measured by
    bench/secure_channel_bench.py): signing by the first of ``signers``, verifying by the first
    of ``verifiers``."""

    def __init__(self, signer: Sm2Backend, verifier: Sm2Backend) -> None:
        self._signer, self._verifier = signer, verifier
        self.name = f"sign:{signer.name}+verify:{verifier.name}"

    def generate(self) -> tuple[bytes, bytes]:
        return self._signer.generate()

    def sign(self, private: bytes, public: bytes, message: bytes) -> bytes:
        return self._signer.sign(private, public, message)

    def verify(self, public: bytes, message: bytes, der_signature: bytes) -> bool:
        return self._verifier.verify(public, message, der_signature)


def sm2_backends() -> list[Sm2Backend]:
    """Available SM2 backends; the first is the one used: the fastest per operation."""
    installed: list[Sm2Backend] = []
    for module, backend in (("gmalglib", GmalglibBackend), ("gmssl_pyx", GmsslCBackend)):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        installed.append(backend())
    installed.append(GmsslPureBackend())
    signer = installed[0]  # gmalglib signs in about 0.3 ms, gmssl-pyx in 3 to 5 ms
    verifier = next((b for b in installed if b.name == "gmssl-pyx"), installed[0])
    if signer is verifier:
        return installed
    return [PerOperationBackend(signer, verifier), *installed]


class PublicKey:
    """A verifying key of one suite; ``encode()`` is the SEC1 uncompressed point (65 bytes)."""

    def __init__(self, suite: Suite, point: bytes, backend: Sm2Backend | None = None) -> None:
        if len(point) != 65 or point[0] != 0x04:
            raise MalformedMessage("a public key is a 65-byte uncompressed SEC1 point")
        self.suite = suite
        self._point = bytes(point)
        self._sm2 = backend or sm2_backends()[0]
        self._ec: ec.EllipticCurvePublicKey | None = None
        if suite is Suite.P256_SHA256:
            try:
                self._ec = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            except ValueError as exc:
                raise MalformedMessage(f"not a P-256 point: {exc}") from exc

    def encode(self) -> bytes:
        return self._point

    def verify(self, signature: bytes, message: bytes) -> bool:
        if self.suite is Suite.P256_SHA256:
            assert self._ec is not None
            try:
                self._ec.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            except (InvalidSignature, ValueError):
                return False
            return True
        return self._sm2.verify(self._point[1:], message, signature)

    def to_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM, for tools such as openssl."""
        if self.suite is Suite.P256_SHA256:
            assert self._ec is not None
            return self._ec.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        # id-ecPublicKey with the SM2 curve OID 1.2.156.10197.1.301
        prefix = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
        import base64

        body = base64.encodebytes(prefix + self._point).replace(b"\n", b"")
        lines = [body[i:i + 64] for i in range(0, len(body), 64)]
        return b"-----BEGIN PUBLIC KEY-----\n" + b"\n".join(lines) + \
            b"\n-----END PUBLIC KEY-----\n"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PublicKey) and (other.suite, other._point) == (self.suite,
                                                                                 self._point)

    def __hash__(self) -> int:
        return hash((self.suite, self._point))


class PrivateKey:
    """A signing key. Its bytes leave this object only through ``private_bytes`` for the
    module's own key file; no message carries them."""

    def __init__(self, suite: Suite, scalar: bytes, backend: Sm2Backend | None = None) -> None:
        if len(scalar) != 32:
            raise MalformedMessage("a private key is a 32-byte scalar")
        self.suite = suite
        self._scalar = bytes(scalar)
        self._sm2 = backend or sm2_backends()[0]
        if suite is Suite.P256_SHA256:
            self._ec = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
            point = self._ec.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        else:
            point = b"\x04" + _sm2_public_from_scalar(self._scalar)
        self.public_key = PublicKey(suite, point, self._sm2)

    def sign(self, message: bytes) -> bytes:
        if self.suite is Suite.P256_SHA256:
            return bytes(self._ec.sign(message, ec.ECDSA(hashes.SHA256())))
        return self._sm2.sign(self._scalar, self.public_key.encode()[1:], message)

    def private_bytes(self) -> bytes:
        """The raw scalar: only for the module's owner-only key file."""
        return self._scalar

    def __repr__(self) -> str:  # never print key material
        return f"PrivateKey({self.suite.name}, public={self.public_key.encode()[:5].hex()}...)"


def _sm2_public_from_scalar(scalar: bytes) -> bytes:
    try:
        import gmalglib
    except ImportError:
        pass
    else:
        return bytes(gmalglib.sm2_get_pk(scalar))[1:]
    from gmssl import sm2

    crypt = sm2.CryptSM2(private_key=scalar.hex(), public_key="")
    return bytes.fromhex(crypt._kg(int.from_bytes(scalar, "big"), sm2.default_ecc_table["g"]))


def generate_private_key(suite: Suite, backend: Sm2Backend | None = None) -> PrivateKey:
    if suite is Suite.P256_SHA256:
        key = ec.generate_private_key(ec.SECP256R1())
        return PrivateKey(suite, key.private_numbers().private_value.to_bytes(32, "big"))
    sm2 = backend or sm2_backends()[0]
    scalar, _public = sm2.generate()
    return PrivateKey(suite, scalar, sm2)


def load_private_key(suite: Suite, scalar: bytes) -> PrivateKey:
    return PrivateKey(suite, scalar)


def load_public_key(suite: Suite, point: bytes) -> PublicKey:
    return PublicKey(suite, point)
