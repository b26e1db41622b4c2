"""The demo's till exchange (flow F-E): dynamic codes between the merchant's module and the
payer's, each through its own gateway daemon's control socket as ``blegw dynamic-code offer |
pay | accept`` do, both codes rendered to PNG and decoded from the image by the other side.

Once in each suite and each fingerprint mode: SM2 with the seed's way (the owner's finger
captured on the phone, carried encrypted, matched at the settlement server) and P-256 with
FIDO's (matched inside the payer's module, attested under its signature). Then the consumption
code photographed and paid again: the merchant's unit refuses it as a stale perturbation code.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dynamic_code import Finger, Verification, from_text, to_text
from dynamic_code_image import png, read_png, render
from e2e.suites import Suite

from .chain import MERCHANT_GATEWAY_ID, PAYEE, PAYER, Chain
from .dynamic_units import provision_units

__all__ = ["till_exchange"]

TILL_AMOUNTS = {Suite.SM2_SM3: 2480, Suite.P256_SHA256: 615}


async def till_exchange(chain: Chain, merchant_config: Any, step: Callable[[str], None]
                        ) -> bool:
    """Both runs and the replay; True when both settled and the replay was refused."""
    from blegw.daemon_client import daemon_request

    assert chain.merchant is not None
    merchant_id = chain.merchant.element.module_id.hex()
    payer_id = chain.module.element.module_id.hex()

    async def ask(request: dict[str, Any], config: Any) -> dict[str, Any]:
        answer = await daemon_request(config, request, timeout=90)
        if not answer.get("ok"):
            step(f"refused: {answer.get('code')} ({answer.get('reason')}): "
                 f"{answer.get('error')}")
        return answer

    owner = Finger.new()
    results = []
    with tempfile.TemporaryDirectory(prefix="blegw-till-") as directory:
        folder = Path(directory)
        for suite, mode in ((Suite.SM2_SM3, Verification.FEATURES),
                            (Suite.P256_SHA256, Verification.DEVICE)):
            how = ("the seed's way: finger captured on the phone, matched at the settlement "
                   "server" if mode is Verification.FEATURES else
                   "FIDO's way: finger matched inside the payer's module")
            step(f"till exchange (flow F-E), {suite.label}, {how}")
            await provision_units(chain.platform, chain.merchant, chain.module, suite, mode,
                                  owner, merchant_account=PAYEE, payer_account=PAYER)
            step("        units provisioned: each module made its key pair, the CA certified "
                 "it (merchant device, mobile device), keys stay in the modules")
            amount = TILL_AMOUNTS[suite]
            started = time.perf_counter()
            offer = await ask({"cmd": "dynamic_offer", "module": merchant_id,
                               "amount_minor": amount, "currency": "EUR", "lifetime": 120},
                              merchant_config)
            if not offer.get("ok"):
                return False
            consumption = folder / f"consumption-{suite.label}.png"
            data = from_text(offer["code"])
            await asyncio.to_thread(consumption.write_bytes, png(data))
            step(f"merchant: blegw dynamic-code offer --amount {amount / 100:.2f}: consumption "
                 f"code from the merchant's module via {MERCHANT_GATEWAY_ID} in "
                 f"{(time.perf_counter() - started) * 1000:.1f} ms, {len(data)} bytes, QR "
                 f"version {_version(data)}-M -> {consumption.name}")
            scanned = read_png(await asyncio.to_thread(consumption.read_bytes))
            step("payer: blegw dynamic-code pay --png consumption.png: decoded from the image; "
                 "the payer's module checks the merchant certificate against the CA")
            chain.module.dynamic.sensor.present(owner)
            started = time.perf_counter()
            paid = await ask({"cmd": "dynamic_pay", "module": payer_id,
                              "code": to_text(scanned), "verification": mode.name.lower(),
                              "sensor": "phone"}, chain.gateway.config)
            if not paid.get("ok"):
                return False
            payment = folder / f"payment-{suite.label}.png"
            code = from_text(paid["code"])
            await asyncio.to_thread(payment.write_bytes, png(code))
            step(f"        payment code encrypted to the merchant device in "
                 f"{(time.perf_counter() - started) * 1000:.1f} ms: {len(code)} bytes, QR "
                 f"version {_version(code)}-M -> {payment.name}")
            settled = await _accept(chain, merchant_config, merchant_id, payment, ask, step)
            results.append(settled)
            if mode is Verification.DEVICE:
                step("attack: the consumption code photographed and paid again")
                again = await ask({"cmd": "dynamic_pay", "module": payer_id,
                                   "code": to_text(scanned), "verification": "device",
                                   "sensor": "phone"}, chain.gateway.config)
                if not again.get("ok"):
                    return False
                await asyncio.to_thread(payment.write_bytes, png(from_text(again["code"])))
                rescanned = read_png(await asyncio.to_thread(payment.read_bytes))
                replay = await ask({"cmd": "dynamic_accept", "module": merchant_id,
                                    "code": to_text(rescanned),
                                    "settlement_certificate": await _server_cert(chain, suite),
                                    "till_sensor": False}, merchant_config)
                refused = replay.get("reason") == "stale_perturbation"
                step("        refused by the merchant's unit, nothing settles" if refused
                     else "        NOT refused")
                results.append(refused)
    return all(results)


async def _server_cert(chain: Chain, suite: Suite) -> str:
    async with chain.http.get(f"{chain.base_url}/v1/dynamic-codes/settlement-certificate/"
                              f"{suite.label}") as resp:
        body: dict[str, Any] = await resp.json()
    return str(body["certificate"])


async def _accept(chain: Chain, merchant_config: Any, merchant_id: str, payment: Path,
                  ask: Any, step: Callable[[str], None]) -> bool:
    from dynamic_code.messages import PaymentCode

    data = read_png(await asyncio.to_thread(payment.read_bytes))
    suite = PaymentCode.decode(data).suite
    started = time.perf_counter()
    accepted = await ask({"cmd": "dynamic_accept", "module": merchant_id,
                          "code": to_text(data),
                          "settlement_certificate": await _server_cert(chain, suite),
                          "till_sensor": False}, merchant_config)
    if not accepted.get("ok"):
        return False
    sealed = time.perf_counter()
    step(f"merchant: blegw dynamic-code accept --png {payment.name}: decoded from the image; "
         f"the merchant's module decrypted it, checked the perturbation code, the amount and "
         f"the payer's certificate, sealed it to the settlement server "
         f"[{(sealed - started) * 1000:.1f} ms]")
    async with chain.http.post(f"{chain.base_url}/v1/dynamic-codes",
                               json={"request": accepted["request"]}) as resp:
        record: dict[str, Any] = await resp.json()
    step(f"platform: certificates, signatures and the owner's finger "
         f"({accepted['verification']}) checked: {record.get('state', record.get('error'))}: "
         f"{accepted['payer']} paid {accepted['amount_minor'] / 100:.2f} "
         f"{accepted['currency']} to {PAYEE} [{(time.perf_counter() - sealed) * 1000:.1f} ms]")
    return record.get("state") == "settled"


def _version(code: bytes) -> int:
    version = render(code).version
    return version if isinstance(version, int) else 0
