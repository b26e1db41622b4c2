"""The CDDL in docs/cddl/transaction-code.cddl (and the code messages in e2e.cddl) describes
exactly what the code emits and the decoders accept."""

from __future__ import annotations

import cbor2
import pytest

from e2e import MalformedMessage, Suite, UnsupportedSuite
from e2e.cbor import dumps
from e2e.messages import (
    CodeSignRequest,
    CodeSignResponse,
    CountersignRequest,
    decode_envelope,
    encode_envelope,
)
from tests.test_cddl_contracts import assert_valid, valid
from transaction_code import CodeError, CodeKind, CountersignedCode, TransactionCode

from .test_payload import KEYS, make_code


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
@pytest.mark.parametrize("kind", list(CodeKind))
@pytest.mark.parametrize("amount", [None, (1, "EUR"), (10**15, "CNY")])
def test_codes_and_countersigned_requests_match_the_contract(
        suite: Suite, kind: CodeKind, amount: tuple[int, str] | None) -> None:
    for account in ("a", "x" * 64, "shop-42@mall.example_1"):
        code = make_code(suite, kind, account, amount, lifetime=86400).encode()
        assert_valid("signed-code", code)
        request = CountersignedCode(code, suite, b"\x22" * 16, account, 10**15, "EUR",
                                    2**40 - 1).sign(KEYS[suite]).encode()
        assert_valid("countersigned-code", request)


def test_code_messages_match_the_envelope_contract() -> None:
    rid = b"\x01" * 16
    code = make_code().encode()
    for message in (
            CodeSignRequest(rid, 1, Suite.P256_SHA256, "alice", None, None, 1),
            CodeSignRequest(rid, 2, Suite.SM2_SM3, "x" * 64, 10**15, "EUR", 86400),
            CountersignRequest(rid, code, Suite.SM2_SM3, "shop", 1, "EUR"),
            CodeSignResponse(rid, code)):
        data = encode_envelope(message)
        assert_valid("envelope", data)
        assert decode_envelope(data) == message


def _raw(data: bytes) -> dict[object, object]:
    return dict(cbor2.loads(data))


_CODE = _raw(make_code().encode())
WRONG_CODES = {
    "version 2": _CODE | {1: 2},
    "kind 3": _CODE | {2: 3},
    "suite 3": _CODE | {3: 3},
    "signer of 15 bytes": _CODE | {4: b"\x11" * 15},
    "account with a space": _CODE | {5: "al ice"},
    "account of 65 characters": _CODE | {5: "a" * 65},
    "amount 0": _CODE | {6: 0},
    "amount without currency": {k: v for k, v in _CODE.items() if k != 7},
    "currency in lower case": _CODE | {7: "eur"},
    "issued at 0": _CODE | {8: 0},
    "random of 15 bytes": _CODE | {10: b"\x00" * 15},
    "empty signature": _CODE | {11: b""},
    "unknown key 12": _CODE | {12: 1},
    "random as text": _CODE | {10: "0" * 16},
}


@pytest.mark.parametrize("raw", WRONG_CODES.values(), ids=WRONG_CODES.keys())
def test_wrong_codes_are_refused_by_the_contract_and_the_decoder(raw: dict[int, object]
                                                                 ) -> None:
    data = dumps(raw)
    assert not valid("signed-code", data)
    assert not valid("unsigned-code", data)
    with pytest.raises(CodeError):
        TransactionCode.decode(data)


WRONG_MESSAGES = {
    "code request kind 3": {1: b"\x01" * 16, 2: 3, 3: 1, 4: "alice", 7: 60},
    "code request lifetime 0": {1: b"\x01" * 16, 2: 1, 3: 1, 4: "alice", 7: 0},
    "code request amount without currency": {1: b"\x01" * 16, 2: 1, 3: 1, 4: "a", 5: 1, 7: 60},
    "code request id of 15 bytes": {1: b"\x01" * 15, 2: 1, 3: 1, 4: "alice", 7: 60},
}


@pytest.mark.parametrize("body", WRONG_MESSAGES.values(), ids=WRONG_MESSAGES.keys())
def test_wrong_code_messages_are_refused_by_the_contract_and_the_decoder(
        body: dict[int, object]) -> None:
    data = dumps({1: 1, 2: 0x50, 3: body})
    assert not valid("envelope", data)
    with pytest.raises((MalformedMessage, UnsupportedSuite)):
        decode_envelope(data)


@pytest.mark.parametrize("amount", [None, (5, "EUR")])
def test_unsigned_collection_codes_match_the_contract_and_unsigned_payment_codes_do_not(
        amount: tuple[int, str] | None) -> None:
    from .test_payload import unsigned_code

    data = unsigned_code(amount).encode()
    assert_valid("unsigned-code", data)
    assert TransactionCode.decode(data).signer is None
    for wrong in (_raw(data) | {2: 1},             # the same, as a payment code
                  _raw(data) | {11: b"s" * 70},    # a signature without a signer
                  _raw(data) | {4: b"s" * 16}):    # a signer without a signature
        assert not valid("unsigned-code", dumps(wrong))
        assert not valid("signed-code", dumps(wrong))
        with pytest.raises(CodeError):
            TransactionCode.decode(dumps(wrong))
