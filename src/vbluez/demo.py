"""A short demonstration of the virtual radio with unmodified bleak and bless.

A bless peripheral on hci1 advertises an echo service; a bleak central on hci0 finds it,
connects, reads, subscribes and runs write -> notify round trips; the timings are printed.
Run with ``python -m vbluez.demo`` (``scripts/demo`` does it after setting everything up).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

from .runtime import VirtualBluez

SERVICE = "6d2a0001-8f3c-4b6e-9a57-3c1d2e4f5a60"
WRITE = "6d2a0002-8f3c-4b6e-9a57-3c1d2e4f5a60"
NOTIFY = "6d2a0003-8f3c-4b6e-9a57-3c1d2e4f5a60"
INFO = "6d2a0004-8f3c-4b6e-9a57-3c1d2e4f5a60"


def _step(text: str, started: float) -> None:
    print(f"[{(time.perf_counter() - started) * 1000:8.1f} ms] {text}", flush=True)


async def run(rounds: int = 50) -> None:
    from bleak import BleakClient, BleakScanner
    from bless import BlessServer, GATTAttributePermissions, GATTCharacteristicProperties

    t0 = time.perf_counter()
    async with VirtualBluez(adapters=2) as radio:
        os.environ.update(radio.environ())
        _step(f"virtual radio up on {radio.bus_address.split(',')[0]}", t0)
        for a in radio.adapters:
            _step(f"  adapter {a.name} {a.address}", t0)
        server = BlessServer(name="DemoModule", adapter="hci1")

        def on_write(char: Any, value: Any, **_: Any) -> None:
            notify = server.get_characteristic(NOTIFY)
            notify.value = bytearray(bytes(value)[::-1])
            server.update_value(SERVICE, NOTIFY)

        server.read_request_func = lambda char, **_: bytearray(b"demo module v1")
        server.write_request_func = on_write
        props, perms = GATTCharacteristicProperties, GATTAttributePermissions
        await server.add_new_service(SERVICE)
        await server.add_new_characteristic(SERVICE, WRITE, props.write, None, perms.writeable)
        await server.add_new_characteristic(SERVICE, NOTIFY, props.notify, None, perms.readable)
        await server.add_new_characteristic(SERVICE, INFO, props.read, None, perms.readable)
        await server.start()
        _step("bless peripheral 'DemoModule' advertising on hci1", t0)
        try:
            device = await BleakScanner.find_device_by_filter(
                lambda _d, adv: SERVICE in adv.service_uuids, timeout=10,
                bluez={"adapter": "hci0"})
            if device is None:
                raise SystemExit("demo: the peripheral was not found")
            _step(f"bleak on hci0 found {device.name} at {device.address}", t0)
            async with BleakClient(device, bluez={"adapter": "hci0"}) as client:
                _step(f"connected, {len(client.services.services)} service(s) discovered", t0)
                info = await client.read_gatt_char(INFO)
                _step(f"read module info: {bytes(info).decode()}", t0)
                queue: asyncio.Queue[bytes] = asyncio.Queue()
                await client.start_notify(NOTIFY, lambda _c, data: queue.put_nowait(bytes(data)))
                times = []
                for i in range(rounds):
                    payload = f"round {i}".encode()
                    start = time.perf_counter()
                    await client.write_gatt_char(WRITE, payload, response=True)
                    echoed = await asyncio.wait_for(queue.get(), 5)
                    times.append((time.perf_counter() - start) * 1000)
                    if echoed != payload[::-1]:
                        raise SystemExit(f"demo: wrong echo {echoed!r}")
                times.sort()
                _step(f"{rounds} write->notify round trips: median {statistics.median(times):.2f} "
                      f"ms, max {times[-1]:.2f} ms", t0)
            _step("disconnected", t0)
        finally:
            await server.stop()
            server.bus.disconnect()
    _step("virtual radio stopped; demo finished", t0)


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
