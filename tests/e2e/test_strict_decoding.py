"""Hostile bytes against every end-to-end decoder: only the typed error ever comes out.

Each test is named after the input an attacker on the broker or the link can send. The decoders
are pure functions, so these tests drive them directly; hypothesis adds random and mutated
inputs.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e import (
    Certificate,
    CertificateAuthority,
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    E2EError,
    ErrorResponse,
    MalformedMessage,
    Suite,
    UserVerification,
    decode_envelope,
    encode_envelope,
    generate_private_key,
)
from e2e.cbor import loads
from e2e.errors import ErrorCode
from e2e.messages import readable_transaction_id

TX = b"\x11" * 16


def _request(**changes: Any) -> ConfirmationRequest:
    fields: dict[str, Any] = dict(
        transaction_id=TX, payer_account="alice", payee_account="shop", order_reference="A-1",
        order_description="coffee", amount_minor=1250, currency="EUR", nonce=b"\x22" * 16,
        expires_at=int(time.time()) + 60, suite=Suite.P256_SHA256)
    fields.update(changes)
    return ConfirmationRequest(**fields)


def _raw(value: Any) -> bytes:
    """``value`` as canonical CBOR, whatever it holds (the attacker's encoder)."""
    return bytes(cbor2.dumps(value, canonical=True))


def test_huge_integer_envelope_is_malformed_not_a_valueerror() -> None:
    """{1: 10**5000, 2: 2, 3: {}} stopped the platform: formatting the version raised
    Python's int-to-str ValueError instead of MalformedMessage."""
    payload = _raw({1: 10**5000, 2: 2, 3: {}})
    with pytest.raises(MalformedMessage):
        decode_envelope(payload)


@pytest.mark.parametrize("where", ["type", "suite", "amount", "expiry", "decision", "code"])
def test_huge_integers_anywhere_are_malformed(where: str) -> None:
    huge = 10**5000
    if where == "type":
        payload = _raw({1: 1, 2: huge, 3: {}})
    elif where == "decision":
        body = {1: TX, 2: huge, 3: 1, 4: 0, 5: 1, 6: b"mmmm", 7: b"s"}
        payload = _raw({1: 1, 2: 2, 3: body})
    elif where == "code":
        payload = _raw({1: 1, 2: 3, 3: {1: -huge, 2: b"", 3: "x"}})
    else:
        key = {"suite": 10, "amount": 6, "expiry": 9}[where]
        payload = _raw({1: 1, 2: 1, 3: {**_request().body(), key: huge}})
    with pytest.raises(MalformedMessage):
        decode_envelope(payload)


@pytest.mark.parametrize("envelope", [
    {True: 1, 2: 1, 3: "BODY"},       # true as a map key (equals 1 in Python)
    {1.0: 1, 2: 1, 3: "BODY"},        # 1.0 as a map key
    {1: 1, 2.0: 1, 3: "BODY"},        # 2.0 as a map key
    {1: True, 2: 1, 3: "BODY"},       # true as the version
    {1: 1.0, 2: 1, 3: "BODY"},        # 1.0 as the version
    {1: 1, 2: 1.0, 3: "BODY"},        # 1.0 as the message type
    {1: 1, 2: True, 3: "BODY"},       # true as the message type
], ids=["true-key", "1.0-key", "2.0-key", "true-version", "1.0-version", "1.0-type",
        "true-type"])
def test_bools_and_floats_posing_as_integers_are_refused(envelope: dict[Any, Any]) -> None:
    envelope = {k: (_request().body() if v == "BODY" else v) for k, v in envelope.items()}
    with pytest.raises(MalformedMessage):
        decode_envelope(_raw(envelope))


@pytest.mark.parametrize("value", [
    True, None, cbor2.undefined, 6.0, cbor2.CBORTag(1, 1700000000), cbor2.CBORSimpleValue(99),
    cbor2.CBORTag(2, b"\x01"), [1, [2, [3, [4, [5]]]]],
], ids=["true", "null", "undefined", "float", "date-tag", "simple", "bignum-tag", "deep"])
def test_cbor_kinds_no_message_uses_are_refused(value: Any) -> None:
    """An amount (key 6) of any kind but a plain integer is refused by the CBOR layer or the
    schema, never silently converted."""
    with pytest.raises(MalformedMessage):
        decode_envelope(_raw({1: 1, 2: 1, 3: {**_request().body(), 6: value}}))


def test_non_canonical_encodings_are_refused() -> None:
    request = _request()
    honest = encode_envelope(request)
    assert decode_envelope(honest) == request
    # version 1 as a two-byte integer (0x18 0x01) instead of one byte
    assert honest[:2] == b"\xa3\x01"
    with pytest.raises(MalformedMessage):
        decode_envelope(b"\xa3\x01\x18\x01" + honest[3:])
    # indefinite-length outer map
    with pytest.raises(MalformedMessage):
        decode_envelope(b"\xbf" + honest[1:] + b"\xff")
    # self-describe tag in front of an otherwise valid envelope
    with pytest.raises(MalformedMessage):
        decode_envelope(b"\xd9\xd9\xf7" + honest)
    # trailing byte
    with pytest.raises(MalformedMessage):
        decode_envelope(honest + b"\x00")


def test_oversized_input_is_refused_before_decoding() -> None:
    with pytest.raises(MalformedMessage, match="exceeds"):
        loads(b"\x5a\x00\x01\x00\x00" + b"\x00" * 65536)
    # a declared length far beyond the input allocates nothing and fails as truncated
    with pytest.raises(MalformedMessage):
        loads(b"\x5b\x7f\xff\xff\xff\xff\xff\xff\xff")
    with pytest.raises(MalformedMessage):
        loads(b"\x9b\x7f\xff\xff\xff\xff\xff\xff\xff")


def test_deep_nesting_is_refused_without_recursion() -> None:
    with pytest.raises(MalformedMessage):
        loads(b"\x81" * 8000 + b"\x00")


def test_error_response_names_the_transaction_when_readable() -> None:
    bad = _raw({1: 1, 2: 1, 3: {**_request().body(), 6: "a lot"}})
    assert readable_transaction_id(bad) == TX
    assert readable_transaction_id(b"\xff") == b""
    assert readable_transaction_id(_raw({1: 1, 2: 1, 3: {1: b"short"}})) == b""


def test_transaction_id_under_key_true_is_not_read_as_key_1() -> None:
    body = {**_request().body()}
    del body[1]
    assert readable_transaction_id(cbor2.dumps({1: 1, 2: 1, 3: {True: TX, **body}})) == b""
    assert readable_transaction_id(cbor2.dumps({1: 1, 2: 1, 3: {1: TX}})) == TX
    assert readable_transaction_id(cbor2.dumps({1: 1, 2: 1, 3.0: {1: TX}})) == b""


def test_error_response_detail_and_id_are_bounded() -> None:
    with pytest.raises(MalformedMessage):
        decode_envelope(_raw({1: 1, 2: 3, 3: {1: 1, 2: b"", 3: "x" * 201}}))
    with pytest.raises(MalformedMessage):
        decode_envelope(_raw({1: 1, 2: 3, 3: {1: 1, 2: b"\x01" * 5, 3: "x"}}))
    ok = decode_envelope(encode_envelope(ErrorResponse(ErrorCode.BUSY, TX, "busy")))
    assert ok == ErrorResponse(ErrorCode.BUSY, TX, "busy")


def test_error_response_with_an_unknown_code_is_refused_not_remapped() -> None:
    """Found by fuzzing: code 17 was read as 127 internal, so bytes that re-encode differently
    were accepted as a message."""
    for code in (0, 13, 17, 126, 128, 255):
        with pytest.raises(MalformedMessage):
            decode_envelope(_raw({1: 1, 2: 3, 3: {1: code, 2: TX, 3: ""}}))


# -- properties ---------------------------------------------------------------------------------
_text = st.text(min_size=1, max_size=64)


@settings(max_examples=100, deadline=None)
@given(payer=_text, payee=_text, reference=_text, description=st.text(min_size=1, max_size=140),
       amount=st.integers(0, 10**15), nonce=st.binary(min_size=16, max_size=32),
       suite=st.sampled_from(list(Suite)))
def test_round_trip_confirmation_request(payer: str, payee: str, reference: str,
                                         description: str, amount: int, nonce: bytes,
                                         suite: Suite) -> None:
    request = _request(payer_account=payer, payee_account=payee, order_reference=reference,
                       order_description=description, amount_minor=amount, nonce=nonce,
                       suite=suite)
    assert decode_envelope(encode_envelope(request)) == request


@settings(max_examples=100, deadline=None)
@given(decision=st.sampled_from(list(Decision)), counter=st.integers(1, 2**63 - 1),
       uv=st.sampled_from(list(UserVerification)), module_id=st.binary(min_size=4, max_size=32),
       signature=st.binary(min_size=1, max_size=80))
def test_round_trip_confirmation_response(decision: Decision, counter: int,
                                          uv: UserVerification, module_id: bytes,
                                          signature: bytes) -> None:
    response = ConfirmationResponse(TX, decision, counter, uv, Suite.SM2_SM3, module_id,
                                    signature)
    assert decode_envelope(encode_envelope(response)) == response


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_the_typed_error(data: bytes) -> None:
    for decoder in (decode_envelope, Certificate.decode):
        with contextlib.suppress(E2EError):
            decoder(data)


_cbor_leaf = st.one_of(st.integers(-(2**70), 2**70), st.binary(max_size=40),
                       st.text(max_size=40), st.booleans(), st.none(),
                       st.floats(allow_nan=True, allow_infinity=True))
_cbor_value = st.recursive(_cbor_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.integers(-2, 12), st.booleans(),
                                                           st.floats(0, 12)), inner,
                                                 max_size=11)), max_leaves=30)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(version=_cbor_value, kind=st.one_of(st.integers(0, 6), _cbor_value),
       body=st.one_of(st.dictionaries(st.integers(0, 12), _cbor_value, max_size=11),
                      _cbor_value))
def test_structured_hostile_envelopes_raise_only_the_typed_error(version: Any, kind: Any,
                                                                 body: Any) -> None:
    """Well-formed CBOR with hostile values in every position: typed error or a valid
    message, never anything else."""
    try:
        data = _raw({1: version, 2: kind, 3: body})
    except Exception:
        return
    try:
        message = decode_envelope(data)
    except E2EError:
        return
    assert encode_envelope(message) == data


@settings(max_examples=300, deadline=None)
@given(position=st.integers(0, 10_000), byte=st.integers(0, 255))
def test_mutated_envelopes_raise_only_the_typed_error(position: int, byte: int) -> None:
    honest = bytearray(encode_envelope(_request()))
    honest[position % len(honest)] = byte
    try:
        message = decode_envelope(bytes(honest))
    except E2EError:
        return
    assert encode_envelope(message) == bytes(honest)


def test_certificates_are_strict_too() -> None:
    ca = CertificateAuthority.generate(Suite.P256_SHA256)
    now = int(time.time())
    cert = ca.issue(generate_private_key(Suite.P256_SHA256).public_key, b"\x01" * 8,
                    not_before=now, not_after=now + 60)
    assert Certificate.decode(cert.encode()) == cert
    tbs = cbor2.loads(cert.tbs())
    for bad in (10**5000, True, 1.0, None):
        hostile = _raw({1: _raw({**tbs, 4: bad}), 2: cert.signature})
        with pytest.raises(E2EError):
            Certificate.decode(hostile)
