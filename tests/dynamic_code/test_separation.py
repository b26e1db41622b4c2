"""Domain separation: no ciphertext or signature of one kind is accepted as another, with one
key pair doing everything (so the tags, not distinct keys, do the separating), and device
certificates never pass as module certificates or the other way round."""

from __future__ import annotations

import itertools
import secrets
import time

import pytest

from dynamic_code import DecryptFailed, MalformedDynamicCode, Role, issue_device_certificate
from dynamic_code.certificates import DEVICE_CERT_DOMAIN, OWNER_BINDING_DOMAIN, DeviceCertificate
from dynamic_code.encryption import (
    PAYMENT_PURPOSE,
    PURPOSES,
    SETTLEMENT_PURPOSE,
    open_sealed,
    seal,
)
from dynamic_code.fingerprint import TEMPLATE_DOMAIN
from dynamic_code.messages import SIGNING_DOMAINS
from e2e.approval import DOMAIN as APPROVAL_DOMAIN
from e2e.certificates import Certificate, CertificateAuthority
from e2e.errors import MalformedMessage
from e2e.request_auth import REQUEST_DOMAIN
from e2e.suites import PrivateKey, Suite, generate_private_key
from secure_channel.handshake import SIG_MODULE, SIG_PLATFORM
from secure_channel.primitives import ecies_encrypt, sm2_encrypt
from transaction_code.payload import CODE_DOMAINS, COUNTERSIGN_DOMAIN

OTHER_LAYERS = [APPROVAL_DOMAIN, REQUEST_DOMAIN, *CODE_DOMAINS.values(), COUNTERSIGN_DOMAIN,
                SIG_MODULE, SIG_PLATFORM]
OURS = [*SIGNING_DOMAINS, *PURPOSES, DEVICE_CERT_DOMAIN, OWNER_BINDING_DOMAIN, TEMPLATE_DOMAIN]


def test_no_tag_is_a_prefix_of_another() -> None:
    """Signed or encrypted bytes begin with their tag: when no tag is a prefix of another, no
    bytes made for one purpose can be read for another, whatever follows."""
    for a, b in itertools.permutations(OURS + OTHER_LAYERS, 2):
        assert not b.startswith(a), (a, b)
    assert len(set(OURS)) == len(OURS)


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.label)
def key(request: pytest.FixtureRequest) -> PrivateKey:
    return generate_private_key(request.param)


def _open(key: PrivateKey, purpose: bytes, blob: bytes) -> bytes:
    return open_sealed(key.suite, key.private_bytes(), key.public_key.encode(), purpose, blob)


def test_ciphertext_for_the_merchant_does_not_open_for_the_server(key: PrivateKey) -> None:
    for made, asked in itertools.permutations(PURPOSES, 2):
        blob = seal(key.public_key, made, b"\xa1\x01\x02")
        assert _open(key, made, blob) == b"\xa1\x01\x02"
        with pytest.raises(DecryptFailed):
            _open(key, asked, blob)


def test_secure_channel_ciphertext_is_not_a_dynamic_code_ciphertext(key: PrivateKey) -> None:
    """The secure channel encrypts secrets to module keys too: its key transport never opens
    here (for ECIES the KDF labels differ; raw SM2 has no label, so the purpose tag at the
    start of every plaintext of this layer is what separates: a channel secret is random)."""
    point = key.public_key.encode()
    secret = secrets.token_bytes(48)
    blob = sm2_encrypt(point, secret, None) if key.suite is Suite.SM2_SM3 \
        else ecies_encrypt(point, secret, None)
    for purpose in PURPOSES:
        with pytest.raises(DecryptFailed):
            _open(key, purpose, blob)


def test_signature_is_not_a_ciphertext_and_ciphertext_not_a_signature(key: PrivateKey
                                                                      ) -> None:
    message = SIGNING_DOMAINS[1] + b"\xa0"
    signature = key.sign(message)
    for purpose in PURPOSES:
        with pytest.raises(DecryptFailed):
            _open(key, purpose, signature)
    blob = seal(key.public_key, SETTLEMENT_PURPOSE, message)
    assert not key.public_key.verify(blob, message)
    for a, b in itertools.permutations(SIGNING_DOMAINS, 2):
        assert not key.public_key.verify(key.sign(a + b"\xa0"), b + b"\xa0")


def test_device_and_module_certificates_never_pass_as_each_other(key: PrivateKey) -> None:
    ca = CertificateAuthority(key)  # the same key as the CA of both kinds
    now = int(time.time())
    module = ca.issue(key.public_key, secrets.token_bytes(16), not_before=now,
                      not_after=now + 60)
    device = issue_device_certificate(ca, key.public_key, Role.MERCHANT,
                                      device_id=secrets.token_bytes(16), device_info="till",
                                      account="shop", not_before=now, not_after=now + 60)
    with pytest.raises(MalformedDynamicCode):
        DeviceCertificate.decode(module.encode())
    with pytest.raises(MalformedMessage):
        Certificate.decode(device.encode())
    # the CA's signature over the device TBS (with its domain) is not one over the bare TBS
    assert not key.public_key.verify(device.signature, device.tbs())



def test_sm2_ciphertext_with_an_oversized_coordinate_is_a_typed_error() -> None:
    """Found by the property tests: a changed byte made C1's x a 33-byte integer, and
    decryption raised OverflowError instead of refusing (in the secure channel's key transport
    as well, which shares the decryption)."""
    def der(tag: int, value: bytes) -> bytes:
        return bytes([tag, len(value)]) + value if len(value) < 0x80 else \
            bytes([tag, 0x81, len(value)]) + value

    key = generate_private_key(Suite.SM2_SM3)
    body = der(0x02, b"\x01" + bytes(32)) + der(0x02, b"\x01") + der(0x04, bytes(32)) + \
        der(0x04, b"abc")
    with pytest.raises(DecryptFailed):
        _open(key, PAYMENT_PURPOSE, der(0x30, body))
