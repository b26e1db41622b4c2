"""Both directions and the one-sided variant, from the modules' secure elements through a QR
image to the platform's HTTP API and SQLite ledger.

The codes are decoded from the PNG they were rendered to, never handed over in memory. The
modules are the simulator's real secure elements and code preparation (wearable_sim.codes);
only the radio between app and module is left out here (tests/wearable_sim/test_code_signing.py
drives that path over GATT).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from blegw_platform.api import make_app
from blegw_platform.platform import Platform
from e2e import Suite
from e2e.messages import CodeSignRequest, CountersignRequest
from transaction_code import CodeKind, CountersignedCode, TransactionCode, to_text
from transaction_code_image import png, read_png
from wearable_sim.codes import prepare
from wearable_sim.element import SecureElement
from wearable_sim.state import ModuleState

RID = b"\x09" * 16


@dataclass
class Owner:
    account: str
    element: SecureElement

    def make_code(self, kind: CodeKind, suite: Suite, amount: int | None) -> bytes:
        unsigned, _ = prepare(CodeSignRequest(RID, int(kind), suite, self.account, amount,
                                              None if amount is None else "EUR", 120),
                              self.element.code_signer(suite), now=int(time.time()))
        assert isinstance(unsigned, TransactionCode)
        return self.element.sign_code(unsigned).encode()

    def countersign(self, scanned: bytes, suite: Suite, amount: int) -> bytes:
        unsigned, _ = prepare(CountersignRequest(RID, scanned, suite, self.account, amount,
                                                 "EUR"),
                              self.element.code_signer(suite), now=int(time.time()))
        assert isinstance(unsigned, CountersignedCode)
        return self.element.countersign(unsigned).encode()


@dataclass
class Stack:
    platform: Platform
    http: ClientSession
    url: str
    keys: dict[str, str]
    owners: dict[str, Owner]

    async def post(self, path: str, body: Any, terminal: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.url}{path}", json=body, headers={
                "Authorization": f"Bearer {self.keys[terminal]}"}) as resp:
            return resp.status, await resp.json()

    async def balance(self, account: str) -> int:
        ledger = self.platform.ledger
        return int(await ledger.run(ledger.balance, account))


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    platform = Platform(tmp_path / "platform")
    ledger = platform.ledger
    owners: dict[str, Owner] = {}
    now = int(time.time())
    for account, balance in (("alice", 10_000), ("shop", 0)):
        await ledger.run(ledger.add_account, account, "EUR", balance)
        element = SecureElement(ModuleState(tmp_path / account))
        for suite in Suite:
            cert = platform.cas[suite].issue(element.public_key(suite), element.module_id,
                                             not_before=now - 60, not_after=now + 3600)
            element.install_certificate(cert.encode())
            await platform.enroll(cert.encode(), account, f"gw-{account}")
        owners[account] = Owner(account, element)
    keys = {"till": await platform.add_terminal("till", ["shop"]),
            "alice-phone": await platform.add_terminal("alice-phone", ["alice"])}
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield Stack(platform, http, str(server.make_url("")).rstrip("/"), keys, owners)
    finally:
        await server.close()
        await platform.aclose()


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
async def test_a_payment_code_scanned_from_its_image_by_a_merchant_settles(
        stack: Stack, suite: Suite) -> None:
    code = stack.owners["alice"].make_code(CodeKind.PAYMENT, suite, None)
    scanned = read_png(png(code, suite))
    request = stack.owners["shop"].countersign(scanned, suite, 1500)
    status, body = await stack.post("/v1/codes/countersigned", {"request": to_text(request)},
                                    "till")
    assert (status, body["state"], body["payer"], body["payee"]) == \
        (201, "settled", "alice", "shop"), body
    assert (await stack.balance("alice"), await stack.balance("shop")) == (8_500, 1_500)


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
async def test_a_collection_code_scanned_from_its_image_by_a_payer_settles(
        stack: Stack, suite: Suite) -> None:
    code = stack.owners["shop"].make_code(CodeKind.COLLECTION, suite, 2_000)
    scanned = read_png(png(code, suite))
    request = stack.owners["alice"].countersign(scanned, suite, 2_000)
    status, body = await stack.post("/v1/codes/countersigned", {"request": to_text(request)},
                                    "alice-phone")
    assert (status, body["state"], body["payer"], body["payee"]) == \
        (201, "settled", "alice", "shop"), body
    assert (await stack.balance("alice"), await stack.balance("shop")) == (8_000, 2_000)


async def test_a_payment_code_read_by_a_till_without_a_module_settles(stack: Stack) -> None:
    code = stack.owners["alice"].make_code(CodeKind.PAYMENT, Suite.SM2_SM3, 700)
    scanned = read_png(png(code, Suite.SM2_SM3))
    body_in = {"code": to_text(scanned), "account": "shop", "amount_minor": 700,
               "currency": "EUR"}
    status, body = await stack.post("/v1/codes/presented", body_in, "till")
    assert (status, body["state"]) == (201, "settled"), body
    status, body = await stack.post("/v1/codes/presented", body_in, "till")
    assert (status, body["id"]) == (200, body["id"])  # the same submission again: a retry
    assert (await stack.balance("alice"), await stack.balance("shop")) == (9_300, 700)
    assert await stack.platform.ledger.run(stack.platform.ledger.audit) == []


async def test_an_unsigned_collection_code_read_from_its_image_is_paid_by_the_payers_module(
        stack: Stack) -> None:
    """The payee has no module (a printed code at a market stall); the payer's module signs."""
    now = int(time.time())
    code = TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, "shop", 650, "EUR",
                           now, now + 3600, b"\x01" * 16).encode()
    scanned = read_png(png(code, Suite.P256_SHA256))
    request = stack.owners["alice"].countersign(scanned, Suite.SM2_SM3, 650)
    status, body = await stack.post("/v1/codes/countersigned", {"request": to_text(request)},
                                    "alice-phone")
    assert (status, body["state"], body["payee"]) == (201, "settled", "shop"), body
    assert (await stack.balance("alice"), await stack.balance("shop")) == (9_350, 650)
