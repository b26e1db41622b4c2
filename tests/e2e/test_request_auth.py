"""The sans-IO check a module runs before it prompts: only requests the platform signed.

Each test is an attack by someone who can publish on a gateway's request topic or write to a
module's control point, but holds no platform key; both suites.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from e2e import (
    PLATFORM_ID_SIZE,
    REQUEST_DOMAIN,
    USAGE_CONFIRMATION,
    USAGE_REQUEST_SIGNING,
    CertificateAuthority,
    ConfirmationRequest,
    E2EError,
    ErrorCode,
    MalformedMessage,
    Replay,
    RequestSigner,
    SeenRequests,
    Suite,
    TooManyRequests,
    TrustAnchors,
    UntrustedRequest,
    decode_envelope,
    encode_envelope,
    generate_private_key,
    request_signed_bytes,
    verify_request,
)
from e2e.cbor import dumps

PLATFORM_ID = bytes(range(16))
NOW = int(time.time())


@pytest.fixture(params=list(Suite), ids=lambda s: s.name)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param  # type: ignore[no-any-return]


@dataclasses.dataclass
class Pki:
    ca: CertificateAuthority
    signer: RequestSigner
    anchors: TrustAnchors


def make_pki(suite: Suite, *, subject: bytes = PLATFORM_ID, usage: int = USAGE_REQUEST_SIGNING,
             not_before: int = NOW - 60, not_after: int = NOW + 3600) -> Pki:
    ca = CertificateAuthority.generate(suite)
    key = generate_private_key(suite)
    cert = ca.issue(key.public_key, subject, not_before=not_before, not_after=not_after,
                    usage=usage)
    signer = RequestSigner(key, cert)
    return Pki(ca, signer, TrustAnchors(PLATFORM_ID, {suite: ca.public_key}))


def request(suite: Suite, **changes: Any) -> ConfirmationRequest:
    fields: dict[str, Any] = dict(
        transaction_id=b"\x11" * 16, payer_account="alice-001", payee_account="shop-42",
        order_reference="A-17", order_description="coffee beans", amount_minor=1250,
        currency="EUR", nonce=b"\x22" * 16, expires_at=NOW + 60, suite=suite)
    fields.update(changes)
    return ConfirmationRequest(**fields)


def test_genuine_request_verifies_and_survives_the_wire(suite: Suite) -> None:
    pki = make_pki(suite)
    signed = pki.signer.sign(request(suite))
    received = decode_envelope(encode_envelope(signed))
    assert received == signed
    assert isinstance(received, ConfirmationRequest)
    cert = verify_request(received, pki.anchors, now=NOW)
    assert cert.module_id == PLATFORM_ID and cert.usage == USAGE_REQUEST_SIGNING


def test_signed_bytes_are_the_domain_and_the_body_without_the_signature(suite: Suite) -> None:
    """Exactly what docs/e2e-messages.md writes down, so another implementation can verify."""
    signed = make_pki(suite).signer.sign(request(suite))
    body = signed.body()
    assert set(body) == set(range(1, 13))
    unsigned = {k: v for k, v in body.items() if k != 12}
    assert request_signed_bytes(signed) == b"blegw/confirmation-request/v1" + dumps(unsigned)
    assert REQUEST_DOMAIN == b"blegw/confirmation-request/v1"


def test_unsigned_request_is_untrusted(suite: Suite) -> None:
    pki = make_pki(suite)
    with pytest.raises(UntrustedRequest, match="not signed"):
        verify_request(request(suite), pki.anchors, now=NOW)


def test_module_without_trust_anchors_refuses_every_request(suite: Suite) -> None:
    signed = make_pki(suite).signer.sign(request(suite))
    with pytest.raises(UntrustedRequest, match="needs provisioning") as caught:
        verify_request(signed, None, now=NOW)
    assert caught.value.code is ErrorCode.UNTRUSTED_REQUEST


def test_request_signed_by_a_module_key_is_untrusted(suite: Suite) -> None:
    """A module certificate from the same CA (usage 1) cannot pass as the platform's, not even
    one whose subject is the platform id."""
    pki = make_pki(suite)
    module_key = generate_private_key(suite)
    for subject in (b"\x42" * 16, PLATFORM_ID):
        module_cert = pki.ca.issue(module_key.public_key, subject, not_before=NOW - 60,
                                   not_after=NOW + 3600, usage=USAGE_CONFIRMATION)
        forged = forge(request(suite), module_key, module_cert.encode())
        with pytest.raises(UntrustedRequest, match="usage"):
            verify_request(forged, pki.anchors, now=NOW)


def test_request_signing_certificate_for_another_subject_is_untrusted(suite: Suite) -> None:
    """Usage 2 from the right CA, but not issued to the installed platform id."""
    pki = make_pki(suite)
    other = make_pki(suite, subject=b"\x99" * 16)
    key = generate_private_key(suite)
    cert = pki.ca.issue(key.public_key, b"\x99" * 16, not_before=NOW - 60,
                        not_after=NOW + 3600, usage=USAGE_REQUEST_SIGNING)
    with pytest.raises(UntrustedRequest, match="not the platform's"):
        verify_request(forge(request(suite), key, cert.encode()), pki.anchors, now=NOW)
    assert other.anchors.platform_id == PLATFORM_ID


def test_platform_certificate_from_another_ca_is_untrusted(suite: Suite) -> None:
    pki, rogue = make_pki(suite), make_pki(suite)  # same platform id, another CA
    signed = rogue.signer.sign(request(suite))
    with pytest.raises(UntrustedRequest, match="another CA"):
        verify_request(signed, pki.anchors, now=NOW)


def test_certificate_with_a_forged_ca_signature_is_untrusted(suite: Suite) -> None:
    pki = make_pki(suite)
    cert = dataclasses.replace(pki.signer.certificate, not_after=NOW + 10**8)
    key = generate_private_key(suite)
    cert = dataclasses.replace(cert, public_key=key.public_key.encode())
    with pytest.raises(UntrustedRequest, match="does not verify"):
        verify_request(forge(request(suite), key, cert.encode()), pki.anchors, now=NOW)


@pytest.mark.parametrize("change", [
    {"amount_minor": 99_999_999}, {"payee_account": "mallory"}, {"currency": "USD"},
    {"order_description": "refund"}, {"order_reference": "X-1"}, {"payer_account": "bob"},
    {"expires_at": NOW + 86400}, {"nonce": b"\x33" * 16}, {"transaction_id": b"\x44" * 16},
], ids=lambda c: next(iter(c)))
def test_request_altered_after_signing_is_untrusted(suite: Suite, change: dict[str, Any]
                                                    ) -> None:
    pki = make_pki(suite)
    altered = dataclasses.replace(pki.signer.sign(request(suite)), **change)
    with pytest.raises(UntrustedRequest, match="does not verify"):
        verify_request(altered, pki.anchors, now=NOW)


def test_signature_of_another_request_is_untrusted(suite: Suite) -> None:
    pki = make_pki(suite)
    small = pki.signer.sign(request(suite, amount_minor=1))
    big = dataclasses.replace(request(suite, amount_minor=99_999_999),
                              platform_certificate=small.platform_certificate,
                              platform_signature=small.platform_signature)
    with pytest.raises(UntrustedRequest):
        verify_request(big, pki.anchors, now=NOW)


def test_expired_platform_certificate_is_untrusted(suite: Suite) -> None:
    pki = make_pki(suite, not_before=NOW - 7200, not_after=NOW - 1)
    signed = pki.signer.sign(request(suite))
    with pytest.raises(UntrustedRequest, match="expired"):
        verify_request(signed, pki.anchors, now=NOW)
    future = make_pki(suite, not_before=NOW + 600, not_after=NOW + 7200)
    with pytest.raises(UntrustedRequest, match="not yet valid"):
        verify_request(future.signer.sign(request(suite)), future.anchors, now=NOW)


def test_certificate_of_the_other_suite_is_untrusted() -> None:
    p256, sm2 = make_pki(Suite.P256_SHA256), make_pki(Suite.SM2_SM3)
    anchors = TrustAnchors(PLATFORM_ID, {Suite.P256_SHA256: p256.ca.public_key,
                                         Suite.SM2_SM3: sm2.ca.public_key})
    genuine = sm2.signer.sign(request(Suite.SM2_SM3))
    relabelled = dataclasses.replace(genuine, suite=Suite.P256_SHA256)
    with pytest.raises(UntrustedRequest, match="another suite"):
        verify_request(relabelled, anchors, now=NOW)
    only_p256 = TrustAnchors(PLATFORM_ID, {Suite.P256_SHA256: p256.ca.public_key})
    with pytest.raises(UntrustedRequest, match="no SM2_SM3 CA root"):
        verify_request(genuine, only_p256, now=NOW)


def test_garbage_certificate_is_untrusted_not_a_crash(suite: Suite) -> None:
    pki = make_pki(suite)
    forged = dataclasses.replace(request(suite), platform_certificate=b"\xa0",
                                 platform_signature=b"\x30\x00")
    with pytest.raises(UntrustedRequest, match="unreadable"):
        verify_request(forged, pki.anchors, now=NOW)


def forge(req: ConfirmationRequest, key: Any, cert: bytes) -> ConfirmationRequest:
    """Sign a request the way the platform does, with a key that is not the platform's."""
    with_cert = dataclasses.replace(req, platform_certificate=cert, platform_signature=b"\x00")
    return dataclasses.replace(with_cert,
                               platform_signature=key.sign(request_signed_bytes(with_cert)))


def test_signer_refuses_a_certificate_that_is_not_its_own(suite: Suite) -> None:
    pki = make_pki(suite)
    key = generate_private_key(suite)
    with pytest.raises(ValueError, match="another key"):
        RequestSigner(key, pki.signer.certificate)
    module_cert = pki.ca.issue(key.public_key, PLATFORM_ID, not_before=NOW - 60,
                               not_after=NOW + 60, usage=USAGE_CONFIRMATION)
    with pytest.raises(ValueError, match="not a request-signing"):
        RequestSigner(key, module_cert)
    other = Suite.SM2_SM3 if suite is Suite.P256_SHA256 else Suite.P256_SHA256
    with pytest.raises(ValueError, match="signer"):
        pki.signer.sign(request(other))


# -- the codec of the new fields ----------------------------------------------------------------
def test_certificate_without_signature_is_malformed(suite: Suite) -> None:
    with pytest.raises(MalformedMessage, match="together"):
        request(suite, platform_certificate=b"x")
    with pytest.raises(MalformedMessage, match="together"):
        request(suite, platform_signature=b"x")
    with pytest.raises(MalformedMessage, match="too long"):
        request(suite, platform_certificate=b"x" * 1025, platform_signature=b"x")
    with pytest.raises(MalformedMessage, match="too long"):
        request(suite, platform_certificate=b"x", platform_signature=b"x" * 81)


def test_present_but_empty_fields_are_malformed(suite: Suite) -> None:
    """One encoding per request: an absent field and an empty one are not both accepted."""
    body = request(suite).body()
    for extra in ({11: b"", 12: b""}, {11: b"x", 12: b""}, {11: "x", 12: b"y"}):
        envelope = dumps({1: 1, 2: 1, 3: {**body, **extra}})
        with pytest.raises(MalformedMessage):
            decode_envelope(envelope)


# -- replay memory --------------------------------------------------------------------------
def test_replayed_genuine_request_is_admitted_once(suite: Suite) -> None:
    seen = SeenRequests()
    genuine = make_pki(suite).signer.sign(request(suite))
    seen.admit(genuine, now=NOW)
    with pytest.raises(Replay) as caught:
        seen.admit(genuine, now=NOW + 1)
    assert caught.value.code is ErrorCode.REPLAY
    restored = SeenRequests(entries=seen.entries())  # what the module persists
    with pytest.raises(Replay):
        restored.admit(genuine, now=NOW + 2)
    seen.admit(request(suite, transaction_id=b"\x55" * 16), now=NOW)
    assert len(seen) == 2


def test_replay_memory_forgets_only_expired_requests_and_stays_bounded(suite: Suite) -> None:
    seen = SeenRequests(capacity=3)
    for i in range(3):
        seen.admit(request(suite, transaction_id=bytes([i]) * 16, expires_at=NOW + 10), now=NOW)
    with pytest.raises(TooManyRequests) as caught:  # full: refuse, never forget a live one
        seen.admit(request(suite, transaction_id=b"\x09" * 16), now=NOW)
    assert caught.value.code is ErrorCode.BUSY
    with pytest.raises(Replay):
        seen.admit(request(suite, transaction_id=b"\x00" * 16), now=NOW + 5)
    seen.admit(request(suite, transaction_id=b"\x09" * 16), now=NOW + 11)  # the rest expired
    assert len(seen) == 1


# -- trust anchors ----------------------------------------------------------------------------
def test_trust_anchors_round_trip_and_refuse_garbage() -> None:
    anchors = TrustAnchors(PLATFORM_ID, {s: CertificateAuthority.generate(s).public_key
                                         for s in Suite})
    assert TrustAnchors.decode(anchors.encode()) == anchors
    for junk in (b"", b"\xa0", dumps({1: b"short", 2: {}}), dumps({1: PLATFORM_ID, 2: {9: b""}}),
                 dumps({1: PLATFORM_ID, 2: {1: b"\x04" + bytes(64)}}), dumps([1, 2])):
        with pytest.raises(E2EError):
            TrustAnchors.decode(junk)
    with pytest.raises(MalformedMessage):
        TrustAnchors(b"\x00" * (PLATFORM_ID_SIZE - 1), anchors.ca_keys)
    with pytest.raises(MalformedMessage):
        TrustAnchors(PLATFORM_ID, {Suite.SM2_SM3: anchors.ca_keys[Suite.P256_SHA256]})
