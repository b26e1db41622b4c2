"""The payer's confirmation (flow F-A) before a code settles, and the notices to both sides.

Over the platform's real HTTP API and SQLite ledger (``conftest.Rig``). The payer's gateway and
module are replaced by the test: it takes the relay request from the platform's MQTT outbox,
signs the answer with the payer module's soft key (what the module's element does) and hands
the relay response to the platform as its MQTT reader would. The path through mosquitto, the
daemon and the simulated module is tests/blegw/test_codes.py.
"""

from __future__ import annotations

import asyncio

from blegw_platform.code_confirmation import CodeConfirmation
from e2e import (
    ConfirmationRequest,
    Decision,
    ErrorResponse,
    UserVerification,
    decode_envelope,
    encode_envelope,
)
from e2e.approval import sign_confirmation
from e2e.certificates import Certificate
from e2e.errors import ErrorCode
from e2e.suites import Suite
from relay_contract import (
    CodeNotice,
    NoticeRole,
    NoticeState,
    RelayCancel,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    gateway_of,
)
from transaction_code import CodeKind

from .conftest import ACCOUNTS, Module, Rig

_counters: dict[bytes, int] = {}


def _outbox(rig: Rig, leaf: str) -> list[tuple[str, bytes]]:
    """Take what the platform queued for gateways on topic ``leaf`` (the rest stays)."""
    queue = rig.platform._outbox
    items = [queue.get_nowait() for _ in range(queue.qsize())]
    for item in items:
        if not item[0].endswith(f"/{leaf}"):
            queue.put_nowait(item)
    return [item for item in items if item[0].endswith(f"/{leaf}")]


def _asked(rig: Rig) -> list[tuple[str, RelayRequest, ConfirmationRequest]]:
    """The confirmation requests the platform sent: (gateway, relay request, request)."""
    found = []
    for name, payload in _outbox(rig, "req"):
        relay = RelayRequest.decode(payload)
        request = decode_envelope(relay.envelope)
        assert isinstance(request, ConfirmationRequest)
        gateway = gateway_of(name, "req")
        assert gateway is not None
        found.append((gateway, relay, request))
    return found


def _answer(module: Module, relay: RelayRequest, decision: Decision) -> bytes:
    """The payer module's signed answer to ``relay``, as its gateway returns it."""
    module_id = Certificate.decode(module.certificate).module_id
    counter = _counters.get(module_id, 0) + 1
    _counters[module_id] = counter
    request = decode_envelope(relay.envelope)
    assert isinstance(request, ConfirmationRequest)
    response = sign_confirmation(relay.envelope, request, decision=decision, counter=counter,
                                 user_verification=UserVerification.PRESENCE,
                                 key=module.key, module_id=module_id)
    return RelayResponse(relay.request_id, RelayStatus.OK, encode_envelope(response)).encode()


async def _notices(rig: Rig) -> dict[str, CodeNotice]:
    """The notices sent to gateways once the announcements ran, by gateway."""
    notifier = rig.platform.final_hooks[0].__self__  # type: ignore[attr-defined]
    await asyncio.gather(*notifier._tasks)
    return {str(gateway_of(name, "note")): CodeNotice.decode(payload)
            for name, payload in _outbox(rig, "note")}


async def test_a_code_above_the_threshold_settles_only_on_the_payers_approval(
        rig: Rig) -> None:
    rig.platform.code_confirmation = CodeConfirmation(above_minor=1000)
    # at or below the threshold: settled at once, both sides told
    small = rig.module("alice").code(CodeKind.PAYMENT, 1000)
    status, body = await rig.countersigned(rig.module("shop").countersign(small, 1000))
    assert (status, body["state"]) == (201, "settled"), body
    assert _asked(rig) == []
    told = await _notices(rig)
    assert set(told) == {"gw-alice", "gw-shop"}
    # above it: pending until alice's module approves exactly this transaction
    before = await rig.balances()
    code = rig.module("alice").code(CodeKind.PAYMENT, 1250)
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 1250))
    assert (status, body["state"]) == (202, "pending"), body
    assert await rig.balances() == before
    [(gateway, relay, request)] = _asked(rig)
    assert gateway == "gw-alice"   # the module that signed the code
    assert (request.payer_account, request.payee_account, request.amount_minor) == \
        ("alice", "shop", 1250)
    assert request.transaction_id.hex() == body["id"]
    assert code.code_id()[:6].hex() in request.order_reference
    # the side that showed the code long-polls it; the till long-polls its transaction
    shown = asyncio.create_task(rig.get(f"/v1/codes/{code.code_id().hex()}?wait=30"))
    await rig.platform.handle_response(_answer(rig.module("alice"), relay, Decision.APPROVE),
                                       "gw-alice")
    status, view = await shown
    assert (status, view["state"], view["id"]) == (200, "settled", body["id"])
    status, outcome = await rig.get(f"/v1/transactions/{body['id']}/outcome?timeout=5", "till")
    assert outcome["state"] == "settled"
    assert await rig.balances() == {**before, "alice": before["alice"] - 1250,
                                    "shop": before["shop"] + 1250}
    told = await _notices(rig)
    assert told["gw-alice"] == CodeNotice(
        code.code_id(), bytes.fromhex(body["id"]), NoticeRole.PAYER, "alice",
        NoticeState.SETTLED, "", 1250, "EUR", told["gw-alice"].at)
    assert (told["gw-shop"].role, told["gw-shop"].account) == (NoticeRole.PAYEE, "shop")
    await rig.audit_clean()


async def test_a_declined_confirmation_moves_nothing_and_the_code_stays_spent(
        rig: Rig) -> None:
    rig.platform.code_confirmation = CodeConfirmation(above_minor=0)
    code = rig.module("alice").code(CodeKind.PAYMENT, 600)
    request = rig.module("shop").countersign(code, 600)
    status, body = await rig.countersigned(request)
    assert status == 202, body
    [(_, relay, _)] = _asked(rig)
    await rig.platform.handle_response(_answer(rig.module("alice"), relay, Decision.DECLINE),
                                       "gw-alice")
    assert await rig.balances() == ACCOUNTS
    told = await _notices(rig)
    assert {n.state for n in told.values()} == {NoticeState.DECLINED}
    # the same submission retried learns the outcome; the code scanned again is spent
    status, again = await rig.countersigned(request)
    assert (status, again["state"], again["reason"]) == (200, "declined", "declined_by_user")
    status, again = await rig.countersigned(rig.module("shop").countersign(code, 600))
    assert (status, again["error"]) == (409, "code_used")
    assert _asked(rig) == []      # the payer is not asked twice for one code
    assert await rig.balances() == ACCOUNTS
    await rig.audit_clean()
    # the honest path: a new code, approved, settles
    rig.platform.code_confirmation = CodeConfirmation()
    await rig.honest_payment_still_settles()


async def test_an_approval_of_another_code_cannot_settle_this_one(rig: Rig) -> None:
    """A gateway (or anyone on its topics) returns the payer's approval of a small code as the
    answer for a large one: the approval binds its own transaction, so the large code is
    rejected and only the small one settles."""
    rig.platform.code_confirmation = CodeConfirmation(above_minor=0)
    small = rig.module("alice").code(CodeKind.PAYMENT, 100)
    large = rig.module("alice").code(CodeKind.PAYMENT, 90_000)
    status, small_tx = await rig.countersigned(rig.module("shop").countersign(small, 100))
    assert status == 202
    status, large_tx = await rig.countersigned(rig.module("shop").countersign(large, 90_000))
    assert status == 202
    asked = {request.amount_minor: relay for _, relay, request in _asked(rig)}
    approval = RelayResponse.decode(_answer(rig.module("alice"), asked[100], Decision.APPROVE))
    moved = RelayResponse(asked[90_000].request_id, RelayStatus.OK, approval.envelope)
    record = await rig.platform.handle_response(moved.encode(), "gw-alice")
    assert record is not None
    assert (record.state, record.reason) == ("rejected", "wrong_request")
    assert await rig.balances() == ACCOUNTS
    # the approval itself still settles the code it was made for, and only that one
    record = await rig.platform.handle_response(approval.encode(), "gw-alice")
    assert record is not None and record.state == "settled"
    status, view = await rig.get(f"/v1/transactions/{large_tx['id']}", "till")
    assert view["state"] == "rejected"
    assert await rig.balances() == {**ACCOUNTS, "alice": 99_900, "shop": 100}
    await rig.audit_clean()
    assert small_tx["id"] != large_tx["id"]


async def test_a_collection_code_is_confirmed_by_the_paying_scanner_and_a_timeout_moves_nothing(
        rig: Rig) -> None:
    rig.platform.code_confirmation = CodeConfirmation(collection=True)
    code = rig.module("shop", Suite.SM2_SM3).code(CodeKind.COLLECTION, 250)
    request = rig.module("alice", Suite.SM2_SM3).countersign(code, 250)
    status, body = await rig.countersigned(request, "alice-phone")
    assert (status, body["state"]) == (202, "pending"), body
    [(gateway, relay, confirmation)] = _asked(rig)
    assert (gateway, confirmation.suite, confirmation.payer_account) == ("gw-alice", Suite.SM2_SM3,
                                                                  "alice")
    # the owner never answers: the module says so
    timeout = ErrorResponse(ErrorCode.USER_TIMEOUT, relay.request_id, "no answer")
    await rig.platform.handle_response(RelayResponse(
        relay.request_id, RelayStatus.OK, encode_envelope(timeout)).encode(), "gw-alice")
    status, view = await rig.get(f"/v1/transactions/{body['id']}", "alice-phone")
    assert (view["state"], view["reason"]) == ("timed_out", "module:user_timeout")
    told = await _notices(rig)
    assert told["gw-shop"].state is NoticeState.TIMED_OUT
    assert told["gw-shop"].role is NoticeRole.PAYEE
    assert await rig.balances() == ACCOUNTS
    await rig.audit_clean()


async def test_a_pending_code_cancelled_by_the_till_moves_nothing(rig: Rig) -> None:
    rig.platform.code_confirmation = CodeConfirmation(above_minor=0)
    code = rig.module("alice").code(CodeKind.PAYMENT)
    status, body = await rig.presented(code, 700)   # the one-sided variant: a plain till
    assert (status, body["state"]) == (202, "pending"), body
    [(_, relay, _)] = _asked(rig)
    async with rig.http.post(f"{rig.url}/v1/transactions/{body['id']}/cancel", headers={
            "Authorization": f"Bearer {rig.keys['till']}"}) as resp:
        assert resp.status == 200
    [(gateway, cancel)] = _outbox(rig, "req")      # the module is told to stop asking
    assert (gateway, RelayCancel.decode(cancel).request_id) == ("blegw/v1/gw/gw-alice/req",
                                                                relay.request_id)
    told = await _notices(rig)
    assert {n.state for n in told.values()} == {NoticeState.CANCELLED}
    # the approval that arrives after the cancel changes nothing
    record = await rig.platform.handle_response(
        _answer(rig.module("alice"), relay, Decision.APPROVE), "gw-alice")
    assert record is not None and record.state == "cancelled"
    assert await rig.balances() == ACCOUNTS
    await rig.audit_clean()


async def test_hostile_waits_on_a_code_are_typed_errors(rig: Rig) -> None:
    code = rig.module("alice").code(CodeKind.PAYMENT, 5)
    for wait in ("-1", "nan", "121", "x"):
        status, body = await rig.get(f"/v1/codes/{code.code_id().hex()}?wait={wait}")
        assert (status, body["error"]) == (400, "invalid_wait")
    status, body = await rig.get(f"/v1/codes/{code.code_id().hex()}?wait=0.05")
    assert (status, body["error"]) == (404, "not_found")   # not used yet
    await rig.honest_payment_still_settles()


async def test_a_confirmation_answered_after_a_platform_restart_settles_once_and_is_announced(
        rig: Rig) -> None:
    """The platform stops while the payer is asked; the approval reaches the restarted one
    (a second Platform on the same state directory and SQLite ledger): it settles the code's
    transaction once, a replay of the approval moves nothing, and both sides are told."""
    from blegw_platform.code_payments import CodePayments
    from blegw_platform.platform import Platform

    rig.platform.code_confirmation = CodeConfirmation(above_minor=0)
    code = rig.module("alice").code(CodeKind.PAYMENT, 2500)
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 2500))
    assert status == 202, body
    [(_, relay, _)] = _asked(rig)
    restarted = Platform(rig.platform.state_dir)
    try:
        CodePayments(restarted)            # what the API's start registers
        answer = _answer(rig.module("alice"), relay, Decision.APPROVE)
        record = await restarted.handle_response(answer, "gw-alice")
        assert record is not None and record.state == "settled"
        again = await restarted.handle_response(answer, "gw-alice")
        assert again is not None and again.state == "settled"
        assert await rig.balances() == {**ACCOUNTS, "alice": 97_500, "shop": 2500}
        notifier = restarted.final_hooks[0].__self__  # type: ignore[attr-defined]
        await asyncio.gather(*notifier._tasks)
        queue = restarted._outbox
        told = [CodeNotice.decode(payload) for name, payload in
                (queue.get_nowait() for _ in range(queue.qsize())) if name.endswith("/note")]
        assert sorted((n.role, n.account, n.state) for n in told) == [
            (NoticeRole.PAYER, "alice", NoticeState.SETTLED),
            (NoticeRole.PAYEE, "shop", NoticeState.SETTLED)]
    finally:
        await restarted.aclose()
    await rig.audit_clean()
