"""``blegw-harness bench``: confirmations through the chain, and the settlement rate.

Part 1 runs N payments terminal -> platform -> MQTT -> gateway -> virtual radio -> module and
back, with the module approving at once, and prints p50/p99 of the total and of each hop.
Part 2 measures, on one core, the platform's verification+settlement rate for each suite beside
the bare signature-verification rate measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from blegw_platform.ledger import TransactionRecord
from blegw_platform.platform import Platform
from e2e import (
    CertificateAuthority,
    ConfirmationRequest,
    Decision,
    Suite,
    UserVerification,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
    verify_confirmation,
)
from mqtt_uplink import MqttEndpoint
from relay_contract import RelayResponse, RelayStatus
from vbluez.hil import bus_address, hil_active
from wearable_sim.policy import FixedPolicy

from .chain import running_chain


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] * 1000


def row(name: str, values: list[float]) -> None:
    print(f"  {name:<42} p50 {pct(values, 50):8.2f} ms   p99 {pct(values, 99):8.2f} ms")


async def chain_part(n: int, suite: Suite, broker: str | None, interval_ms: float) -> None:
    async with running_chain(FixedPolicy(True), broker_url=broker,
                             conn_interval_ms=interval_ms) as chain:
        for i in range(5):  # warm-up: connect the link, fill caches
            await chain.pay(1, "warm-up", suite, f"warm-{i}-{time.time_ns()}")
        chain.module.sign_seconds.clear()
        totals: list[float] = []
        names = ("platform->gateway->platform (MQTT)", "gateway own time",
                 "gateway->module->gateway (BLE)", "module signing", "verification + settlement")
        hops: dict[str, list[float]] = {k: [] for k in names}
        for i in range(n):
            started = time.perf_counter()
            outcome = await chain.pay(100, "bench", suite, f"bench-{i}-{time.time_ns()}")
            totals.append(time.perf_counter() - started)
            if outcome["state"] != "settled":
                raise SystemExit(f"bench: payment {i} ended {outcome}")
            t = chain.platform.timings[bytes.fromhex(outcome["id"])]
            gw = t["gw_queue"] + t["gw_connect"] + t["gw_ble"] + t["gw_gateway_own"]
            hops["platform->gateway->platform (MQTT)"].append(t["answered"] - t["created"] - gw)
            hops["gateway own time"].append(t["gw_gateway_own"] + t["gw_queue"])
            hops["gateway->module->gateway (BLE)"].append(t["gw_ble"])
            hops["verification + settlement"].append(t["settled"] - t["answered"])
        hops["module signing"] = list(chain.module.sign_seconds)
    model = "off" if not interval_ms else f"{interval_ms:g} ms connection interval"
    radio = (f"HIL radio (BlueZ on {bus_address()})" if hil_active() else f"radio model {model}")
    print(f"full chain, {suite.name}, {n} payments, {radio}, broker "
          f"{broker or 'mosquitto (TLS, shipped configuration)'}")
    row("total (terminal HTTP create -> outcome)", totals)
    for name, values in hops.items():
        row(name, values)


def settlement_part(n: int) -> None:
    print(f"platform verification + settlement, one core, {n} per suite")
    for suite in Suite:
        with tempfile.TemporaryDirectory() as tmp:
            platform = Platform(Path(tmp), mqtt=MqttEndpoint("mqtt://127.0.0.1:1"))
            ledger = platform.ledger
            for m in range(32):
                ledger.add_account(f"alice-{m}", "EUR", 10**12)
            ledger.add_account("shop", "EUR", 0)
            # 32 modules: responses arrive together from many gateways, but each module has
            # one request at a time, so its counter rises in order.
            modules = []
            now = int(time.time())
            for m in range(32):
                key = generate_private_key(suite)
                module_id = m.to_bytes(16, "big")
                cert = platform.cas[suite].issue(key.public_key, module_id,
                                                 not_before=now - 60, not_after=now + 3600)
                ledger.enroll(module_id, f"alice-{m}", "gw", int(suite), cert.encode())
                modules.append((key, module_id, cert))
            payloads = []
            for i in range(n):
                key, module_id, cert = modules[i % 32]
                tx = i.to_bytes(16, "big")
                payer = f"alice-{i % 32}"
                request = ConfirmationRequest(tx, payer, "shop", f"o{i}", "bench", 100, "EUR",
                                              tx, now + 600, suite)
                envelope = encode_envelope(request)
                ledger.create(TransactionRecord(
                    tx, f"key-{i:08d}", "h", payer, "shop", 100, "EUR", f"o{i}", "bench",
                    int(suite), module_id, tx, now + 600, envelope, "pending", "", None, now,
                    now))
                response = sign_confirmation(envelope, request, decision=Decision.APPROVE,
                                             counter=i // 32 + 1,
                                             user_verification=UserVerification.PRESENCE,
                                             key=key, module_id=module_id)
                payloads.append((envelope, response, cert, RelayResponse(
                    tx, RelayStatus.OK, encode_envelope(response)).encode()))
            ca: CertificateAuthority = platform.cas[suite]
            started = time.perf_counter()
            for envelope, response, cert, _ in payloads:
                verify_confirmation(envelope, response, cert, ca.public_key, now=now,
                                    last_counter=0)
            bare = n / (time.perf_counter() - started)

            settled = asyncio.run(_settle_all(platform, [p for *_, p in payloads]))
        print(f"  {suite.name:<12} bare verification {bare:9.0f}/s   verification+settlement "
              f"{settled:9.0f}/s   ratio {settled / bare:6.1%}")


async def _settle_all(platform: Platform, payloads: list[bytes]) -> float:
    """Responses arriving together, as from many gateways at once (32 in flight)."""
    begin = time.perf_counter()
    for i in range(0, len(payloads), 32):
        records = await asyncio.gather(*(platform.handle_response(p)
                                         for p in payloads[i:i + 32]))
        for record in records:
            if record is None or record.state != "settled":
                raise SystemExit(f"bench: settlement failed: {record}")
    elapsed = time.perf_counter() - begin
    await platform.aclose()
    return len(payloads) / elapsed


def model_beside(n: int, suite: Suite, broker: str | None, interval_ms: float) -> None:
    """In HIL mode, the same run on the virtual radio's model at the rig's connection interval,
    printed under the rig's, so the model can be checked against hardware. A child process
    without the HIL settings runs it: in this one the HIL tripwire refuses a virtual radio."""
    if not interval_ms:
        print("  (no model beside: give --interval-ms, the rig's connection interval)")
        return
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("BLEGW_HIL") and k != "DBUS_SYSTEM_BUS_ADDRESS"}
    code = ("import asyncio, sys; from e2e import Suite; from blegw_harness.bench import "
            "chain_part; asyncio.run(chain_part(int(sys.argv[1]), Suite[sys.argv[2]], "
            "sys.argv[3] or None, float(sys.argv[4])))")
    subprocess.run([sys.executable, "-c", code, str(n), suite.name, broker or "",  # noqa: S603
                    str(interval_ms)], env=env, check=True, timeout=600)


def main(n: int = 200, broker: str | None = None, interval_ms: float = 0.0) -> int:
    for suite in Suite:
        asyncio.run(chain_part(n, suite, broker, interval_ms))
        if hil_active():
            model_beside(n, suite, broker, interval_ms)
    settlement_part(max(100, n))
    return 0
