"""A ledger that cannot answer is 503 ``ledger_unavailable`` with ``Retry-After`` on every
endpoint, never 500 nor a permanent refusal, and the server keeps serving.

Real HTTP on a real SQLite ledger that is closed under the running server, as at shutdown or
when the database goes away. One test stands in for a database that keeps reporting conflicts
(``LedgerBusy`` after every retry), which cannot be provoked on demand: it replaces the one
ledger call and says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from blegw_platform.api import make_app
from blegw_platform.ledger import LedgerBusy
from blegw_platform.platform import Platform

BODY = {"payer": "alice", "payee": "shop", "order_reference": "R-1", "order_description": "tea",
        "amount_minor": 100, "currency": "EUR", "suite": "p256"}


class Api:
    def __init__(self, platform: Platform, http: ClientSession, url: str, key: str) -> None:
        self.platform, self.http, self.url, self.key = platform, http, url, key

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        headers = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        async with self.http.request(method, f"{self.url}{path}", json=body,
                                     headers=headers) as resp:
            return resp.status, await resp.json(), resp.headers.get("Retry-After", "")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    platform = Platform(tmp_path / "platform")
    for account in ("alice", "shop"):
        await platform.ledger.run(platform.ledger.add_account, account, "EUR", 1000)
    key = await platform.add_terminal("till", ["shop"])
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield Api(platform, http, str(server.make_url("")).rstrip("/"), key)
    finally:
        await server.close()
        await platform.aclose()


async def test_a_closed_ledger_is_503_with_retry_after_on_every_endpoint(api: Api) -> None:
    """A lost database once answered 500 ``internal_error`` (the ledger's typed error went
    unhandled past the handlers), which a terminal must treat as unknown."""
    assert (await api.call("GET", "/v1/transactions/" + "00" * 16))[0] == 404   # honest first
    api.platform.ledger.close()
    for method, path, body, headers in (
            ("POST", "/v1/transactions", BODY, {"Idempotency-Key": "order-key-1"}),
            ("GET", "/v1/transactions/" + "00" * 16, None, None),
            ("POST", "/v1/codes/countersigned", {"request": "BGC1:AAAA"}, None),
            ("POST", "/v1/dynamic-codes", {"request": "x"}, None)):
        status, answer, retry = await api.call(method, path, body, headers)
        assert (status, answer["error"], retry) == (503, "ledger_unavailable", "1"), \
            (method, path, answer)
    async with api.http.get(f"{api.url}/v1/ca") as resp:        # the server still answers
        assert resp.status == 200


async def test_conflicts_on_every_retry_are_503_not_a_permanent_409(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """``LedgerBusy`` (a passing condition) was answered 409 ``idempotency_conflict``, which
    tells a terminal its key was reused for another body: it would never retry."""
    ledger = api.platform.ledger

    def busy(*_: object) -> None:
        raise LedgerBusy("create: conflicting concurrent calls on every one of 8 attempts")

    monkeypatch.setattr(ledger, "create", busy)   # stands in for a database under conflicts
    status, answer, retry = await api.call("POST", "/v1/transactions", BODY,
                                           {"Idempotency-Key": "order-key-2"})
    assert (status, answer["error"], retry) == (503, "ledger_unavailable", "1"), answer
    monkeypatch.undo()
    status, answer, _ = await api.call("POST", "/v1/transactions", BODY,
                                       {"Idempotency-Key": "order-key-2"})
    assert status in (201, 200) and answer["payer"] == "alice", answer
