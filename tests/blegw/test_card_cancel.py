"""A terminal's cancel while the card's owner decides, over the real chain: the platform's HTTP
API and SQLite ledger, mosquitto, the gateway, unmodified bleak and bless over the virtual BlueZ
(only the radio is virtual), and the simulated symmetric-key card.

The cancel must reach the card over the radio (the gateway's CANCEL command): the card withdraws
its owner's prompt, the payment ends ``cancelled``, nothing moves, and the next payment from the
same card settles.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from blegw_harness.chain import CARD_PAYER, PAYEE, PAYER, Chain, running_chain
from e2e import Suite
from wearable_sim.policy import FixedPolicy, Prompt

from .conftest import Mosquitto


class Owner:
    """The card's owner: looks at the prompt, answers only when told, and records when the card
    stopped asking (its prompt withdrawn)."""

    name = "ask"
    verification = "presence"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.stopped_asking = asyncio.Event()

    async def decide(self, prompt: Prompt) -> bool:
        self.asked.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.stopped_asking.set()
            raise
        return False

    async def close(self) -> None:
        return None


async def _json(chain: Chain, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with chain.http.request(method, f"{chain.base_url}{path}", **kwargs) as resp:
        return resp.status, await resp.json()


async def _balances(chain: Chain) -> tuple[int, int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, CARD_PAYER),
            await ledger.run(ledger.balance, PAYEE))


async def test_terminal_cancel_while_the_card_owner_decides_reaches_the_card_and_moves_nothing(
        mosquitto: Mosquitto) -> None:
    owner = Owner()
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=owner) as chain:
        assert chain.card is not None
        before = await _balances(chain)
        status, record = await _json(chain, "POST", "/v1/transactions", json={
            "payer": CARD_PAYER, "payee": PAYEE, "order_reference": "card-cancel",
            "order_description": "cancelled at the till", "amount_minor": 640,
            "currency": "EUR", "suite": "sm2"}, headers={"Idempotency-Key": "card-cancel-0001"})
        assert status == 201, record
        started = time.monotonic()
        while record["progress"] != "awaiting_owner":     # the card's KEEPALIVE, relayed
            assert record["state"] == "pending", record
            status, record = await _json(chain, "GET", f"/v1/transactions/{record['id']}",
                                         params={"wait": "20", "after": repr(record["updated"])})
            assert status == 200
        assert time.monotonic() - started < 20 and owner.asked.is_set()
        status, body = await _json(chain, "POST", f"/v1/transactions/{record['id']}/cancel")
        assert status == 200, body
        assert (body["state"], body["reason"]) == ("cancelled", "cancelled_by_terminal")
        # CANCEL went over the radio: the card withdrew its prompt and answered nothing
        await asyncio.wait_for(owner.stopped_asking.wait(), 10)
        assert chain.card.handled == ["card-hello", "cancelled"]
        worker = chain.gateway.relay.workers[chain.card.card.facts().card_ref]
        async with asyncio.timeout(10):
            while worker.outcomes["cancelled"] != 1:  # noqa: ASYNC110 - the daemon's count
                await asyncio.sleep(0.05)
        assert await _balances(chain) == before
        status, body = await _json(chain, "GET", f"/v1/transactions/{record['id']}")
        assert (body["state"], body["reason"]) == ("cancelled", "cancelled_by_terminal")
        # the same card, the same link: the next payment is asked and settles
        chain.card.policy = FixedPolicy(True)
        outcome = await chain.pay(70, "after the cancel", Suite.SM2_SM3, "card-cancel-0002",
                                  CARD_PAYER)
        assert (outcome["state"], outcome["reason"]) == ("settled", "")
        assert await _balances(chain) == (before[0], before[1] - 70, before[2] + 70)
        assert chain.card.handled[-2:] == ["card-hello", "card-result"]
        # the gateway reported the link and the platform recomputed the card's channel id from
        # it (the link check ran for both hellos: none was accepted unchecked)
        assert chain.platform.counters["card_channel_unchecked"] == 0
        ledger = chain.platform.ledger
        assert await ledger.run(ledger.audit) == []
