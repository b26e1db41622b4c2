"""The daemon recovers from BlueZ's connect failures, with payments flowing.

The gateway runs as a real subprocess (`blegw -v run --config`) against the virtual BlueZ, the
real mosquitto and the real platform; only the radio is simulated. Each test injects one
failure class while payments are made, and checks: every payment settled or answered with an
explicit status (never lost), money conserved, the daemon still running, one WARNING line per
fault naming the module with a cause and advice, and `status` showing the fault until the
module answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import pytest_asyncio

from blegw_harness.chain import GATEWAY_ID, PAYEE, PAYER, Chain, running_chain
from e2e import Suite
from relay_contract import topic
from wearable_sim.policy import FixedPolicy, UserPolicy

from .conftest import Mosquitto, daemon_status


@dataclass
class Daemon:
    chain: Chain
    proc: asyncio.subprocess.Process
    log: Path
    control: Path
    module_id: str
    module_address: str
    paid: int = 0

    async def status(self) -> dict[str, Any]:
        return await daemon_status(self.control)

    async def module(self) -> dict[str, Any]:
        (entry,) = (await self.status())["modules"]
        return entry

    async def pay(self, amount: int, key: str) -> dict[str, Any]:
        outcome = await asyncio.wait_for(
            self.chain.pay(amount, key, Suite.P256_SHA256, key), 90)
        if outcome["state"] == "settled":
            self.paid += amount
        return outcome

    async def drop_link(self) -> None:
        """Out of range for a moment: the next payment must connect again."""
        await self.chain.radio.control.link_loss("hci0", self.module_address)
        await asyncio.sleep(0.3)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    async def books_balance(self) -> None:
        ledger = self.chain.platform.ledger
        assert await ledger.run(ledger.balance, PAYEE) == self.paid
        assert await ledger.run(ledger.balance, PAYER) == 1_000_000 - self.paid
        assert await ledger.run(ledger.audit) == []


async def _online(mosquitto: Mosquitto) -> None:
    for _ in range(150):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.subscribe(topic(GATEWAY_ID, "status"), qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    async for message in client.messages:
                        if message.payload == b"online":
                            return
                        break
        await asyncio.sleep(0.1)
    raise AssertionError("the gateway never came online")


@contextlib.asynccontextmanager
async def running_daemon(mosquitto: Mosquitto, tmp_path: Path,
                         policy: UserPolicy | None = None, *,
                         ble_extra: str = "") -> AsyncIterator[Daemon]:
    """The chain without its in-process gateway, and ``blegw run`` as a subprocess serving
    it (``ble_extra``: more lines for its ``[ble]`` table); on exit the daemon must still be
    running and stop cleanly on SIGTERM."""
    async with running_chain(policy or FixedPolicy(True), broker_url=mosquitto.url,
                             with_gateway=False) as chain:
        module_id = chain.module.element.module_id.hex()
        address = chain.radio.adapters[1].address
        control = tmp_path / "control.sock"
        config = tmp_path / "blegw.toml"
        config.write_text(
            f'[gateway]\nid = "{GATEWAY_ID}"\nregistry = "{tmp_path / "registry.json"}"\n'
            f'control_socket = "{control}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
            f'[ble]\nadapter = "hci0"\nconnect_timeout = 1.5\n{ble_extra}[[modules]]\n'
            f'id = "{module_id}"\naddress = "{address}"\n')
        log = tmp_path / "daemon.log"
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "blegw", "-v", "run", "--config", str(config),
                env={**os.environ, **chain.radio.environ()},
                stdout=asyncio.subprocess.DEVNULL, stderr=sink)
        try:
            await _online(mosquitto)
            yield Daemon(chain, proc, log, control, module_id, address)
            assert proc.returncode is None, "the daemon died"
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest_asyncio.fixture
async def daemon(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(mosquitto, tmp_path) as running:
        yield running


@pytest.mark.needs_vbluez_control("abort_connects")
async def test_abort_by_local_on_connect_is_retried_and_payments_settle(daemon: Daemon) -> None:
    """Interference aborts connects (le-connection-abort-by-local): each retried at once,
    no 10 s hang, every payment settles."""
    assert (await daemon.pay(100, "abort-warm-000"))["state"] == "settled"
    for i in range(4):
        await daemon.drop_link()
        await daemon.chain.radio.control.abort_connects("hci0", daemon.module_address, 2)
        started = time.monotonic()
        outcome = await daemon.pay(10 + i, f"abort-pay-{i:03d}")
        assert outcome["state"] == "settled", outcome
        assert time.monotonic() - started < 1.4  # less than one connect timeout
    module = await daemon.module()
    assert module["last_error"] is None
    assert module["outcomes"] == {"ok": 5}
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("fault injection")
async def test_connect_timeout_is_retried_with_backoff(daemon: Daemon) -> None:
    """A module that does not take the connection in time: the attempt times out, is retried
    after a backoff, and the payment settles once it answers; one WARNING with the module id."""
    assert (await daemon.pay(100, "timeout-warm-00"))["state"] == "settled"
    await daemon.drop_link()
    radio = daemon.chain.radio.control
    await radio.set_responsive("hci1", False)
    pending = asyncio.create_task(daemon.pay(250, "timeout-pay-001"))
    await asyncio.sleep(2.2)  # the first attempt (1.5 s) has timed out
    await radio.set_responsive("hci1", True)
    outcome = await pending
    assert outcome["state"] == "settled", outcome
    text = daemon.log_text()
    short = daemon.module_id[:8]
    assert f"WARNING module {short}: connect attempt 1 of 4 failed: module " \
        f"{daemon.module_address} did not complete the connection in time" in text
    assert "retrying in 0.25 s" in text
    module = await daemon.module()
    assert module["connect_retries"] >= 1
    assert module["last_error"] is None
    assert len(await radio.links()) == 1  # one link, the one in use (no ghost)
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("fault injection")
async def test_unreachable_module_is_an_explicit_status_shown_until_recovery(
        daemon: Daemon) -> None:
    """Every attempt times out: the payment is answered module_unreachable (never lost),
    status says why with advice and when; the next payment settles and clears it."""
    assert (await daemon.pay(100, "unreach-warm-00"))["state"] == "settled"
    await daemon.drop_link()
    radio = daemon.chain.radio.control
    await radio.set_responsive("hci1", False)
    outcome = await daemon.pay(300, "unreach-pay-001")
    assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:module_unreachable")
    module = await daemon.module()
    assert module["link"] == "failing"
    assert module["last_error_code"] == "connect_timeout"
    assert "did not complete the connection in time" in module["last_error"]
    assert "out of range" in module["last_error"]  # the advice
    assert time.time() - module["last_error_at"] < 60
    assert module["outcomes"] == {"ok": 1, "module_unreachable": 1}
    status = await daemon.status()
    assert any(f"module {daemon.module_id[:8]}: connect_timeout" in line
               for line in status["last_errors"])
    text = daemon.log_text()
    assert f"WARNING module {daemon.module_id[:8]}: request " in text
    await radio.set_responsive("hci1", True)
    again = await daemon.pay(400, "unreach-pay-002")
    assert again["state"] == "settled", again
    module = await daemon.module()
    assert (module["last_error"], module["last_error_at"]) == (None, None)
    assert module["link"] == "connected"
    assert module["outcomes"] == {"ok": 2, "module_unreachable": 1}
    assert f"INFO module {daemon.module_id[:8]}: recovered (was: connect_timeout)" in \
        daemon.log_text()
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("links, set_responsive")
async def test_in_progress_connect_is_retried_until_the_other_attempt_ends(
        daemon: Daemon) -> None:
    """Another program holds a pending Connect to the module (BlueZ answers the daemon
    InProgress): the daemon retries with backoff and the payment settles once it is gone."""
    from dbus_fast import Message
    from dbus_fast.aio import MessageBus

    assert (await daemon.pay(100, "inprog-warm-000"))["state"] == "settled"
    await daemon.drop_link()
    radio = daemon.chain.radio
    await radio.control.set_responsive("hci1", False)
    path = f"/org/bluez/hci0/dev_{daemon.module_address.replace(':', '_')}"
    bus = await MessageBus(bus_address=radio.bus_address).connect()
    try:
        def call(member: str) -> Message:
            return Message(destination="org.bluez", path=path, interface="org.bluez.Device1",
                           member=member)

        other = asyncio.ensure_future(bus.call(call("Connect")))
        await asyncio.sleep(0.3)
        pending = asyncio.create_task(daemon.pay(120, "inprog-pay-0001"))
        await asyncio.sleep(1.0)
        await bus.call(call("Disconnect"))  # the other program gives up
        reply = await asyncio.wait_for(other, 5)
        assert reply.body == ["br-connection-canceled"]
        await radio.control.set_responsive("hci1", True)
        outcome = await pending
    finally:
        bus.disconnect()
    assert outcome["state"] == "settled", outcome
    assert f"WARNING module {daemon.module_id[:8]}: connect attempt 1 of 4 failed: BlueZ was " \
        "already busy" in daemon.log_text()
    module = await daemon.module()
    assert module["last_error"] is None
    assert module["outcomes"] == {"ok": 2}
    assert len(await radio.control.links()) == 1
    await daemon.books_balance()
