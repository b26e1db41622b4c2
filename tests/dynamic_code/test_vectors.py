"""The published vectors of docs/dynamic-codes.md (docs/vectors/dynamic-code.json).

Encryption takes its randomness from a fixed generator here, so each ciphertext is exact; the
test rebuilds every vector from the keys and inputs and compares, decrypts each with the
unit's function, and decrypts the P-256 one a second time with ``cryptography`` alone
following the document's description (so the document, not only the code, is checked).
Signatures (ECDSA, SM2) are randomised: a vector gives the exact signed bytes and one
signature that verifies over them.

Rebuild after a deliberate format change: ``python -m tests.dynamic_code.test_vectors``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dynamic_code import Role, Verification
from dynamic_code.certificates import (
    DEVICE_CERT_DOMAIN,
    DeviceCertificate,
    certificate_ref,
    owner_binding,
)
from dynamic_code.encryption import ECIES_INFO, PAYMENT_PURPOSE, open_sealed, seal
from dynamic_code.messages import (
    CONSUMPTION_DOMAIN,
    PAYMENT_DOMAIN,
    ConsumptionCode,
    PaymentContent,
)
from e2e.certificates import CertificateAuthority, key_id
from e2e.suites import PrivateKey, Suite, load_private_key

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "dynamic-code.json"
NOW = 1_800_000_000


def _scalar(label: str) -> bytes:
    return hashlib.sha256(b"blegw dynamic-code vector " + label.encode()).digest()


def _rng(label: str) -> Any:
    counter = 0

    def rng(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.sha256(f"{label}/{counter}".encode()).digest()[:n]
    return rng


def _cert(ca: PrivateKey, subject: PrivateKey, role: Role, account: str,
          binding: bytes | None) -> DeviceCertificate:
    return DeviceCertificate(7, key_id(ca.public_key), bytes(range(16)), subject.suite,
                             subject.public_key.encode(), NOW, NOW + 86400, role, "vector",
                             account, binding)


def build(published: dict[str, Any] | None = None) -> dict[str, Any]:
    """The vectors; with ``published``, its randomised signatures are taken over (after they
    verify) so every other byte can be compared exactly."""
    out: list[dict[str, Any]] = []
    for index, suite in enumerate(Suite):
        old = published["vectors"][index] if published else None
        ca, merchant, payer = (load_private_key(suite, _scalar(f"{suite.label} {who}"))
                               for who in ("ca", "merchant", "payer"))
        binding = owner_binding(bytes(32), bytes(range(32)))
        merchant_cert = _cert(ca, merchant, Role.MERCHANT, "shop", None)
        payer_cert = _cert(ca, payer, Role.MOBILE, "alice", binding)
        signed_cert = dataclasses.replace(merchant_cert,
                                          signature=ca.sign(merchant_cert.signed_bytes()))
        if old is not None:
            signed_cert = DeviceCertificate.decode(bytes.fromhex(old["merchant_certificate"]))
            assert dataclasses.replace(signed_cert, signature=b"") == merchant_cert
        consumption = ConsumptionCode(signed_cert.encode(), 1250, "EUR", bytes(16), NOW,
                                      NOW + 120)
        content = PaymentContent(certificate_ref(signed_cert.encode()), "shop", 1250, "EUR",
                                 bytes(16), "alice", payer_cert.encode(), Verification.DEVICE,
                                 None, NOW, NOW + 120).sign(payer)
        if old is not None:
            content = dataclasses.replace(content,
                                          signature=bytes.fromhex(old["payment_signature"]))
        plaintext = content.encode()
        ciphertext = seal(merchant.public_key, PAYMENT_PURPOSE, plaintext,
                          _rng(f"{suite.label} seal"))
        out.append({
            "suite": suite.label,
            "ca_private": ca.private_bytes().hex(),
            "merchant_private": merchant.private_bytes().hex(),
            "payer_private": payer.private_bytes().hex(),
            "owner_binding": {"salt": bytes(32).hex(), "template": bytes(range(32)).hex(),
                              "binding": binding.hex()},
            "merchant_certificate": signed_cert.encode().hex(),
            "merchant_certificate_signed_bytes": signed_cert.signed_bytes().hex(),
            "consumption_signed_bytes": (CONSUMPTION_DOMAIN + consumption.body()).hex(),
            "payment_signed_bytes": (PAYMENT_DOMAIN + content.body()).hex(),
            "payment_signature": content.signature.hex(),
            "payment_plaintext": plaintext.hex(),
            "payment_ciphertext": ciphertext.hex(),
        })
    return {"description": "docs/dynamic-codes.md, section Test vectors", "now": NOW,
            "vectors": out}


def test_vectors_are_reproduced_exactly() -> None:
    published = json.loads(VECTORS.read_text())
    assert build(published) == published


def test_published_signatures_and_ciphertexts_check() -> None:
    for vector in json.loads(VECTORS.read_text())["vectors"]:
        suite = {s.label: s for s in Suite}[vector["suite"]]
        ca = load_private_key(suite, bytes.fromhex(vector["ca_private"]))
        merchant = load_private_key(suite, bytes.fromhex(vector["merchant_private"]))
        payer = load_private_key(suite, bytes.fromhex(vector["payer_private"]))
        cert = DeviceCertificate.decode(bytes.fromhex(vector["merchant_certificate"]))
        assert cert.signed_bytes().hex() == vector["merchant_certificate_signed_bytes"]
        assert cert.signed_bytes().startswith(DEVICE_CERT_DOMAIN)
        assert ca.public_key.verify(cert.signature, cert.signed_bytes())
        assert payer.public_key.verify(bytes.fromhex(vector["payment_signature"]),
                                       bytes.fromhex(vector["payment_signed_bytes"]))
        ciphertext = bytes.fromhex(vector["payment_ciphertext"])
        plaintext = open_sealed(suite, merchant.private_bytes(), merchant.public_key.encode(),
                                PAYMENT_PURPOSE, ciphertext)
        assert plaintext.hex() == vector["payment_plaintext"]
        assert PaymentContent.decode(plaintext).signature.hex() == vector["payment_signature"]
        rebuilt = seal(merchant.public_key, PAYMENT_PURPOSE, plaintext,
                       _rng(f"{suite.label} seal"))
        assert rebuilt == ciphertext
        if suite is Suite.P256_SHA256:
            assert _ecies_as_documented(merchant, ciphertext) == plaintext
        CertificateAuthority(ca)  # the CA key loads as one


def _ecies_as_documented(recipient: PrivateKey, blob: bytes) -> bytes:
    """docs/dynamic-codes.md, "Encryption", with nothing but ``cryptography``."""
    own = ec.derive_private_key(int.from_bytes(recipient.private_bytes(), "big"),
                                ec.SECP256R1())
    eph = blob[:65]
    shared = own.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), eph))
    point = recipient.public_key.encode()
    okm = HKDF(hashes.SHA256(), 28, salt=None,
               info=ECIES_INFO + PAYMENT_PURPOSE + eph + point).derive(shared)
    return AESGCM(okm[:16]).decrypt(okm[16:], blob[65:], PAYMENT_PURPOSE)


if __name__ == "__main__":
    VECTORS.write_text(json.dumps(build(), indent=1) + "\n")
