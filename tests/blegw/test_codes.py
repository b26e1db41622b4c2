"""``blegw code`` and ``blegw scan-code`` through the daemon as a real subprocess (flow F-D).

Real parts: the daemons (`blegw run`) and each command are subprocesses, the broker is
mosquitto, the platform is its HTTP API over a real SQLite ledger, both modules are the
bless-based simulator over the virtual BlueZ (only the radio is simulated). The payer's module
(hci1, alice-001) is served by the payer's gateway (hci0), the merchant's (hci2, shop-42) by the
merchant's own gateway (hci3), each daemon with its own configuration and control socket. Each
code is read back from the PNG the command wrote, never handed over in memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from blegw_harness.chain import GATEWAY_ID, MERCHANT_GATEWAY_ID, PAYEE, PAYER, Chain, running_chain
from blegw_platform.code_confirmation import CodeConfirmation
from relay_contract import CodeNotice, NoticeRole, NoticeState, topic
from wearable_sim.policy import Prompt

from .conftest import Mosquitto

START = 1_000_000


class Owner:
    """A module's owner: answers from a script (approve when it runs out), keeps what it saw."""

    name = "scripted"
    verification = "presence"

    def __init__(self) -> None:
        self.answers: list[bool] = []
        self.shown: list[str] = []
        self.hold: asyncio.Event | None = None
        """When set to an event, the owner thinks until it is set (or the prompt is taken
        away)."""
        self.asked = asyncio.Event()
        self.withdrawn = asyncio.Event()

    async def decide(self, prompt: Prompt) -> bool:
        self.shown.append(prompt.text())
        self.asked.set()
        if self.hold is not None:
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.withdrawn.set()  # the module took the prompt away
                raise
        return self.answers.pop(0) if self.answers else True

    async def close(self) -> None:
        return None


@dataclass
class Rig:
    chain: Chain
    envs: dict[str, dict[str, str]]
    """The environment of each side's commands: its gateway's configuration."""
    tmp: Path
    payer: Owner
    merchant: Owner
    key_file: Path

    @property
    def payer_id(self) -> str:
        return self.chain.module.element.module_id.hex()

    @property
    def merchant_id(self) -> str:
        assert self.chain.merchant is not None
        return self.chain.merchant.element.module_id.hex()

    async def blegw(self, *args: str, side: str | None = None, timeout: float = 120
                    ) -> tuple[int, str, str]:
        """Run a command on ``side``'s gateway, by default on the gateway of the module it
        names (the merchant's gateway for the merchant's module, else the payer's)."""
        env = self.envs[side or ("merchant" if self.merchant_id in args else "payer")]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if proc.returncode is None:  # timed out: leave no process behind
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def start(self, *args: str, side: str) -> tuple[asyncio.subprocess.Process, str]:
        """Start a command that prints one line first (a code shown) and then goes on (waits
        for its outcome); the process and that line."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", *args, env=self.envs[side],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc, line.decode()

    async def finish(self, proc: asyncio.subprocess.Process, timeout: float = 120
                     ) -> tuple[int, str, str]:
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def status(self, side: str) -> dict[str, object]:
        rc, out, err = await self.blegw("status", "--json", side=side)
        assert rc == 0, err
        found: dict[str, object] = json.loads(out)
        return found

    async def balances(self) -> tuple[int, int]:
        ledger = self.chain.platform.ledger
        return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))


def _config(path: Path, gateway: str, adapter: str, module: bytes, address: str,
            chain: Chain, mqtt: str) -> Path:
    path.mkdir()
    config = path / "blegw.toml"
    config.write_text(
        f'[gateway]\nid = "{gateway}"\nregistry = "{path / "registry.json"}"\n'
        f'control_socket = "{path / "control.sock"}"\nplatform_url = "{chain.base_url}"\n'
        f'[mqtt]\nurl = "{mqtt}"\n[ble]\nadapter = "{adapter}"\n'
        f'[[modules]]\nid = "{module.hex()}"\naddress = "{address}"\n')
    return config


@pytest.fixture
async def rig(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Rig]:
    payer, merchant = Owner(), Owner()
    async with running_chain(payer, broker_url=mosquitto.url, with_gateway=False,
                             merchant_policy=merchant, merchant_own_gateway=True) as chain:
        assert chain.merchant is not None
        radio = chain.radio
        configs = {
            "payer": _config(tmp_path / "payer-gw", GATEWAY_ID, "hci0",
                             chain.module.element.module_id, radio.adapters[1].address, chain,
                             mosquitto.url),
            "merchant": _config(tmp_path / "merchant-gw", MERCHANT_GATEWAY_ID, "hci3",
                                chain.merchant.element.module_id, radio.adapters[2].address,
                                chain, mosquitto.url)}
        key_file = tmp_path / "terminal.key"
        key_file.write_text(chain.api_key + "\n")
        envs = {side: {**os.environ, **radio.environ(), "BLEGW_CONFIG": str(config)}
                for side, config in configs.items()}
        daemons = []
        logs = []
        try:
            for side, config in configs.items():
                logs.append((config.parent / "daemon.log").open("wb"))
                daemons.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "blegw", "-v", "run", "--config", str(config),
                    env=envs[side], stdout=logs[-1], stderr=logs[-1]))
            rig = Rig(chain, envs, tmp_path, payer, merchant, key_file)
            for config in configs.values():
                for _ in range(200):
                    if (config.parent / "control.sock").exists():
                        break
                    await asyncio.sleep(0.05)
            for side in configs:
                rc, out, err = await rig.blegw("status", "--json", side=side)
                assert rc == 0, err
                assert len(json.loads(out)["modules"]) == 1  # each gateway serves its own
            yield rig
            # both daemons lived through every test
            assert [daemon.returncode for daemon in daemons] == [None, None]
        finally:
            for daemon in daemons:
                if daemon.returncode is None:
                    daemon.terminate()
                    await asyncio.wait_for(daemon.wait(), 30)
            for log in logs:
                log.close()


async def _make(rig: Rig, module: str, account: str, png: Path, *extra: str) -> str:
    rc, out, err = await rig.blegw("code", "--module", module, "--account", account,
                                   "--png", str(png), *extra)
    assert rc == 0, err
    text = [line for line in out.splitlines() if line.startswith("BGC1:")]
    assert len(text) == 1
    assert "\u2580" in out or "\u2588" in out  # the QR code drawn in half blocks
    assert (await asyncio.to_thread(png.read_bytes)).startswith(b"\x89PNG")
    return text[0]


async def _scan(rig: Rig, module: str, account: str, png: Path, *extra: str
                ) -> tuple[int, str, str]:
    return await rig.blegw("scan-code", "--png", str(png), "--module", module,
                           "--account", account, "--api-key-file", str(rig.key_file),
                           "--json", *extra)


async def test_a_payment_code_shown_by_the_payer_is_scanned_and_settles_once(rig: Rig) -> None:
    png = rig.tmp / "payment.png"
    await _make(rig, rig.payer_id, PAYER, png, "--amount", "12.50", "--currency", "EUR")
    assert rig.payer.shown == ["Show a payment code: pay 12.50 EUR from alice-001, valid 120 s"]
    rc, out, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 0, err
    result = json.loads(out)
    assert result["transaction"]["state"] == "settled"
    assert result["transaction"]["amount_minor"] == 1250
    assert await rig.balances() == (START - 1250, 1250)
    assert any("alice-001" in line for line in rig.merchant.shown)
    # the same PNG scanned again (a copied code): refused by the platform, nothing moves
    rc, _, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 13 and "code_used" in err
    assert await rig.balances() == (START - 1250, 1250)


async def test_a_collection_code_shown_by_the_merchant_is_paid_by_the_payers_module(
        rig: Rig) -> None:
    png, svg = rig.tmp / "collection.png", rig.tmp / "collection.svg"
    text = await _make(rig, rig.merchant_id, PAYEE, png, "--kind", "collection",
                       "--svg", str(svg))
    assert b"<svg" in await asyncio.to_thread(svg.read_bytes)
    # scanned as text this time (a till's scanner that types what it reads)
    rc, out, err = await rig.blegw("scan-code", "--text", text, "--module", rig.payer_id,
                                   "--account", PAYER, "--api-key-file", str(rig.key_file),
                                   "--json", "--amount", "9.90", "--currency", "EUR")
    assert rc == 0, err
    assert json.loads(out)["transaction"]["state"] == "settled"
    assert await rig.balances() == (START - 990, 990)
    assert any("9.90 EUR" in line and "shop-42" in line for line in rig.payer.shown)


async def test_a_declined_countersignature_is_a_typed_error_and_nothing_settles(
        rig: Rig) -> None:
    png = rig.tmp / "payment.png"
    await _make(rig, rig.payer_id, PAYER, png, "--amount", "5.00", "--currency", "EUR")
    rig.merchant.answers = [False]
    rc, out, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 16 and "module_refused" in err and "declined" in err, err
    assert out == ""
    assert await rig.balances() == (START, 0)
    # the honest path still works: the owner approves the same code the second time
    rc, out, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 0, err
    assert await rig.balances() == (START - 500, 500)


async def test_a_declined_code_and_bad_input_get_typed_errors(rig: Rig) -> None:
    rig.payer.answers = [False]
    rc, _, err = await rig.blegw("code", "--module", rig.payer_id, "--account", PAYER)
    assert rc == 16 and "declined" in err, err
    rc, _, err = await rig.blegw("code", "--module", "00" * 16, "--account", PAYER)
    assert rc == 10 and "unknown_module" in err, err
    not_a_code = rig.tmp / "nothing.png"
    not_a_code.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    rc, _, err = await _scan(rig, rig.merchant_id, PAYEE, not_a_code)
    assert rc == 17, err
    rc, _, err = await rig.blegw("scan-code", "--text", "BGC1:%%%", "--module",
                                 rig.merchant_id, "--account", PAYEE)
    assert rc == 17, err
    rc, _, err = await rig.blegw("scan-code", "--text", "BGC1:X", "--module", rig.merchant_id,
                                 "--account", PAYEE, "--platform", "http://127.0.0.1:9")
    assert rc == 2 and "--api-key-file" in err, err
    rc, _, err = await rig.blegw("code", "--module", rig.payer_id, "--account", PAYER,
                                 "--png", str(rig.tmp / "no-such-dir" / "code.png"))
    assert rc == 1 and "cannot write" in err and "BGC1:" in err, err  # the code is not lost
    assert await rig.balances() == (START, 0)
    await _make(rig, rig.payer_id, PAYER, rig.tmp / "after.png")  # still serving


async def test_a_code_request_abandoned_by_its_caller_is_withdrawn_from_the_module(
        rig: Rig) -> None:
    """Ctrl-C on ``blegw code`` while the owner decides: the daemon sends CANCEL, the prompt
    goes away, the module and the daemon serve the next request."""
    rig.payer.hold = asyncio.Event()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "code", "--module", rig.payer_id, "--account", PAYER,
        env=rig.envs["payer"], stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await asyncio.wait_for(rig.payer.asked.wait(), 30)
    finally:
        proc.kill()
        await proc.wait()
    await asyncio.wait_for(rig.payer.withdrawn.wait(), 30)
    rig.payer.hold = None
    await _make(rig, rig.payer_id, PAYER, rig.tmp / "next.png")
    assert len(rig.payer.shown) == 2


async def test_a_collection_code_the_payer_confirms_settles_and_both_gateways_print_it(
        rig: Rig) -> None:
    """The platform's policy asks the payer to confirm every collection code: after both
    signatures check, the payer's module is asked through flow F-A (MQTT, the payer's daemon,
    the module) and only its approval settles. The merchant's ``blegw code --wait`` and the
    payer's ``blegw scan-code`` each print the outcome their own gateway was told."""
    rig.chain.platform.code_confirmation = CodeConfirmation(collection=True)
    shown, line = await rig.start("code", "--module", rig.merchant_id, "--account", PAYEE,
                                  "--kind", "collection", "--amount", "9.90", "--currency",
                                  "EUR", "--wait", "90", "--json", side="merchant")
    code = json.loads(line)
    rc, out, err = await rig.blegw("scan-code", "--text", code["code"], "--module",
                                   rig.payer_id, "--account", PAYER, "--api-key-file",
                                   str(rig.key_file), "--json")
    assert rc == 0, err
    scanned = json.loads(out)
    assert scanned["transaction"]["state"] == "pending"        # held for the payer
    assert scanned["outcome"]["state"] == "settled"
    assert (scanned["outcome"]["role"], scanned["outcome"]["account"]) == ("payer", PAYER)
    rc, out, err = await rig.finish(shown)
    assert rc == 0, err
    outcome = json.loads(out)["outcome"]
    assert (outcome["state"], outcome["role"], outcome["account"], outcome["amount_minor"]) \
        == ("settled", "payee", PAYEE, 990)
    assert outcome["transaction"] == scanned["transaction"]["id"]
    # the payer was asked twice: to countersign, then the platform's confirmation
    assert len(rig.payer.shown) == 2 and "9.90" in rig.payer.shown[1], rig.payer.shown
    assert PAYEE in rig.payer.shown[1]
    assert await rig.balances() == (START - 990, 990)


async def test_a_declined_confirmation_is_printed_by_both_sides_and_nothing_moves(
        rig: Rig) -> None:
    rig.chain.platform.code_confirmation = CodeConfirmation(above_minor=500)
    png = rig.tmp / "payment.png"
    shown, _ = await rig.start("code", "--module", rig.payer_id, "--account", PAYER,
                               "--amount", "12.50", "--currency", "EUR", "--png", str(png),
                               "--wait", "90", "--json", side="payer")
    rig.payer.answers = [False]          # the code is shown; the owner declines the confirmation
    rc, out, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 16 and "declined" in err, err
    assert json.loads(out)["outcome"]["state"] == "declined"
    rc, out, err = await rig.finish(shown)
    assert rc == 16, err
    assert json.loads(out.splitlines()[-1])["outcome"]["state"] == "declined"
    assert await rig.balances() == (START, 0)
    # the code is spent: scanning it again is refused, the payer is not asked again
    rc, _, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 13 and "code_used" in err, err
    assert len(rig.payer.shown) == 2
    assert await rig.balances() == (START, 0)


async def test_hostile_notices_are_refused_and_the_daemon_keeps_serving(rig: Rig) -> None:
    """Anything on a gateway's note topic that is not a code notice: logged, counted, nothing
    kept; a valid notice after them is still answered to ``code_outcome``. (The test broker
    is anonymous; the shipped ACL lets only the platform publish there.)"""
    good = CodeNotice(b"\x01" * 32, b"\x02" * 16, NoticeRole.PAYER, PAYER,
                      NoticeState.SETTLED, "", 100, "EUR", 1_800_000_000)
    hostile = [b"", b"\xff" * 40, b"\x00" * 4096, good.encode()[:-1],
               good.encode().replace(b"EUR", b"E\x1bR"),
               good.encode().replace(PAYER.encode(), b"#" * len(PAYER))]
    url = rig.chain.broker.gateway.url.removeprefix("mqtt://")
    host, _, port = url.partition(":")
    async with aiomqtt.Client(host, int(port)) as client:
        for payload in [*hostile, good.encode()]:
            await client.publish(topic(GATEWAY_ID, "note"), payload, qos=1)
    rc, _, err = await rig.blegw("scan-code", "--text", "BGC1:X", "--module", rig.payer_id,
                                   "--account", PAYER)     # a bad request between them
    assert rc == 17, err
    for _ in range(100):
        if (await rig.status("payer"))["refused_notices"] == len(hostile):
            break
        await asyncio.sleep(0.1)
    assert (await rig.status("payer"))["refused_notices"] == len(hostile)
    from blegw.config import load_config
    from blegw.daemon_client import ask_daemon

    config = load_config(Path(rig.envs["payer"]["BLEGW_CONFIG"]))
    answer = await asyncio.to_thread(ask_daemon, config, {
        "cmd": "code_outcome", "code_id": good.code_id.hex(), "wait": 5})
    assert answer["ok"] and answer["outcome"]["state"] == "settled", answer
    for bad in ({"cmd": "code_outcome"}, {"cmd": "code_outcome", "code_id": "zz"},
                {"cmd": "code_outcome", "code_id": "00" * 32, "wait": 1e9}):
        answer = await asyncio.to_thread(ask_daemon, config, bad)
        assert answer["code"] == "bad_request", answer
    await _make(rig, rig.payer_id, PAYER, rig.tmp / "after.png")   # still serving


async def test_one_sided_variants_as_commands(rig: Rig) -> None:
    """A scanning terminal without a module (``present-code``: API credentials only) and a
    generating terminal without a module (``show-code``: an unsigned collection code, paid by
    the payer's module alone), both as subprocesses."""
    png = rig.tmp / "payment.png"
    await _make(rig, rig.payer_id, PAYER, png, "--amount", "4.00", "--currency", "EUR")
    rc, out, err = await rig.blegw("present-code", "--png", str(png), "--account", PAYEE,
                                   "--platform", rig.chain.base_url, "--api-key-file",
                                   str(rig.key_file), "--json", side="merchant")
    assert rc == 0, err
    first = json.loads(out)["transaction"]
    assert first["state"] == "settled"
    assert await rig.balances() == (START - 400, 400)
    # presented again by the same till (its answer was lost): the same transaction
    rc, out, err = await rig.blegw("present-code", "--png", str(png), "--account", PAYEE,
                                   "--platform", rig.chain.base_url, "--api-key-file",
                                   str(rig.key_file), "--json", side="merchant")
    assert rc == 0, err
    assert json.loads(out)["transaction"]["id"] == first["id"]
    # the copy countersigned by the merchant's module is another use: refused
    rc, _, err = await _scan(rig, rig.merchant_id, PAYEE, png)
    assert rc == 13 and "code_used" in err, err
    assert await rig.balances() == (START - 400, 400)
    # the stall without a module shows an unsigned collection code and waits for its outcome
    sticker = rig.tmp / "sticker.png"
    shown, line = await rig.start("show-code", "--account", PAYEE, "--amount", "3.00",
                                  "--currency", "EUR", "--png", str(sticker), "--platform",
                                  rig.chain.base_url, "--wait", "90", "--json",
                                  side="merchant")
    assert json.loads(line)["code"].startswith("BGC1:")
    rc, out, err = await _scan(rig, rig.payer_id, PAYER, sticker)
    assert rc == 0, err
    assert json.loads(out)["transaction"]["state"] == "settled"
    assert "NOT signed" in rig.payer.shown[-1]
    rc, out, err = await rig.finish(shown)
    assert rc == 0, err
    assert json.loads(out.splitlines()[-1])["outcome"]["state"] == "settled"
    assert await rig.balances() == (START - 700, 700)
    rc, _, err = await rig.blegw("show-code", "--account", PAYEE, "--wait", "1", side="merchant")
    assert rc == 2 and "--platform" in err, err
