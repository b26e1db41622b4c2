"""How soon a terminal sees the owner's wait, and how soon its cancel stops the module asking.

    .venv/bin/python bench/wait_cancel_bench.py [-n 20]

Runs the whole chain on this machine (the platform's HTTP API and SQLite ledger, mosquitto
with the shipped configuration: TLS, accounts and ACLs, the gateway daemon, bleak and bless
over the virtual BlueZ, the simulated module) with an owner who never answers. For each
payment it measures, from the terminal's side:

* ``awaiting_owner``: from the POST's answer until a long-poll (``GET ...?wait=``) shows
  ``progress: awaiting_owner`` (module KEEPALIVE -> gateway -> MQTT -> ledger -> HTTP);
* ``cancel``: the round trip of ``POST .../cancel`` (the ledger's decision);
* ``withdrawn``: from sending the cancel until the module withdrew its prompt (CANCEL over
  MQTT and BLE, the module's policy cancelled);

and prints the median and p90 of each, with every outcome and the balances checked.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from blegw_harness.chain import PAYEE, PAYER, Chain, running_chain
from wearable_sim.policy import Prompt


class Owner:
    """Looks at the prompt and never answers; notes when the module withdraws it."""

    name = "ask"
    verification = "presence"

    def __init__(self) -> None:
        self.withdrawn = asyncio.Event()

    async def decide(self, prompt: Prompt) -> bool:
        self.withdrawn.clear()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.withdrawn.set()
            raise
        return False

    async def close(self) -> None:
        return None


async def one(chain: Chain, owner: Owner, i: int) -> dict[str, float]:
    body = {"payer": PAYER, "payee": PAYEE, "order_reference": f"bench-{i}",
            "order_description": "bench", "amount_minor": 100 + i, "currency": "EUR"}
    async with chain.http.post(f"{chain.base_url}/v1/transactions", json=body,
                               headers={"Idempotency-Key": f"wait-bench-{time.time_ns()}"}
                               ) as resp:
        record: dict[str, Any] = await resp.json()
    created = time.perf_counter()
    url = f"{chain.base_url}/v1/transactions/{record['id']}"
    while record["progress"] != "awaiting_owner":
        async with chain.http.get(url, params={"wait": "20",
                                               "after": repr(record["updated"])}) as resp:
            record = await resp.json()
        if record["state"] != "pending":
            raise RuntimeError(f"payment {i} ended {record['state']} before the owner was asked")
    seen = time.perf_counter()
    async with chain.http.post(f"{url}/cancel") as resp:
        cancelled = await resp.json()
    answered = time.perf_counter()
    if (cancelled.get("state"), cancelled.get("reason")) != ("cancelled",
                                                             "cancelled_by_terminal"):
        raise RuntimeError(f"payment {i}: cancel answered {cancelled}")
    await asyncio.wait_for(owner.withdrawn.wait(), 20)
    withdrawn = time.perf_counter()
    return {"awaiting_owner": seen - created, "cancel": answered - seen,
            "withdrawn": withdrawn - seen}


async def main(n: int) -> None:
    owner = Owner()
    async with running_chain(owner) as chain:
        ledger = chain.platform.ledger
        before = (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))
        runs = [await one(chain, owner, i) for i in range(n)]
        after = (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))
        if after != before or await ledger.run(ledger.audit):
            raise RuntimeError("money moved or the books do not balance")
    print(f"{n} payments cancelled while the owner was asked; balances unchanged, audit clean")
    for name in ("awaiting_owner", "cancel", "withdrawn"):
        values = sorted(r[name] * 1000 for r in runs)
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(f"{name:15} median {statistics.median(values):7.1f} ms   p90 {p90:7.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="payments (default 20)")
    asyncio.run(main(parser.parse_args().n))
