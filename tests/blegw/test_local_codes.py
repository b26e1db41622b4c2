"""The daemon's local signing requests: hostile control fields and hostile module answers.

The relay and the real link run over a fake of the radio path (no radio: the module's side is
scripted here, as in ``test_relay_unit``); the end-to-end path over the virtual BlueZ with
simulated modules is ``test_codes``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ble_profile import Command
from blegw.local_codes import answer
from blegw.relay import Relay
from e2e import Suite, generate_private_key
from e2e.errors import ErrorCode
from e2e.messages import CodeSignResponse, ErrorResponse, decode_envelope, encode_envelope
from relay_contract import RelayProgress, RelayResponse
from transaction_code import CodeKind, TransactionCode, to_text

from .test_relay_unit import MODULE, FakeRadio, FakeRadioLink

Answer = list[object]


def _code(account: str = "alice", amount: int | None = 1250) -> TransactionCode:
    now = int(time.time())
    return TransactionCode(CodeKind.PAYMENT, Suite.P256_SHA256, b"\x33" * 16, account, amount,
                           None if amount is None else "EUR", now, now + 120,
                           secrets.token_bytes(16)).sign(generate_private_key(Suite.P256_SHA256))


@pytest.fixture
async def module() -> AsyncIterator[tuple[Relay[FakeRadioLink], Answer, list[object]]]:
    """A relay serving one scripted module: it answers each request with ``replies[0]`` (a
    function of the decoded request) and records what it was sent; nothing is published."""
    replies: Answer = []
    published: list[object] = []

    async def script(radio: FakeRadio, request: bytes) -> None:
        message = decode_envelope(request)
        reply = replies[0](message) if replies else ErrorResponse(ErrorCode.INTERNAL)  # type: ignore[operator]
        radio.notify_message(Command.MSG, encode_envelope(reply))

    async def publish(message: RelayResponse | RelayProgress) -> None:
        published.append(message)

    link = FakeRadioLink(script)
    relay: Relay[FakeRadioLink] = Relay({MODULE: link}, publish, queue_size=4)
    relay.start()
    try:
        yield relay, replies, published
    finally:
        link.shutdown()
        await relay.stop()


def _request(**fields: Any) -> dict[str, Any]:
    return {"cmd": "code", "module": MODULE.hex(), "account": "alice", **fields}


@pytest.mark.parametrize(("fields", "code"), [
    ({"module": "zz"}, "bad_request"),
    ({"module": 7}, "bad_request"),
    ({"module": "00" * 16}, "unknown_module"),
    ({"kind": "refund"}, "bad_request"),
    ({"suite": "rsa"}, "bad_request"),
    ({"account": ""}, "bad_request"),
    ({"account": "a\u202eb"}, "bad_request"),
    ({"amount_minor": 100}, "bad_request"),
    ({"amount_minor": True, "currency": "EUR"}, "bad_request"),
    ({"amount_minor": -1, "currency": "EUR"}, "bad_request"),
    ({"amount_minor": 100, "currency": "euro"}, "bad_request"),
    ({"lifetime": 10**9}, "bad_request"),
    ({"lifetime": 1.5}, "bad_request"),
])
async def test_hostile_code_request_fields_are_typed_errors_before_the_module_is_asked(
        module: tuple[Relay[FakeRadioLink], Answer, list[object]], fields: dict[str, Any],
        code: str) -> None:
    relay, _, published = module
    result = await answer(_request(**fields), relay)
    assert (result["ok"], result["code"]) == (False, code), result
    assert relay.workers[MODULE].link.received == []  # the owner was never bothered
    assert published == []


@pytest.mark.parametrize(("fields", "code"), [
    ({"code": "not a code"}, "bad_code"),
    ({"code": "BGC1:" + "A" * 40}, "bad_code"),
    ({"code": None}, "bad_request"),
    ({"amount_minor": 999, "currency": "EUR"}, "bad_request"),  # the code fixes 12.50
])
async def test_hostile_countersign_fields_are_typed_errors_before_the_module_is_asked(
        module: tuple[Relay[FakeRadioLink], Answer, list[object]], fields: dict[str, Any],
        code: str) -> None:
    relay, _, _ = module
    request = {"cmd": "countersign", "module": MODULE.hex(), "account": "shop",
               "code": to_text(_code().encode()), **fields}
    result = await answer(request, relay)
    assert (result["ok"], result["code"]) == (False, code), result
    assert relay.workers[MODULE].link.received == []


async def test_a_module_answering_another_code_than_asked_is_refused(
        module: tuple[Relay[FakeRadioLink], Answer, list[object]]) -> None:
    relay, replies, _ = module
    other = _code(amount=99999)  # a code for another amount, validly signed
    replies.append(lambda req: CodeSignResponse(req.request_id, other.encode()))
    result = await answer(_request(amount_minor=1250, currency="EUR"), relay)
    assert (result["ok"], result["code"]) == (False, "link_error"), result
    assert "code" not in result or not str(result.get("code")).startswith("BGC1:")
    replies[0] = lambda req: ErrorResponse(ErrorCode.DECLINED, req.request_id, "no")
    declined = await answer(_request(), relay)
    assert (declined["code"], declined["reason"]) == ("module_refused", "declined")


async def test_a_module_answering_the_code_asked_for_gives_its_text_form(
        module: tuple[Relay[FakeRadioLink], Answer, list[object]]) -> None:
    relay, replies, published = module
    key = generate_private_key(Suite.P256_SHA256)

    def sign(req: Any) -> CodeSignResponse:
        now = int(time.time())
        code = TransactionCode(CodeKind(req.kind), req.suite, b"\x33" * 16, req.account,
                               req.amount_minor, req.currency, now, now + req.lifetime,
                               secrets.token_bytes(16)).sign(key)
        return CodeSignResponse(req.request_id, code.encode())

    replies.append(sign)
    result = await answer(_request(amount_minor=1250, currency="EUR"), relay)
    assert result["ok"] and result["code"].startswith("BGC1:"), result
    assert published == []
