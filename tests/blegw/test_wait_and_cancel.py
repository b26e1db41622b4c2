"""The owner's wait and the terminal's cancel, end to end over the real chain: the platform's
HTTP API and SQLite ledger, mosquitto, the gateway daemon, unmodified bleak and bless over the
virtual BlueZ, and the simulated module. Only the radio is virtual.

What the owner does is scripted by :class:`Owner` (the module's decision policy): it asks
until the test answers for it, and records when the module stopped asking.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from blegw_harness.chain import PAYEE, PAYER, Chain, running_chain
from e2e import Suite
from wearable_sim.policy import FixedPolicy, Prompt

from .conftest import Mosquitto

SRC = Path(__file__).resolve().parents[2] / "src"


class Owner:
    """A person who looks at the module's prompt and answers only when told to."""

    name = "ask"
    verification = "presence"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.stopped_asking = asyncio.Event()
        self._answer: asyncio.Future[bool] | None = None

    async def decide(self, prompt: Prompt) -> bool:
        self._answer = asyncio.get_running_loop().create_future()
        self.asked.set()
        try:
            return await self._answer
        except asyncio.CancelledError:
            self.stopped_asking.set()  # the module withdrew the prompt
            raise

    async def close(self) -> None:
        return None


async def create(chain: Chain, amount: int, key: str) -> dict[str, Any]:
    body = {"payer": PAYER, "payee": PAYEE, "order_reference": key[:20],
            "order_description": "wait and cancel", "amount_minor": amount,
            "currency": "EUR", "suite": "p256"}
    async with chain.http.post(f"{chain.base_url}/v1/transactions", json=body,
                               headers={"Idempotency-Key": key}) as resp:
        created: dict[str, Any] = await resp.json()
        assert resp.status == 201, created
        return created


async def follow(chain: Chain, record: dict[str, Any], wait: float = 20) -> dict[str, Any]:
    """The transaction's next change (long-poll)."""
    async with chain.http.get(f"{chain.base_url}/v1/transactions/{record['id']}",
                              params={"wait": str(wait), "after": repr(record["updated"])}
                              ) as resp:
        assert resp.status == 200
        changed: dict[str, Any] = await resp.json()
        return changed


async def cancel(chain: Chain, tx_hex: str) -> tuple[int, dict[str, Any]]:
    async with chain.http.post(f"{chain.base_url}/v1/transactions/{tx_hex}/cancel") as resp:
        return resp.status, await resp.json()


async def balances(chain: Chain) -> tuple[int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))


async def honest_payment_settles(chain: Chain) -> None:
    chain.module.policy = FixedPolicy(True)
    before = await balances(chain)
    outcome = await chain.pay(3, "after the cancel", Suite.P256_SHA256,
                              f"honest-{time.time_ns()}")
    assert outcome["state"] == "settled", outcome
    assert await balances(chain) == (before[0] - 3, before[1] + 3)
    ledger = chain.platform.ledger
    assert await ledger.run(ledger.audit) == []


async def test_terminal_sees_the_owner_asked_then_cancels_and_the_module_stops_asking(
        mosquitto: Mosquitto) -> None:
    owner = Owner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        record = await create(chain, 900, "wait-cancel-0001")
        started = time.monotonic()
        while record["progress"] != "awaiting_owner":
            assert record["state"] == "pending", record
            record = await follow(chain, record)
        assert time.monotonic() - started < 10
        assert owner.asked.is_set()
        status, body = await cancel(chain, record["id"])
        assert status == 200, body
        assert (body["state"], body["reason"]) == ("cancelled", "cancelled_by_terminal")
        await asyncio.wait_for(owner.stopped_asking.wait(), 10)  # CANCEL reached the module
        worker = next(iter(chain.gateway.relay.workers.values()))
        assert "cancelled" in chain.module.handled
        async with asyncio.timeout(10):
            while worker.outcomes["cancelled"] != 1:  # noqa: ASYNC110 - the daemon's count
                await asyncio.sleep(0.05)
        assert await balances(chain) == before
        # a second cancel is the same answer; the transaction stays cancelled
        assert (await cancel(chain, record["id"]))[1]["state"] == "cancelled"
        await honest_payment_settles(chain)
        # The operator sees the relay's counters in `blegw status`.
        relay = chain.gateway.status()["relay"]
        assert relay["cancels"] == 1 and relay["progress_sent"] >= 1, relay
        text = await blegw_status(chain)
        assert f"relay: cancels 1, progress sent {relay['progress_sent']}, progress " \
            "dropped 0" in text, text


@pytest.mark.needs_vbluez_control("fault injection")
async def test_cancel_while_the_gateway_is_still_connecting_takes_effect_at_once(
        mosquitto: Mosquitto) -> None:
    """The module does not answer the connect (its radio is deaf: BlueZ would wait its full
    connect timeout, 20 s here, the gateway's 10 s): the terminal's cancel, while the gateway
    is still connecting, is answered cancelled within a second, not when the connect ends;
    nothing reached the module, no money moved, and the honest path works after."""
    owner = Owner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        radio = chain.radio.control
        worker = next(iter(chain.gateway.relay.workers.values()))
        await worker.link.close()
        await radio.set_responsive("hci1", False)  # connects hang in BlueZ
        handled = list(chain.module.handled)
        record = await create(chain, 700, "cancel-connecting")
        async with asyncio.timeout(10):
            while worker.current != bytes.fromhex(record["id"]):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # well into the connect
        assert not worker.link.connected
        started = time.monotonic()
        status, body = await cancel(chain, record["id"])
        assert (status, body["state"]) == (200, "cancelled"), body
        async with asyncio.timeout(5):
            while worker.outcomes["cancelled"] != 1:  # noqa: ASYNC110 - the daemon's count
                await asyncio.sleep(0.02)
        assert time.monotonic() - started < 1.5  # not the 10 s the connect could take
        assert worker.current is None and not worker.link.connected
        assert not owner.asked.is_set() and chain.module.handled == handled
        assert await radio.links() == []  # the abandoned connect left no link behind
        assert await balances(chain) == before
        await radio.set_responsive("hci1", True)
        await honest_payment_settles(chain)


async def blegw_status(chain: Chain) -> str:
    """`blegw status` as the operator runs it, against the chain's gateway."""
    env = {**os.environ, "PYTHONPATH": str(SRC),
           "BLEGW_CONTROL_SOCKET": chain.gateway.config.control_socket,
           "BLEGW_GATEWAY_ID": chain.gateway.config.gateway_id}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "status", "--config", os.devnull, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_cancel_of_a_queued_payment_never_reaches_the_module(mosquitto: Mosquitto) -> None:
    owner = Owner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        first = await create(chain, 100, "queued-first-01")
        await asyncio.wait_for(owner.asked.wait(), 15)
        second = await create(chain, 200, "queued-second-1")
        worker = next(iter(chain.gateway.relay.workers.values()))
        async with asyncio.timeout(10):
            while bytes.fromhex(second["id"]) not in worker.pending_ids:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        status, body = await cancel(chain, second["id"])
        assert (status, body["state"]) == (200, "cancelled")
        async with asyncio.timeout(10):
            while worker.outcomes["cancelled"] != 1:  # noqa: ASYNC110 - the daemon's count
                await asyncio.sleep(0.02)
        assert bytes.fromhex(second["id"]) not in worker.pending_ids
        prompts_before = chain.module.handled.copy()
        assert owner._answer is not None
        owner._answer.set_result(True)  # the first payment goes on and settles
        async with chain.http.get(f"{chain.base_url}/v1/transactions/{first['id']}/outcome",
                                  params={"timeout": "30"}) as resp:
            assert (await resp.json())["state"] == "settled"
        assert chain.module.handled[len(prompts_before):] == ["approved"]  # only the first
        assert await balances(chain) == (before[0] - 100, before[1] + 100)
        await honest_payment_settles(chain)


async def test_cancels_racing_approvals_settle_exactly_one_outcome_each(
        mosquitto: Mosquitto) -> None:
    """Owners approving after a random delay while the terminal cancels after another: each
    payment ends settled or cancelled, never both, and the money moved is exactly the
    settled payments'. Seeded, so a failure can be replayed."""
    rng = random.Random(12)
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        outcomes: dict[str, int] = {"settled": 0, "cancelled": 0}
        moved = 0
        for i in range(12):
            chain.module.policy = FixedPolicy(True, delay=rng.uniform(0.0, 0.25))
            amount = 10 + i
            record = await create(chain, amount, f"race-{i:04d}-loop")
            await asyncio.sleep(rng.uniform(0.0, 0.35))
            status, body = await cancel(chain, record["id"])
            assert status in (200, 409), body
            async with chain.http.get(
                    f"{chain.base_url}/v1/transactions/{record['id']}/outcome",
                    params={"timeout": "30"}) as resp:
                final = await resp.json()
            assert final["state"] in outcomes, final
            assert (status == 200) == (final["state"] == "cancelled")
            outcomes[final["state"]] += 1
            moved += amount if final["state"] == "settled" else 0
            assert await balances(chain) == (before[0] - moved, before[1] + moved)
        ledger = chain.platform.ledger
        assert await ledger.run(ledger.audit) == []
        assert sum(outcomes.values()) == 12
        print(f"races: {outcomes}")  # both kinds occur: 9 settled, 3 cancelled on an idle machine
        await honest_payment_settles(chain)


async def test_pay_shows_the_wait_and_ctrl_c_cancels_the_payment(mosquitto: Mosquitto) -> None:
    """``blegw-platform pay`` as a subprocess: it says the owner is being asked, and SIGINT
    cancels the payment (exit 7) instead of leaving the module asking."""
    owner = Owner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        env = {"PYTHONPATH": str(SRC), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "BLEGW_API_KEY": chain.api_key}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw_platform", "pay", "--api", chain.base_url,
            "--payer", PAYER, "--payee", PAYEE, "--amount", "450", "--description",
            "interrupted", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env)
        assert proc.stdout is not None
        lines = []
        try:
            async with asyncio.timeout(30):
                while not lines or "waiting for the owner" not in lines[-1]:
                    line = (await proc.stdout.readline()).decode()
                    assert line, f"pay ended early: {lines}"
                    lines.append(line)
            assert owner.asked.is_set()
            proc.send_signal(signal.SIGINT)
            rest, err = await asyncio.wait_for(proc.communicate(), 30)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        output = "".join(lines) + rest.decode()
        assert proc.returncode == 7, (output, err.decode())
        assert "cancelling the payment" in output
        assert "outcome: cancelled (cancelled_by_terminal)" in output
        await asyncio.wait_for(owner.stopped_asking.wait(), 10)
        assert await balances(chain) == before
        await honest_payment_settles(chain)


async def test_progress_and_cancel_pass_the_shipped_broker_acls() -> None:
    """With the shipped broker configuration (TLS, an account per gateway, ACLs that grant
    gateway G only its own req and resp topics), progress and cancel need no new rule: they
    travel on those topics."""
    owner = Owner()
    async with running_chain(owner) as chain:  # no URL: the shipped configuration
        before = await balances(chain)
        record = await create(chain, 300, "acl-wait-0001")
        while record["progress"] != "awaiting_owner":
            assert record["state"] == "pending", record
            record = await follow(chain, record)
        status, body = await cancel(chain, record["id"])
        assert (status, body["state"]) == (200, "cancelled")
        await asyncio.wait_for(owner.stopped_asking.wait(), 10)
        assert await balances(chain) == before
        await honest_payment_settles(chain)
