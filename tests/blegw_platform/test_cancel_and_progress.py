"""A terminal's cancel and the owner's wait, on the platform: real HTTP, a real SQLite ledger,
real signatures of an enrolled module key.

The MQTT uplink is not started: what the platform would publish waits in its outbox (the tests
read it there), and what a gateway would publish is handed to ``Platform.handle_response`` with
the gateway id its topic would carry, exactly as the MQTT reader does. The whole chain over
mosquitto, the daemon and the simulated module is in tests/blegw/test_wait_and_cancel.py.
"""

from __future__ import annotations

import asyncio
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
from e2e import (
    ConfirmationRequest,
    Decision,
    PrivateKey,
    Suite,
    UserVerification,
    decode_envelope,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
)
from relay_contract import (
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayResponse,
    RelayStatus,
    decode_from_platform,
    topic,
)

MODULE_ID = b"m" * 16
GATEWAY = "gw-1"


@dataclass
class Api:
    platform: Platform
    http: ClientSession
    url: str
    key: str
    module_key: PrivateKey
    counter: int = 0

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    async def call(self, method: str, path: str, key: str | None = None,
                   **kwargs: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.request(method, f"{self.url}{path}", headers=self.auth(key),
                                     **kwargs) as resp:
            return resp.status, await resp.json()

    async def create(self, idem: str, amount: int = 100) -> dict[str, Any]:
        body = {"payer": "alice", "payee": "shop", "order_reference": idem[:20],
                "order_description": "coffee", "amount_minor": amount, "currency": "EUR"}
        async with self.http.post(f"{self.url}/v1/transactions", json=body,
                                  headers={**self.auth(), "Idempotency-Key": idem}) as resp:
            created: dict[str, Any] = await resp.json()
            assert resp.status == 201, created
            return created

    async def cancel(self, tx_hex: str, key: str | None = None) -> tuple[int, dict[str, Any]]:
        return await self.call("POST", f"/v1/transactions/{tx_hex}/cancel", key)

    async def approval(self, tx_hex: str, decision: Decision = Decision.APPROVE) -> bytes:
        """The relay response a gateway publishes for the module's signed answer."""
        ledger = self.platform.ledger
        tx = await ledger.run(ledger.get, bytes.fromhex(tx_hex))
        request = decode_envelope(tx.envelope)
        assert isinstance(request, ConfirmationRequest)
        self.counter += 1
        answer = sign_confirmation(tx.envelope, request, decision=decision,
                                   counter=self.counter,
                                   user_verification=UserVerification.PRESENCE,
                                   key=self.module_key, module_id=MODULE_ID)
        return RelayResponse(tx.id, RelayStatus.OK, encode_envelope(answer)).encode()

    async def balances(self) -> tuple[int, int]:
        ledger = self.platform.ledger
        return (await ledger.run(ledger.balance, "alice"),
                await ledger.run(ledger.balance, "shop"))

    def published(self) -> list[tuple[str, bytes]]:
        out = []
        queue = self.platform._outbox
        while not queue.empty():
            out.append(queue.get_nowait())
        return out

    async def audit_clean(self) -> None:
        assert await self.platform.ledger.run(self.platform.ledger.audit) == []

    async def honest_payment_settles(self) -> None:
        before = await self.balances()
        created = await self.create(f"honest-{time.time_ns()}", amount=7)
        record = await self.platform.handle_response(await self.approval(created["id"]),
                                                     GATEWAY)
        assert record is not None and record.state == "settled"
        assert await self.balances() == (before[0] - 7, before[1] + 7)
        await self.audit_clean()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    platform = Platform(tmp_path / "platform")
    ledger = platform.ledger
    await ledger.run(ledger.add_account, "alice", "EUR", 100_000)
    await ledger.run(ledger.add_account, "shop", "EUR", 0)
    now = int(time.time())
    module_key = generate_private_key(Suite.P256_SHA256)
    cert = platform.cas[Suite.P256_SHA256].issue(module_key.public_key, MODULE_ID,
                                                  not_before=now - 60, not_after=now + 3600)
    await platform.enroll(cert.encode(), "alice", GATEWAY)
    key = await platform.add_terminal("till", ["shop"])
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield Api(platform, http, str(server.make_url("")).rstrip("/"), key, module_key)
    finally:
        await server.close()
        await platform.aclose()


async def test_cancel_before_the_approval_moves_no_money_and_the_late_approval_changes_nothing(
        api: Api) -> None:
    before = await api.balances()
    created = await api.create("race-cancel-first")
    approval = await api.approval(created["id"])      # signed, on its way
    status, body = await api.cancel(created["id"])
    assert status == 200, body
    assert (body["state"], body["reason"]) == ("cancelled", "cancelled_by_terminal")
    record = await api.platform.handle_response(approval, GATEWAY)
    assert record is not None and (record.state, record.reason) == ("cancelled",
                                                                   "cancelled_by_terminal")
    assert await api.balances() == before
    status, body = await api.call("GET", f"/v1/transactions/{created['id']}")
    assert (status, body["state"]) == (200, "cancelled")
    await api.audit_clean()
    await api.honest_payment_settles()


async def test_approval_before_the_cancel_settles_once_and_the_cancel_is_refused(
        api: Api) -> None:
    before = await api.balances()
    created = await api.create("race-approval-first")
    record = await api.platform.handle_response(await api.approval(created["id"]), GATEWAY)
    assert record is not None and record.state == "settled"
    api.published()
    status, body = await api.cancel(created["id"])
    assert (status, body["error"]) == (409, "already_final")
    assert "settled" in body["detail"]
    assert await api.balances() == (before[0] - 100, before[1] + 100)
    assert not [t for t, _ in api.published() if t.endswith("/req")]  # nothing to withdraw
    await api.audit_clean()
    await api.honest_payment_settles()


async def test_cancel_and_approval_at_the_same_instant_settle_exactly_one_outcome(
        api: Api) -> None:
    """Both run concurrently, many times: each transaction ends settled xor cancelled, and the
    money moved is exactly the settled ones'."""
    before = await api.balances()
    settled = 0
    for i in range(20):
        created = await api.create(f"same-instant-{i:03d}", amount=10 + i)
        approval = await api.approval(created["id"])
        (status, body), record = await asyncio.gather(
            api.cancel(created["id"]), api.platform.handle_response(approval, GATEWAY))
        final = (await api.call("GET", f"/v1/transactions/{created['id']}"))[1]
        assert final["state"] in ("settled", "cancelled")
        assert (status == 200) == (final["state"] == "cancelled")
        assert body.get("state", "settled") == final["state"]
        assert record is not None and record.state == final["state"]
        settled += (10 + i) if final["state"] == "settled" else 0
    assert await api.balances() == (before[0] - settled, before[1] + settled)
    await api.audit_clean()


async def test_cancel_is_idempotent_and_tells_the_gateway_once(api: Api) -> None:
    created = await api.create("cancel-twice")
    api.published()  # the relay request
    first = await api.cancel(created["id"])
    second = await api.cancel(created["id"])
    assert first[0] == second[0] == 200
    assert first[1]["state"] == second[1]["state"] == "cancelled"
    sent = api.published()
    assert [t for t, _ in sent] == [topic(GATEWAY, "req")]
    assert decode_from_platform(sent[0][1]) == RelayCancel(bytes.fromhex(created["id"]),
                                                           MODULE_ID)
    # the gateway's own answer to the withdrawn request changes nothing
    late = RelayResponse(bytes.fromhex(created["id"]), RelayStatus.CANCELLED).encode()
    record = await api.platform.handle_response(late, GATEWAY)
    assert record is not None and record.reason == "cancelled_by_terminal"


async def test_cancel_of_what_a_terminal_may_not_cancel_is_a_typed_error(api: Api) -> None:
    created = await api.create("not-yours-0001")
    other = await api.platform.add_terminal("till-2", ["shop"])
    assert (await api.cancel(created["id"], other))[1]["error"] == "not_found"
    assert (await api.cancel("ab" * 16))[0:2] == (404, {"error": "not_found",
                                                       "detail": "no such transaction"})
    assert (await api.cancel("xyz"))[1]["error"] == "invalid_id"
    assert (await api.cancel(created["id"], "till.forged"))[0] == 401
    declined = await api.create("declined-0001")
    await api.platform.handle_response(await api.approval(declined["id"], Decision.DECLINE),
                                       GATEWAY)
    status, body = await api.cancel(declined["id"])
    assert (status, body["error"]) == (409, "already_final")
    # the other terminal's attempt did not cancel it; its owner does
    assert (await api.cancel(created["id"]))[1]["state"] == "cancelled"
    await api.honest_payment_settles()


async def test_progress_from_the_requests_gateway_wakes_a_long_poll_with_awaiting_owner(
        api: Api) -> None:
    created = await api.create("progress-0001")
    assert created["progress"] == ""
    started = time.monotonic()
    poll = asyncio.create_task(api.call(
        "GET", f"/v1/transactions/{created['id']}",
        params={"wait": "20", "after": repr(created["updated"])}))
    await asyncio.sleep(0.2)
    assert not poll.done()  # nothing changed yet: the long-poll waits
    progress = RelayProgress(bytes.fromhex(created["id"]), OwnerStatus.AWAITING_OWNER)
    await api.platform.handle_response(progress.encode(), GATEWAY)
    status, body = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 5
    assert (status, body["state"], body["progress"]) == (200, "pending", "awaiting_owner")
    assert body["updated"] > created["updated"]
    # the same status again is not a change
    assert await api.platform.handle_response(progress.encode(), GATEWAY) is None
    # and the outcome ends a long-poll too; progress is not shown on a final transaction
    poll = asyncio.create_task(api.call(
        "GET", f"/v1/transactions/{created['id']}",
        params={"wait": "20", "after": repr(body["updated"])}))
    await asyncio.sleep(0.1)
    await api.platform.handle_response(await api.approval(created["id"]), GATEWAY)
    status, body = await asyncio.wait_for(poll, 5)
    assert (body["state"], body["progress"]) == ("settled", "")


async def test_progress_from_another_gateway_or_for_an_unknown_transaction_is_ignored(
        api: Api) -> None:
    created = await api.create("progress-foreign")
    tx = bytes.fromhex(created["id"])
    progress = RelayProgress(tx, OwnerStatus.AWAITING_OWNER).encode()
    assert await api.platform.handle_response(progress, "gw-other") is None
    assert api.platform.counters["foreign_progress"] == 1
    assert await api.platform.handle_response(
        RelayProgress(b"\x99" * 16, OwnerStatus.PROCESSING).encode(), GATEWAY) is None
    assert api.platform.counters["unknown_progress"] == 1
    status, body = await api.call("GET", f"/v1/transactions/{created['id']}")
    assert (body["state"], body["progress"]) == ("pending", "")
    # malformed progress (status 7 is not an owner status) is counted with the malformed
    bad = progress[:-1] + b"\x07"
    assert await api.platform.handle_response(bad, GATEWAY) is None
    assert api.platform.counters["malformed_responses"] == 1
    # after the outcome, progress changes nothing
    await api.platform.handle_response(await api.approval(created["id"]), GATEWAY)
    assert await api.platform.handle_response(progress, GATEWAY) is None
    status, body = await api.call("GET", f"/v1/transactions/{created['id']}")
    assert (status, body["state"], body["progress"]) == (200, "settled", "")
    await api.honest_payment_settles()


@pytest.mark.parametrize("query", [{"wait": "121"}, {"wait": "-1"}, {"wait": "nan"},
                                   {"wait": "inf"}, {"wait": "x"}, {"after": "-1"},
                                   {"after": "nan"}, {"wait": "1", "after": "1e300"}])
async def test_long_poll_out_of_bounds_is_refused(api: Api, query: dict[str, str]) -> None:
    created = await api.create(f"bounds-{time.time_ns()}")
    status, body = await api.call("GET", f"/v1/transactions/{created['id']}", params=query)
    assert status == 400
    assert body["error"] in ("invalid_wait", "invalid_after")


async def test_long_poll_without_a_change_answers_at_its_bound(api: Api) -> None:
    created = await api.create("bound-0001")
    started = time.monotonic()
    status, body = await api.call("GET", f"/v1/transactions/{created['id']}",
                                  params={"wait": "0.5", "after": repr(created["updated"])})
    assert 0.4 < time.monotonic() - started < 5
    assert (status, body["state"], body["updated"]) == (200, "pending", created["updated"])
    # a state the caller has not seen yet answers at once
    started = time.monotonic()
    status, body = await api.call("GET", f"/v1/transactions/{created['id']}",
                                  params={"wait": "30", "after": "0"})
    assert time.monotonic() - started < 2 and status == 200
