"""The whole chain with its ledger in PostgreSQL: virtual radio, mosquitto, a real PostgreSQL
server, the platform, the gateway daemon and the module; only the radio is simulated.

The platform finds its ledger as a deployment does (``BLEGW_LEDGER_URL``); a payment in each
suite settles once, a retry of it pays nothing, a declined one moves nothing, and the books
in the database balance.
"""

from __future__ import annotations

import pytest

from blegw_harness.chain import PAYEE, PAYER, running_chain
from blegw_platform.ledger import Ledger
from e2e import Suite
from tests.ledger_backends import PostgresServer
from wearable_sim.policy import Prompt

from .conftest import Mosquitto


class DeclinesGiftCards:
    """The owner approves everything but a gift card."""

    name = "declines-gift-cards"
    verification = "none"

    async def decide(self, prompt: Prompt) -> bool:
        return "gift card" not in prompt.text()

    async def close(self) -> None:
        return None


async def test_payments_settle_through_the_chain_on_a_postgresql_ledger(
        mosquitto: Mosquitto, postgres_server: PostgresServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres_server.create_database()
    monkeypatch.setenv("BLEGW_LEDGER_URL", url)
    async with running_chain(DeclinesGiftCards(), broker_url=mosquitto.url) as chain:
        ledger = chain.platform.ledger
        assert ledger.path is None                          # not an SQLite file

        async def balances() -> tuple[int, int]:
            return (await ledger.run(ledger.balance, PAYER),
                    await ledger.run(ledger.balance, PAYEE))

        before = await balances()
        paid = 0
        for suite in Suite:
            outcome = await chain.pay(1250, "coffee", suite, f"key-pg-{suite.name}")
            assert (outcome["state"], outcome["reason"]) == ("settled", ""), outcome
            again = await chain.pay(1250, "coffee", suite, f"key-pg-{suite.name}")
            assert again["id"] == outcome["id"]               # the same transaction
            paid += 1250
        declined = await chain.pay(700, "gift card", Suite.P256_SHA256, "key-pg-declined")
        assert (declined["state"], declined["reason"]) == ("declined", "declined_by_user")
        assert await balances() == (before[0] - paid, before[1] + paid)
        assert await ledger.run(ledger.audit) == []
    # Another process (the audit command, a second worker) reads the same books.
    reader = Ledger(url)
    try:
        assert (reader.balance(PAYER), reader.balance(PAYEE)) == (before[0] - paid,
                                                                  before[1] + paid)
        assert reader.summary().settled == 2 and reader.audit() == []
    finally:
        reader.close()
