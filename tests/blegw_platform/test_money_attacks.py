"""Attacks on money and on the terminal API, over real HTTP on a real SQLite ledger.

The MQTT uplink is not started: a request the platform would publish waits in its outbox, and
the module's approval is applied where the platform applies it, in the ledger's settlement
(``Ledger.finish_many`` with the state ``settled``, the one state that moves money). Each test
asserts balances, the audit, that the server still answers, and that an honest payment still
works afterwards.
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
from blegw_platform.ledger import TransactionRecord
from blegw_platform.platform import Platform
from e2e import CertificateAuthority, Suite, generate_private_key


@dataclass
class Api:
    platform: Platform
    http: ClientSession
    url: str
    key: str
    """The API key of terminal ``till`` (collects for ``shop``)."""

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def post(self, body: Any, idem: str, key: str | None = None,
                   **kwargs: Any) -> tuple[int, dict[str, Any]]:
        headers = {**self.auth(key), "Idempotency-Key": idem}
        if isinstance(body, bytes):
            kwargs["data"] = body
            headers["Content-Type"] = "application/json"
        else:
            kwargs["json"] = body
        async with self.http.post(f"{self.url}/v1/transactions", headers=headers,
                                  **kwargs) as resp:
            return resp.status, await resp.json()

    async def balances(self) -> dict[str, int]:
        ledger = self.platform.ledger
        return {a: await ledger.run(ledger.balance, a) for a in ("alice", "shop", "bob")}

    async def settle(self, tx_hex: str, counter: int) -> TransactionRecord:
        """What the platform does with the module's valid approval."""
        ledger = self.platform.ledger
        records: list[TransactionRecord] = await ledger.run(
            ledger.finish_many, [(bytes.fromhex(tx_hex), "settled", "", counter)])
        return records[0]

    async def honest_payment(self, idem: str, counter: int, amount: int = 100) -> None:
        before = await self.balances()
        status, body = await self.post(payment(amount=amount), idem)
        assert status == 201, body
        assert body["state"] == "pending"
        assert (await self.settle(body["id"], counter)).state == "settled"
        after = await self.balances()
        assert after["alice"] == before["alice"] - amount
        assert after["shop"] == before["shop"] + amount
        assert await self.platform.ledger.run(self.platform.ledger.audit) == []


def payment(**changes: Any) -> dict[str, Any]:
    body = {"payer": "alice", "payee": "shop", "order_reference": "A-17",
            "order_description": "coffee beans", "amount_minor": 100, "currency": "EUR"}
    if "amount" in changes:
        body["amount_minor"] = changes.pop("amount")
    body.update(changes)
    return body


@pytest.fixture
async def api(tmp_path: Path, ledger_at: Path | str) -> AsyncIterator[Api]:
    """The platform's API on its default SQLite ledger, or on PostgreSQL (``[ledger] url``)."""
    state = tmp_path / "platform"
    if isinstance(ledger_at, str):
        state.mkdir(mode=0o700)
        (state / "platform.toml").write_text(f'[ledger]\nurl = "{ledger_at}"\n')
    platform = Platform(state)
    ledger = platform.ledger
    await ledger.run(ledger.add_account, "alice", "EUR", 100_000)
    await ledger.run(ledger.add_account, "shop", "EUR", 0)
    await ledger.run(ledger.add_account, "bob", "EUR", 0)
    await ledger.run(ledger.add_account, "usd-shop", "USD", 0)
    now = int(time.time())
    ca: CertificateAuthority = platform.cas[Suite.P256_SHA256]
    cert = ca.issue(generate_private_key(Suite.P256_SHA256).public_key, b"m" * 16,
                    not_before=now - 60, not_after=now + 3600)
    await platform.enroll(cert.encode(), "alice", "gw-1")
    key = await platform.add_terminal("till", ["shop", "usd-shop"])
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield Api(platform, http, str(server.make_url("")).rstrip("/"), key)
    finally:
        await server.close()
        await platform.aclose()


async def test_pay_to_unknown_payee_destroys_money(api: Api) -> None:
    other = await api.platform.add_terminal("till-nobody", ["shop"])
    before = await api.balances()
    # A terminal cannot even name a payee it does not collect for...
    status, body = await api.post(payment(payee="nobody", amount=321), "unknown-payee-1", other)
    assert (status, body["error"]) == (403, "payee_not_allowed")
    # ...and the operator's own path (no terminal) is refused for the missing account.
    from blegw_platform.platform import PlatformError, TransactionInput
    with pytest.raises(PlatformError) as refused:
        await api.platform.create(TransactionInput.from_json(payment(payee="nobody")),
                                  "unknown-payee-2")
    assert (refused.value.status, refused.value.code) == (422, "unknown_payee")
    # A transaction recorded before this rule (an older ledger) never settles into the void.
    ledger = api.platform.ledger
    old = TransactionRecord(b"\x01" * 16, "old-unknown-payee", "h", "alice", "nobody", 321,
                            "EUR", "o", "d", 1, b"m" * 16, b"\x02" * 16, int(time.time()) + 60,
                            b"env", "pending", "", None, time.time(), time.time())
    await ledger.run(lambda: ledger._db.execute(  # bypasses create's check on purpose
        "INSERT INTO transactions VALUES ("
        + ", ".join("?" * len(TransactionRecord.__slots__)) + ")",
        [getattr(old, f) for f in TransactionRecord.__slots__]))
    [done] = await ledger.run(ledger.finish_many, [(old.id, "settled", "", 1)])
    assert (done.state, done.reason) == ("rejected", "unknown_payee")
    assert await api.balances() == before
    assert await ledger.run(ledger.audit) == []
    await api.honest_payment("honest-after-unknown-payee", counter=2)


async def test_usd_payment_against_eur_balance(api: Api) -> None:
    before = await api.balances()
    status, body = await api.post(payment(currency="USD", amount=5_000), "usd-against-eur")
    assert (status, body["error"]) == (422, "currency_mismatch")
    status, body = await api.post(payment(payee="usd-shop", currency="USD"), "usd-shop-eur")
    assert (status, body["error"]) == (422, "currency_mismatch")
    assert await api.balances() == before
    # An account keeps its currency: seed cannot switch alice to USD under a pending payment.
    status, body = await api.post(payment(amount=700), "eur-then-usd")
    assert status == 201
    from blegw_platform.ledger import AccountRefused
    with pytest.raises(AccountRefused):
        await api.platform.ledger.run(api.platform.ledger.add_account, "alice", "USD", 700)
    assert (await api.settle(body["id"], 1)).state == "settled"
    assert (await api.balances())["shop"] == 700
    assert await api.platform.ledger.run(api.platform.ledger.audit) == []
    await api.honest_payment("honest-after-usd", counter=2)


async def test_anonymous_terminal_creates_a_payment(api: Api) -> None:
    before = await api.balances()
    url = f"{api.url}/v1/transactions"
    for headers in ({}, {"Authorization": "Bearer till.not-the-secret"},
                    {"Authorization": "Bearer nobody.x"}, {"Authorization": api.key},
                    {"Authorization": "Basic " + api.key},
                    {"Authorization": "Bearer " + "a" * 500}):
        async with api.http.post(url, json=payment(), headers={
                **headers, "Idempotency-Key": "anonymous-01"}) as resp:
            assert resp.status == 401, headers
            assert (await resp.json())["error"] == "unauthorized"
    # A revoked key stops at once.
    spare = await api.platform.add_terminal("till-spare", ["shop"])
    status, created = await api.post(payment(), "spare-before-revoke", spare)
    assert status == 201
    assert await api.platform.revoke_terminal("till-spare")
    status, body = await api.post(payment(), "spare-after-revoke", spare)
    assert (status, body["error"]) == (401, "unauthorized")
    async with api.http.get(f"{url}/{created['id']}", headers=api.auth(spare)) as resp:
        assert resp.status == 401
    # Reading needs a key too.
    async with api.http.get(f"{url}/{created['id']}") as resp:
        assert resp.status == 401
    async with api.http.get(f"{url}/{created['id']}/outcome?timeout=0") as resp:
        assert resp.status == 401
    assert await api.balances() == before
    await api.honest_payment("honest-after-anonymous", counter=1)


async def test_terminal_collects_for_another_payee(api: Api) -> None:
    before = await api.balances()
    status, body = await api.post(payment(payee="bob"), "another-payee-01")
    assert (status, body["error"]) == (403, "payee_not_allowed")
    # Another terminal's transactions are invisible (404, as if they did not exist), and its
    # idempotency keys are its own: the same key makes a separate transaction.
    bobs = await api.platform.add_terminal("bobs-till", ["bob"])
    status, mine = await api.post(payment(), "shared-key-0001")
    assert status == 201
    status, theirs = await api.post(payment(payee="bob"), "shared-key-0001", bobs)
    assert status == 201 and theirs["id"] != mine["id"]
    for path in (f"/v1/transactions/{mine['id']}", f"/v1/transactions/{mine['id']}/outcome"):
        async with api.http.get(api.url + path, headers=api.auth(bobs),
                                params={"timeout": "0"}) as resp:
            assert resp.status == 404
        async with api.http.get(api.url + path, headers=api.auth(),
                                params={"timeout": "0"}) as resp:
            assert resp.status == 200
    async with api.http.get(f"{api.url}/v1/transactions/{'00' * 16}",
                            headers=api.auth(bobs)) as resp:
        assert resp.status == 404
    assert await api.balances() == before
    await api.honest_payment("honest-after-other-payee", counter=1)


async def test_gateway_id_hash_enrollment(api: Api) -> None:
    from blegw_platform.platform import PlatformError
    now = int(time.time())
    ca = api.platform.cas[Suite.P256_SHA256]
    cert = ca.issue(generate_private_key(Suite.P256_SHA256).public_key, b"n" * 16,
                    not_before=now - 60, not_after=now + 3600).encode()
    code = await api.platform.enrollment_code("bob")
    for gateway in ("#", "+", "gw/other", "", "a" * 65, "gw 1", "gw\x00"):
        async with api.http.post(f"{api.url}/v1/modules", json={
                "certificate": cert.hex(), "account": "bob", "gateway_id": gateway,
                "enrollment_code": code, "revocation_token": "ab" * 32}) as resp:
            assert resp.status == 400, gateway
            assert (await resp.json())["error"] == "invalid_gateway_id"
        with pytest.raises(PlatformError) as refused:             # the operator's path
            await api.platform.enroll(cert, "bob", gateway)
        assert refused.value.code == "invalid_gateway_id"
    assert await api.platform.ledger.run(api.platform.ledger.module_for, "bob", 1) is None
    async with api.http.post(f"{api.url}/v1/modules", json={
            "certificate": cert.hex(), "account": "bob", "gateway_id": "gw-bob",
            "enrollment_code": code, "revocation_token": "ab" * 32}) as resp:
        assert resp.status == 201
    await api.honest_payment("honest-after-hash-gateway", counter=1)


@pytest.mark.parametrize(("raw", "error"), [
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "currency": "EUR", "amount_minor": ' + b"9" * 5000 + b"}", "number_too_large"),
    (b"[" * 20_000 + b"]" * 20_000, "too_deep"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "too_deep"),     # 60 KB: under the size limit
    (b'{"payer": "alice", "payee": "shop", "order_reference": "\\ud800", '
     b'"order_description": "d", "amount_minor": 1, "currency": "EUR"}', "invalid_text"),
    (b'{"\\udfff": 1}', "invalid_text"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "amount_minor": 1.0, "currency": "EUR"}', "invalid_amount"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "amount_minor": true, "currency": "EUR"}', "invalid_amount"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "amount_minor": 1e3, "currency": "EUR"}', "invalid_amount"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "amount_minor": NaN, "currency": "EUR"}', "malformed_json"),
    (b'{"payer": "alice", "payer": "bob"}', "malformed_json"),
    (b"\xff\xfe{}", "malformed_json"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": '
     b'"\\u001b[2J\\u202eevil", "amount_minor": 1, "currency": "EUR"}', "invalid_text"),
    (b'{"payer": "alice\\u0000", "payee": "shop", "order_reference": "A", '
     b'"order_description": "d", "amount_minor": 1, "currency": "EUR"}', "invalid_account"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "' +
     b"x" * 141 + b'", "amount_minor": 1, "currency": "EUR"}', "invalid_text"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "amount_minor": 1000000000000001, "currency": "EUR"}', "invalid_amount"),
    (b'{"payer": "alice", "payee": "shop", "order_reference": "A", "order_description": "d",'
     b' "amount_minor": 1, "currency": "eur"}', "invalid_currency"),
])
async def test_deep_json_huge_int_lone_surrogate_get_400_and_the_server_still_answers(
        api: Api, raw: bytes, error: str) -> None:
    before = await api.balances()
    status, body = await api.post(raw, "hostile-body-01")
    assert (status, body["error"]) == (400, error), body
    assert await api.balances() == before
    await api.honest_payment("honest-after-hostile-body", counter=1)


async def test_oversized_body_and_headers_are_refused_and_the_server_still_answers(
        api: Api) -> None:
    status, body = await api.post(b'{"x": "' + b"a" * 70_000 + b'"}', "oversized-body-1")
    assert (status, body["error"]) == (413, "body_too_large")
    status, body = await api.post(payment(), "short")
    assert (status, body["error"]) == (400, "invalid_idempotency_key")
    status, body = await api.post(payment(), "key with spaces")
    assert (status, body["error"]) == (400, "invalid_idempotency_key")
    async with api.http.get(f"{api.url}/v1/transactions/{'zz' * 16}",
                            headers=api.auth()) as resp:
        assert (resp.status, (await resp.json())["error"]) == (400, "invalid_id")
    async with api.http.get(f"{api.url}/v1/nothing-here") as resp:
        assert (resp.status, (await resp.json())["error"]) == (404, "not_found")
    await api.honest_payment("honest-after-oversized", counter=1)


async def test_replayed_idempotency_key_never_pays_twice(api: Api) -> None:
    status, first = await api.post(payment(amount=250), "replay-key-0001")
    assert status == 201
    status, again = await api.post(payment(amount=250), "replay-key-0001")
    assert (status, again["id"]) == (200, first["id"])
    status, other = await api.post(payment(amount=251), "replay-key-0001")
    assert (status, other["error"]) == (409, "idempotency_conflict")
    assert (await api.settle(first["id"], 1)).state == "settled"
    assert (await api.settle(first["id"], 2)).state == "settled"     # first outcome wins
    assert (await api.balances())["shop"] == 250
    assert await api.platform.ledger.run(api.platform.ledger.audit) == []
