"""The simulated module signs transaction codes (flow F-D) over the real GATT path: bleak on the
virtual radio writes a code request, the module asks its owner and answers.

The owner is a scripted policy that records what it was shown; the radio is the virtual one.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from e2e import Certificate, ErrorResponse, Suite, generate_private_key
from e2e import ErrorCode as E2ECode
from e2e.messages import CodeSignRequest, CodeSignResponse, CountersignRequest, encode_envelope
from transaction_code import (
    CodeKind,
    CountersignedCode,
    ModuleRefused,
    TransactionCode,
    check_countersigned,
    code_request,
    countersign_request,
    read_code_answer,
    read_countersign_answer,
    signer_reference,
)
from vbluez import VirtualBluez
from wearable_sim.policy import Prompt

from .conftest import assert_signs_honest_request, start_module

RID = b"\x05" * 16


class ScriptedOwner:
    """Answers from a script and keeps every line it was shown."""

    name = "scripted"
    verification = "presence"

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.shown: list[str] = []

    async def decide(self, prompt: Prompt) -> bool:
        self.shown.append(prompt.text())
        return self.answers.pop(0)

    async def close(self) -> None:
        return None


def _code_request(suite: Suite, kind: CodeKind = CodeKind.PAYMENT, amount: int | None = 1250,
                  account: str = "alice") -> bytes:
    return encode_envelope(CodeSignRequest(RID, int(kind), suite, account, amount,
                                           None if amount is None else "EUR", 120))


def _other_code(kind: CodeKind, amount: int | None, *, expired: bool = False) -> TransactionCode:
    now = int(time.time()) - (600 if expired else 0)
    return TransactionCode(kind, Suite.P256_SHA256, b"\x33" * 16, "shop", amount,
                           None if amount is None else "EUR", now, now + 120,
                           secrets.token_bytes(16)).sign(generate_private_key(Suite.P256_SHA256))


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
@pytest.mark.parametrize("amount", [1250, None])
async def test_the_module_signs_a_code_its_owner_approves(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any, suite: Suite,
        amount: int | None) -> None:
    owner = ScriptedOwner(True)
    module, _, _, certs = await start_module(vbluez, tmp_path / "m", owner)
    try:
        link = await link_to(module)
        before = int(time.time())
        request = code_request(CodeKind.PAYMENT, suite, "alice", amount_minor=amount,
                               currency=None if amount is None else "EUR", lifetime=120)
        answer = await link.request(encode_envelope(request))
        code = read_code_answer(request, answer)      # exactly what the app asked for
        code.verify(certs[suite].verifying_key())
        assert code.signer == signer_reference(certs[suite].encode())
        assert (code.kind, code.account, code.amount_minor) == (CodeKind.PAYMENT, "alice",
                                                                amount)
        assert before <= code.issued_at <= int(time.time())
        assert code.expires_at == code.issued_at + 120
        money = "12.50 EUR" if amount else "an amount the other side enters"
        assert owner.shown == [f"Show a payment code: pay {money} from alice, valid 120 s"]
    finally:
        await module.stop()


async def test_a_declined_code_is_not_signed_and_the_module_keeps_serving(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    owner = ScriptedOwner(False, True)
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", owner)
    try:
        link = await link_to(module)
        request = code_request(CodeKind.COLLECTION, Suite.P256_SHA256, "alice",
                               amount_minor=1250, currency="EUR")
        answer = await link.request(encode_envelope(request))
        with pytest.raises(ModuleRefused) as refused:
            read_code_answer(request, answer)
        assert refused.value.reason is E2ECode.DECLINED
        assert owner.shown == ["Show a collection code: collect 12.50 EUR into alice, "
                               "valid 120 s"]
        assert module.handled == ["code-declined"]
        await assert_signs_honest_request(link, certs, cas, Suite.P256_SHA256)
    finally:
        await module.stop()


@pytest.mark.parametrize("kind", list(CodeKind))
async def test_the_module_countersigns_a_scanned_code_and_shows_who_pays_whom(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any, kind: CodeKind) -> None:
    owner = ScriptedOwner(True)
    module, _, _, certs = await start_module(vbluez, tmp_path / "m", owner)
    try:
        link = await link_to(module)
        scanned = _other_code(kind, None)
        request = countersign_request(scanned.encode(), Suite.SM2_SM3, "alice", 990, "EUR")
        answer = await link.request(encode_envelope(request))
        countersigned = read_countersign_answer(request, answer)
        countersigned.verify(certs[Suite.SM2_SM3].verifying_key())
        assert countersigned.code == scanned.encode()
        expected = ("Collect 9.90 EUR from shop into alice (their payment code)"
                    if kind is CodeKind.PAYMENT else "Pay 9.90 EUR to shop from alice (their code)")
        assert owner.shown == [expected]
    finally:
        await module.stop()


async def test_the_owner_is_warned_when_the_scanned_code_is_not_signed(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    owner = ScriptedOwner(True)
    module, _, _, _ = await start_module(vbluez, tmp_path / "m", owner)
    try:
        link = await link_to(module)
        now = int(time.time())
        unsigned = TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, "shop", 300,
                                   "EUR", now, now + 60, secrets.token_bytes(16))
        answer = await link.request(encode_envelope(CountersignRequest(
            RID, unsigned.encode(), Suite.P256_SHA256, "alice", 300, "EUR")))
        assert isinstance(answer, CodeSignResponse), answer
        assert owner.shown == ["Pay 3.00 EUR to shop from alice (their code is NOT signed by "
                               "a module: check the payee)"]
    finally:
        await module.stop()


async def test_code_requests_the_owner_must_not_see_are_refused_without_a_prompt(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    owner = ScriptedOwner(True)
    module, _, _, certs = await start_module(vbluez, tmp_path / "m", owner)
    try:
        link = await link_to(module)
        cases = [
            # an expired scanned code
            (CountersignRequest(RID, _other_code(CodeKind.PAYMENT, 100, expired=True).encode(),
                                Suite.P256_SHA256, "alice", 100, "EUR"), E2ECode.EXPIRED),
            # another amount than the scanned code fixed
            (CountersignRequest(RID, _other_code(CodeKind.COLLECTION, 100).encode(),
                                Suite.P256_SHA256, "alice", 10_000, "EUR"), E2ECode.MALFORMED),
            # bytes that are no code
            (CountersignRequest(RID, b"\xa0", Suite.P256_SHA256, "alice", 1, "EUR"),
             E2ECode.MALFORMED),
            # an account the platform's rule refuses (an escape sequence for the prompt)
            (CodeSignRequest(RID, 1, Suite.P256_SHA256, "\x1b[2Jalice", 5, "EUR", 60),
             E2ECode.MALFORMED),
        ]
        for request, code in cases:
            answer = await link.request(encode_envelope(request))
            assert isinstance(answer, ErrorResponse), answer
            assert (answer.code, answer.transaction_id) == (code, RID)
        assert owner.shown == []
        # and an honest code request still gets the owner's answer and a signature
        answer = await link.request(_code_request(Suite.P256_SHA256))
        assert isinstance(answer, CodeSignResponse)
        TransactionCode.decode(answer.signed).verify(certs[Suite.P256_SHA256].verifying_key())
    finally:
        await module.stop()


async def test_a_code_and_its_countersignature_from_modules_pass_the_platform_checks(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    """The payer's module (over GATT) makes the code; a second element countersigns it."""
    module, _, _, certs = await start_module(vbluez, tmp_path / "m", ScriptedOwner(True))
    from wearable_sim.codes import prepare
    from wearable_sim.element import SecureElement
    from wearable_sim.state import ModuleState

    from .conftest import TEST_CAS
    try:
        link = await link_to(module)
        answer = await link.request(_code_request(Suite.P256_SHA256, amount=300))
        assert isinstance(answer, CodeSignResponse)
        shop = SecureElement(ModuleState(tmp_path / "shop"))
        now = int(time.time())
        shop_cert = TEST_CAS[Suite.P256_SHA256].issue(
            shop.public_key(Suite.P256_SHA256), shop.module_id, not_before=now - 60,
            not_after=now + 3600)
        shop.install_certificate(shop_cert.encode())
        unsigned, _ = prepare(CountersignRequest(RID, answer.signed, Suite.P256_SHA256, "shop",
                                                 300, "EUR"),
                              shop.code_signer(Suite.P256_SHA256), now=now)
        assert isinstance(unsigned, CountersignedCode)
        request = shop.countersign(unsigned)
        enrolled: dict[tuple[str, bytes], Certificate] = {
            ("alice", signer_reference(certs[Suite.P256_SHA256].encode())):
                certs[Suite.P256_SHA256],
            ("shop", signer_reference(shop_cert.encode())): shop_cert}
        payment = check_countersigned(
            CountersignedCode.decode(request.encode()),
            lambda account, _suite, ref: enrolled[(account, ref)].verifying_key(), now=now)
        assert (payment.payer, payment.payee, payment.amount_minor) == ("alice", "shop", 300)
    finally:
        await module.stop()
