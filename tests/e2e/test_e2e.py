"""Messages, suites, certificates and the approval signature, including interop checks with
independent implementations (OpenSSL's command line, GmSSL in C, pure-Python gmssl)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from e2e import (
    BadSignature,
    CertificateAuthority,
    CertificateInvalid,
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    ErrorCode,
    ErrorResponse,
    Expired,
    MalformedMessage,
    PublicKey,
    Replay,
    Suite,
    UnsupportedSuite,
    UserVerification,
    WrongRequest,
    decode_envelope,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
    sm2_backends,
    verify_confirmation,
)
from e2e.certificates import Certificate
from e2e.suites import PrivateKey

NOW = 1_800_000_000
MODULE_ID = bytes(range(16))


def make_request(suite: Suite = Suite.P256_SHA256, **changes: object) -> ConfirmationRequest:
    fields: dict[str, object] = dict(
        transaction_id=bytes(16), payer_account="alice-001", payee_account="shop-42",
        order_reference="A-17", order_description="coffee beans", amount_minor=1250,
        currency="EUR", nonce=bytes(range(16)), expires_at=NOW + 120, suite=suite)
    fields.update(changes)
    return ConfirmationRequest(**fields)  # type: ignore[arg-type]


@pytest.fixture(params=list(Suite), ids=lambda s: s.name)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def world(suite: Suite) -> tuple[CertificateAuthority, PrivateKey, Certificate]:
    ca = CertificateAuthority.generate(suite)
    key = generate_private_key(suite)
    cert = ca.issue(key.public_key, MODULE_ID, not_before=NOW - 10, not_after=NOW + 10**6)
    return ca, key, cert


def approve(request: ConfirmationRequest, key: PrivateKey, counter: int = 1
            ) -> tuple[bytes, ConfirmationResponse]:
    envelope = encode_envelope(request)
    response = sign_confirmation(envelope, request, decision=Decision.APPROVE, counter=counter,
                                 user_verification=UserVerification.PRESENCE, key=key,
                                 module_id=MODULE_ID)
    return envelope, response


def test_approval_verifies(suite: Suite, world: tuple[CertificateAuthority, PrivateKey,
                                                      Certificate]) -> None:
    ca, key, cert = world
    envelope, response = approve(make_request(suite), key)
    decoded = decode_envelope(encode_envelope(response))
    assert decoded == response
    verified = verify_confirmation(envelope, response, cert, ca.public_key, now=NOW,
                                   last_counter=0)
    assert verified.approved


@pytest.mark.parametrize("change", [
    {"amount_minor": 1251}, {"payee_account": "mallory"}, {"currency": "USD"},
    {"nonce": bytes(16)}, {"expires_at": NOW + 121}, {"order_reference": "A-18"},
    {"order_description": "other"}, {"payer_account": "bob"},
])
def test_a_changed_request_field_fails(suite: Suite, world: tuple[CertificateAuthority,
                                       PrivateKey, Certificate], change: dict[str, object]
                                       ) -> None:
    ca, key, cert = world
    _, response = approve(make_request(suite), key)
    forged = encode_envelope(make_request(suite, **change))
    with pytest.raises(BadSignature):
        verify_confirmation(forged, response, cert, ca.public_key, now=NOW, last_counter=0)


@pytest.mark.parametrize("change", [
    {"decision": Decision.DECLINE}, {"counter": 2}, {"user_verification": UserVerification.PIN},
])
def test_a_changed_response_field_fails(suite: Suite, world: tuple[CertificateAuthority,
                                        PrivateKey, Certificate], change: dict[str, object]
                                        ) -> None:
    ca, key, cert = world
    envelope, response = approve(make_request(suite), key)
    forged = dataclasses.replace(response, **change)  # type: ignore[arg-type]
    with pytest.raises(BadSignature):
        verify_confirmation(envelope, forged, cert, ca.public_key, now=NOW, last_counter=0)


def test_other_transaction_replay_and_expiry(suite: Suite, world: tuple[
        CertificateAuthority, PrivateKey, Certificate]) -> None:
    ca, key, cert = world
    envelope, response = approve(make_request(suite), key, counter=5)
    other = encode_envelope(make_request(suite, transaction_id=b"\x01" * 16))
    with pytest.raises(WrongRequest):
        verify_confirmation(other, response, cert, ca.public_key, now=NOW, last_counter=0)
    with pytest.raises(Replay):
        verify_confirmation(envelope, response, cert, ca.public_key, now=NOW, last_counter=5)
    with pytest.raises(Expired):
        verify_confirmation(envelope, response, cert, ca.public_key, now=NOW + 121,
                            last_counter=0)


def test_certificate_checks(suite: Suite, world: tuple[CertificateAuthority, PrivateKey,
                                                       Certificate]) -> None:
    ca, key, cert = world
    assert Certificate.decode(cert.encode()) == cert
    envelope, response = approve(make_request(suite), key)
    foreign = CertificateAuthority.generate(suite)
    with pytest.raises(CertificateInvalid, match="another CA"):
        verify_confirmation(envelope, response, cert, foreign.public_key, now=NOW,
                            last_counter=0)
    tampered = dataclasses.replace(cert, not_after=cert.not_after + 1)
    with pytest.raises(CertificateInvalid, match="signature"):
        verify_confirmation(envelope, response, tampered, ca.public_key, now=NOW,
                            last_counter=0)
    with pytest.raises(CertificateInvalid, match="expired"):
        verify_confirmation(envelope, response, cert, ca.public_key, now=NOW + 10**7,
                            last_counter=0)
    # A certificate for another key: the signature cannot verify under it.
    other_key = generate_private_key(suite)
    other_cert = ca.issue(other_key.public_key, MODULE_ID, not_before=NOW - 1,
                          not_after=NOW + 100)
    with pytest.raises(BadSignature):
        verify_confirmation(envelope, response, other_cert, ca.public_key, now=NOW,
                            last_counter=0)


@settings(max_examples=100, deadline=None)
@given(amount=st.integers(0, 10**15), payee=st.text(min_size=1, max_size=64),
       description=st.text(min_size=1, max_size=140), nonce=st.binary(min_size=16, max_size=32))
def test_request_round_trip(amount: int, payee: str, description: str, nonce: bytes) -> None:
    request = make_request(amount_minor=amount, payee_account=payee,
                           order_description=description, nonce=nonce)
    assert decode_envelope(encode_envelope(request)) == request


@pytest.mark.parametrize("data", [
    b"", b"\xff\xff", cbor2.dumps([1, 2, 3]), cbor2.dumps({1: 1, 2: 1}),
    cbor2.dumps({1: 2, 2: 1, 3: {}}, canonical=True),
    cbor2.dumps({1: 1, 2: 99, 3: {}}, canonical=True),
    cbor2.dumps({1: 1, 2: 1, 3: {1: b"short"}}, canonical=True),
    cbor2.dumps({1: 1, 2: 3, 3: {1: "x", 2: b"", 3: ""}}, canonical=True),
    bytes(9000),
])
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(MalformedMessage):
        decode_envelope(data)


def test_unknown_suite_and_non_canonical_and_extra_keys() -> None:
    body = make_request().body()
    body[10] = 9
    with pytest.raises(UnsupportedSuite):
        decode_envelope(cbor2.dumps({1: 1, 2: 1, 3: body}, canonical=True))
    good = encode_envelope(make_request())
    loose = cbor2.dumps({3: make_request().body(), 2: 1, 1: 1})
    assert loose != good
    with pytest.raises(MalformedMessage, match="canonical"):
        decode_envelope(loose)
    extra = make_request().body()
    extra[99] = 1
    with pytest.raises(MalformedMessage, match="unknown keys"):
        decode_envelope(cbor2.dumps({1: 1, 2: 1, 3: extra}, canonical=True))


def test_error_response_round_trip() -> None:
    err = ErrorResponse(ErrorCode.BUSY, bytes(16), "one request at a time")
    assert decode_envelope(encode_envelope(err)) == err


# -- interop ----------------------------------------------------------------------------------
@pytest.mark.parametrize("signer", sm2_backends(), ids=lambda b: b.name)
@pytest.mark.parametrize("verifier", sm2_backends(), ids=lambda b: b.name)
def test_sm2_backends_interoperate(signer: object, verifier: object) -> None:
    key = PrivateKey(Suite.SM2_SM3, generate_private_key(Suite.SM2_SM3).private_bytes(),
                     signer)  # type: ignore[arg-type]
    signature = key.sign(b"message")
    public = PublicKey(Suite.SM2_SM3, key.public_key.encode(), verifier)  # type: ignore[arg-type]
    assert public.verify(signature, b"message")
    assert not public.verify(signature, b"messagf")


@pytest.mark.parametrize("signer", sm2_backends(), ids=lambda b: b.name)
@pytest.mark.parametrize("verifier", sm2_backends(), ids=lambda b: b.name)
def test_sm2_key_whose_x_starts_with_04_interoperates(signer: object, verifier: object) -> None:
    """The private scalar 11 gives a public x whose hex starts with "04". gmssl's constructor
    strips a leading "04" with ``lstrip``, eating x's leading digits: one key in 256 signed what
    no other implementation verifies."""
    key = PrivateKey(Suite.SM2_SM3, (11).to_bytes(32, "big"), signer)  # type: ignore[arg-type]
    assert key.public_key.encode().hex().startswith("0404")
    public = PublicKey(Suite.SM2_SM3, key.public_key.encode(), verifier)  # type: ignore[arg-type]
    for message in (b"message", b""):
        assert public.verify(key.sign(message), message)
    assert not public.verify(key.sign(b"message"), b"messagf")


def _openssl_verify(tmp_path: Path, public: PublicKey, message: bytes, signature: bytes) -> bool:
    (tmp_path / "pub.pem").write_bytes(public.to_pem())
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    if public.suite is Suite.SM2_SM3:
        cmd = ["openssl", "pkeyutl", "-verify", "-rawin", "-digest", "sm3", "-pubin", "-inkey",
               "pub.pem", "-pkeyopt", "distid:1234567812345678", "-in", "msg", "-sigfile", "sig"]
    else:
        cmd = ["openssl", "dgst", "-sha256", "-verify", "pub.pem", "-signature", "sig", "msg"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    return result.returncode == 0


def test_our_signatures_verify_with_openssl(tmp_path: Path, suite: Suite) -> None:
    key = generate_private_key(suite)
    signature = key.sign(b"approve 12.50 EUR")
    assert _openssl_verify(tmp_path, key.public_key, b"approve 12.50 EUR", signature)
    assert not _openssl_verify(tmp_path, key.public_key, b"approve 99.50 EUR", signature)


def test_openssl_sm2_signatures_verify_with_ours(tmp_path: Path) -> None:
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                    "ec_paramgen_curve:SM2", "-out", "key.pem"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=30)
    (tmp_path / "msg").write_bytes(b"signed by openssl")
    subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-digest", "sm3", "-inkey",
                    "key.pem", "-pkeyopt", "distid:1234567812345678", "-in", "msg", "-out",
                    "sig"], cwd=tmp_path, check=True, capture_output=True, timeout=30)
    der = subprocess.run(["openssl", "pkey", "-in", "key.pem", "-pubout", "-outform", "DER"],
                         cwd=tmp_path, check=True, capture_output=True, timeout=30).stdout
    point = der[-65:]
    for backend in sm2_backends():
        public = PublicKey(Suite.SM2_SM3, point, backend)
        assert public.verify((tmp_path / "sig").read_bytes(), b"signed by openssl")
