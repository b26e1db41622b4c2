"""Flow F-E over the radio: ``blegw dynamic-code offer | pay | accept`` through two gateways.

Real parts: both daemons (`blegw run`) and every command are subprocesses, the broker is
mosquitto, the platform is its HTTP API over real SQLite files (ledger, device registry), both
modules are the bless-based simulator over the virtual BlueZ (only the radio is simulated).
The merchant's unit lives in the merchant's module (hci2) behind its own gateway (hci3), the
payer's unit in the payer's module (hci1) behind the payer's gateway (hci0). Every code goes
from one side to the other as a PNG written by one command and decoded by the next.

The gateways are hostile in the attack tests: a code the gateway host changes on its way (the
amount, the merchant's certificate, a byte of the encrypted payment code) is what a hostile
gateway would send its module. One rig for the whole module (the chain and two daemons cost
seconds); each test provisions fresh units, so no state carries over but the balances.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from blegw_harness.chain import GATEWAY_ID, MERCHANT_GATEWAY_ID, PAYEE, PAYER, Chain, running_chain
from blegw_harness.dynamic_units import provision_units
from dynamic_code import Finger, Verification, from_text, to_text
from dynamic_code.messages import ConsumptionCode, PaymentCode
from e2e.suites import Suite

from .conftest import Mosquitto
from .test_codes import Owner, _config

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Rig:
    chain: Chain
    envs: dict[str, dict[str, str]]
    tmp: Path
    payer: Owner
    merchant: Owner
    key_file: Path
    daemons: list[asyncio.subprocess.Process]

    @property
    def payer_id(self) -> str:
        return self.chain.module.element.module_id.hex()

    @property
    def merchant_id(self) -> str:
        assert self.chain.merchant is not None
        return self.chain.merchant.element.module_id.hex()

    async def blegw(self, side: str, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", *args, env=self.envs[side],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def balances(self) -> tuple[int, int]:
        ledger = self.chain.platform.ledger
        return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))

    async def provision(self, suite: Suite, verification: Verification, owner: Finger) -> None:
        assert self.chain.merchant is not None
        await provision_units(self.chain.platform, self.chain.merchant, self.chain.module,
                              suite, verification, owner, merchant_account=PAYEE,
                              payer_account=PAYER)

    # -- the three steps at the till, each a command on its side's gateway -------------------
    async def offer(self, amount: str, png: Path) -> str:
        rc, out, err = await self.blegw("merchant", "dynamic-code", "offer", "--module",
                                        self.merchant_id, "--amount", amount, "--png", str(png))
        assert rc == 0, err
        assert (await asyncio.to_thread(png.read_bytes)).startswith(b"\x89PNG")
        return out.strip()

    async def pay(self, png: Path, out_png: Path, verification: str, sensor: str = "phone"
                  ) -> tuple[int, str, str]:
        return await self.blegw("payer", "dynamic-code", "pay", "--module", self.payer_id,
                                "--png", str(png), "--verification", verification,
                                "--sensor", sensor, "--out-png", str(out_png))

    async def accept(self, png: Path, *extra: str) -> tuple[int, str, str]:
        return await self.blegw("merchant", "dynamic-code", "accept", "--module",
                                self.merchant_id, "--png", str(png), "--api-key-file",
                                str(self.key_file), "--json", *extra)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    tmp = tmp_path_factory.mktemp("dynamic-radio")
    broker = Mosquitto(tmp)
    await broker.start()
    payer, merchant = Owner(), Owner()
    try:
        async with running_chain(payer, broker_url=broker.url, with_gateway=False,
                                 merchant_policy=merchant, merchant_own_gateway=True) as chain:
            assert chain.merchant is not None
            radio = chain.radio
            configs = {
                "payer": _config(tmp / "payer-gw", GATEWAY_ID, "hci0",
                                 chain.module.element.module_id, radio.adapters[1].address,
                                 chain, broker.url),
                "merchant": _config(tmp / "merchant-gw", MERCHANT_GATEWAY_ID, "hci3",
                                    chain.merchant.element.module_id,
                                    radio.adapters[2].address, chain, broker.url)}
            key_file = tmp / "terminal.key"
            key_file.write_text(chain.api_key + "\n")
            envs = {side: {**os.environ, **radio.environ(), "BLEGW_CONFIG": str(config)}
                    for side, config in configs.items()}
            daemons: list[asyncio.subprocess.Process] = []
            logs = []
            try:
                for side, config in configs.items():
                    logs.append((config.parent / "daemon.log").open("wb"))
                    daemons.append(await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "blegw", "-v", "run", "--config", str(config),
                        env=envs[side], stdout=logs[-1], stderr=logs[-1]))
                rig = Rig(chain, envs, tmp, payer, merchant, key_file, daemons)
                for config in configs.values():
                    for _ in range(200):
                        if (config.parent / "control.sock").exists():
                            break
                        await asyncio.sleep(0.05)
                for side in configs:
                    rc, out, err = await rig.blegw(side, "status", "--json")
                    assert rc == 0, err
                    assert len(json.loads(out)["modules"]) == 1
                yield rig
            finally:
                for daemon in daemons:
                    if daemon.returncode is None:
                        daemon.terminate()
                        await asyncio.wait_for(daemon.wait(), 30)
                for log in logs:
                    log.close()
    finally:
        await broker.stop()


async def _settles(rig: Rig, suite: Suite, verification: Verification, sensor: str,
                   amount: str, minor: int) -> None:
    """The honest till exchange, from a fresh consumption code to the settled transfer."""
    before = await rig.balances()
    consumption, payment = rig.tmp / "consumption.png", rig.tmp / "payment.png"
    text = await rig.offer(amount, consumption)
    assert text.startswith("BDC1:")
    assert ConsumptionCode.decode(from_text(text)).amount_minor == minor
    mode = verification.name.lower()
    rc, out, err = await rig.pay(consumption, payment, mode, sensor)
    assert rc == 0, err
    assert PaymentCode.decode(from_text(out.strip())).suite is suite
    assert f"{amount} EUR to {PAYEE}" in rig.payer.shown[-1]
    rc, out, err = await rig.accept(payment, *(["--till-sensor"] if sensor == "till" else []))
    assert rc == 0, err
    result = json.loads(out)
    assert result["transaction"]["state"] == "settled"
    assert result["verification"] == mode
    assert await rig.balances() == (before[0] - minor, before[1] + minor)


@pytest.mark.parametrize(("suite", "verification", "sensor"), [
    (Suite.P256_SHA256, Verification.FEATURES, "phone"),
    (Suite.P256_SHA256, Verification.DEVICE, "phone"),
    (Suite.SM2_SM3, Verification.FEATURES, "till"),
    (Suite.SM2_SM3, Verification.DEVICE, "phone"),
], ids=["p256-features-phone", "p256-device", "sm2-features-till", "sm2-device"])
async def test_a_payment_settles_through_the_till_exchange_over_the_radio(
        rig: Rig, suite: Suite, verification: Verification, sensor: str) -> None:
    owner = Finger.new()
    await rig.provision(suite, verification, owner)
    assert rig.chain.merchant is not None
    if sensor == "till":  # the payer puts their finger on the till's sensor
        rig.chain.merchant.dynamic.sensor.present(owner)
    await _settles(rig, suite, verification, sensor, "12.50", 1250)


async def test_hostile_gateway_altering_the_amount_or_merchant_in_either_code_is_refused(
        rig: Rig) -> None:
    owner = Finger.new()
    await rig.provision(Suite.P256_SHA256, Verification.DEVICE, owner)
    before = await rig.balances()
    consumption, payment = rig.tmp / "c.png", rig.tmp / "p.png"
    text = await rig.offer("20.00", consumption)
    code = ConsumptionCode.decode(from_text(text))
    # the payer's gateway shows its module a smaller amount than the till asked for
    cheaper = dataclasses.replace(code, amount_minor=1)
    rc, _, err = await rig.blegw("payer", "dynamic-code", "pay", "--module", rig.payer_id,
                                 "--text", to_text(cheaper.encode()), "--verification",
                                 "device", "--out-png", str(payment))
    assert rc == 16 and "bad_signature" in err, err
    # ... or a code naming another merchant: the certificate's account changed
    other = code.merchant_certificate.replace(PAYEE.encode(), b"shop-43")
    assert other != code.merchant_certificate
    forged = dataclasses.replace(code, merchant_certificate=other)
    rc, _, err = await rig.blegw("payer", "dynamic-code", "pay", "--module", rig.payer_id,
                                 "--text", to_text(forged.encode()), "--verification",
                                 "device", "--out-png", str(payment))
    assert rc == 16 and "device_certificate_refused" in err, err
    # the merchant's gateway alters the encrypted payment code (its amount or account inside)
    rc, out, err = await rig.pay(consumption, payment, "device")
    assert rc == 0, err
    paid = PaymentCode.decode(from_text(out.strip()))
    flipped = bytearray(paid.ciphertext)
    flipped[-20] ^= 0x01
    altered = PaymentCode(paid.suite, bytes(flipped)).encode()
    rc, _, err = await rig.blegw("merchant", "dynamic-code", "accept", "--module",
                                 rig.merchant_id, "--text", to_text(altered),
                                 "--api-key-file", str(rig.key_file))
    assert rc == 16 and "decrypt_failed" in err, err
    assert await rig.balances() == before
    # the honest payment code of the same consumption code still settles
    rc, out, err = await rig.accept(payment)
    assert rc == 0, err
    assert await rig.balances() == (before[0] - 2000, before[1] + 2000)


async def test_non_matching_finger_at_the_sensor_is_refused(rig: Rig) -> None:
    owner, thief = Finger.new(), Finger.new()
    # FIDO's way: the payer's module matches and refuses
    await rig.provision(Suite.SM2_SM3, Verification.DEVICE, owner)
    before = await rig.balances()
    consumption, payment = rig.tmp / "c.png", rig.tmp / "p.png"
    await rig.offer("7.00", consumption)
    rig.chain.module.dynamic.sensor.present(thief)
    rc, _, err = await rig.pay(consumption, payment, "device")
    assert rc == 16 and "fingerprint_mismatch" in err, err
    # the seed's way: the finger travels encrypted and the settlement server refuses it
    await rig.provision(Suite.P256_SHA256, Verification.FEATURES, owner)
    await rig.offer("7.00", consumption)
    rig.chain.module.dynamic.sensor.present(thief)
    rc, _, err = await rig.pay(consumption, payment, "features")
    assert rc == 0, err
    rc, _, err = await rig.accept(payment)
    assert rc == 13 and "fingerprint_mismatch" in err, err
    assert await rig.balances() == before
    # the owner's own finger on a new consumption code pays
    rig.chain.module.dynamic.sensor.present(owner)
    await _settles(rig, Suite.P256_SHA256, Verification.FEATURES, "phone", "7.00", 700)


async def test_replayed_consumption_code_is_a_stale_perturbation(rig: Rig) -> None:
    await rig.provision(Suite.P256_SHA256, Verification.DEVICE, Finger.new())
    consumption, first, second = rig.tmp / "c.png", rig.tmp / "p1.png", rig.tmp / "p2.png"
    await rig.offer("3.00", consumption)
    rc, _, err = await rig.pay(consumption, first, "device")
    assert rc == 0, err
    before = await rig.balances()
    rc, _, err = await rig.accept(first)
    assert rc == 0, err
    assert await rig.balances() == (before[0] - 300, before[1] + 300)
    # the photographed consumption code paid again: a new payment code, the same perturbation
    rc, _, err = await rig.pay(consumption, second, "device")
    assert rc == 0, err
    rc, _, err = await rig.accept(second)
    assert rc == 16 and "stale_perturbation" in err, err
    assert await rig.balances() == (before[0] - 300, before[1] + 300)
    assert [d.returncode for d in rig.daemons] == [None, None]
    await _settles(rig, Suite.P256_SHA256, Verification.DEVICE, "phone", "3.00", 300)
