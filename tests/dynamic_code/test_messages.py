"""Strict decoding of every message of flow F-E: hostile bytes give a typed error and nothing
else; valid messages round-trip; the text form; what a certificate's owner binding shows."""

from __future__ import annotations

import contextlib
import secrets
import time

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dynamic_code import (
    DynamicCodeError,
    MalformedDynamicCode,
    Role,
    TemplateVault,
    UnsupportedDynamicCode,
    Verification,
    from_text,
    issue_device_certificate,
    to_text,
)
from dynamic_code.certificates import DeviceCertificate, certificate_ref
from dynamic_code.messages import (
    ConsumptionCode,
    Forward,
    PaymentCode,
    PaymentContent,
    SettlementRequest,
)
from e2e.cbor import dumps
from e2e.certificates import CertificateAuthority
from e2e.suites import Suite, generate_private_key

NOW = int(time.time())
CA = CertificateAuthority.generate(Suite.P256_SHA256)
KEY = generate_private_key(Suite.P256_SHA256)
CERT = issue_device_certificate(CA, KEY.public_key, Role.MOBILE, device_id=bytes(16),
                                device_info="phone", account="alice", not_before=NOW,
                                not_after=NOW + 600, binding=bytes(32)).encode()
DECODERS = [DeviceCertificate.decode, ConsumptionCode.decode, PaymentContent.decode,
            PaymentCode.decode, Forward.decode, SettlementRequest.decode]


def samples() -> list[bytes]:
    consumption = ConsumptionCode(CERT, 100, "EUR", bytes(16), NOW, NOW + 60).sign(KEY)
    content = PaymentContent(certificate_ref(CERT), "shop", 100, "EUR", bytes(16), "alice",
                             CERT, Verification.FEATURES, bytes(32), NOW, NOW + 60).sign(KEY)
    return [CERT, consumption.encode(), content.encode(),
            PaymentCode(Suite.SM2_SM3, b"c" * 120).encode(),
            Forward(content.encode(), None, bytes(16)).sign(KEY).encode(),
            SettlementRequest(Suite.P256_SHA256, CERT, b"c" * 200).encode()]


def test_valid_messages_round_trip() -> None:
    for decode, data in zip(DECODERS, samples(), strict=True):
        assert decode(data).encode() == data  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_refused_with_a_typed_error(data: bytes) -> None:
    for decode in DECODERS:
        with contextlib.suppress(MalformedDynamicCode, UnsupportedDynamicCode):
            decode(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_messages_are_refused_or_decode_exactly(data: st.DataObject) -> None:
    """Any one field replaced, dropped or added: a typed error, or a message that re-encodes
    to the same bytes (never a silently different reading)."""
    index = data.draw(st.integers(0, len(DECODERS) - 1))
    body = cbor2.loads(samples()[index])
    key = data.draw(st.sampled_from([*body, 0, 14, 99]))
    action = data.draw(st.sampled_from(["replace", "drop"]))
    if action == "drop":
        body.pop(key, None)
    else:
        body[key] = data.draw(st.one_of(st.integers(-2**64, 2**64), st.binary(max_size=80),
                                        st.text(max_size=80), st.booleans(), st.none()))
    raw = cbor2.dumps(body)
    try:
        message = DECODERS[index](raw)  # type: ignore[operator]
    except DynamicCodeError:
        return
    assert message.encode() == raw


def test_non_canonical_encoding_is_refused() -> None:
    content = cbor2.loads(samples()[2])
    reordered = cbor2.dumps(dict(sorted(content.items(), reverse=True)))
    with pytest.raises(MalformedDynamicCode):
        PaymentContent.decode(reordered)


def test_features_only_with_seed_verification() -> None:
    body = cbor2.loads(samples()[2])
    body[9] = int(Verification.DEVICE)
    with pytest.raises(MalformedDynamicCode):
        PaymentContent.decode(dumps(body))


def test_text_form_round_trips_and_refuses_other_codes() -> None:
    data = samples()[1]
    assert from_text(to_text(data)) == data
    for text in ("BGC1:" + to_text(data)[5:], "BDC1:A", "BDC1:" + "9" * 10_000, "x"):
        with pytest.raises(MalformedDynamicCode):
            from_text(text)


def test_owner_binding_reveals_nothing_and_links_nothing() -> None:
    """The same template enrolled twice gives unrelated bindings (fresh salts); the certificate
    holds neither the template nor anything computed from it alone."""
    vault, _ = TemplateVault.generate()
    template = secrets.token_bytes(32)
    binding_a, record_a = vault.seal(bytes(16), template)
    binding_b, _ = vault.seal(bytes(16), template)
    assert binding_a != binding_b
    cert = issue_device_certificate(CA, KEY.public_key, Role.MOBILE, device_id=bytes(16),
                                    device_info="phone", account="alice", not_before=NOW,
                                    not_after=NOW + 60, binding=binding_a).encode()
    assert template not in cert and template not in record_a


def test_binding_only_in_mobile_certificates() -> None:
    with pytest.raises(MalformedDynamicCode):
        issue_device_certificate(CA, KEY.public_key, Role.MERCHANT, device_id=bytes(16),
                                 device_info="till", account="shop", not_before=NOW,
                                 not_after=NOW + 60, binding=bytes(32))
