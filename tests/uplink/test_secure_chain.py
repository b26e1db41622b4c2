"""The honest chain over the shipped broker configuration: the platform and the gateway daemon
each with their own account, over TLS, with per-gateway ACLs; and what another gateway's
account can do to a payment in flight (nothing). Only the radio is simulated."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import aiomqtt

from blegw_harness.chain import GATEWAY_ID, PAYEE, PAYER, Chain, running_chain
from blegw_platform.broker_setup import PLATFORM_USER, add_gateway
from e2e import Suite
from relay_contract import RelayResponse, RelayStatus, topic
from wearable_sim.policy import FixedPolicy


async def _balances(chain: Chain) -> tuple[int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))


async def test_honest_chain_settles_over_tls_with_its_own_accounts() -> None:
    async with running_chain(FixedPolicy(True)) as chain:
        assert chain.broker.platform.url.startswith("mqtts://")
        assert (chain.broker.platform.username, chain.broker.gateway.username) == \
            (PLATFORM_USER, GATEWAY_ID)
        assert chain.broker.platform.password != chain.broker.gateway.password
        before = await _balances(chain)
        for suite in Suite:
            outcome = await chain.pay(1250, "coffee", suite, f"tls-payment-{suite.label}")
            assert outcome["state"] == "settled", outcome
        assert await _balances(chain) == (before[0] - 2500, before[1] + 2500)


async def test_another_gateway_cannot_fail_or_read_a_payment_in_flight() -> None:
    """Gateway H has a valid account on the same broker. While G's module is deciding, H
    reads everything it may and publishes a forged "module unreachable" answer on G's topic.
    The payment settles; H read nothing."""
    async with running_chain(FixedPolicy(True, delay=1.0)) as chain:
        access = chain.broker
        assert access.directory is not None and access.process is not None
        assert access.process.proc is not None
        password = await asyncio.to_thread(add_gateway, access.directory, "gw-h")
        access.process.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)
        before = await _balances(chain)
        async with aiomqtt.Client(
                "127.0.0.1", access.platform.port, username="gw-h", password=password,
                tls_params=aiomqtt.TLSParameters(ca_certs=access.platform.ca),
                timeout=5) as attacker:
            await attacker.subscribe("#", qos=1)
            await attacker.subscribe(topic(GATEWAY_ID, "req"), qos=1)
            payment = asyncio.create_task(
                chain.pay(4200, "book", Suite.P256_SHA256, "gw-h-trial-1"))
            await asyncio.sleep(0.4)                     # the request is with the module now
            pending = await chain.platform.ledger.run(chain.platform.ledger.pending_expired,
                                                      float("inf"))
            for tx_id in pending:
                forged = RelayResponse(tx_id, RelayStatus.MODULE_UNREACHABLE, detail="forged")
                await attacker.publish(topic(GATEWAY_ID, "resp"), forged.encode(), qos=1)
            outcome = await payment
            seen: list[aiomqtt.Message] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    async for message in attacker.messages:
                        seen.append(message)
        assert pending, "the trial needs a payment in flight"
        assert outcome["state"] == "settled", outcome
        assert seen == []
        assert await _balances(chain) == (before[0] - 4200, before[1] + 4200)
        assert (await chain.pay(100, "after", Suite.SM2_SM3, "gw-h-trial-2"))["state"] == "settled"
