"""End-to-end payment time through the whole chain: the symmetric-key card beside the
public-key module, both suites, in the same run.

    .venv/bin/python bench/card_chain_bench.py [--payments 20] [--conn-interval-ms 0]

Each payment goes terminal (HTTP) -> platform -> mosquitto (shipped TLS configuration) ->
gateway -> virtual radio -> module or card -> back, the owner approving at once; the time is
from the terminal's POST to the outcome the long poll returns. The card needs two relay
exchanges (challenge -> hello, request -> result), the module one. With ``--conn-interval-ms``
the virtual radio spaces each ATT exchange like a BLE connection interval. Card payments are
paced at one a second (docs/symmetric-card.md, "What is left"). Figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from blegw_harness.chain import CARD_PAYER, PAYER, running_chain
from e2e import Suite
from wearable_sim.policy import FixedPolicy

CARD_SUITES = {Suite.P256_SHA256: "AES-128-GCM", Suite.SM2_SM3: "SM4-GCM"}


async def run(payments: int, conn_interval_ms: float) -> None:
    async with running_chain(FixedPolicy(True), card_policy=FixedPolicy(True),
                             conn_interval_ms=conn_interval_ms) as chain:
        for suite in Suite:
            for payer, kind in ((PAYER, f"module {suite.name}"),
                                (CARD_PAYER, f"card {CARD_SUITES[suite]}")):
                await chain.pay(10, "warm-up", suite, f"warm-{payer}-{suite.label}", payer)
                times = []
                for i in range(payments):
                    started = time.perf_counter()
                    outcome = await chain.pay(10, "bench", suite,
                                              f"bench-{payer}-{suite.label}-{i}", payer)
                    times.append((time.perf_counter() - started) * 1000)
                    assert outcome["state"] == "settled", outcome
                    if payer == CARD_PAYER:
                        # a clockless card's time factor grows by at least 1 per payment and
                        # may lead the server's clock by the skew (5 s) only: one a second
                        await asyncio.sleep(max(0.0, 1.05 - (time.perf_counter() - started)))
                times.sort()
                print(f"{kind:<22} median {statistics.median(times):6.1f} ms  "
                      f"p90 {times[int(len(times) * 0.9) - 1]:6.1f} ms  "
                      f"({payments} payments)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=20)
    parser.add_argument("--conn-interval-ms", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(run(args.payments, args.conn_interval_ms))


if __name__ == "__main__":
    main()
