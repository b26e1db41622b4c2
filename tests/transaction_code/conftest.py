"""The code-payment rig: a real platform, its HTTP API and SQLite ledger, modules as soft keys.

Modules are soft keys certified by the platform's CA and enrolled like real ones (no radio is
involved: the module side is tested in tests/wearable_sim), each account's on gateway
``gw-<account>``.
"""

from __future__ import annotations

import secrets
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
from e2e import PrivateKey, Suite, generate_private_key
from transaction_code import (
    CodeKind,
    CountersignedCode,
    TransactionCode,
    signer_reference,
    to_text,
)

ACCOUNTS = {"alice": 100_000, "bob": 50_000, "shop": 0, "mallory": 0}


@dataclass
class Module:
    """A module enrolled for ``account``: its key and the reference to its certificate."""

    account: str
    key: PrivateKey
    certificate: bytes

    @property
    def ref(self) -> bytes:
        return signer_reference(self.certificate)

    def code(self, kind: CodeKind, amount: int | None = None, *, lifetime: int = 120,
             issued: int | None = None, account: str | None = None) -> TransactionCode:
        issued = int(time.time()) if issued is None else issued
        return TransactionCode(kind, self.key.suite, self.ref, account or self.account,
                               amount, None if amount is None else "EUR", issued,
                               issued + lifetime, secrets.token_bytes(16)).sign(self.key)

    def countersign(self, code: TransactionCode | bytes, amount: int, *,
                    account: str | None = None) -> CountersignedCode:
        data = code if isinstance(code, bytes) else code.encode()
        return CountersignedCode(data, self.key.suite, self.ref, account or self.account,
                                 amount, "EUR", int(time.time())).sign(self.key)


@dataclass
class Rig:
    platform: Platform
    http: ClientSession
    url: str
    keys: dict[str, str]
    """API keys: ``till`` collects for shop, ``alice-phone`` for alice, ``mallory-till`` for
    mallory."""
    modules: dict[tuple[str, Suite], Module]

    def module(self, account: str, suite: Suite = Suite.P256_SHA256) -> Module:
        return self.modules[(account, suite)]

    async def countersigned(self, request: CountersignedCode | bytes, terminal: str = "till"
                            ) -> tuple[int, dict[str, Any]]:
        data = request if isinstance(request, bytes) else request.encode()
        return await self._post("/v1/codes/countersigned", {"request": to_text(data)}, terminal)

    async def presented(self, code: TransactionCode | bytes, amount: int, account: str = "shop",
                        terminal: str = "till") -> tuple[int, dict[str, Any]]:
        data = code if isinstance(code, bytes) else code.encode()
        return await self._post("/v1/codes/presented",
                                {"code": to_text(data), "account": account,
                                 "amount_minor": amount, "currency": "EUR"}, terminal)

    async def _post(self, path: str, body: Any, terminal: str) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.url}{path}", json=body, headers={
                "Authorization": f"Bearer {self.keys[terminal]}"}) as resp:
            return resp.status, await resp.json()

    async def get(self, path: str, terminal: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {self.keys[terminal]}"} if terminal else {}
        async with self.http.get(f"{self.url}{path}", headers=headers) as resp:
            return resp.status, await resp.json()

    async def balances(self) -> dict[str, int]:
        ledger = self.platform.ledger
        return {a: await ledger.run(ledger.balance, a) for a in ACCOUNTS}

    async def audit_clean(self) -> None:
        assert await self.platform.ledger.run(self.platform.ledger.audit) == []

    async def honest_payment_still_settles(self, amount: int = 7) -> None:
        before = await self.balances()
        code = self.module("alice").code(CodeKind.PAYMENT, amount)
        status, body = await self.countersigned(self.module("shop").countersign(code, amount))
        assert (status, body["state"]) == (201, "settled"), body
        after = await self.balances()
        assert after["alice"] == before["alice"] - amount
        assert after["shop"] == before["shop"] + amount
        await self.audit_clean()

    async def refused(self, expected: tuple[int, str], status: int, body: dict[str, Any],
                      before: dict[str, int]) -> dict[str, int]:
        """Check a refusal left the money alone and the honest path works; the balances
        after that honest payment (the next refusal's ``before``)."""
        assert (status, body.get("error")) == expected, body
        assert await self.balances() == before
        await self.audit_clean()
        await self.honest_payment_still_settles()
        return await self.balances()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    platform = Platform(tmp_path / "platform")
    ledger = platform.ledger
    for account, balance in ACCOUNTS.items():
        await ledger.run(ledger.add_account, account, "EUR", balance)
    now = int(time.time())
    modules: dict[tuple[str, Suite], Module] = {}
    for account in ACCOUNTS:
        module_id = secrets.token_bytes(16)
        for suite in Suite:
            key = generate_private_key(suite)
            cert = platform.cas[suite].issue(key.public_key, module_id, not_before=now - 60,
                                             not_after=now + 3600).encode()
            await platform.enroll(cert, account, f"gw-{account}")
            modules[(account, suite)] = Module(account, key, cert)
    keys = {"till": await platform.add_terminal("till", ["shop"]),
            "alice-phone": await platform.add_terminal("alice-phone", ["alice"]),
            "mallory-till": await platform.add_terminal("mallory-till", ["mallory"])}
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield Rig(platform, http, str(server.make_url("")).rstrip("/"), keys, modules)
    finally:
        await server.close()
        await platform.aclose()
