"""Bonds cannot be downgraded: the daemon refuses pairings it did not start and every request
over a lost or replaced bond, says so, and serves the module again once `blegw pair` ran.

The gateway daemon is a real subprocess (`blegw -v run`) with the metrics endpoint on, and
`blegw pair` a real subprocess, over the virtual BlueZ (unmodified bleak and bless), the real
mosquitto and the real platform with its SQLite ledger; only the radio is simulated. The
simulated module runs in this process with its own pairing agent (it confirms the code, as its
owner pressing its button). Each test pairs by numeric comparison, pays, breaks the bond on one
side, and checks: the payment is answered `needs_re_pairing` at once (not a timeout), no new bond
was made, no request reached the module, `status` and one WARNING line say what to run, the
daemon is still running, and after `blegw pair` again payments settle and the books balance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from dbus_fast import BusType
from dbus_fast.aio import MessageBus

from blegw.registry import Registry
from blegw_harness.chain import GATEWAY_ID, PAYEE, PAYER, Chain, free_port, running_chain
from bluez_pairing import is_bonded, remove_device
from e2e import Suite
from vbluez.errors import BluezError
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto, daemon_status
from .test_recovery import _online

pytestmark = pytest.mark.timeout(240)


@dataclass
class Gateway:
    chain: Chain
    proc: asyncio.subprocess.Process
    env: dict[str, str]
    log: Path
    control: Path
    registry: Registry
    metrics_port: int
    codes: list[int]
    paid: int = 0

    @property
    def module_id(self) -> str:
        return self.chain.module.element.module_id.hex()

    @property
    def address(self) -> str:
        return self.chain.radio.adapters[1].address

    @property
    def gateway_address(self) -> str:
        return self.chain.radio.adapters[0].address

    async def blegw(self, *args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", *args, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def pair(self) -> str:
        """`blegw pair` as the operator runs it, the module in pairing mode meanwhile."""
        await self.chain.module.set_pairing_mode(True)
        try:
            code = await self.chain.platform.enrollment_code(PAYER)
            rc, out, err = await self.blegw("pair", self.address, "--account", PAYER,
                                            "--code", code, "--yes")
        finally:
            await self.chain.module.set_pairing_mode(False)
        assert rc == 0, err
        return out + err

    async def status(self) -> dict[str, Any]:
        return await daemon_status(self.control)

    async def module(self) -> dict[str, Any]:
        for _ in range(100):
            modules = (await self.status())["modules"]
            if modules:
                (entry,) = modules
                return entry
            await asyncio.sleep(0.1)
        raise AssertionError("the daemon never served the paired module")

    async def pay(self, amount: int, key: str) -> dict[str, Any]:
        outcome = await asyncio.wait_for(
            self.chain.pay(amount, key, Suite.P256_SHA256, key), 90)
        if outcome["state"] == "settled":
            self.paid += amount
        return outcome

    async def bonded(self, adapter: str, address: str) -> bool:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            return await is_bonded(bus, adapter, address)
        finally:
            bus.disconnect()

    async def remove_bond(self, adapter: str, address: str) -> None:
        """The bond is lost on one side (reset, `bluetoothctl remove`, bonds wiped)."""
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            assert await remove_device(bus, adapter, address)
        finally:
            bus.disconnect()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def scrape(self) -> str:
        """GET /metrics as a Prometheus server does (in a thread: urllib blocks)."""
        def get() -> str:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as answer:
                return str(answer.read().decode())

        return await asyncio.to_thread(get)

    async def books_balance(self) -> None:
        ledger = self.chain.platform.ledger
        assert await ledger.run(ledger.balance, PAYEE) == self.paid
        assert await ledger.run(ledger.balance, PAYER) == 1_000_000 - self.paid
        assert await ledger.run(ledger.audit) == []


@pytest_asyncio.fixture
async def gateway(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Gateway]:
    codes: list[int] = []

    async def owner_confirms(_device: str, code: int) -> bool:
        codes.append(code)
        return True

    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url, with_gateway=False,
                             paired=False, pairing_consent=owner_confirms) as chain:
        control = tmp_path / "control.sock"
        config = tmp_path / "blegw.toml"
        port = free_port()
        config.write_text(
            f'[gateway]\nid = "{GATEWAY_ID}"\nregistry = "{tmp_path / "registry.json"}"\n'
            f'control_socket = "{control}"\nplatform_url = "{chain.base_url}"\n'
            f'[mqtt]\nurl = "{mosquitto.url}"\n[ble]\nadapter = "hci0"\nconnect_timeout = 3.0\n'
            f'[metrics]\nenabled = true\nlisten = "127.0.0.1:{port}"\n')
        env = {**os.environ, **chain.radio.environ(), "BLEGW_CONFIG": str(config)}
        log = tmp_path / "daemon.log"
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "blegw", "-v", "run", "--config", str(config), env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=sink)
        gw = Gateway(chain, proc, env, log, control, Registry(tmp_path / "registry.json"),
                     port, codes)
        try:
            await _online(mosquitto)
            yield gw
            assert gw.proc.returncode is None, "the daemon died"
            gw.proc.terminate()
            assert await asyncio.wait_for(gw.proc.wait(), 20) == 0
        finally:
            if gw.proc.returncode is None:
                gw.proc.kill()
                await gw.proc.wait()


async def _paired_and_paying(gw: Gateway) -> None:
    """The honest start: numeric comparison through `blegw pair`, recorded, a payment settles."""
    printed = await gw.pair()
    assert "bond numeric comparison" in printed
    (entry,) = gw.registry.load()
    assert entry.bond == "numeric_comparison"
    assert len(gw.codes) == 1 and gw.codes[0] != 0
    assert (await gw.pay(100, "bond-honest-001"))["state"] == "settled"
    module = await gw.module()
    assert (module["bond"], module["needs_re_pairing"]) == ("numeric_comparison", False)
    assert module["address"] == gw.address
    assert -100 < module["rssi"] < 0 and time.time() - module["rssi_at"] < 60


async def _refused_until_paired_again(gw: Gateway, key: str, reason: str,
                                      lost: tuple[str, str]) -> None:
    """A payment now is answered needs_re_pairing at once, and the side that lost the bond
    (``lost``: adapter, peer address) has no new one; status and the log say what to do; then
    `blegw pair` again makes a new checked bond and payments settle."""
    handled = list(gw.chain.module.handled)
    started = time.monotonic()
    outcome = await gw.pay(500, key)
    assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:needs_re_pairing")
    assert not await gw.bonded(*lost)
    assert time.monotonic() - started < 10  # answered, not left to the deadline
    assert gw.chain.module.handled == handled  # nothing reached the module
    module = await gw.module()
    command = f"blegw pair {gw.address} --account {PAYER} --code CODE"
    assert module["needs_re_pairing"] is True
    assert module["link"] == "needs_re_pairing"
    assert reason in module["re_pair_reason"]
    assert module["re_pair_command"] == command
    assert module["last_error_code"] == "needs_re_pairing"
    assert module["outcomes"]["needs_re_pairing"] >= 1
    text = gw.log_text()
    assert re.search(rf"WARNING module {gw.module_id[:8]}: needs re-pairing: .*{reason}.*"
                     rf"run `{re.escape(command)}`", text), text[-3000:]
    rc, out, _ = await gw.blegw("status")
    assert rc == 0 and "NEEDS RE-PAIRING" in out and command in out
    rc, out, _ = await gw.blegw("devices", "--json")
    (row,) = json.loads(out)
    assert rc == 0 and (row["bond"], row["link"]) == ("numeric_comparison", "NEEDS RE-PAIRING")
    # A second payment is refused the same way, with no second WARNING for the same mark.
    again = await gw.pay(600, key + "-b")
    assert again["reason"] == "gateway:needs_re_pairing"
    assert gw.log_text().count("needs re-pairing:") == 1
    # The operator pairs again: a new numeric-comparison bond, and payments settle.
    await gw.pair()
    assert len(gw.codes) >= 2
    for _ in range(50):
        module = await gw.module()
        if not module["needs_re_pairing"]:
            break
        await asyncio.sleep(0.1)
    assert module["needs_re_pairing"] is False and module["bond"] == "numeric_comparison"
    assert (await gw.pay(700, key + "-after"))["state"] == "settled"
    module = await gw.module()
    assert module["last_error"] is None and module["link"] == "connected"
    await gw.books_balance()


async def test_bond_removed_on_the_gateway_is_not_silently_re_paired_just_works(
        gateway: Gateway) -> None:
    """The gateway's adapter forgets the bond (bonds wiped, `bluetoothctl remove`): the next
    write would make BlueZ pair just works; the daemon writes nothing, answers explicitly."""
    gw = gateway
    await _paired_and_paying(gw)
    await gw.remove_bond("hci0", gw.address)
    for _ in range(50):  # the daemon sees the device (and its bond) go
        if (await gw.module())["needs_re_pairing"]:
            break
        await asyncio.sleep(0.1)
    await _refused_until_paired_again(gw, "bond-gw-lost-01", "removed from the gateway",
                                      ("hci0", gw.address))


async def test_bond_gone_before_the_daemon_watched_is_found_before_writing(
        gateway: Gateway, mosquitto: Mosquitto) -> None:
    """The bond vanished while nobody watched (bluetoothd restarted with its bonds wiped):
    the check before the write finds it gone; no just-works pairing, an explicit answer."""
    gw = gateway
    await _paired_and_paying(gw)
    gw.proc.terminate()
    assert await asyncio.wait_for(gw.proc.wait(), 20) == 0
    await gw.remove_bond("hci0", gw.address)
    with gw.log.open("ab") as sink:
        gw.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", "-v", "run", env=gw.env,
            stdout=asyncio.subprocess.DEVNULL, stderr=sink)
    await _online(mosquitto)
    await _refused_until_paired_again(gw, "bond-gw-gone-01", "is gone on the gateway",
                                      ("hci0", gw.address))


async def _module_lost_its_key(gw: Gateway, key: str) -> None:
    """The module has no key any more and would take a new bond (it is in pairing mode):
    BlueZ's encryption with the gateway's stored key fails (PIN or Key Missing) and BlueZ
    never pairs again on its own; the daemon marks the module at once with the exact command,
    no agent is even asked, no request reaches the module and no bond is made on it."""
    await gw.chain.module.set_pairing_mode(True)  # it would accept a new bond
    try:
        handled = list(gw.chain.module.handled)
        started = time.monotonic()
        outcome = await gw.pay(500, key)
        assert (outcome["state"], outcome["reason"]) == ("rejected",
                                                         "gateway:needs_re_pairing")
        assert time.monotonic() - started < 10
        assert gw.chain.module.handled == handled
        assert not await gw.bonded("hci1", gw.gateway_address)  # no new bond on the module
        assert await gw.bonded("hci0", gw.address)  # BlueZ keeps the gateway's key
        assert "pairing agent: refused" not in gw.log_text()  # nothing was even tried
        module = await gw.module()
        assert module["needs_re_pairing"] is True and "PIN or Key Missing" in \
            module["re_pair_reason"]
        assert module["re_pair_command"] == \
            f"blegw pair {gw.address} --account {PAYER} --code CODE"
    finally:
        await gw.chain.module.set_pairing_mode(False)


@pytest.mark.needs_vbluez_control("link_loss")
async def test_bond_lost_on_the_module_is_key_missing_never_a_just_works_re_pairing(
        gateway: Gateway) -> None:
    """The module forgets the bond (reset, `bluetoothctl remove`): marked needs_re_pairing
    on the first connect, no just-works bond over a weakened link; pair again, it settles."""
    gw = gateway
    await _paired_and_paying(gw)
    await gw.remove_bond("hci1", gw.gateway_address)
    with contextlib.suppress(BluezError):  # removing the device may have ended the link
        await gw.chain.radio.control.link_loss("hci0", gw.address)
    await asyncio.sleep(0.3)
    await _module_lost_its_key(gw, "bond-mod-lost-01")
    await _refused_until_paired_again(gw, "bond-mod-lost-02", "was lost on the module",
                                      ("hci1", gw.gateway_address))


@pytest.mark.needs_vbluez_control("link_loss")
async def test_blegw_pair_replaces_a_bond_the_module_lost_before_the_daemon_saw_it(
        gateway: Gateway) -> None:
    """The module lost its key while no request was going to it, so the daemon has not marked
    it; the operator runs `blegw pair` anyway. It kept the gateway's old bond, BlueZ's
    encryption with that key failed and pairing ended "bonding failed:
    br-connection-key-missing". Now pair removes the dead bond and makes a new one, checked by
    numeric comparison like any other, and payments settle."""
    gw = gateway
    await _paired_and_paying(gw)
    await gw.remove_bond("hci1", gw.gateway_address)
    with contextlib.suppress(BluezError):
        await gw.chain.radio.control.link_loss("hci0", gw.address)
    assert (await gw.module())["needs_re_pairing"] is False  # nothing told the daemon yet
    printed = await gw.pair()
    assert "no longer has the key" in printed
    assert len(gw.codes) == 2 and gw.codes[1] != 0  # compared again, not just works
    assert await gw.bonded("hci1", gw.gateway_address)
    (entry,) = gw.registry.load()
    assert entry.bond == "numeric_comparison"
    assert (await gw.pay(200, "bond-pair-anew-01"))["state"] == "settled"
    await gw.books_balance()


@pytest.mark.needs_vbluez_control("configure, restart_bluetoothd")
async def test_bluetoothd_restart_wiping_the_modules_bonds_with_a_gatt_cache_needs_re_pairing(
        gateway: Gateway) -> None:
    """The probe's case: BlueZ keeps a GATT cache, bluetoothd restarts with the module's
    bonds wiped (`vbluez ctl restart --wipe-bonds hci1`). Not a stale cache nor an
    unreachable module: needs_re_pairing with the exact `blegw pair` command at the first
    payment, the same as without a cache; after `blegw pair` payments settle."""
    gw = gateway
    await gw.chain.radio.control.configure(gatt_cache=True)
    await _paired_and_paying(gw)
    await gw.chain.radio.control.restart_bluetoothd(1.0, wipe_bonds=("hci1",))
    for _ in range(100):  # the simulated module registered again
        if gw.chain.module.peripheral.restarts_seen >= 1:
            break
        await asyncio.sleep(0.05)
    await _module_lost_its_key(gw, "bond-wipe-mod-01")
    module = await gw.module()
    assert module["last_error_code"] == "needs_re_pairing"
    assert "stale" not in json.dumps(module)
    await _refused_until_paired_again(gw, "bond-wipe-mod-02", "was lost on the module",
                                      ("hci1", gw.gateway_address))


@pytest.mark.needs_vbluez_control("link_loss, restart_bluetoothd")
async def test_bluetoothd_restart_keeps_the_agent_and_marks_no_kept_bond(
        gateway: Gateway) -> None:
    """bluetoothd restarts (it forgets its agents and re-announces every device): the daemon
    registers its agent again, a bond kept across the restart is not taken for a lost one, a
    payment settles; then a re-pairing that restart would allow is still refused."""
    gw = gateway
    await _paired_and_paying(gw)
    await gw.chain.radio.control.restart_bluetoothd(0.3)
    for _ in range(100):
        if gw.log_text().count("pairing agent registered") >= 2:
            break
        await asyncio.sleep(0.1)
    assert gw.log_text().count("pairing agent registered") == 2
    assert "pairing agent: bluetoothd stopped" in gw.log_text()
    for _ in range(100):  # the simulated module registered again too
        if gw.chain.module.peripheral.restarts_seen >= 1:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # past the guard's settling time for removed devices
    module = await gw.module()
    assert module["needs_re_pairing"] is False
    assert (await gw.pay(300, "bond-restart-01"))["state"] == "settled"
    # The guard watches the new bluetoothd: the module losing its key now is marked.
    await gw.remove_bond("hci1", gw.gateway_address)
    with contextlib.suppress(BluezError):
        await gw.chain.radio.control.link_loss("hci0", gw.address)
    await _module_lost_its_key(gw, "bond-restart-02")
    await gw.books_balance()


async def test_metrics_endpoint_counts_a_payment_from_the_running_daemon(
        gateway: Gateway) -> None:
    """The Prometheus endpoint of the daemon subprocess: the numbers move after a payment."""
    gw = gateway
    await gw.pair()
    await gw.module()
    before = await gw.scrape()
    assert _value(before, 'blegw_requests_total{outcome="ok"}') is None
    assert (await gw.pay(100, "metrics-pay-001"))["state"] == "settled"
    after = await gw.scrape()
    short = gw.module_id[:8]
    assert _value(after, 'blegw_requests_total{outcome="ok"}') == 1
    assert _value(after, "blegw_request_latency_seconds_count") == \
        (_value(before, "blegw_request_latency_seconds_count") or 0) + 1
    assert (_value(after, f'blegw_connect_attempts_total{{module="{short}"}}') or 0) >= 1
    assert _value(after, f'blegw_module_link_state{{module="{short}",state="connected"}}') == 1
    assert _value(after, f'blegw_queue_depth{{module="{short}"}}') == 0
    assert _value(after, f'blegw_module_needs_re_pairing{{module="{short}"}}') == 0
    # Hostile bytes at the endpoint: answered or dropped, the daemon and the endpoint go on.
    for junk in (b"\x00\xff" * 4096 + b"\r\n\r\n", b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
                 b"POST /metrics HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.metrics_port)
        writer.write(junk)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await asyncio.wait_for(reader.read(4096), 10)
        writer.close()
    assert gw.proc.returncode is None
    assert _value(await gw.scrape(), 'blegw_requests_total{outcome="ok"}') == 1
    await gw.books_balance()


def _value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None



async def test_without_a_system_bus_the_daemon_runs_and_says_it_has_no_agent(
        tmp_path: Path, mosquitto: Mosquitto) -> None:
    """No system bus (so no BlueZ that could pair anything): the daemon still comes online,
    says in one ERROR line that its agent is not registered and that it keeps trying, and
    stops cleanly."""
    config = tmp_path / "blegw.toml"
    config.write_text(f'[gateway]\nid = "{GATEWAY_ID}"\nregistry = "{tmp_path / "r.json"}"\n'
                      f'control_socket = "{tmp_path / "c.sock"}"\n'
                      f'[mqtt]\nurl = "{mosquitto.url}"\n')
    log = tmp_path / "daemon.log"
    with log.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", "run", "--config", str(config),
            env={**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={tmp_path / 'no-bus'}"},
            stdout=asyncio.subprocess.DEVNULL, stderr=sink)
    try:
        await _online(mosquitto)
        assert proc.returncode is None
        text = log.read_text()
        assert "pairing agent: no system bus" in text and "trying again every 5 s" in text
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
