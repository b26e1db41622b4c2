"""The app's side: it shows or submits only what it asked its module for."""

from __future__ import annotations

import dataclasses
import time

import pytest

from e2e import Suite
from e2e.errors import ErrorCode
from e2e.messages import CodeSignResponse, ErrorResponse
from transaction_code import (
    CodeKind,
    CountersignedCode,
    MalformedCode,
    ModuleRefused,
    TransactionCode,
    code_request,
    countersign_request,
    read_code_answer,
    read_countersign_answer,
)

from .test_payload import KEYS, make_code


def _module_signs(request: object, **changes: object) -> CodeSignResponse:
    """What an honest module answers (or, with ``changes``, a module signing something else)."""
    from e2e.messages import CodeSignRequest

    assert isinstance(request, CodeSignRequest)
    now = int(time.time())
    code = TransactionCode(CodeKind(request.kind), request.suite, b"\x11" * 16, request.account,
                           request.amount_minor, request.currency, now, now + request.lifetime,
                           b"\x01" * 16)
    code = dataclasses.replace(code, **changes)  # type: ignore[arg-type]
    return CodeSignResponse(request.request_id, code.sign(KEYS[request.suite]).encode())


def test_the_code_asked_for_is_accepted_and_any_other_is_refused() -> None:
    request = code_request(CodeKind.PAYMENT, Suite.P256_SHA256, "alice", amount_minor=1250,
                           currency="EUR", lifetime=90)
    code = read_code_answer(request, _module_signs(request))
    assert (code.account, code.amount_minor, code.expires_at - code.issued_at) == \
        ("alice", 1250, 90)
    for changes in ({"amount_minor": 125_000}, {"account": "mallory"},
                    {"kind": CodeKind.COLLECTION}, {"expires_at": int(time.time()) + 3600}):
        with pytest.raises(MalformedCode):
            read_code_answer(request, _module_signs(request, **changes))
    other = code_request(CodeKind.PAYMENT, Suite.P256_SHA256, "alice", amount_minor=1250,
                         currency="EUR", lifetime=90)
    with pytest.raises(MalformedCode):                      # the answer to another request
        read_code_answer(request, _module_signs(other))


def test_a_refusal_is_typed_with_the_modules_reason() -> None:
    request = code_request(CodeKind.COLLECTION, Suite.SM2_SM3, "shop")
    with pytest.raises(ModuleRefused) as refused:
        read_code_answer(request, ErrorResponse(ErrorCode.DECLINED, request.request_id, "no"))
    assert refused.value.reason is ErrorCode.DECLINED
    with pytest.raises(MalformedCode):
        read_code_answer(request, ErrorResponse(ErrorCode.DECLINED, b"\x00" * 16, "no"))
    with pytest.raises(MalformedCode):
        read_code_answer(request, object())


def test_the_countersignature_asked_for_is_accepted_and_any_other_is_refused() -> None:
    scanned = make_code(kind=CodeKind.COLLECTION, amount=None).encode()
    request = countersign_request(scanned, Suite.P256_SHA256, "alice", 990, "EUR")

    def answer(**changes: object) -> CodeSignResponse:
        fields = {"code": scanned, "suite": Suite.P256_SHA256, "signer": b"\x22" * 16,
                  "account": "alice", "amount_minor": 990, "currency": "EUR",
                  "signed_at": int(time.time())} | changes
        signed = CountersignedCode(**fields).sign(KEYS[fields["suite"]])  # type: ignore[arg-type,index]
        return CodeSignResponse(request.request_id, signed.encode())

    assert read_countersign_answer(request, answer()).amount_minor == 990
    for changes in ({"amount_minor": 9_900}, {"account": "bob"},
                    {"code": make_code(kind=CodeKind.COLLECTION).encode()}):
        with pytest.raises(MalformedCode):
            read_countersign_answer(request, answer(**changes))
