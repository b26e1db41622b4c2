"""Payments through Bluetooth failures: settled, other outcomes, time to recover, per class.

    .venv/bin/python bench/resilience_bench.py [--rounds N]

Each failure class runs on a fresh chain (virtual BlueZ with its GATT cache on, as BlueZ's
default, real mosquitto, the platform, the gateway service and the bless-based module; only
the radio is simulated). Lasting connect faults use `vbluez ctl connect-fault`; for
abort-by-local the in-process gateway's connect timeout is 1.5 s (see ``_short_connects``).
Payments are made one
after another while the failure is injected and removed; every payment's outcome is counted
(settled, or the explicit reason it was not), and the time to recover is from the moment
Bluetooth is back (adapter restored, bluetoothd running again, the module restarted, the
module paired again) to the next settled payment. A payment that never got an outcome would
be counted as "lost": the gateway answers every request, so there must be none; with the
gateway's bonds wiped the run stops if the gateway bonded again on its own (a silent
re-pair). Each round is one payment on a healthy link, the failure, then payments until one
settles, so "settled" counts both; "books" checks the ledger's balances and audit against the
settled amounts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dbus_fast.aio import MessageBus

from blegw_harness.chain import PAYEE, PAYER, Chain, _bond_with, running_chain
from bluez_pairing import is_bonded, remove_device
from e2e import Suite
from wearable_sim.policy import FixedPolicy

PAY_TIMEOUT = 60.0


@dataclass
class Tally:
    name: str
    outcomes: Counter[str] = field(default_factory=Counter)
    recover: list[float] = field(default_factory=list)
    paid: int = 0

    def add(self, outcome: dict[str, Any] | None, amount: int) -> bool:
        if outcome is None:
            self.outcomes["lost"] += 1
            return False
        if outcome["state"] == "settled":
            self.outcomes["settled"] += 1
            self.paid += amount
            return True
        self.outcomes[str(outcome.get("reason") or outcome["state"])] += 1
        return False


class Payer:
    def __init__(self, chain: Chain, tally: Tally) -> None:
        self.chain, self.tally, self.n = chain, tally, 0

    async def pay(self) -> bool:
        self.n += 1
        amount = 100 + self.n
        try:
            outcome = await asyncio.wait_for(self.chain.pay(
                amount, f"resilience payment {self.n}", Suite.P256_SHA256,
                f"bench-{self.n:06d}-{time.monotonic_ns()}"), PAY_TIMEOUT)
        except TimeoutError:
            outcome = None
        return self.tally.add(outcome, amount)

    async def until_settled(self, since: float, limit: int = 40) -> None:
        """Pay until one settles; record the time from ``since`` (monotonic)."""
        for _ in range(limit):
            if await self.pay():
                self.tally.recover.append(time.monotonic() - since)
                return
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{self.tally.name}: no payment settled after {limit} tries")


async def _balanced(chain: Chain, paid: int) -> bool:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYEE) == paid
            and await ledger.run(ledger.balance, PAYER) == 1_000_000 - paid
            and await ledger.run(ledger.audit) == [])


async def adapter_removed(chain: Chain, payer: Payer) -> None:
    radio = chain.radio.control
    await radio.remove_adapter("hci0")
    for _ in range(3):
        await payer.pay()
    await radio.restore_adapter("hci0")
    await payer.until_settled(time.monotonic())


async def bluetoothd_restart(chain: Chain, payer: Payer) -> None:
    restart = asyncio.ensure_future(chain.radio.control.restart_bluetoothd(0.5))
    await payer.pay()  # during the downtime
    await restart
    await payer.until_settled(time.monotonic())


async def bluetoothd_restart_wiped(chain: Chain, payer: Payer) -> None:
    await chain.radio.control.restart_bluetoothd(0.5, wipe_bonds=("hci0",))
    for _ in range(2):
        await payer.pay()  # refused: the module must be paired again
    address = chain.radio.adapters[1].address
    bus = await MessageBus(bus_address=chain.radio.bus_address).connect()
    try:
        if await is_bonded(bus, "hci0", address):
            raise RuntimeError("the gateway re-paired with the module on its own")
    finally:
        bus.disconnect()
    started = time.monotonic()
    await chain.module.set_pairing_mode(True)
    await _bond_with("hci0", chain.radio.adapters[1].address)
    await chain.module.set_pairing_mode(False)
    await payer.until_settled(started)


async def bluetoothd_restart_module_wiped(chain: Chain, payer: Payer) -> None:
    """The module's bonds wiped by the restart: BlueZ's encryption with the gateway's key
    fails (PIN or Key Missing) at every connect; never a silent re-pair, even with the module
    pairable. Recovered by pairing again (the gateway's old key removed first)."""
    gateway = chain.radio.adapters[0].address
    seen = chain.module.peripheral.restarts_seen
    await chain.radio.control.restart_bluetoothd(0.5, wipe_bonds=("hci1",))
    for _ in range(100):
        if chain.module.peripheral.restarts_seen > seen:
            break
        await asyncio.sleep(0.05)
    await chain.module.set_pairing_mode(True)  # it would take a new bond: none may be made
    for _ in range(2):
        await payer.pay()
    bus = await MessageBus(bus_address=chain.radio.bus_address).connect()
    try:
        if await is_bonded(bus, "hci1", gateway):
            raise RuntimeError("the module was re-paired on its own")
        started = time.monotonic()
        await remove_device(bus, "hci0", chain.radio.adapters[1].address)
    finally:
        bus.disconnect()
    await _bond_with("hci0", chain.radio.adapters[1].address)
    await chain.module.set_pairing_mode(False)
    await payer.until_settled(started)


def _connect_fault(kind: str, payments: int) -> Callable[[Chain, Payer], Awaitable[None]]:
    async def inject(chain: Chain, payer: Payer) -> None:
        """Every connect fails that way until lifted (`vbluez ctl connect-fault`)."""
        address = chain.radio.adapters[1].address
        await chain.radio.control.link_loss("hci0", address)
        await asyncio.sleep(0.3)
        await chain.radio.control.connect_fault("hci0", address, kind, -1)
        for _ in range(payments):
            await payer.pay()
        await chain.radio.control.connect_fault("hci0", address, kind, 0)
        await payer.until_settled(time.monotonic())
    return inject


async def _short_connects(chain: Chain) -> None:
    """The in-process gateway runs without the daemon's BlueZ watch (its module shares the
    process), so it cannot see each abort: bleak retries them until the connect timeout,
    1.5 s here rather than 10 (the daemon ends each attempt at the abort)."""
    for worker in chain.gateway.relay.workers.values():
        worker.link.connect_timeout = 1.5


async def stale_gatt_cache(chain: Chain, payer: Payer) -> None:
    await chain.radio.control.link_loss("hci0", chain.radio.adapters[1].address)
    await chain.module.stop()
    await chain.module.start()  # its attributes at other handles now
    await payer.until_settled(time.monotonic())


async def stale_under_live_link(chain: Chain, payer: Payer) -> None:
    await chain.module.stop()
    await chain.module.start()
    await payer.until_settled(time.monotonic())


CLASSES: dict[str, Callable[[Chain, Payer], Awaitable[None]]] = {
    "adapter removed, back after 3 payments": adapter_removed,
    "bluetoothd restart, bonds kept (0.5 s)": bluetoothd_restart,
    "bluetoothd restart, gateway bonds wiped": bluetoothd_restart_wiped,
    "bluetoothd restart, module bonds wiped": bluetoothd_restart_module_wiped,
    "InProgress until lifted (3 payments)": _connect_fault("in-progress", 3),
    "abort-by-local until lifted (1 payment)": _connect_fault("abort-by-local", 1),
    "stale GATT cache, module restarted away": stale_gatt_cache,
    "module restarted under a live link": stale_under_live_link,
}


async def run_class(name: str, inject: Callable[[Chain, Payer], Awaitable[None]],
                    rounds: int) -> tuple[Tally, bool]:
    tally = Tally(name)
    async with running_chain(FixedPolicy(True)) as chain:
        # BlueZ's default: the GATT cache on (main.conf [GATT] Cache = always).
        await chain.radio.control.configure(gatt_cache=True)
        if "abort-by-local" in name:
            await _short_connects(chain)
        payer = Payer(chain, tally)
        for _ in range(rounds):
            await payer.until_settled(time.monotonic())  # a warm, healthy link first
            tally.recover.pop()
            await inject(chain, payer)
        await asyncio.sleep(0.2)
        balanced = await _balanced(chain, tally.paid)
    return tally, balanced


async def connect_cost(rounds: int) -> list[float]:
    """What ``keep_links_up`` saves: the connect a payment pays after the link dropped."""
    costs: list[float] = []
    async with running_chain(FixedPolicy(True)) as chain:
        address = chain.radio.adapters[1].address
        for i in range(rounds + 1):
            outcome = await chain.pay(100, f"connect-{i}", Suite.P256_SHA256,
                                      f"connect-cost-{i}-{time.monotonic_ns()}")
            assert outcome["state"] == "settled", outcome
            if i:  # the first includes bleak's start-up
                costs.append(chain.platform.timings[bytes.fromhex(outcome["id"])]["gw_connect"])
            await chain.radio.control.link_loss("hci0", address)
            await asyncio.sleep(0.3)
    return costs


async def main_async(rounds: int) -> None:
    print(f"{'failure class':<44}{'settled':>8}  {'other outcomes':<44}"
          f"{'recover median / max s':>22}  books")
    for name, inject in CLASSES.items():
        tally, balanced = await run_class(name, inject, rounds)
        other = ", ".join(f"{k} {v}" for k, v in sorted(tally.outcomes.items())
                          if k != "settled") or "none"
        rec = f"{statistics.median(tally.recover):.2f} / {max(tally.recover):.2f}"
        print(f"{name:<44}{tally.outcomes['settled']:>8}  {other:<44}{rec:>22}  "
              f"{'balanced' if balanced else 'NOT BALANCED'}", flush=True)
    costs = await connect_cost(rounds)
    print(f"\nconnect paid by a payment after the link dropped (saved by keep_links_up): "
          f"median {statistics.median(costs) * 1000:.0f} ms, max {max(costs) * 1000:.0f} ms "
          f"over {len(costs)} payments")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="injections per failure class")
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)
    asyncio.run(main_async(args.rounds))


if __name__ == "__main__":
    main()
