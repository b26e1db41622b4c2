"""The whole chain with its ledger in PostgreSQL: virtual radio, mosquitto, a real PostgreSQL
server, the platform, the gateway daemon and the module; only the radio is simulated.

The platform finds its ledger as a deployment does (``BLEGW_LEDGER_URL``, or ``[ledger] url``
in its state directory); a payment in each suite settles once, a retry of it pays nothing, a
declined one moves nothing, and the books in the database balance. ``blegw-platform serve``
as a real process records and cancels a payment in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from aiohttp import ClientSession

from blegw_harness.chain import PAYEE, PAYER, free_port, running_chain
from blegw_platform.ledger import Ledger
from blegw_platform.platform import Platform
from e2e import Suite
from tests.ledger_backends import PostgresServer, raw_query
from wearable_sim.policy import Prompt

from .conftest import Mosquitto

SRC = Path(__file__).resolve().parents[2] / "src"


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
    url = postgres_server.new_ledger_url()
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


async def test_blegw_platform_serve_runs_on_the_postgresql_ledger_of_its_configuration(
        tmp_path: Path, mosquitto: Mosquitto, postgres_server: PostgresServer) -> None:
    """``serve`` as a real process with ``[ledger] url`` in its state directory: a payment is
    recorded in PostgreSQL, cancelled once through the API, and the books balance afterwards;
    SIGTERM stops the server cleanly. (The other commands on PostgreSQL: test_audit.py.)"""
    url = postgres_server.new_ledger_url()
    state = tmp_path / "platform"
    state.mkdir(mode=0o700)
    (state / "platform.toml").write_text(f'[ledger]\nurl = "{url}"\n')
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("BLEGW_LEDGER_URL", None)
    operator = Platform(state)                  # what seed, terminal add and enroll record
    try:
        for account, balance in (("alice", 1000), ("shop", 0)):
            await operator.ledger.run(operator.ledger.add_account, account, "EUR", balance)
        key = await operator.add_terminal("till", ["shop"])
        await operator.ledger.run(operator.ledger.enroll, b"m" * 16, "alice", "gw-1",
                                  int(Suite.P256_SHA256), b"cert")
    finally:
        await operator.aclose()
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw_platform", "serve", "--state", str(state), "--http",
        f"127.0.0.1:{port}", "--broker", mosquitto.url, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(server.stdout.readline(), 30)
        assert b"platform listening" in line, line
        base = f"http://127.0.0.1:{port}/v1/transactions"
        auth = {"Authorization": f"Bearer {key}"}
        body = {"payer": "alice", "payee": "shop", "order_reference": "A-1",
                "order_description": "tea", "amount_minor": 300, "currency": "EUR"}
        async with ClientSession() as http:
            async with http.post(base, json=body,
                                 headers={**auth, "Idempotency-Key": "serve-pg-0001"}) as resp:
                created = await resp.json()
                assert resp.status == 201 and created["state"] == "pending", created
            for _ in range(2):                                  # idempotent
                async with http.post(f"{base}/{created['id']}/cancel", headers=auth) as resp:
                    cancelled = await resp.json()
                    assert cancelled["state"] == "cancelled", cancelled
        rows = raw_query(url, "SELECT state, reason FROM transactions")
        assert rows == [("cancelled", "cancelled_by_terminal")]
    finally:
        if server.returncode is None:
            server.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(server.wait(), 30)
    assert code == 0
    books = Ledger(url)                         # the books the server wrote, read back
    try:
        assert (books.balance("alice"), books.balance("shop")) == (1000, 0)
        assert books.audit() == []
    finally:
        books.close()
