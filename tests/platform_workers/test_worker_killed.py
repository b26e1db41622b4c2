"""Two ``blegw-platform serve`` workers share one port, one broker and one ledger; one is killed
with SIGKILL while payments are in flight.

Real parts: mosquitto, the ledger (SQLite file and a real PostgreSQL server), the workers as
subprocesses, gateways whose soft modules speak the real MQTT contract and sign genuine
approvals (only the radio is left out, blegw_harness/soft_gateways.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from blegw_harness.soft_gateways import enroll_gateways, running
from blegw_platform.ledger import FINAL_STATES, ledger_location
from blegw_platform.platform import Platform
from mqtt_uplink import MqttEndpoint
from tests.blegw.conftest import Mosquitto, mosquitto  # noqa: F401  (the fixture)
from tests.ledger_backends import raw_query

BALANCE = 10_000
AMOUNT = 100
APPROVAL_WINDOW = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workers:
    """N ``serve`` subprocesses on one port (SO_REUSEPORT) in one shared subscription group."""

    def __init__(self, state: Path, broker: str, port: int) -> None:
        self.state, self.broker, self.port = state, broker, port
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, count: int) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "blegw_platform", "serve", "--state", str(self.state),
                "--http", f"127.0.0.1:{self.port}", "--broker", self.broker, "--reuse-port",
                "--share-group", "workers", "--approval-window", str(APPROVAL_WINDOW),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            assert b"platform listening" in line, line
            self.procs.append(proc)

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 15)


@contextlib.asynccontextmanager
async def workers_running(state: Path, broker: str, count: int) -> AsyncIterator[Workers]:
    workers = Workers(state, broker, free_port())
    try:
        await workers.start(count)
        yield workers
    finally:
        await workers.stop()


class Terminal:
    """A till that retries a failed call with the same idempotency key, as the API asks."""

    def __init__(self, session: aiohttp.ClientSession, port: int, api_key: str) -> None:
        self.session, self.base = session, f"http://127.0.0.1:{port}/v1/transactions"
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def _call(self, method: str, url: str, **kw: Any) -> dict[str, Any]:
        for _ in range(20):
            try:
                async with self.session.request(method, url, headers={
                        **self.headers, **kw.pop("headers", {})}, **kw) as answer:
                    if answer.status >= 500:
                        raise aiohttp.ClientError(f"HTTP {answer.status}")
                    assert answer.status in (200, 201), await answer.text()
                    body: dict[str, Any] = await answer.json()
                    return body
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.1)  # the worker that had this connection was killed
        raise AssertionError(f"{method} {url}: no worker answered")

    async def pay(self, payer: str, key: str) -> dict[str, Any]:
        return await self._call("POST", self.base, headers={"Idempotency-Key": key}, json={
            "payer": payer, "payee": "shop", "amount_minor": AMOUNT, "currency": "EUR",
            "order_reference": key, "order_description": "worker test"})

    async def outcome(self, tx_id: str) -> dict[str, Any]:
        while True:
            record = await self._call("GET", f"{self.base}/{tx_id}/outcome?timeout=20")
            if record["state"] in FINAL_STATES:
                return record


async def test_a_worker_killed_with_sigkill_under_load_loses_and_doubles_nothing(
        tmp_path: Path, ledger_at: Path | str, mosquitto: Mosquitto) -> None:  # noqa: F811
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if isinstance(ledger_at, str):
        (state / "platform.toml").write_text(f'[ledger]\nurl = "{ledger_at}"\n')
    platform = Platform(state, mqtt=MqttEndpoint(mosquitto.url))
    try:
        gateways, payers = enroll_gateways(platform, 6, 10, BALANCE)
        platform.ledger.add_account("shop", "EUR", 0)
        api_key = await platform.add_terminal("till-1", ["shop"])
    finally:
        platform.close()
    location = ledger_location(state)
    total = BALANCE * len(payers)

    async with workers_running(state, mosquitto.url, 2) as workers, \
            running(gateways, "127.0.0.1", mosquitto.port, delay=0.3), \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                  timeout=aiohttp.ClientTimeout(total=30)) as session:
        till = Terminal(session, workers.port, api_key)
        keys = {f"pay-{i:04d}-{payer}": payer for i, payer in enumerate(payers)}
        items = list(keys.items())
        half = len(items) // 2
        first = await asyncio.gather(*(till.pay(payer, key) for key, payer in items[:half]))
        # In flight now: requests sent, modules answering over the next 0.3 s.
        pending = raw_query(location, "SELECT count(*) FROM transactions "
                                      "WHERE state='pending'")[0][0]
        victim = workers.procs[0]
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        second = await asyncio.gather(*(till.pay(payer, key) for key, payer in items[half:]))
        created = first + second
        outcomes = await asyncio.gather(*(till.outcome(r["id"]) for r in created))

        survivor = workers.procs[1]
        assert survivor.returncode is None, "the surviving worker must keep serving"
        # The honest path still works on the survivor after the kill.
        after = await till.pay(payers[0], "after-the-kill-0001")
        assert (await till.outcome(after["id"]))["state"] == "settled"

    assert pending > 0, "the kill must happen with transactions in flight"
    ids = [r["id"] for r in created]
    assert len(set(ids)) == len(keys), "one transaction per idempotency key"
    stored = raw_query(location, "SELECT count(*) FROM transactions")[0][0]
    assert stored == len(keys) + 1, "lost 0: every payment is in the ledger, no extra one"
    assert all(o["state"] in FINAL_STATES for o in outcomes)
    settled = [o for o in outcomes if o["state"] == "settled"]
    others = {(o["state"], o["reason"]) for o in outcomes if o["state"] != "settled"}
    # A request a killed worker recorded but never published ends timed_out at its expiry,
    # swept by the survivor: a typed outcome, never silence.
    assert others <= {("timed_out", "no_answer_before_expiry")}, others
    assert len(settled) >= len(keys) // 2
    print(f"worker killed with {pending} pending: {len(settled)} settled, "
          f"{len(outcomes) - len(settled)} timed_out, lost 0, doubled 0")
    postings = dict(raw_query(location, "SELECT tx_id, count(*) FROM postings GROUP BY tx_id"))
    settled_ids = {bytes.fromhex(o["id"]) for o in settled} | {bytes.fromhex(after["id"])}
    assert {bytes(k) for k in postings} == settled_ids, "money moved exactly for the settled"
    assert set(postings.values()) == {2}, "doubled 0: one debit and one credit each"
    balances = dict(raw_query(location, "SELECT id, balance_minor FROM accounts"))
    assert sum(balances.values()) == total, "money conserved"
    assert balances["shop"] == AMOUNT * len(settled_ids)
    for payer in payers:
        paid = sum(1 for o in settled if o["payer"] == payer) + (payer == payers[0])
        assert balances[payer] == BALANCE - AMOUNT * paid


async def test_a_long_poll_on_one_worker_sees_the_outcome_another_worker_recorded(
        tmp_path: Path, ledger_at: Path | str, mosquitto: Mosquitto) -> None:  # noqa: F811
    """Without the change feed a terminal long-polling worker B for a payment that worker A
    ended would wait out its whole timeout (or forever, re-polling): B must answer at once."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    if isinstance(ledger_at, str):
        (state / "platform.toml").write_text(f'[ledger]\nurl = "{ledger_at}"\n')
    platform = Platform(state, mqtt=MqttEndpoint(mosquitto.url))
    try:
        _gateways, payers = enroll_gateways(platform, 1, 1, BALANCE)
        platform.ledger.add_account("shop", "EUR", 0)
        api_key = await platform.add_terminal("till-1", ["shop"])
    finally:
        platform.close()
    async with workers_running(state, mosquitto.url, 1) as a, \
            workers_running(state, mosquitto.url, 1) as b, \
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        till_a, till_b = Terminal(session, a.port, api_key), Terminal(session, b.port, api_key)
        record = await till_a.pay(payers[0], "long-poll-0001")   # no gateway answers
        waiting = asyncio.create_task(till_b.outcome(record["id"]))
        watching = asyncio.create_task(till_b._call(
            "GET", f"{till_b.base}/{record['id']}?wait=20&after={record['updated']}"))
        try:
            await asyncio.sleep(0.5)            # both long-polls are parked on worker B
            assert not waiting.done() and not watching.done()
            loop = asyncio.get_running_loop()
            began = loop.time()
            cancelled = await till_a._call("POST", f"{till_a.base}/{record['id']}/cancel")
            assert cancelled["state"] == "cancelled"
            seen = await asyncio.wait_for(waiting, 5)
            watched = await asyncio.wait_for(watching, 5)
        finally:
            for task in (waiting, watching):
                task.cancel()
            await asyncio.gather(waiting, watching, return_exceptions=True)
        assert loop.time() - began < 3, "B answered when A recorded the outcome, not at timeout"
        assert seen["state"] == watched["state"] == "cancelled"
        assert all(p.returncode is None for p in (*a.procs, *b.procs))
    balances = dict(raw_query(ledger_location(state),
                              "SELECT id, balance_minor FROM accounts"))
    assert balances == {payers[0]: BALANCE, "shop": 0}
