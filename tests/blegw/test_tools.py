"""The operator CLI (`blegw scan|pair|devices|status|ping|rename|forget`) as real subprocesses.

Each test starts the chain (virtual BlueZ with unmodified bleak and bless, the platform with its
SQLite ledger and HTTP API, the embedded broker, the gateway daemon) with the module *not*
paired, then drives `python -m blegw ...` exactly as an operator would. Only the radio is
simulated. The module's own pairing agent stands in for a person pressing its button.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from blegw.registry import Registry
from blegw_harness.chain import GATEWAY_ID, PAYER, Chain, running_chain
from e2e import CertificateAuthority, Suite
from wearable_sim.policy import FixedPolicy

pytestmark = pytest.mark.timeout(180)


@dataclass
class Rig:
    chain: Chain
    config: Path
    env: dict[str, str]
    module_answers: list[bool] = field(default_factory=list)
    module_codes: list[int] = field(default_factory=list)

    @property
    def module_id(self) -> str:
        return self.chain.module.element.module_id.hex()

    @property
    def address(self) -> str:
        return self.chain.radio.adapters[1].address

    @property
    def registry(self) -> Registry:
        return Registry(Path(self.chain.gateway.config.registry))

    async def blegw(self, *args: str, stdin: bytes = b"", timeout: float = 60
                    ) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", *args, env=self.env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def bonded_on_gateway(self) -> bool:
        """The gateway adapter's Device1.Bonded, read over D-Bus (False if BlueZ forgot it)."""
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        try:
            reply = await bus.call(Message(
                destination="org.bluez",
                path=f"/org/bluez/hci0/dev_{self.address.replace(':', '_')}",
                interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
                body=["org.bluez.Device1", "Bonded"]))
        finally:
            bus.disconnect()
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            return False
        return bool(reply.body[0].value)

    async def enrollment_code(self, account: str = PAYER) -> str:
        """What the account holder gets from the platform to pair a module for themselves."""
        return await self.chain.platform.enrollment_code(account)

    async def enrolled_suites(self) -> list[int]:
        ledger = self.chain.platform.ledger
        mid = bytes.fromhex(self.module_id)
        return [s for s in (1, 2) if await ledger.run(ledger.module, mid, s) is not None]


def _write_config(path: Path, chain: Chain) -> None:
    gw = chain.gateway.config
    path.write_text(
        f'[gateway]\nid = "{GATEWAY_ID}"\nregistry = "{gw.registry}"\n'
        f'control_socket = "{gw.control_socket}"\nplatform_url = "{chain.base_url}"\n'
        f'[mqtt]\nurl = "{gw.mqtt.url}"\n[ble]\nadapter = "hci0"\nconnect_timeout = 5.0\n')


@pytest.fixture
async def rig(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Rig]:
    marker = request.node.get_closest_marker("approval_delay")
    delay = float(marker.args[0]) if marker else 0.0
    answers: list[bool] = []
    codes: list[int] = []

    async def module_consent(device: str, code: int) -> bool:
        codes.append(code)
        return answers.pop(0) if answers else True

    no_agent = request.node.get_closest_marker("module_without_agent") is not None
    daemon = request.node.get_closest_marker("without_daemon") is None
    named = request.node.get_closest_marker("module_name")
    async with running_chain(FixedPolicy(True, delay=delay), paired=False, with_gateway=daemon,
                             pairing_consent=None if no_agent else module_consent,
                             module_name=named.args[0] if named else "wearable-sim") as chain:
        config = tmp_path / "blegw.toml"
        _write_config(config, chain)
        env = {**os.environ, **chain.radio.environ(), "BLEGW_CONFIG": str(config),
               "COLUMNS": "200"}
        yield Rig(chain, config, env, answers, codes)


async def _loaded_by_daemon(rig: Rig) -> None:
    for _ in range(100):
        if bytes.fromhex(rig.module_id) in rig.chain.gateway.relay.workers:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the running daemon never loaded the newly paired module")


async def _pay(rig: Rig, key: str) -> dict[str, object]:
    return await rig.chain.pay(250, "paid after pairing", Suite.P256_SHA256, key)


async def test_scan_lists_the_module_as_json_and_as_a_table(rig: Rig) -> None:
    code, out, err = await rig.blegw("scan", "--timeout", "1.5", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["address"] for r in rows] == [rig.address]
    assert rows[0]["short_id"] == rig.module_id[:8]
    assert rows[0]["name"] == "wearable-sim"
    assert rows[0]["pairing_mode"] is True
    assert -100 < rows[0]["rssi"] < 0
    code, out, err = await rig.blegw("scan", "--timeout", "1.5")
    assert code == 0, err
    assert rig.address in out and rig.module_id[:8] in out and "ready" in out
    assert "scanning on hci0" in err  # progress goes to stderr, data to stdout


@pytest.mark.module_name("\x1b[2J\u202eevil\x07")
async def test_module_advertising_escapes_and_bidi_cannot_rewrite_the_operators_screen(
        rig: Rig) -> None:
    """A module chooses its advertised name: scan, pair and the registry show it sanitised."""
    code, out, err = await rig.blegw("scan", "--timeout", "1.5", "--json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["name"] == "\ufffdevil\ufffd"              # escape removed, bidi and BEL visible
    code, out, err = await rig.blegw("scan", "--timeout", "1.5")
    assert code == 0, err
    assert "\x1b[2J" not in out and "\u202e" not in out and "\x07" not in out
    code, out, err = await rig.blegw("pair", rig.address, "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 0, err
    assert "\x1b" not in out + err and "\u202e" not in out + err
    [entry] = rig.registry.load()
    assert entry.name == "\ufffdevil\ufffd"


async def test_pair_refuses_a_name_the_registry_could_not_hold(rig: Rig) -> None:
    for bad in ("\x1b[2Jtill", "x" * 65, "line\nbreak"):
        code, _out, err = await rig.blegw("pair", rig.address, "--account", PAYER, "--code",
                                          "AAAA-BBBB-CCCC-DDDD", "--name", bad, "--yes")
        assert code == 2, err
        assert "--name" in err
    assert rig.registry.load() == []


async def test_ctrl_c_ends_a_scan_cleanly_with_what_it_saw(rig: Rig) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "scan", "--timeout", "60", "--json", env=rig.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    await asyncio.wait_for(proc.stderr.readline(), 20)    # "scanning on hci0 ...": it listens
    await asyncio.sleep(1.5)                                # long enough to hear the module
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 5                   # ended at Ctrl-C, not at 60 s
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err
    assert [r["address"] for r in json.loads(out)] == [rig.address]


async def test_pair_accepted_then_used_by_the_running_daemon_then_forgotten(rig: Rig) -> None:
    assert rig.registry.load() == []
    code, out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(),
                                     "--name", "band", stdin=b"y\n")
    assert code == 0, err
    # Both ends were shown the same numeric-comparison code.
    assert len(rig.module_codes) == 1
    assert f"Pairing code {rig.module_codes[0]:06d}" in err
    assert "round trip" in out
    entries = rig.registry.load()
    assert [(e.module_id, e.address, e.name, e.account) for e in entries] == [
        (rig.module_id, rig.address, "band", PAYER)]
    assert set(entries[0].suites) == {"p256", "sm2"}
    assert len(entries[0].revocation_token) == 64      # what lets this gateway revoke it later
    assert await rig.bonded_on_gateway()
    assert await rig.enrolled_suites() == [1, 2]

    # The daemon was started before the pairing; pair had it read the registry at once, so a
    # payment sent the moment pair returns finds the module (no restart, no waiting).
    assert "the running daemon now serves it" in err
    outcome = await _pay(rig, "tools-paid-0001")
    assert outcome["state"] == "settled", outcome

    code, out, err = await rig.blegw("devices", "--json")
    assert code == 0, err
    (device,) = json.loads(out)
    assert device["name"] == "band" and device["link"] == "connected"
    assert entries[0].revocation_token not in out      # a secret: never printed
    assert device["counter"] == 1 and device["last_seen"] > time.time() - 60

    code, out, err = await rig.blegw("ping", "band", "-n", "2", "--json")
    assert code == 0, err
    ping = json.loads(out)
    assert ping["via"] == "daemon" and ping["count"] == 2 and ping["median_ms"] > 0

    code, out, err = await rig.blegw("rename", rig.module_id[:10], "wrist")
    assert code == 0, err
    assert rig.registry.load()[0].name == "wrist"

    code, out, err = await rig.blegw("forget", "wrist")
    assert code == 0, err
    assert "the running daemon no longer serves it" in err
    assert rig.registry.load() == []
    assert not await rig.bonded_on_gateway()
    assert await rig.enrolled_suites() == []
    # Revoked at the platform: a new payment for that account finds no module.
    async with rig.chain.http.post(
            f"{rig.chain.base_url}/v1/transactions",
            json={"payer": PAYER, "payee": "shop-42", "order_reference": "after-forget",
                  "order_description": "x", "amount_minor": 1, "currency": "EUR",
                  "suite": "p256"},
            headers={"Idempotency-Key": "tools-forgotten-01"}) as resp:
        refused = await resp.json()
    assert (refused["state"], refused["reason"]) == ("rejected", "unknown_module"), refused
    code, out, err = await rig.blegw("forget", "wrist")
    assert code == 10 and "no paired module" in err


async def test_forget_cannot_revoke_without_the_token_and_changes_nothing(rig: Rig) -> None:
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 0, err
    # A registry whose token is not the one the platform holds (copied from another gateway,
    # or tampered with): the platform refuses, and forget leaves everything as it was.
    (entry,) = rig.registry.load()
    rig.registry.add(dataclasses.replace(entry, revocation_token="cd" * 32))
    code, _out, err = await rig.blegw("forget", "wearable-sim")
    assert code == 13, err
    assert "refused the revocation" in err and "nothing was changed" in err
    assert [e.module_id for e in rig.registry.load()] == [rig.module_id]
    assert await rig.bonded_on_gateway() and await rig.enrolled_suites() == [1, 2]
    # --force forgets it here anyway and says the enrollment remains (the operator revokes).
    code, out, err = await rig.blegw("forget", "wearable-sim", "--force")
    assert code == 13, err
    assert "enrollment NOT revoked" in out and "warning" in err
    assert rig.registry.load() == [] and not await rig.bonded_on_gateway()
    assert await rig.enrolled_suites() == [1, 2]


async def test_ctrl_c_at_the_pairing_prompt_stops_at_once_and_leaves_nothing(rig: Rig) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "pair", "wearable-sim", "--account", PAYER, "--code",
        await rig.enrollment_code(), env=rig.env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while b"same code?" not in seen:            # the prompt; stdin stays open, unanswered
        chunk = await asyncio.wait_for(proc.stderr.read(256), 30)
        assert chunk, seen
        seen += chunk
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, seen + err
    assert time.monotonic() - started < 10     # not waiting for an Enter that never comes
    assert b"interrupted" in err and b"Traceback" not in seen + err
    await _assert_nothing_left(rig)


@pytest.mark.without_daemon
async def test_pair_and_ping_without_a_running_daemon(rig: Rig) -> None:
    code, out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 0, err
    assert "the daemon is not running" in err and "reads the registry when it starts" in err
    code, out, err = await rig.blegw("ping", "wearable-sim", "-n", "3", "--json")
    assert code == 0, err
    ping = json.loads(out)
    assert (ping["via"], ping["count"]) == ("direct", 3) and ping["median_ms"] > 0
    code, out, err = await rig.blegw("status")
    assert code == 15 and "not running" in err


async def _assert_nothing_left(rig: Rig) -> None:
    assert rig.registry.load() == []
    assert not await rig.bonded_on_gateway()
    assert await rig.enrolled_suites() == []


async def test_pair_rejected_by_the_operator_at_the_code(rig: Rig) -> None:
    code, _out, err = await rig.blegw("pair", rig.module_id[:8], "--account", PAYER, "--code",
                                     await rig.enrollment_code(),
                                     stdin=b"n\n")
    assert code == 11, err
    assert "bonding failed" in err
    await _assert_nothing_left(rig)


@pytest.mark.module_without_agent
async def test_a_module_that_pairs_without_a_code_needs_the_persons_consent(rig: Rig) -> None:
    # No agent on the module: BlueZ bonds "just works" and shows no code on either side.
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(),
                                     stdin=b"n\n")
    assert code == 11, err
    assert "without a code" in err and "declined" in err
    await _assert_nothing_left(rig)
    code, out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(),
                                     stdin=b"y\n")
    assert code == 0, err
    assert "Pairing code" not in err and "paired wearable-sim" in out
    assert [e.module_id for e in rig.registry.load()] == [rig.module_id]


async def test_pair_rejected_on_the_module(rig: Rig) -> None:
    rig.module_answers.append(False)
    code, _out, err = await rig.blegw("pair", rig.address, "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 11, err
    assert len(rig.module_codes) == 1 and f"{rig.module_codes[0]:06d}" in err
    await _assert_nothing_left(rig)


async def test_a_certificate_from_another_ca_is_refused_and_the_bond_removed(rig: Rig) -> None:
    element = rig.chain.module.element
    now = int(time.time())
    foreign = CertificateAuthority.generate(Suite.P256_SHA256)
    element.install_certificate(foreign.issue(
        element.public_key(Suite.P256_SHA256), element.module_id,
        not_before=now - 60, not_after=now + 3600).encode())
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 12, err
    assert "another CA" in err and "bond made for this attempt was removed" in err
    await _assert_nothing_left(rig)


async def test_a_forged_certificate_is_refused(rig: Rig) -> None:
    element = rig.chain.module.element
    real = element.certificate(Suite.SM2_SM3)
    assert real is not None
    forged = bytearray(real)
    forged[-5] ^= 0x01  # inside the CA's signature
    element.state.write_file(element.state.cert_path(Suite.SM2_SM3.label), bytes(forged))
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 12, err
    assert "SM2_SM3 certificate is refused" in err
    await _assert_nothing_left(rig)


async def test_the_platform_refusing_the_enrollment_leaves_nothing(rig: Rig) -> None:
    # A genuine module, a code for alice, and someone trying to bind it to another account.
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", "nobody-99",
                                     "--code", await rig.enrollment_code(), "--yes")
    assert code == 13, err
    assert "refused the enrollment" in err and "not valid for account nobody-99" in err
    await _assert_nothing_left(rig)


async def test_pairing_needs_the_account_holders_code(rig: Rig) -> None:
    """Without the holder's code a hostile operator cannot bind a module to their account."""
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER,
                                     "--code", "AAAA-BBBB-CCCC-DDDD", "--yes")
    assert code == 13, err
    assert "not valid for account" in err
    await _assert_nothing_left(rig)
    code, _out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--yes")
    assert code == 2 and "--code" in err                  # typer: a missing option is usage


async def test_pair_with_no_such_module(rig: Rig) -> None:
    code, _out, err = await rig.blegw("pair", "no-such-band", "--account", PAYER, "--code",
                                     await rig.enrollment_code(),
                                     "--timeout", "1")
    assert code == 10, err
    assert "no module matching 'no-such-band'" in err
    await _assert_nothing_left(rig)


@pytest.mark.approval_delay(1.5)
async def test_status_json_while_a_request_is_in_flight(rig: Rig) -> None:
    code, out, err = await rig.blegw("pair", "wearable-sim", "--account", PAYER, "--code",
                                     await rig.enrollment_code(), "--yes")
    assert code == 0, err
    await _loaded_by_daemon(rig)
    payment = asyncio.create_task(_pay(rig, "tools-inflight-01"))
    try:
        seen_in_flight = None
        for _ in range(40):
            code, out, err = await rig.blegw("status", "--json")
            assert code == 0, err
            status = json.loads(out)
            module = next(m for m in status["modules"] if m["module_id"] == rig.module_id)
            if module["in_flight"]:
                seen_in_flight = status
                break
            await asyncio.sleep(0.05)
        assert seen_in_flight is not None, "status never showed the request in flight"
        assert seen_in_flight["uplink"] == "connected"
        assert seen_in_flight["gateway"] == GATEWAY_ID
        assert (await payment)["state"] == "settled"
    finally:
        payment.cancel()
    code, out, err = await rig.blegw("status")
    assert code == 0, err
    assert f"gateway {GATEWAY_ID}: uplink connected" in out and "handled 1" in out


async def test_tools_without_a_daemon_or_with_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "blegw.toml"
    config.write_text(f'[gateway]\nid = "gw-x"\ncontrol_socket = "{tmp_path}/none.sock"\n'
                      f'registry = "{tmp_path}/registry.json"\n')
    env = {**os.environ, "BLEGW_CONFIG": str(config)}

    async def blegw(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", *args, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await blegw("status")
    assert code == 15 and "daemon is not running" in err
    code, out, err = await blegw("devices", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, err = await blegw("ping", "nothing")
    assert code == 10 and "no paired module" in err
    (tmp_path / "registry.json").write_text("{not json")
    code, out, err = await blegw("devices")
    assert code == 1 and "registry.json is unreadable" in err
    config.write_text('[gateway]\nid = "bad id with spaces"\n')
    code, out, err = await blegw("status")
    assert code == 2 and "invalid configuration" in err
    # --show-completion detects the shell from the process tree, which a runner started
    # without a shell (a CI job, a detached run) does not have; typer's own switch makes it
    # take the shell as its argument instead, so the test does not depend on who started it.
    env["_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION"] = "1"
    code, out, err = await blegw("--show-completion", "bash")
    assert code == 0 and "_blegw_completion" in out, err
