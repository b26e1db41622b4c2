"""The code payload and the countersigned request: exact bytes, strict decoding, and signatures
that are good for one purpose only."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e import (
    ConfirmationRequest,
    Decision,
    Suite,
    UserVerification,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
)
from e2e.approval import signed_bytes as approval_signed_bytes
from e2e.cbor import dumps
from transaction_code import (
    CODE_DOMAINS,
    COUNTERSIGN_DOMAIN,
    BadCodeSignature,
    BadScannerSignature,
    CodeError,
    CodeKind,
    CountersignedCode,
    MalformedCode,
    TransactionCode,
    UnsupportedCode,
)

KEYS = {suite: generate_private_key(suite) for suite in Suite}
NOW = int(time.time())

accounts = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}", fullmatch=True)
amounts = st.one_of(st.none(), st.tuples(st.integers(1, 10**15),
                                         st.from_regex(r"[A-Z]{3}", fullmatch=True)))


def make_code(suite: Suite = Suite.P256_SHA256, kind: CodeKind = CodeKind.PAYMENT,
              account: str = "alice", amount: tuple[int, str] | None = (1250, "EUR"),
              issued: int = NOW, lifetime: int = 120) -> TransactionCode:
    return TransactionCode(kind, suite, b"\x11" * 16, account,
                           amount[0] if amount else None, amount[1] if amount else None,
                           issued, issued + lifetime, secrets.token_bytes(16)
                           ).sign(KEYS[suite])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suite=st.sampled_from(list(Suite)), kind=st.sampled_from(list(CodeKind)),
       account=accounts, amount=amounts, lifetime=st.integers(1, 86400))
def test_a_code_round_trips_and_verifies(suite: Suite, kind: CodeKind, account: str,
                                         amount: tuple[int, str] | None, lifetime: int) -> None:
    code = make_code(suite, kind, account, amount, lifetime=lifetime)
    data = code.encode()
    assert TransactionCode.decode(data) == code
    assert data == dumps(cbor2.loads(data))  # deterministic
    code.verify(KEYS[suite].public_key)
    assert code.signed_bytes().startswith(CODE_DOMAINS[kind])


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_any_bytes_decode_to_a_code_or_a_typed_error(data: bytes) -> None:
    for decoder in (TransactionCode.decode, CountersignedCode.decode):
        with contextlib.suppress(CodeError):
            decoder(data)


@settings(max_examples=150, deadline=None)
@given(position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_a_flipped_byte_never_verifies(position: int, value: int) -> None:
    code = make_code()
    data = bytearray(code.encode())
    position %= len(data)
    if data[position] == value:
        return
    data[position] = value
    try:
        changed = TransactionCode.decode(bytes(data))
    except CodeError:
        return
    if changed.signed_bytes() == code.signed_bytes():
        # only the signature changed: it must not verify (or be the same valid one re-encoded)
        with pytest.raises(BadCodeSignature):
            changed.verify(KEYS[Suite.P256_SHA256].public_key)
        return
    with pytest.raises(BadCodeSignature):
        changed.verify(KEYS[Suite.P256_SHA256].public_key)


def _raw(code: TransactionCode) -> dict[int, object]:
    return dict(cbor2.loads(code.encode()))


@pytest.mark.parametrize("change", [
    {2: 3}, {2: True}, {3: 9}, {4: b"\x11" * 15}, {5: ""}, {5: "al ice"}, {5: "x" * 65},
    {5: "\u202eecila"}, {6: 0}, {6: 10**15 + 1}, {6: -1}, {7: "eur"}, {8: 0}, {9: NOW - 1},
    {9: NOW + 86401}, {10: b"\x00" * 15}, {11: b""}, {11: b"\x00" * 81}, {12: 1}, {1: 2},
    {"5": "alice"},
])
def test_every_wrong_field_is_a_typed_error(change: dict[object, object]) -> None:
    raw = _raw(make_code())
    raw.update(change)
    with pytest.raises((MalformedCode, UnsupportedCode)):
        TransactionCode.decode(dumps(raw))


def test_amount_and_currency_come_together_and_non_canonical_bytes_are_refused() -> None:
    raw = _raw(make_code())
    del raw[7]
    with pytest.raises(MalformedCode):
        TransactionCode.decode(dumps(raw))
    canonical = make_code().encode()
    non_canonical = cbor2.dumps(dict(reversed(list(cbor2.loads(canonical).items()))))
    with pytest.raises(MalformedCode, match="deterministic"):
        TransactionCode.decode(non_canonical)
    with pytest.raises(MalformedCode):
        TransactionCode.decode(b"\x00" * 400)


def test_an_unknown_version_or_suite_is_unsupported() -> None:
    for key, value in ((1, 2), (3, 7)):
        raw = _raw(make_code())
        raw[key] = value
        with pytest.raises(UnsupportedCode):
            TransactionCode.decode(dumps(raw))


def test_payment_and_collection_signatures_are_not_interchangeable() -> None:
    payment = make_code(kind=CodeKind.PAYMENT)
    as_collection = dataclasses.replace(payment, kind=CodeKind.COLLECTION)
    with pytest.raises(BadCodeSignature):
        as_collection.verify(KEYS[Suite.P256_SHA256].public_key)


def _countersign(code: TransactionCode, suite: Suite = Suite.P256_SHA256,
                 amount: int = 1250) -> CountersignedCode:
    return CountersignedCode(code.encode(), suite, b"\x22" * 16, "shop", amount, "EUR",
                             NOW).sign(KEYS[suite])


@pytest.mark.parametrize("suite", list(Suite))
def test_a_countersigned_request_round_trips_and_binds_the_code(suite: Suite) -> None:
    request = _countersign(make_code(suite), suite)
    decoded = CountersignedCode.decode(request.encode())
    assert decoded == request
    decoded.verify(KEYS[suite].public_key)
    assert request.signed_bytes().startswith(COUNTERSIGN_DOMAIN)
    # Another code in the same request breaks the scanner's signature.
    moved = dataclasses.replace(request, code=make_code(suite).encode())
    with pytest.raises(BadScannerSignature):
        moved.verify(KEYS[suite].public_key)
    # So does another amount.
    with pytest.raises(BadScannerSignature):
        dataclasses.replace(request, amount_minor=1).verify(KEYS[suite].public_key)


def test_a_request_embedding_a_malformed_code_is_refused() -> None:
    request = _countersign(make_code())
    raw = dict(cbor2.loads(request.encode()))
    raw[2] = b"\xa0"
    with pytest.raises(MalformedCode):
        CountersignedCode.decode(dumps(raw))


def _approval(suite: Suite) -> tuple[bytes, ConfirmationRequest, bytes]:
    request = ConfirmationRequest(b"\x01" * 16, "alice", "shop", "A-1", "coffee", 1250, "EUR",
                                  b"\x02" * 16, NOW + 60, suite)
    envelope = encode_envelope(request)
    response = sign_confirmation(envelope, request, decision=Decision.APPROVE, counter=1,
                                 user_verification=UserVerification.PRESENCE,
                                 key=KEYS[suite], module_id=b"m" * 16)
    return envelope, request, response.signature


@pytest.mark.parametrize("suite", list(Suite))
def test_an_approval_signature_never_verifies_as_a_code_signature_and_back(suite: Suite) -> None:
    """One key signs both (the module's enrolled key): the domain tags keep them apart."""
    key = KEYS[suite]
    envelope, request, approval = _approval(suite)
    code = make_code(suite)
    countersigned = _countersign(code, suite)
    # the approval's signature placed on a code or a countersigned request
    for kind in CodeKind:
        with pytest.raises(BadCodeSignature):
            dataclasses.replace(code, kind=kind, signature=approval).verify(key.public_key)
    with pytest.raises(BadScannerSignature):
        dataclasses.replace(countersigned, signature=approval).verify(key.public_key)
    # a code's or countersigned request's signature placed on the approval
    from e2e.messages import ConfirmationResponse
    for signature in (code.signature, countersigned.signature):
        response = ConfirmationResponse(request.transaction_id, Decision.APPROVE, 1,
                                        UserVerification.PRESENCE, suite, b"m" * 16, signature)
        assert not key.public_key.verify(signature, approval_signed_bytes(envelope, response))
    # and the signed inputs can never be equal: their tags differ from the first bytes on
    tags = [*CODE_DOMAINS.values(), COUNTERSIGN_DOMAIN, b"blegw/confirmation-response/v1",
            b"blegw/confirmation-request/v1"]
    for a in tags:
        for b in tags:
            if a is not b:
                assert not a.startswith(b) and not b.startswith(a)


def test_unsigned_codes_are_never_encoded_and_a_key_of_another_suite_is_refused() -> None:
    unsigned = dataclasses.replace(make_code(), signature=b"")
    with pytest.raises(MalformedCode):
        unsigned.encode()
    with pytest.raises(BadCodeSignature):
        unsigned.verify(KEYS[Suite.P256_SHA256].public_key)
    with pytest.raises(MalformedCode):
        unsigned.sign(KEYS[Suite.SM2_SM3])


def unsigned_code(amount: tuple[int, str] | None = (500, "EUR"), account: str = "shop"
                  ) -> TransactionCode:
    """A collection code made by a payee without a module."""
    return TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, account,
                           amount[0] if amount else None, amount[1] if amount else None, NOW,
                           NOW + 120, secrets.token_bytes(16))


def test_only_a_collection_code_may_be_unsigned_and_it_verifies_for_no_key() -> None:
    code = unsigned_code()
    assert not code.signed
    assert TransactionCode.decode(code.encode()) == code
    with pytest.raises(BadCodeSignature):
        code.verify(KEYS[Suite.P256_SHA256].public_key)
    with pytest.raises(MalformedCode):
        code.sign(KEYS[Suite.P256_SHA256])
    with pytest.raises(MalformedCode):
        dataclasses.replace(code, kind=CodeKind.PAYMENT)
    with pytest.raises(MalformedCode):
        dataclasses.replace(code, signature=b"s" * 70)
    # a signed code stripped of its signer and signature is another code (another id)
    signed = make_code(kind=CodeKind.COLLECTION)
    raw = dict(cbor2.loads(signed.encode()))
    del raw[4], raw[11]
    stripped = TransactionCode.decode(dumps(raw))
    assert stripped.code_id() != signed.code_id()
