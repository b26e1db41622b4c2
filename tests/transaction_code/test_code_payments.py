"""Paying transaction codes over the platform's real HTTP API and a real SQLite ledger.

Modules are soft keys certified by the platform's CA and enrolled like real ones (no radio is
involved: the module side is tested in tests/wearable_sim). Each attack test asserts the typed
refusal, that balances did not move, that the books balance, and that the honest path still
settles afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from typing import Any

import cbor2
import pytest

from e2e import Suite, generate_private_key
from e2e.cbor import dumps
from transaction_code import (
    CodeKind,
    TransactionCode,
    to_text,
)

from .conftest import ACCOUNTS, Rig


# -- the honest flows -----------------------------------------------------------------------------
@pytest.mark.parametrize("suite", list(Suite))
async def test_a_payment_code_scanned_by_a_merchant_settles_once(rig: Rig, suite: Suite) -> None:
    code = rig.module("alice", suite).code(CodeKind.PAYMENT, 1250)
    request = rig.module("shop", suite).countersign(code, 1250)
    status, body = await rig.countersigned(request)
    assert (status, body["state"], body["payer"], body["payee"], body["amount_minor"]) == \
        (201, "settled", "alice", "shop", 1250), body
    assert await rig.balances() == {**ACCOUNTS, "alice": 98_750, "shop": 1250}
    # a retry of the same submission (the answer was lost) returns the same transaction
    again_status, again = await rig.countersigned(request)
    assert (again_status, again["id"]) == (200, body["id"])
    assert await rig.balances() == {**ACCOUNTS, "alice": 98_750, "shop": 1250}
    # both sides see it: the till through its transaction, the payer through the code's id
    status, view = await rig.get(f"/v1/transactions/{body['id']}", "till")
    assert (status, view["state"]) == (200, "settled")
    status, view = await rig.get(f"/v1/codes/{code.code_id().hex()}")
    assert (status, view["id"], view["state"]) == (200, body["id"], "settled")
    # anyone who saw the code may ask, so the answer names no account and no order
    assert set(view) == {"id", "state", "reason", "amount_minor", "currency", "updated"}
    await rig.audit_clean()


async def test_a_payment_code_without_amount_takes_the_amount_the_merchant_signed(
        rig: Rig) -> None:
    code = rig.module("alice").code(CodeKind.PAYMENT)
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 480))
    assert (status, body["amount_minor"]) == (201, 480), body
    assert (await rig.balances())["alice"] == 100_000 - 480


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize("amount", [None, 990])
async def test_a_collection_code_scanned_by_a_payer_settles(rig: Rig, suite: Suite,
                                                             amount: int | None) -> None:
    code = rig.module("shop", suite).code(CodeKind.COLLECTION, amount)
    request = rig.module("alice", suite).countersign(code, 990)
    status, body = await rig.countersigned(request, "alice-phone")
    assert (status, body["state"], body["payer"], body["payee"]) == \
        (201, "settled", "alice", "shop"), body
    assert await rig.balances() == {**ACCOUNTS, "alice": 99_010, "shop": 990}
    await rig.audit_clean()


async def test_a_payment_code_presented_by_a_terminal_without_a_module_settles(
        rig: Rig) -> None:
    code = rig.module("alice").code(CodeKind.PAYMENT)
    status, body = await rig.presented(code, 300)
    assert (status, body["state"], body["payee"]) == (201, "settled", "shop"), body
    assert await rig.balances() == {**ACCOUNTS, "alice": 99_700, "shop": 300}
    # the one-sided variant refuses a collection code: no payer signed a debit
    before = await rig.balances()
    collection = rig.module("mallory").code(CodeKind.COLLECTION, 300)
    status, body = await rig.presented(collection, 300, "alice", "alice-phone")
    before = await rig.refused((422, "parties_refused"), status, body, before)


# -- the attacks ----------------------------------------------------------------------------------
async def test_a_terminal_key_equal_to_a_code_id_cannot_block_the_code(rig: Rig) -> None:
    """Terminal keys are stored as ``<terminal>:<key>`` in the column code payments use: a
    terminal named ``code`` sending the code's id as its Idempotency-Key took the code's key
    first, and the code then failed with 503 on every attempt, unpayable for good."""
    code = rig.module("alice").code(CodeKind.PAYMENT, 40)
    key = await rig.platform.add_terminal("code", ["shop"])
    body = {"payer": "alice", "payee": "shop", "order_reference": "A-1",
            "order_description": "coffee", "amount_minor": 5, "currency": "EUR"}
    async with rig.http.post(f"{rig.url}/v1/transactions", json=body, headers={
            "Authorization": f"Bearer {key}", "Idempotency-Key": code.code_id().hex()}) as resp:
        assert resp.status == 201, await resp.json()
    before = await rig.balances()
    status, paid = await rig.countersigned(rig.module("shop").countersign(code, 40))
    assert (status, paid["state"]) == (201, "settled"), paid
    after = await rig.balances()
    assert (after["alice"], after["shop"]) == (before["alice"] - 40, before["shop"] + 40)
    await rig.audit_clean()


async def test_a_code_copied_and_presented_twice_settles_once(rig: Rig) -> None:
    code = rig.module("alice").code(CodeKind.PAYMENT, 500)
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 500))
    assert status == 201, body
    before = await rig.balances()
    # the same code, countersigned afresh (a new submission) and presented without a module
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 500))
    assert (status, body["error"]) == (409, "code_used")
    status, body = await rig.presented(code, 500)
    before = await rig.refused((409, "code_used"), status, body, before)


async def test_a_code_copied_and_presented_twice_at_once_settles_once(rig: Rig) -> None:
    code = rig.module("alice").code(CodeKind.PAYMENT, 200)
    requests = [rig.module("shop").countersign(code, 200) for _ in range(6)]
    answers = await asyncio.gather(*(rig.countersigned(r) for r in requests))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 409, 409, 409, 409, 409], answers
    assert await rig.balances() == {**ACCOUNTS, "alice": 99_800, "shop": 200}
    await rig.audit_clean()


async def test_a_code_after_expiry_is_refused(rig: Rig) -> None:
    before = await rig.balances()
    stale = rig.module("alice").code(CodeKind.PAYMENT, 100, issued=int(time.time()) - 300,
                                     lifetime=60)
    status, body = await rig.countersigned(rig.module("shop").countersign(stale, 100))
    before = await rig.refused((422, "code_expired"), status, body, before)
    status, body = await rig.presented(stale, 100)
    assert (status, body["error"]) == (422, "code_expired")
    future = rig.module("alice").code(CodeKind.PAYMENT, 100, issued=int(time.time()) + 600)
    status, body = await rig.countersigned(rig.module("shop").countersign(future, 100))
    assert (status, body["error"]) == (422, "code_not_yet_valid")


async def test_an_amount_edited_in_a_code_is_refused(rig: Rig) -> None:
    before = await rig.balances()
    code = rig.module("alice").code(CodeKind.PAYMENT, 1250)
    raw = dict(cbor2.loads(code.encode()))
    raw[6] = 125_000                                   # the amount, edited in the code's bytes
    edited = dumps(raw)
    status, body = await rig.countersigned(rig.module("shop").countersign(edited, 125_000))
    before = await rig.refused((422, "bad_code_signature"), status, body, before)
    # the code left untouched but another amount countersigned: the code's amount binds
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 125_000))
    before = await rig.refused((422, "amount_mismatch"), status, body, before)
    # an amount-less code: the scanner's signature binds the amount it chose
    open_code = rig.module("alice").code(CodeKind.PAYMENT)
    signed = rig.module("shop").countersign(open_code, 100)
    raw = dict(cbor2.loads(signed.encode()))
    raw[6] = 99_000
    status, body = await rig.countersigned(dumps(raw))
    before = await rig.refused((422, "bad_scanner_signature"), status, body, before)
    # and the honest holder's code still pays after all that
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 1250))
    assert (status, body["state"]) == (201, "settled")


async def test_a_screenshot_of_someones_code_countersigned_by_a_third_module_is_refused(
        rig: Rig) -> None:
    before = await rig.balances()
    code = rig.module("alice").code(CodeKind.PAYMENT, 2000)   # shown at shop's till
    mallory = rig.module("mallory")
    # Mallory's module countersigns claiming the shop's account: not the shop's module
    status, body = await rig.countersigned(mallory.countersign(code, 2000, account="shop"))
    before = await rig.refused((422, "scanner_not_enrolled"), status, body, before)
    # ...or her own account through the shop's till: the till does not collect for her
    status, body = await rig.countersigned(mallory.countersign(code, 2000))
    before = await rig.refused((403, "payee_not_allowed"), status, body, before)
    # ...or as a plain presented code on the till: the same
    status, body = await rig.presented(code, 2000, "mallory")
    before = await rig.refused((403, "payee_not_allowed"), status, body, before)
    # the shop's own scan pays, once, and the screenshot is worthless afterwards
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 2000))
    assert (status, body["payee"]) == (201, "shop")
    settled = await rig.balances()
    status, body = await rig.countersigned(mallory.countersign(code, 2000), "mallory-till")
    await rig.refused((409, "code_used"), status, body, settled)


async def test_a_code_signed_by_a_module_not_enrolled_for_that_account_is_refused(
        rig: Rig) -> None:
    before = await rig.balances()
    # Mallory's genuine, enrolled module signs a payment code in alice's name
    forged = rig.module("mallory").code(CodeKind.PAYMENT, 900, account="alice")
    status, body = await rig.countersigned(rig.module("shop").countersign(forged, 900))
    before = await rig.refused((422, "signer_not_enrolled"), status, body, before)
    # a key the CA never certified, naming alice's real certificate
    rogue = dataclasses.replace(rig.module("alice"), key=generate_private_key(Suite.P256_SHA256))
    status, body = await rig.countersigned(
        rig.module("shop").countersign(rogue.code(CodeKind.PAYMENT, 900), 900))
    before = await rig.refused((422, "bad_code_signature"), status, body, before)
    # alice's module after its revocation
    code = rig.module("alice").code(CodeKind.PAYMENT, 900)
    alice_id = __import__("e2e").Certificate.decode(rig.module("alice").certificate).module_id
    await rig.platform.revoke(alice_id)
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 900))
    assert (status, body["error"]) == (422, "signer_not_enrolled")
    assert await rig.balances() == before
    await rig.audit_clean()


async def test_the_embedded_signature_moved_to_another_request_is_refused(rig: Rig) -> None:
    before = await rig.balances()
    alice, shop = rig.module("alice"), rig.module("shop")
    small = alice.code(CodeKind.PAYMENT, 10)
    large = alice.code(CodeKind.PAYMENT, 90_000)
    # alice's signature from the small code placed on the large one
    moved = dataclasses.replace(large, signature=small.signature)
    status, body = await rig.countersigned(shop.countersign(moved, 90_000))
    before = await rig.refused((422, "bad_code_signature"), status, body, before)
    # the shop's countersignature of the small code moved onto a request for the large one
    signed_small = shop.countersign(small, 10)
    unsigned_large = dataclasses.replace(shop.countersign(large, 90_000),
                                         signature=signed_small.signature)
    status, body = await rig.countersigned(unsigned_large)
    before = await rig.refused((422, "bad_scanner_signature"), status, body, before)
    # a code's signature used as the scanner's (same key, other domain)
    bob = rig.module("bob")
    bob_code = bob.code(CodeKind.COLLECTION, 10)
    as_scanner = dataclasses.replace(bob.countersign(small, 10), signature=bob_code.signature)
    status, body = await rig.countersigned(as_scanner, "alice-phone")
    before = await rig.refused((422, "bad_scanner_signature"), status, body, before)


async def test_a_swapped_payee_is_refused(rig: Rig) -> None:
    before = await rig.balances()
    shop_code = rig.module("shop").code(CodeKind.COLLECTION, 700)
    alice = rig.module("alice")
    signed = alice.countersign(shop_code, 700)
    # in flight, the shop's collection code is swapped for Mallory's own, validly signed one
    mallory_code = rig.module("mallory").code(CodeKind.COLLECTION, 700)
    raw = dict(cbor2.loads(signed.encode()))
    raw[2] = mallory_code.encode()
    status, body = await rig.countersigned(dumps(raw), "alice-phone")
    before = await rig.refused((422, "bad_scanner_signature"), status, body, before)
    # a payment code whose request names another payee than the module that signed it
    code = alice.code(CodeKind.PAYMENT, 700)
    raw = dict(cbor2.loads(rig.module("shop").countersign(code, 700).encode()))
    raw[5] = "mallory"
    status, body = await rig.countersigned(dumps(raw), "mallory-till")
    before = await rig.refused((422, "scanner_not_enrolled"), status, body, before)
    # the honest payer's request still pays the shop
    status, body = await rig.countersigned(signed, "alice-phone")
    assert (status, body["payee"]) == (201, "shop")


async def test_hostile_submissions_get_typed_errors_and_the_server_keeps_serving(
        rig: Rig) -> None:
    before = await rig.balances()
    cases: list[tuple[str, Any, int, str]] = [
        ("/v1/codes/countersigned", {"request": "BGC1:" + "Z" * 10}, 400, "malformed_code"),
        ("/v1/codes/countersigned", {"request": "not a code"}, 400, "malformed_code"),
        ("/v1/codes/countersigned", {"request": 12}, 400, "malformed_code"),
        ("/v1/codes/countersigned", {"request": to_text(b"\xa0")}, 400, "malformed_code"),
        ("/v1/codes/countersigned", {"request": "x", "more": 1}, 400, "invalid_request"),
        ("/v1/codes/countersigned", [], 400, "invalid_request"),
        ("/v1/codes/presented", {"code": "BGC1:", "account": "shop", "amount_minor": 1.5,
                                 "currency": "EUR"}, 400, "invalid_amount"),
        ("/v1/codes/presented", {"code": "BGC1:", "account": "shop", "amount_minor": True,
                                 "currency": "EUR"}, 400, "invalid_amount"),
        ("/v1/codes/presented", {"code": "BGC1:", "account": "sh op", "amount_minor": 1,
                                 "currency": "EUR"}, 400, "invalid_account"),
        ("/v1/codes/presented", {"code": "BGC1:", "account": "shop", "amount_minor": 1,
                                 "currency": "eur"}, 400, "invalid_currency"),
        ("/v1/codes/presented", {"code": "BGC1:", "account": "shop", "amount_minor": 1,
                                 "currency": "EUR"}, 400, "malformed_code"),
    ]
    for path, body, status, error in cases:
        got_status, got = await rig._post(path, body, "till")
        assert (got_status, got["error"]) == (status, error), (path, body, got)
    async with rig.http.post(f"{rig.url}/v1/codes/countersigned", json={"request": "x"}) as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")
    for path in ("/v1/codes/xyz", f"/v1/codes/{'0' * 64}"):
        status, body = await rig.get(path)
        assert status in (400, 404) and "error" in body
    assert await rig.balances() == before
    await rig.honest_payment_still_settles()


# -- the payee without a module: unsigned collection codes ----------------------------------------
def _unsigned(account: str, amount: int | None) -> TransactionCode:
    now = int(time.time())
    return TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, account, amount,
                           None if amount is None else "EUR", now, now + 120,
                           secrets.token_bytes(16))


@pytest.mark.parametrize("amount", [None, 400])
async def test_an_unsigned_collection_code_is_paid_on_the_payers_countersignature_once(
        rig: Rig, amount: int | None) -> None:
    code = _unsigned("shop", amount)
    status, body = await rig.countersigned(rig.module("alice", Suite.SM2_SM3).countersign(
        code, 400), "alice-phone")
    assert (status, body["state"], body["payer"], body["payee"]) == \
        (201, "settled", "alice", "shop"), body
    paid = await rig.balances()
    assert paid == {**ACCOUNTS, "alice": 99_600, "shop": 400}
    status, body = await rig.countersigned(rig.module("bob").countersign(code, 400),
                                           "alice-phone")
    await rig.refused((409, "code_used"), status, body, paid)


async def test_a_forged_unsigned_collection_code_for_a_private_account_is_refused(
        rig: Rig) -> None:
    """Anyone can print an unsigned code: it pays only into a registered merchant's account."""
    before = await rig.balances()
    code = _unsigned("bob", 400)                        # no terminal collects for bob
    status, body = await rig.countersigned(rig.module("alice").countersign(code, 400),
                                           "alice-phone")
    before = await rig.refused((422, "unsigned_code_refused"), status, body, before)
    # presented by a terminal without a module: nobody signed at all
    status, body = await rig.presented(_unsigned("shop", 400), 400)
    before = await rig.refused((422, "parties_refused"), status, body, before)
    # an unsigned code whose amount the payer's request contradicts
    status, body = await rig.countersigned(
        rig.module("alice").countersign(_unsigned("shop", 400), 4_000), "alice-phone")
    await rig.refused((422, "amount_mismatch"), status, body, before)


async def test_a_retry_after_the_code_expired_returns_the_payment_and_nothing_more(
        rig: Rig) -> None:
    """The till's answer was lost and it retries after the code expired: same transaction."""
    code = rig.module("alice").code(CodeKind.PAYMENT, 50, lifetime=1)
    request = rig.module("shop").countersign(code, 50)
    status, first = await rig.countersigned(request)
    assert status == 201, first
    paid = await rig.balances()
    await asyncio.sleep(2.1)                                  # past the code's expiry
    status, again = await rig.countersigned(request)
    assert (status, again["id"]) == (200, first["id"])
    # another submission of the expired code (a fresh countersignature) is refused
    status, body = await rig.countersigned(rig.module("shop").countersign(code, 50))
    await rig.refused((422, "code_expired"), status, body, paid)
