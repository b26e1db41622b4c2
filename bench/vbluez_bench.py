"""Figures for the virtual radio: round trips, connect + discovery, and the latency model.

    .venv/bin/python bench/vbluez_bench.py [--exchanges 1000] [--interval-ms 15]

Prints, in one run on this machine:
* write -> notify round trips through the virtual radio (latency model off), p50/p99/max,
  beside a direct in-process call of the same handler (the baseline);
* connect + GATT discovery time;
* the same round trip with a connection interval, against the modelled floor of two intervals
  (a write request goes at the next connection event, its answer and the notification one
  event later; the next write waits for the event after that).
Nothing is asserted: these are measurements, not tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

SERVICE = "6d2a0001-8f3c-4b6e-9a57-3c1d2e4f5a60"
WRITE = "6d2a0002-8f3c-4b6e-9a57-3c1d2e4f5a60"
NOTIFY = "6d2a0003-8f3c-4b6e-9a57-3c1d2e4f5a60"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def row(name: str, values_ms: list[float]) -> None:
    print(f"  {name:<44} n={len(values_ms):5d}  p50 {pct(values_ms, 50):8.3f} ms  "
          f"p99 {pct(values_ms, 99):8.3f} ms  max {max(values_ms):8.3f} ms")


async def run(exchanges: int, interval_ms: float) -> None:
    from bleak import BleakClient, BleakScanner
    from bless import BlessServer, GATTAttributePermissions, GATTCharacteristicProperties

    from vbluez import RadioConfig, VirtualBluez

    async with VirtualBluez(config=RadioConfig(adapters=2)) as radio:
        os.environ.update(radio.environ())
        server = BlessServer(name="BenchPeripheral", adapter="hci1")

        def handle(value: Any) -> None:
            # The module-side work of one exchange: take the write, stage the answer.
            server.get_characteristic(NOTIFY).value = bytearray(value)

        def handler(char: Any, value: Any, **_: Any) -> None:
            handle(value)
            server.update_value(SERVICE, NOTIFY)

        server.write_request_func = handler
        server.read_request_func = lambda char, **_: bytearray(b"")
        props, perms = GATTCharacteristicProperties, GATTAttributePermissions
        await server.add_new_service(SERVICE)
        await server.add_new_characteristic(SERVICE, WRITE, props.write, None, perms.writeable)
        await server.add_new_characteristic(SERVICE, NOTIFY, props.notify, None, perms.readable)
        await server.start()
        try:
            # Baseline: the same handler work called directly, in process, no radio, no bus.
            base = []
            for i in range(exchanges):
                t = time.perf_counter()
                handle(bytearray(b"x%05d" % i))
                base.append((time.perf_counter() - t) * 1000)

            device = await BleakScanner.find_device_by_address(
                radio.adapters[1].address, timeout=10, bluez={"adapter": "hci0"})
            assert device is not None
            connects = []
            for _ in range(20):
                client = BleakClient(device, bluez={"adapter": "hci0"})
                t = time.perf_counter()
                await client.connect()
                connects.append((time.perf_counter() - t) * 1000)
                await client.disconnect()

            async def round_trips(n: int) -> list[float]:
                queue: asyncio.Queue[bytes] = asyncio.Queue()
                async with BleakClient(device, bluez={"adapter": "hci0"}) as client:
                    await client.start_notify(NOTIFY, lambda _c, d: queue.put_nowait(bytes(d)))
                    for _ in range(10):  # warm-up
                        await client.write_gatt_char(WRITE, b"warm", response=True)
                        await queue.get()
                    out = []
                    for i in range(n):
                        payload = b"x%05d" % i
                        t = time.perf_counter()
                        await client.write_gatt_char(WRITE, payload, response=True)
                        got = await asyncio.wait_for(queue.get(), 10)
                        out.append((time.perf_counter() - t) * 1000)
                        if got != payload:
                            raise SystemExit(f"wrong echo {got!r}")
                    return out

            off = await round_trips(exchanges)
            await radio.control.configure(conn_interval_ms=interval_ms)
            modelled = await round_trips(max(50, exchanges // 10))
        finally:
            await server.stop()
            server.bus.disconnect()

    print(f"virtual radio figures ({os.cpu_count()} cores)")
    row("direct in-process handler call (baseline)", base)
    row("write->notify via virtual radio, model off", off)
    print(f"  ratio p50 radio/baseline: {pct(off, 50) / max(pct(base, 50), 1e-9):,.0f}x")
    row("connect + service discovery, model off", connects)
    floor = 2 * interval_ms
    row(f"write->notify, {interval_ms:g} ms interval", modelled)
    print(f"  modelled floor {floor:.1f} ms; measured p50 is "
          f"{(statistics.median(modelled) / floor - 1) * 100:+.1f}% from the floor")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--exchanges", type=int, default=1000)
    parser.add_argument("--interval-ms", type=float, default=15.0)
    args = parser.parse_args()
    asyncio.run(run(args.exchanges, args.interval_ms))


if __name__ == "__main__":
    main()
