"""Load test: many gateways, Poisson arrivals, 1, 2 and 4 platform workers (issue 18, item 4).

    .venv/bin/python bench/platform_loadtest.py [--gateways 1000] [--payments 600]
        [--rate 300] [--workers 1,2,4] [--backends sqlite,postgresql] [--time-limit 60]

For each ledger backend and worker count: a fresh ledger, a mosquitto on loopback, N
``blegw-platform serve`` subprocesses on one port (``--reuse-port``) in one MQTT 5 shared
subscription group, and ``--gateways`` gateways (one broker session each, subscribed to its own
``req`` topic) whose soft modules sign genuine P-256 approvals
(:mod:`blegw_harness.soft_gateways`: the real MQTT contract, no radio). A terminal creates
``--payments`` payments at Poisson-distributed arrival times (mean ``--rate`` per second), each
on a payer whose module has nothing in flight, and long-polls each outcome. Printed per
configuration: settled per second (settled payments over the time from the first arrival to
the last outcome), p50/p99 of create-to-outcome, errors (any outcome but ``settled``, any
failed call), and the ratio of settled/s to the same backend's one-worker figure.

Bounded: at most 1,000 gateways and 20,000 payments, and every configuration stops creating
payments after ``--time-limit`` seconds. Everything listens on 127.0.0.1 only. PostgreSQL: a
throw-away server from Debian's ``postgresql`` package, or ``--postgres URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from ledger_bench import postgres_databases

from blegw_harness.soft_gateways import enroll_gateways, running
from blegw_platform.ledger import FINAL_STATES
from blegw_platform.platform import Platform
from mqtt_uplink import MqttEndpoint
from tests.blegw.conftest import Mosquitto

MAX_GATEWAYS = 1000
MAX_PAYMENTS = 20_000
BALANCE = 10**9


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


async def start_workers(state: Path, broker: str, port: int, count: int
                        ) -> list[asyncio.subprocess.Process]:
    procs = []
    for _ in range(count):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw_platform", "serve", "--state", str(state),
            "--http", f"127.0.0.1:{port}", "--broker", broker, "--reuse-port",
            "--share-group", "loadtest", "--approval-window", "30",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if b"platform listening" not in line:
            raise SystemExit(f"loadtest: a worker did not start: {line!r}")
        procs.append(proc)
    return procs


async def stop_workers(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            await asyncio.wait_for(proc.wait(), 20)


async def one_payment(session: aiohttp.ClientSession, base: str, headers: dict[str, str],
                      payer: str, key: str) -> tuple[str, float]:
    """The outcome of one payment and its create-to-outcome time ("error:..." on failure)."""
    began = time.perf_counter()
    try:
        async with session.post(base, headers={**headers, "Idempotency-Key": key}, json={
                "payer": payer, "payee": "shop", "amount_minor": 1, "currency": "EUR",
                "order_reference": key, "order_description": "load test"}) as answer:
            if answer.status not in (200, 201):
                return f"error:http_{answer.status}", time.perf_counter() - began
            record: dict[str, Any] = await answer.json()
        while record["state"] not in FINAL_STATES:
            async with session.get(f"{base}/{record['id']}/outcome?timeout=30",
                                   headers=headers) as answer:
                if answer.status != 200:
                    return f"error:http_{answer.status}", time.perf_counter() - began
                record = await answer.json()
    except (TimeoutError, aiohttp.ClientError) as exc:
        return f"error:{type(exc).__name__}", time.perf_counter() - began
    return str(record["state"]), time.perf_counter() - began


async def configuration(ledger: str | None, workers: int, args: argparse.Namespace
                        ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir(mode=0o700)
        if ledger is not None:
            (state / "platform.toml").write_text(f'[ledger]\nurl = "{ledger}"\n')
        broker = Mosquitto(Path(tmp))
        platform = Platform(state, mqtt=MqttEndpoint(broker.url))
        try:
            gateways, payers = enroll_gateways(platform, args.gateways, 1, BALANCE)
            platform.ledger.add_account("shop", "EUR", 0)
            api_key = await platform.add_terminal("loadtest", ["shop"])
        finally:
            platform.close()
        await broker.start()
        port = free_port()
        procs = await start_workers(state, broker.url, port, workers)
        try:
            async with running(gateways, "127.0.0.1", broker.port, delay=0.0, ready_within=120), \
                    aiohttp.ClientSession(
                        connector=aiohttp.TCPConnector(limit=0),
                        timeout=aiohttp.ClientTimeout(total=60)) as session:
                return await drive(session, f"http://127.0.0.1:{port}/v1/transactions",
                                   {"Authorization": f"Bearer {api_key}"}, payers, args)
        finally:
            await stop_workers(procs)
            await broker.stop()


async def drive(session: aiohttp.ClientSession, base: str, headers: dict[str, str],
                payers: list[str], args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(18)
    idle = list(payers)
    rng.shuffle(idle)
    results: list[tuple[str, float]] = []
    tasks: set[asyncio.Task[None]] = set()
    skipped = 0

    async def pay(payer: str, n: int) -> None:
        results.append(await one_payment(session, base, headers, payer, f"load-{n:08d}"))
        idle.append(payer)   # one payment in flight per module: its counter rises in order

    loop = asyncio.get_running_loop()
    began = loop.time()
    due = began
    for n in range(args.payments):
        due += rng.expovariate(args.rate)
        if due - began > args.time_limit:
            break
        await asyncio.sleep(max(0.0, due - loop.time()))
        if not idle:
            skipped += 1
            continue
        task = asyncio.create_task(pay(idle.pop(), n))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=90)
    elapsed = loop.time() - began
    latencies = [t for state, t in results if state == "settled"]
    errors = len(results) - len(latencies) + len(tasks)
    return {"settled": len(latencies), "per_s": len(latencies) / elapsed,
            "p50": pct(latencies, 50) * 1000, "p99": pct(latencies, 99) * 1000,
            "errors": errors, "busy": skipped,
            "kinds": Counter([state for state, _ in results if state != "settled"]
                             + ["unfinished"] * len(tasks))}


async def run(args: argparse.Namespace) -> int:
    counts = [int(n) for n in args.workers.split(",")]
    backends = args.backends.split(",")
    create, stop = postgres_databases(args.postgres) if "postgresql" in backends \
        else (None, lambda: None)
    print(f"platform load test: {args.gateways} gateways (soft P-256 modules over mosquitto), "
          f"{args.payments} payments, Poisson arrivals {args.rate:g}/s, "
          f"{os.cpu_count()} cores")
    print(f"  {'backend':<11} {'workers':>7} {'settled':>8} {'settled/s':>10} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'errors':>7} {'scaling':>8}")
    try:
        for backend in backends:
            base = None
            for count in counts:
                ledger = create() if backend == "postgresql" and create else None
                row = await configuration(ledger, count, args)
                base = base or row["per_s"]
                print(f"  {backend:<11} {count:>7} {row['settled']:>8} {row['per_s']:>10.1f} "
                      f"{row['p50']:>8.1f} {row['p99']:>8.1f} {row['errors']:>7} "
                      f"{row['per_s'] / base:>7.2f}x", flush=True)
                if row["kinds"]:
                    print(f"    errors: {dict(row['kinds'])}", flush=True)
                if row["busy"]:
                    print(f"    ({row['busy']} arrivals found every module busy and were not "
                          f"sent: more gateways or a lower rate)", flush=True)
    finally:
        stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--rate", type=float, default=300.0, help="mean arrivals per second")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--time-limit", type=float, default=60.0,
                        help="seconds of arrivals per configuration at most")
    parser.add_argument("--postgres", help="a PostgreSQL server's URL (its user may create "
                                           "databases); default: start a temporary one")
    args = parser.parse_args()
    if not (1 <= args.gateways <= MAX_GATEWAYS and 1 <= args.payments <= MAX_PAYMENTS
            and args.rate > 0 and 0 < args.time_limit <= 600):
        parser.error(f"bounds: 1..{MAX_GATEWAYS} gateways, 1..{MAX_PAYMENTS} payments, "
                     f"rate > 0, time limit 0..600 s")
    if not set(args.backends.split(",")) <= {"sqlite", "postgresql"}:
        parser.error("--backends: sqlite and/or postgresql")
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
