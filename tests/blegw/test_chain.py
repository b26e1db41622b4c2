"""The whole chain with real parts: virtual radio, mosquitto, SQLite, platform, gateway, module.

The hostile-gateway tests put a relay between gateway and platform that tampers with answers;
the platform must reject each attack with the right reason, settle nothing twice, keep balances
consistent, and still settle honest payments afterwards.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from blegw_harness.chain import PAYEE, PAYER, running_chain
from e2e import (
    ConfirmationResponse,
    Decision,
    Suite,
    decode_envelope,
    encode_envelope,
)
from relay_contract import RelayResponse, RelayStatus, decode_from_gateway
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto


async def balances(chain: Any) -> tuple[int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
async def test_payment_settles_through_the_chain(mosquitto: Mosquitto, suite: Suite) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        outcome = await chain.pay(1250, "coffee", suite, f"key-{suite.name}-0001")
        assert (outcome["state"], outcome["reason"]) == ("settled", "")
        assert await balances(chain) == (before[0] - 1250, before[1] + 1250)
        again = await chain.pay(1250, "coffee", suite, f"key-{suite.name}-0001")
        assert again["id"] == outcome["id"]  # idempotent: the same transaction
        assert await balances(chain) == (before[0] - 1250, before[1] + 1250)


async def test_user_declines(mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(False), broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        outcome = await chain.pay(500, "gift card", Suite.P256_SHA256, "key-decline-01")
        assert (outcome["state"], outcome["reason"]) == ("declined", "declined_by_user")
        assert await balances(chain) == before


async def test_http_api_refuses_bad_input(mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        url = f"{chain.base_url}/v1/transactions"
        async with chain.http.post(url, data=b"{not json", headers={
                "Idempotency-Key": "abcdefgh1"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "malformed_json"
        async with chain.http.post(url, json={"payer": PAYER}, headers={
                "Idempotency-Key": "abcdefgh2"}) as resp:
            assert resp.status == 400
        body = {"payer": PAYER, "payee": PAYEE, "order_reference": "o", "order_description": "d",
                "amount_minor": 10, "currency": "EUR"}
        async with chain.http.post(url, json=body) as resp:
            assert resp.status == 400  # no Idempotency-Key
        async with chain.http.post(url, json=body, headers={"Idempotency-Key": "k" * 10}) as r:
            assert r.status == 201
        async with chain.http.post(url, json={**body, "amount_minor": 11},
                                   headers={"Idempotency-Key": "k" * 10}) as r:
            assert r.status == 409
        async with chain.http.get(f"{url}/zz") as r:
            assert r.status == 400
        async with chain.http.get(f"{url}/{'00' * 16}") as r:
            assert r.status == 404


class TamperingRelay:
    """Stands between gateway and platform: captures honest answers, forwards forgeries."""

    def __init__(self, chain: Any) -> None:
        self.chain = chain

    async def honest_answer(self, amount: int, key: str) -> tuple[bytes, ConfirmationResponse,
                                                                  RelayResponse]:
        """Run a real payment but keep the module's answer from reaching the platform."""
        platform = self.chain.platform
        captured: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        original = platform.handle_response

        async def intercept(payload: bytes, gateway_id: str | None = None) -> Any:
            # progress (the module asking its owner) goes through; the answer is kept
            if not captured.done() and isinstance(decode_from_gateway(payload), RelayResponse):
                captured.set_result(payload)
                return None
            return await original(payload, gateway_id)

        platform.handle_response = intercept
        try:
            body = {"payer": PAYER, "payee": PAYEE, "order_reference": key[:20],
                    "order_description": "tampered", "amount_minor": amount, "currency": "EUR",
                    "suite": "p256"}
            async with self.chain.http.post(f"{self.chain.base_url}/v1/transactions", json=body,
                                            headers={"Idempotency-Key": key}) as resp:
                tx_id = bytes.fromhex((await resp.json())["id"])
            payload = await asyncio.wait_for(captured, 20)
        finally:
            platform.handle_response = original
        relay = RelayResponse.decode(payload)
        answer = decode_envelope(relay.envelope)
        assert isinstance(answer, ConfirmationResponse)
        return tx_id, answer, relay

    async def forward(self, relay: RelayResponse, **changes: Any) -> Any:
        fields = {"request_id": relay.request_id, "status": relay.status,
                  "envelope": relay.envelope, "detail": relay.detail, "timings": {}}
        fields.update(changes)
        return await self.chain.platform.handle_response(RelayResponse(**fields).encode())


async def test_hostile_gateway_attacks_are_rejected(mosquitto: Mosquitto) -> None:
    import dataclasses

    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        relay = TamperingRelay(chain)
        before = await balances(chain)

        # 1. Alters a signed field of the answer (the counter): the signature breaks.
        _tx1, answer1, r1 = await relay.honest_answer(700, "attack-decision-1")
        forged = dataclasses.replace(answer1, counter=answer1.counter + 50)
        record = await relay.forward(r1, envelope=encode_envelope(forged))
        assert (record.state, record.reason) == ("rejected", "bad_signature")

        # 2. Answers one request with another request's signature.
        _tx2, _answer2, r2 = await relay.honest_answer(800, "attack-swap-0002")
        _tx3, answer3, r3 = await relay.honest_answer(900, "attack-swap-0003")
        record = await relay.forward(r2, envelope=r3.envelope)
        assert (record.state, record.reason) == ("rejected", "wrong_request")
        tx7, _, r7 = await relay.honest_answer(950, "attack-swap-0007")
        swapped = dataclasses.replace(answer3, transaction_id=tx7)
        record = await relay.forward(r7, envelope=encode_envelope(swapped))
        assert (record.state, record.reason) == ("rejected", "bad_signature")

        # 3. Replays an approval: a settled transaction stays settled once; an old counter on a
        #    new transaction is refused.
        _tx4, answer4, r4 = await relay.honest_answer(1000, "attack-replay-04")
        record = await relay.forward(r4)
        assert record.state == "settled"
        record = await relay.forward(r4)
        assert record.state == "settled"  # duplicate changes nothing
        tx5, _answer5, r5 = await relay.honest_answer(1100, "attack-replay-05")
        old = dataclasses.replace(answer4, transaction_id=tx5)
        record = await relay.forward(r5, envelope=encode_envelope(old))
        assert record.state == "rejected"
        assert record.reason in ("bad_signature", "replay")

        # 4. Claims the module was unreachable.
        _tx6, _, r6 = await relay.honest_answer(1200, "attack-status-06")
        record = await relay.forward(r6, status=RelayStatus.MODULE_UNREACHABLE, envelope=b"")
        assert (record.state, record.reason) == ("rejected", "gateway:module_unreachable")

        # Garbage from the "gateway" is ignored, not fatal.
        assert await chain.platform.handle_response(b"\xff\x00garbage") is None

        # Balances moved only for the one honest settlement (tx4).
        assert await balances(chain) == (before[0] - 1000, before[1] + 1000)
        # The honest path still works.
        outcome = await chain.pay(42, "honest", Suite.SM2_SM3, "honest-after-attacks")
        assert outcome["state"] == "settled"
        assert await balances(chain) == (before[0] - 1042, before[1] + 1042)


async def test_platform_rejects_amount_change_on_the_request(mosquitto: Mosquitto) -> None:
    """A gateway that edits the *request* (amount shown to the user) cannot get it settled:
    the module signs the edited request, the platform verifies against its own."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        platform = chain.platform
        relay = TamperingRelay(chain)
        tx, answer, r = await relay.honest_answer(5000, "attack-amount-01")
        record = await platform.get(tx)
        from e2e import ConfirmationRequest
        original = decode_envelope(record.envelope)
        assert isinstance(original, ConfirmationRequest)
        edited = dataclasses_replace(original, amount_minor=1)
        key = chain.module.element._key(Suite.P256_SHA256)
        from e2e import UserVerification, sign_confirmation
        signed_edit = sign_confirmation(encode_envelope(edited), edited,
                                        decision=Decision.APPROVE, counter=answer.counter + 1,
                                        user_verification=UserVerification.PRESENCE, key=key,
                                        module_id=answer.module_id)
        result = await relay.forward(r, envelope=encode_envelope(signed_edit))
        assert (result.state, result.reason) == ("rejected", "bad_signature")


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses
    return dataclasses.replace(obj, **changes)


class GatedOwner:
    """An owner who approves when the test says so: ``asked`` is set once the module shows the
    request, and the answer waits for ``release``. Events, not sleeps, order the test."""

    name = "gated"
    verification = "none"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def decide(self, prompt: Any) -> bool:
        self.asked.set()
        await self.release.wait()
        return True

    async def close(self) -> None:
        return None


async def test_broker_restart_mid_flight_settles_once(mosquitto: Mosquitto) -> None:
    """The broker restarts while the module holds the request: the gateway's answer goes out
    after reconnecting, the payment settles exactly once, and the next payment still works."""
    owner = GatedOwner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        task = asyncio.create_task(chain.pay(300, "during restart", Suite.P256_SHA256,
                                             "restart-key-01"))
        await asyncio.wait_for(owner.asked.wait(), 30)  # the request is at the module
        await mosquitto.stop()
        await mosquitto.start()
        await asyncio.wait_for(chain.gateway.connected.wait(), 30)
        await asyncio.wait_for(chain.platform.connected.wait(), 30)
        owner.release.set()
        outcome = await asyncio.wait_for(task, 60)
        assert (outcome["state"], outcome["reason"]) == ("settled", "")
        assert await balances(chain) == (before[0] - 300, before[1] + 300)
        again = await chain.pay(300, "during restart", Suite.P256_SHA256, "restart-key-01")
        assert again["id"] == outcome["id"]  # the retry is the same transaction
        after = await chain.pay(200, "after restart", Suite.P256_SHA256, "restart-key-02")
        assert after["state"] == "settled"
        assert await balances(chain) == (before[0] - 500, before[1] + 500)
        assert await chain.platform.ledger.run(chain.platform.ledger.audit) == []
