"""Transaction codes: size in bytes and QR version per suite, and render/decode/verify times.

    .venv/bin/python bench/code_bench.py [-n 21] [--chain]

For each suite and a short (``alice``) and the longest (64-character) account, with and without
an amount: the code's bytes, its text form's characters, the QR version at level M; then the
median and p90 of signing a code, rendering its PNG, decoding that PNG with zxing-cpp, and the
platform's checks of a countersigned request (both signatures), over N runs.

``--chain`` adds the figures through the whole chain (virtual radio, mosquitto, platform, the
gateway serving the payer's and the merchant's simulated modules), per hop, as ``blegw code``
and ``blegw scan-code`` run them over the daemon's control socket: from asking for a code to a
shown code (module signs through the daemon, PNG and terminal rendering), and from the scan to
settled (decode the PNG, countersign through the daemon, the platform's checks and transfer).
Then the same with the platform's policy asking the payer to confirm every code (flow F-A): the
platform's checks end with the code spent and the transaction pending (202), the confirmation
hop is the platform's signed request over MQTT to the payer's gateway and module, the
approval back, the transfer, and the platform's notice reaching the gateway (what ``blegw
scan-code`` waits for).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e2e import Suite, generate_private_key
from transaction_code import (
    CodeKind,
    CountersignedCode,
    TransactionCode,
    check_countersigned,
    to_text,
)
from transaction_code_image import png, read_png, render, terminal_text


def _code(suite: Suite, account: str, amount: int | None, key: object) -> TransactionCode:
    now = int(time.time())
    code = TransactionCode(CodeKind.PAYMENT, suite, secrets.token_bytes(16), account, amount,
                           None if amount is None else "EUR", now, now + 120,
                           secrets.token_bytes(16))
    return code.sign(key)  # type: ignore[arg-type]


def _times(fn: Callable[[], object], n: int) -> str:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return f"{statistics.median(samples):6.1f} / {samples[int(len(samples) * 0.9)]:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=21, help="runs per timing (default 21)")
    parser.add_argument("--chain", action="store_true",
                        help="also time code and scan through the daemon and two modules")
    args = parser.parse_args()
    n = args.n
    print(f"{'suite':6} {'account':8} {'amount':7} {'bytes':>5} {'chars':>5} {'QR':>5} "
          f"{'PNG B':>6} {'term rows':>9}")
    keys = {suite: generate_private_key(suite) for suite in Suite}
    for suite in Suite:
        for account in ("alice", "x" * 64):
            for amount in (None, 10**15):
                data = _code(suite, account, amount, keys[suite]).encode()
                qr = render(data, suite)
                rows = len(terminal_text(data, suite).splitlines())
                print(f"{suite.label:6} {len(account):>8} {'yes' if amount else 'no':7} "
                      f"{len(data):>5} {len(to_text(data)):>5} {qr.designator:>5} "
                      f"{len(png(data, suite)):>6} {rows:>9}")
    print(f"\nmilliseconds, median / p90 over {n} runs (code for 'alice' with an amount)")
    print(f"{'suite':6} {'sign code':>15} {'render PNG':>15} {'decode PNG':>15} "
          f"{'verify both':>15}")
    for suite in Suite:
        print(f"{suite.label:6} " + " ".join(f"{cell:>15}" for cell in _timings(suite, n)))
    if args.chain:
        asyncio.run(_chain(n))


def _timings(suite: Suite, n: int) -> list[str]:
    key = generate_private_key(suite)
    data = _code(suite, "alice", 1250, key).encode()
    image = png(data, suite)
    request = CountersignedCode(data, suite, secrets.token_bytes(16), "shop", 1250, "EUR",
                                int(time.time())).sign(key)

    def verify() -> object:
        return check_countersigned(request, lambda *_: key.public_key, now=int(time.time()))

    return [_times(lambda: _code(suite, "alice", 1250, key), n),
            _times(lambda: png(data, suite), n), _times(lambda: read_png(image), n),
            _times(verify, n)]


def _summary(samples: list[float]) -> str:
    ordered = sorted(x * 1000 for x in samples)
    return f"{statistics.median(ordered):6.1f} / {ordered[int(len(ordered) * 0.9)]:6.1f}"


async def _chain(n: int) -> None:
    """Each hop of ``blegw code`` and ``blegw scan-code`` through the running chain."""
    from blegw.daemon_client import daemon_request
    from blegw_harness.chain import PAYEE, PAYER, running_chain
    from transaction_code import from_text
    from wearable_sim.policy import FixedPolicy

    hops: dict[str, list[float]] = {}

    def took(name: str, since: float) -> float:
        now = time.perf_counter()
        hops.setdefault(name, []).append(now - since)
        return now

    from blegw_platform.code_confirmation import CodeConfirmation

    async with running_chain(FixedPolicy(True), merchant_policy=FixedPolicy(True)) as chain:
        assert chain.merchant is not None
        config = chain.gateway.config
        payer, merchant = (chain.module.element.module_id.hex(),
                           chain.merchant.element.module_id.hex())
        with tempfile.TemporaryDirectory() as directory:
            image = Path(directory) / "code.png"
            for suite, confirm in [(suite, confirm) for confirm in (False, True)
                                   for suite in Suite]:
                chain.platform.code_confirmation = CodeConfirmation(
                    above_minor=0 if confirm else None)
                label = f"{suite.label}{' confirmed' if confirm else ''}"
                for _ in range(n):
                    t = t0 = time.perf_counter()
                    made: dict[str, Any] = await daemon_request(config, {
                        "cmd": "code", "module": payer, "account": PAYER, "suite": suite.label,
                        "amount_minor": 100, "currency": "EUR"}, timeout=90)
                    assert made["ok"], made
                    t = took(f"{label} code: module signs via daemon", t)
                    data = from_text(made["code"])
                    await asyncio.to_thread(image.write_bytes, png(data, suite))
                    terminal_text(data, suite)
                    t = took(f"{label} code: render PNG + terminal", t)
                    took(f"{label} code: asked -> shown", t0)
                    t = t1 = time.perf_counter()
                    scanned = read_png(await asyncio.to_thread(image.read_bytes))
                    t = took(f"{label} scan: decode PNG", t)
                    signed: dict[str, Any] = await daemon_request(config, {
                        "cmd": "countersign", "module": merchant, "account": PAYEE,
                        "suite": suite.label, "code": to_text(scanned)}, timeout=90)
                    assert signed["ok"], signed
                    t = took(f"{label} scan: module countersigns via daemon", t)
                    async with chain.http.post(f"{chain.base_url}/v1/codes/countersigned",
                                               json={"request": signed["request"]}) as resp:
                        record = await resp.json()
                    if confirm:
                        assert record["state"] == "pending", record
                        t = took(f"{label} scan: platform checks, code spent (202)", t)
                        told: dict[str, Any] = await daemon_request(config, {
                            "cmd": "code_outcome", "code_id": signed["code_id"],
                            "wait": 60}, timeout=70)
                        assert told["ok"], told
                        assert told["outcome"]["state"] == "settled", told
                        took(f"{label} scan: payer confirms (F-A), notice", t)
                    else:
                        assert record["state"] == "settled", record
                        took(f"{label} scan: platform checks and settles", t)
                    took(f"{label} scan: scanned -> settled", t1)
    print(f"\nthrough the chain (virtual radio; daemon control socket), ms median / p90 "
          f"over {n} codes per suite")
    for name, samples in hops.items():
        print(f"  {name:56} {_summary(samples)}")


if __name__ == "__main__":
    main()
