"""``blegw-harness demo``: a few payments through the whole chain, each step shown timed, then a
transaction code (flow F-D): the payer's module signs a payment code through its gateway's
control socket, the code is rendered to a PNG, read back from that PNG, countersigned by the
merchant's module (a second simulated module) through the merchant's own gateway daemon (its
own configuration, adapter and broker account), confirmed by the payer's module (the platform's
policy asks above 10.00) and settled; each gateway then shows the platform's notice. Then the
till exchange of dynamic codes (flow F-E, ``till_demo``) between the same two modules."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from e2e import Suite
from wearable_sim.policy import Prompt, TerminalPolicy, UserPolicy

from .chain import CARD_PAYER, MERCHANT_GATEWAY_ID, PAYEE, PAYER, Chain, running_chain
from .channel_demo import channel_payments

CODE_AMOUNT = 1999
CONFIRM_ABOVE = 1000
"""The demo platform's policy: codes above 10.00 are confirmed by the payer's module."""

PAYMENTS = [
    (1250, "coffee beans 1 kg", Suite.P256_SHA256, True, PAYER),
    (4590, "espresso machine descaler", Suite.SM2_SM3, True, PAYER),
    (99900, "a suspicious gift card", Suite.P256_SHA256, False, PAYER),
    (320, "croissant", Suite.SM2_SM3, True, PAYER),
    (250, "bus ticket", Suite.P256_SHA256, True, CARD_PAYER),
    (180, "newspaper", Suite.SM2_SM3, True, CARD_PAYER),
]
"""(amount, description, suite, the owner approves, payer): alice-001 pays with the public-key
module (P-256, SM2), bob-002 with the symmetric-key card (the same suite numbers: AES, SM4)."""


class ScriptedOwner:
    """The module's owner in the demo: approves or declines as scripted, and says so."""

    name = "scripted"
    verification = "presence"

    def __init__(self, answers: list[bool], device: str = "module") -> None:
        self._answers = list(answers)
        self.device = device

    async def decide(self, prompt: Prompt) -> bool:
        answer = self._answers.pop(0) if self._answers else True
        if self.device == "card":
            # a card has a button and no display: the owner approves what the terminal showed
            print(f"        card's button asked for: {prompt.text()}")
        else:
            print(f"        module shows: {prompt.text()}")
        print(f"        owner {'approves' if answer else 'declines'} on the {self.device}")
        return answer

    async def close(self) -> None:
        return None


async def run(*, interactive: bool = False, broker: str | None = None,
              broker_dir: Path | None = None) -> int:
    policy: UserPolicy = TerminalPolicy() if interactive else ScriptedOwner(
        [p[3] for p in PAYMENTS if p[4] == PAYER])
    card_policy: UserPolicy = TerminalPolicy() if interactive else ScriptedOwner(
        [p[3] for p in PAYMENTS if p[4] == CARD_PAYER], "card")
    t0 = time.perf_counter()

    def step(text: str) -> None:
        print(f"[{(time.perf_counter() - t0) * 1000:8.1f} ms] {text}", flush=True)

    step("starting: virtual radio, broker, platform, module (hci1), merchant's module (hci2), "
         "symmetric-key card (hci4), gateway daemon (hci0)")
    async with running_chain(policy, broker_url=broker, broker_dir=broker_dir,
                             merchant_policy=ScriptedOwner([]), merchant_own_gateway=True,
                             card_policy=card_policy) as chain:
        step(f"broker {chain.broker.gateway.describe()}: the gateway and the platform "
             f"({chain.broker.platform.username or 'anonymous'}) each use their own account")
        step(f"ready; platform API at {chain.base_url}; module "
             f"{chain.module.element.module_id.hex()[:8]} enrolled for {PAYER}; card "
             f"{chain.card.info.module_id.hex() if chain.card else '-'} enrolled for "
             f"{CARD_PAYER}")
        failures = 0
        for i, (amount, description, suite, expect, payer) in enumerate(PAYMENTS):
            kind = "card, " + _CARD_SUITES[suite] if payer == CARD_PAYER else suite.name
            step(f"terminal: {payer} pays {amount / 100:.2f} EUR to shop-42 for "
                 f"{description!r} ({kind})")
            started = time.perf_counter()
            outcome = await chain.pay(amount, description, suite, f"demo-{i}-{time.time_ns()}",
                                      payer)
            total = (time.perf_counter() - started) * 1000
            reason = f" ({outcome['reason']})" if outcome["reason"] else ""
            step(f"outcome: {outcome['state']}{reason} in {total:.1f} ms")
            tx = bytes.fromhex(outcome["id"])
            t = chain.platform.timings.get(tx, {})
            if payer == CARD_PAYER:
                step("        two relay exchanges (challenge -> hello, request -> result), "
                     "each opaque to the gateway")
            elif "answered" in t:
                step(f"        signature checked and ledger updated in "
                     f"{(t['settled'] - t['answered']) * 1000:.2f} ms; gateway's BLE exchange "
                     f"{t.get('gw_ble', 0) * 1000:.1f} ms")
            if not interactive and (outcome["state"] == "settled") != expect:
                failures += 1
        if not await _code_payment(chain, step) and not interactive:
            failures += 1
        if not await channel_payments(chain, step) and not interactive:
            failures += 1
        balance = await chain.platform.ledger.run(chain.platform.ledger.balance, "shop-42")
        step(f"shop-42 balance: {balance / 100:.2f} EUR")
    step("stopped everything")
    return 1 if failures else 0


_CARD_SUITES = {Suite.P256_SHA256: "AES-128-GCM", Suite.SM2_SM3: "SM4-GCM"}


def main(interactive: bool = False, broker: str | None = None,
         broker_dir: Path | None = None) -> int:
    return asyncio.run(run(interactive=interactive, broker=broker, broker_dir=broker_dir))


@contextlib.asynccontextmanager
async def _merchant_gateway(chain: Chain, directory: Path) -> AsyncIterator[Any]:
    """The merchant's own gateway daemon (``gw-shop`` on hci3): its own configuration,
    registry, control socket and broker account; it serves only the merchant's module."""
    from blegw.config import GatewayConfig, ModuleEntry
    from blegw.service import GatewayService

    assert chain.merchant is not None
    assert chain.broker.merchant_gateway is not None
    gateway = GatewayService(GatewayConfig(
        gateway_id=MERCHANT_GATEWAY_ID, mqtt=chain.broker.merchant_gateway, adapter="hci3",
        registry=str(directory / "registry.json"),
        control_socket=str(directory / "control.sock"), platform_url=chain.base_url,
        modules=(ModuleEntry(chain.merchant.element.module_id, chain.radio.adapters[2].address,
                             "merchant"),)),
        pairing_agent=False)  # the modules run in this process (as in the chain)
    task = asyncio.create_task(gateway.run(), name="merchant-gateway")
    try:
        await asyncio.wait_for(gateway.connected.wait(), 15)
        yield gateway
    finally:
        gateway.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)


async def _code_payment(chain: Chain, step: Callable[[str], None]) -> bool:
    """A payment code shown by the payer, scanned from its PNG and countersigned by the
    merchant's module on the merchant's own gateway, through each daemon's control socket as
    ``blegw code`` and ``blegw scan-code`` do; confirmed by the payer and settled; both
    gateways' notices shown."""
    if chain.broker.merchant_gateway is None:
        step(f"no broker account for the merchant's gateway: blegw-platform broker-user --dir "
             f"DIR --gateway {MERCHANT_GATEWAY_ID} --password-file "
             f"DIR/{MERCHANT_GATEWAY_ID}.password, then reload the broker")
        return False
    with tempfile.TemporaryDirectory(prefix="blegw-shop-gw-") as directory:
        async with _merchant_gateway(chain, Path(directory)) as merchant_gateway:
            step(f"merchant's gateway daemon {MERCHANT_GATEWAY_ID} (hci3) online with its own "
                 f"broker account ({chain.broker.merchant_gateway.username or 'anonymous'})")
            coded = await _code_through(chain, merchant_gateway.config, step)
            from .till_demo import till_exchange

            return await till_exchange(chain, merchant_gateway.config, step) and coded


async def _code_through(chain: Chain, merchant_config: Any,
                        step: Callable[[str], None]) -> bool:
    from blegw.daemon_client import daemon_request
    from blegw_platform.code_confirmation import CodeConfirmation
    from transaction_code import TransactionCode, from_text
    from transaction_code_image import png, read_png, terminal_text

    assert chain.merchant is not None

    async def ask(request: dict[str, Any], config: Any = chain.gateway.config
                  ) -> dict[str, Any]:
        answer = await daemon_request(config, request, timeout=90)
        if not answer.get("ok"):
            step(f"refused: {answer.get('code')}: {answer.get('error')}")
        return answer

    chain.platform.code_confirmation = CodeConfirmation(above_minor=CONFIRM_ABOVE)

    step(f"payer: blegw code --module {chain.module.element.module_id.hex()[:8]} --account "
         f"{PAYER} --amount {CODE_AMOUNT / 100:.2f} --currency EUR --png code.png")
    started = time.perf_counter()
    made = await ask({"cmd": "code", "module": chain.module.element.module_id.hex(),
                      "kind": "payment", "account": PAYER, "amount_minor": CODE_AMOUNT,
                      "currency": "EUR", "lifetime": 120})
    if not made.get("ok"):
        return False
    code = TransactionCode.decode(from_text(made["code"]))
    with tempfile.TemporaryDirectory(prefix="blegw-code-") as directory:
        image = Path(directory) / "code.png"
        await asyncio.to_thread(image.write_bytes, png(code.encode(), code.suite))
        shown = time.perf_counter()
        step(f"code signed by the payer's module in {made['module_seconds'] * 1000:.1f} ms, "
             f"shown {(shown - started) * 1000:.1f} ms after asking: "
             f"{len(code.encode())} bytes, QR version {_version(code)}-M")
        print(terminal_text(code.encode(), code.suite), end="")
        print(f"        {made['code']}")
        scanned = time.perf_counter()
        data = read_png(await asyncio.to_thread(image.read_bytes))
    decoded = time.perf_counter()
    step(f"merchant: blegw scan-code --png code.png --module "
         f"{chain.merchant.element.module_id.hex()[:8]} --account {PAYEE}: decoded from the "
         f"PNG in {(decoded - scanned) * 1000:.1f} ms")
    from transaction_code import to_text

    signed = await ask({"cmd": "countersign", "module": chain.merchant.element.module_id.hex(),
                        "code": to_text(data), "account": PAYEE}, merchant_config)
    if not signed.get("ok"):
        return False
    countersigned = time.perf_counter()
    step(f"countersigned by the merchant's module via {MERCHANT_GATEWAY_ID} in "
         f"{(countersigned - decoded) * 1000:.1f} ms")
    async with chain.http.post(f"{chain.base_url}/v1/codes/countersigned",
                               json={"request": signed["request"]}) as resp:
        record: dict[str, Any] = await resp.json()
    checked = time.perf_counter()
    step(f"platform: both signatures checked, code spent: {record.get('state')}; above "
         f"{CONFIRM_ABOVE / 100:.2f} EUR the payer's module confirms (flow F-A) "
         f"[{(checked - countersigned) * 1000:.1f} ms]")
    outcomes = []
    for name, config in (("merchant", merchant_config), ("payer", chain.gateway.config)):
        told = await ask({"cmd": "code_outcome", "code_id": signed["code_id"], "wait": 60},
                         config)
        if not told.get("ok"):
            return False
        outcome = told["outcome"]
        outcomes.append(outcome["state"])
        if name == "merchant":
            settled = time.perf_counter()
            step(f"confirmed and settled {(settled - checked) * 1000:.1f} ms later (scan to "
                 f"settled {(settled - scanned) * 1000:.1f} ms)")
        step(f"{name}'s gateway told: {outcome['state']}: {outcome['role']} "
             f"{outcome['account']} {outcome['amount_minor'] / 100:.2f} {outcome['currency']}"
             f" (transaction {outcome['transaction'][:16]})")
    return outcomes == ["settled", "settled"]


def _version(code: Any) -> int:
    from transaction_code_image import render

    version = render(code.encode(), code.suite).version
    return version if isinstance(version, int) else 0
