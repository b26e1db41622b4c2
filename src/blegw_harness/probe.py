"""``scripts/hostile-probe``: the attacks of issue #11, run from outside against the README's stack.

It starts the README walk-through's processes as real subprocesses in a scratch directory
(vbluez, mosquitto with ``blegw-platform broker-setup``'s configuration, ``blegw-platform
serve``, ``wearable-sim run``, ``blegw run``), pairs the module with ``blegw pair --yes`` and an
enrollment code, makes terminal keys, then plays each attacker of the issue with nothing but
what that attacker has: another gateway's broker account (a hostile gateway ``gw-h``), a
terminal's API key, an anonymous network client, a client that claims a known client id.

After each attack it checks, from outside: every process still runs, an honest payment
settles, ``blegw-platform audit`` is clean, the balances in the ledger file moved only by the
honest payments, and no transaction is still pending after its expiry. One line per attack,
then a summary; exit status 1 on any FAIL.

The platform's own broker account is one session (the shipped broker names the session after
the user), so connecting with it would take the running platform's session over. Where an
attack needs the platform's rights (to show what the gateway answers), the probe adds a second
account with exactly the platform's ACL rules, as docs/mqtt-contract.md tells a deployment to do
for each platform worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2

from e2e import MalformedMessage, Suite
from e2e.messages import (
    ConfirmationRequest,
    ConfirmationResponse,
    ErrorResponse,
    decode_envelope,
    encode_envelope,
)
from relay_contract import RelayRequest, RelayResponse, RelayStatus, topic

GATEWAY = "gw-try"
HOSTILE = "gw-h"
MONITOR = "blegw.probe"  # a second account with the platform's ACL rules (see the docstring)
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Outcome:
    ok: bool
    evidence: str


@dataclass
class Stack:
    """The README walk-through's processes, started as the README does, in ``root``."""

    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    broker_port: int = 0
    http_port: int = 0
    key: str = ""
    bob_key: str = ""
    usd_key: str = ""
    module_id: bytes = b""
    passwords: dict[str, str] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)
    honest: int = 0

    # -- processes -----------------------------------------------------------------------------
    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            stdin: bytes | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
        exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
        proc = subprocess.run([exe, *cmd[1:]], cwd=self.root,  # noqa: S603 - fixed argv
                               env=env or self.env,
                              input=stdin.decode() if stdin else None, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}"
                               f"{proc.stderr}")
        return proc

    def spawn(self, name: str, *cmd: str, stdout: Path | None = None) -> None:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (kept open by the child)
        out = open(stdout, "wb") if stdout else log  # noqa: SIM115
        exe = str(BIN / cmd[0]) if (BIN / cmd[0]).exists() else cmd[0]
        self.procs[name] = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [exe, *cmd[1:]], cwd=self.root, env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                                            start_new_session=True)

    def dead(self) -> list[str]:
        return [f"{name} exited {p.returncode}" for name, p in self.procs.items()
                if p.poll() is not None]

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    @staticmethod
    def _wait(what: str, ready: Callable[[], bool], seconds: float = 20) -> None:
        end = time.monotonic() + seconds
        while not ready():
            if time.monotonic() > end:
                raise RuntimeError(f"{what} not ready after {seconds:.0f} s")
            time.sleep(0.1)

    def _port_open(self, port: int) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    def start(self) -> None:
        """The README's steps 1-5 (scan skipped: ``blegw pair`` finds the module by name)."""
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("BLEGW_CONFIG", "DBUS_SYSTEM_BUS_ADDRESS", "BLEGW_API_KEY")}
        self.env["PATH"] = f"{BIN}:{self.env.get('PATH', '')}"
        self.broker_port, self.http_port = _free_port(), _free_port()
        radio = self.root / "radio.txt"
        self.spawn("vbluez", "vbluez", stdout=radio)
        self._wait("vbluez", lambda: radio.read_text().strip() != "")
        self.env["DBUS_SYSTEM_BUS_ADDRESS"] = radio.read_text().splitlines()[0]

        self.run("blegw-platform", "broker-setup", "--dir", "broker", "--port",
                 str(self.broker_port), "--listen", "127.0.0.1")
        (self.root / "gateway").mkdir()
        (self.root / "hostile").mkdir()
        self.run("blegw-platform", "broker-user", "--dir", "broker", "--gateway", GATEWAY,
                 "--password-file", "gateway/mqtt.password")
        self.run("blegw-platform", "broker-user", "--dir", "broker", "--gateway", HOSTILE,
                 "--password-file", "hostile/mqtt.password")
        monitor = secrets.token_urlsafe(24)
        self.run("mosquitto_passwd", "-b", "broker/passwd", MONITOR, monitor)
        with open(self.root / "broker" / "acl", "a") as acl:
            acl.write(f"\nuser {MONITOR}\ntopic write blegw/v1/gw/+/req\n"
                      "topic read blegw/v1/gw/+/resp\ntopic read blegw/v1/gw/+/status\n")
        self.passwords = {
            HOSTILE: (self.root / "hostile/mqtt.password").read_text().strip(),
            MONITOR: monitor}
        self.spawn("mosquitto", "/usr/sbin/mosquitto", "-c", "broker/mosquitto.conf")
        self._wait("mosquitto", lambda: self._port_open(self.broker_port))

        for account, balance in (("alice", 100000), ("shop", 0), ("bob", 50000)):
            self.run("blegw-platform", "seed", "--state", "platform", "--account", account,
                     "--balance", str(balance))
            self.expected[account] = balance
        self.key = self.run("blegw-platform", "terminal", "add", "--state", "platform",
                            "--name", "till-1", "--payee", "shop").stdout.splitlines()[0]
        self.bob_key = self.run("blegw-platform", "terminal", "add", "--state", "platform",
                                "--name", "bobs-till", "--payee", "bob"
                                ).stdout.splitlines()[0]
        self.run("blegw-platform", "seed", "--state", "platform", "--account", "usdshop",
                 "--balance", "0", "--currency", "USD")
        self.expected["usdshop"] = 0
        self.usd_key = self.run("blegw-platform", "terminal", "add", "--state", "platform",
                                "--name", "usd-till", "--payee", "usdshop"
                                ).stdout.splitlines()[0]
        self.spawn("platform", "blegw-platform", "serve", "--state", "platform", "--http",
                   f"127.0.0.1:{self.http_port}", "--broker",
                   f"mqtts://127.0.0.1:{self.broker_port}", "--mqtt-password-file",
                   "broker/platform.password", "--mqtt-ca", "broker/ca.pem",
                   "--approval-window", "10")
        self._wait("platform", lambda: self._port_open(self.http_port))

        self.run("blegw-harness", "provision-module", "--state", "platform", "--module-state",
                 "module")
        self.spawn("module", "wearable-sim", "run", "--adapter", "hci1", "--state", "module",
                   "--name", "band", "--pairing-mode", "--policy", "approve", "--delay", "1")
        (self.root / "blegw.toml").write_text(f"""[gateway]
id = "{GATEWAY}"
registry = "gateway/registry.json"
control_socket = "gateway/control.sock"
platform_url = "http://127.0.0.1:{self.http_port}"
[mqtt]
url = "mqtts://127.0.0.1:{self.broker_port}"
password_file = "gateway/mqtt.password"
tls_ca = "broker/ca.pem"
[ble]
adapter = "hci0"
""")
        self.env["BLEGW_CONFIG"] = str(self.root / "blegw.toml")
        self.spawn("daemon", "blegw", "run")
        self._wait("blegw run", lambda: "uplink connected" in self.run(
            "blegw", "status", check=False).stdout)
        code = self.run("blegw-platform", "enrollment-code", "--state", "platform",
                        "--account", "alice").stdout.splitlines()[0]
        paired = self.run("blegw", "pair", "band", "--account", "alice", "--code", code,
                          "--yes").stdout
        found = re.search(r"module ([0-9a-f]{32})", paired)
        if not found:
            raise RuntimeError(f"blegw pair: no module id in\n{paired}")
        self.module_id = bytes.fromhex(found.group(1))

    # -- the platform's API, as a terminal -----------------------------------------------------
    def http(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - http only
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw)
            except ValueError:
                return exc.code, {"raw": raw[:200].decode(errors="replace")}

    def create(self, amount: int, *, key: str | None = None, payee: str = "shop",
               currency: str = "EUR", raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        body = raw if raw is not None else json.dumps(
            {"payer": "alice", "payee": payee, "order_reference": "probe",
             "order_description": "probe payment", "amount_minor": amount,
             "currency": currency}).encode()
        headers = {"Content-Type": "application/json",
                   "Idempotency-Key": f"probe-{secrets.token_hex(8)}"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return self.http("POST", "/v1/transactions", body, headers)

    def outcome(self, tx_id: str, timeout: int = 20) -> dict[str, Any]:
        _, body = self.http("GET", f"/v1/transactions/{tx_id}/outcome?timeout={timeout}",
                            headers={"Authorization": f"Bearer {self.key}"})
        return body

    def settled(self, tx: dict[str, Any]) -> None:
        """Account for an honest payment that settled."""
        self.expected["alice"] -= int(tx["amount_minor"])
        self.expected["shop"] += int(tx["amount_minor"])
        self.honest += 1

    # -- checks after every attack ---------------------------------------------------------------
    def balances(self) -> dict[str, int]:
        db = sqlite3.connect(f"file:{self.root / 'platform' / 'ledger.sqlite3'}?mode=ro",
                             uri=True)
        try:
            return dict(db.execute("SELECT id, balance_minor FROM accounts").fetchall())
        finally:
            db.close()

    def stale_pending(self) -> int:
        db = sqlite3.connect(f"file:{self.root / 'platform' / 'ledger.sqlite3'}?mode=ro",
                             uri=True)
        try:
            row = db.execute("SELECT count(*) FROM transactions WHERE state = 'pending' AND "
                             "expires_at < ?", (time.time() - 5,)).fetchone()
            return int(row[0])
        finally:
            db.close()

    def pending_until(self) -> float | None:
        """The latest expiry of the transactions still pending, or ``None``."""
        db = sqlite3.connect(f"file:{self.root / 'platform' / 'ledger.sqlite3'}?mode=ro",
                             uri=True)
        try:
            row = db.execute("SELECT count(*), max(expires_at) FROM transactions "
                             "WHERE state = 'pending'").fetchone()
            return float(row[1]) if row[0] else None
        finally:
            db.close()

    def invariants(self) -> list[str]:
        problems = self.dead()
        if problems:
            return problems
        paid = self.run("blegw-platform", "pay", "--api", f"http://127.0.0.1:{self.http_port}",
                        "--api-key", self.key, "--payer", "alice", "--payee", "shop",
                        "--amount", "3", "--description", "honest", check=False)
        if "outcome: settled" in paid.stdout:
            self.expected["alice"] -= 3
            self.expected["shop"] += 3
            self.honest += 1
        else:
            problems.append(f"honest payment: {(paid.stdout + paid.stderr).strip()[-200:]}")
        audit = self.run("blegw-platform", "audit", "--state", "platform", check=False)
        if "audit: clean" not in audit.stdout:
            problems.append(f"audit: {(audit.stdout + audit.stderr).strip()[-300:]}")
        held = self.balances()
        if held != self.expected:
            problems.append(f"balances {held}, expected {self.expected}")
        stale = self.stale_pending()
        if stale:
            problems.append(f"{stale} transaction(s) pending after expiry")
        return problems + self.dead()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")


# -- MQTT clients ------------------------------------------------------------------------------
def client(stack: Stack, user: str | None, *, identifier: str | None = None,
           clean_session: bool | None = None, tls: bool = True) -> aiomqtt.Client:
    password = stack.passwords.get(user or "") if user else None
    ca = str(stack.root / "broker" / "ca.pem")
    return aiomqtt.Client("127.0.0.1", stack.broker_port, username=user, password=password,
                          identifier=identifier, clean_session=clean_session,
                          tls_params=aiomqtt.TLSParameters(ca_certs=ca) if tls else None,
                          timeout=5)


async def collect(c: aiomqtt.Client, seconds: float,
                  until: Callable[[aiomqtt.Message], bool] | None = None
                  ) -> list[aiomqtt.Message]:
    got: list[aiomqtt.Message] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            async for message in c.messages:
                got.append(message)
                if until is not None and until(message):
                    break
    return got


def relay_request(request_id: bytes, module_id: bytes, envelope: bytes) -> bytes:
    return RelayRequest(request_id, module_id, envelope, time.time() + 10).encode()


def _response_for(messages: list[aiomqtt.Message], request_id: bytes) -> list[RelayResponse]:
    found = []
    for m in messages:
        try:
            resp = RelayResponse.decode(bytes(m.payload))
        except MalformedMessage:  # progress for this or another request, or garbage: not ours
            continue
        if resp.request_id == request_id:
            found.append(resp)
    return found


def _malformed_count(stack: Stack) -> int:
    out = stack.run("blegw", "status", "--json", check=False).stdout
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return int(json.loads(out)["malformed_requests"])
    return -1


# -- the attacks ------------------------------------------------------------------------------
Attack = Callable[[Stack], Awaitable[Outcome]]


async def _during_pending(stack: Stack, payload_for: Callable[[bytes], list[tuple[str, bytes]]],
                          ) -> tuple[str, str]:
    """Start an honest payment, publish the hostile gateway's payloads for it while it is
    pending, return (its final state, what the attacker's publishes did)."""
    status, tx = await asyncio.to_thread(stack.create, 11, key=stack.key)
    if status != 201 or tx.get("state") != "pending":
        return f"creation {status} {tx}", ""
    done = []
    async with client(stack, HOSTILE) as h:
        for destination, payload in payload_for(bytes.fromhex(tx["id"])):
            try:
                await h.publish(destination, payload, qos=1)
                done.append(f"{destination}: published")
            except aiomqtt.MqttError as exc:
                done.append(f"{destination}: {exc}")
    final = await asyncio.to_thread(stack.outcome, tx["id"])
    if final.get("state") == "settled":
        stack.settled(final)
    return f"{final.get('state')}{' (' + final['reason'] + ')' if final.get('reason') else ''}", \
        "; ".join(done)


async def huge_int_envelope(stack: Stack) -> Outcome:
    """``{1: 10**5000, 2: 2, 3: {}}`` as a module's answer: from gateway H (on G's topic and its
    own), from a compromised G itself (its own account: a denial, never a crash), and on G's
    ``req`` topic with the platform's rights (the module's request path)."""
    envelope = cbor2.dumps({1: 10**5000, 2: 2, 3: {}})

    def payloads(tx: bytes) -> list[tuple[str, bytes]]:
        resp = cbor2.dumps({1: tx, 2: 0, 3: envelope, 4: "", 5: {}})
        return [(topic(GATEWAY, "resp"), resp), (topic(HOSTILE, "resp"), resp)]

    state, done = await _during_pending(stack, payloads)
    seen = [f"from {HOSTILE}: honest tx {state} ({done})"]
    ok = state == "settled"
    # The module's request path: the same integer in a request envelope.
    rid = secrets.token_bytes(16)
    async with client(stack, MONITOR) as mon:
        await mon.subscribe(topic(GATEWAY, "resp"), qos=1)
        await mon.publish(topic(GATEWAY, "req"), relay_request(rid, stack.module_id, envelope),
                          qos=1)
        answers = _response_for(await collect(
            mon, 8, lambda m: bool(_response_for([m], rid))), rid)
    kinds = []
    for a in answers:
        message = decode_envelope(a.envelope) if a.status == RelayStatus.OK else None
        kinds.append(f"status {int(a.status)}" + (
            f" {message.code.name}" if isinstance(message, ErrorResponse) else ""))
    seen.append(f"to the module: {kinds}")
    ok &= len(answers) == 1 and kinds[0] in ("status 0 MALFORMED", "status 7")
    # A compromised G answers its own payment with it (kicking its daemon off for a moment).
    _, tx = await asyncio.to_thread(stack.create, 17, key=stack.key)
    stack.passwords[GATEWAY] = (stack.root / "gateway/mqtt.password").read_text().strip()
    async with client(stack, GATEWAY) as g:
        await g.publish(topic(GATEWAY, "resp"), cbor2.dumps(
            {1: bytes.fromhex(tx["id"]), 2: 0, 3: envelope, 4: "", 5: {}}), qos=1)
    final = await asyncio.to_thread(stack.outcome, tx["id"])
    if final.get("state") == "settled":
        stack.settled(final)
    seen.append(f"from {GATEWAY} itself: tx {final.get('state')} ({final.get('reason')})")
    ok &= final.get("state") == "rejected" and str(final.get("reason")).startswith(
        "malformed_answer")
    return Outcome(ok, "; ".join(seen))


async def foreign_resp(stack: Stack) -> Outcome:
    def payloads(tx: bytes) -> list[tuple[str, bytes]]:
        fail = RelayResponse(tx, RelayStatus.MODULE_UNREACHABLE, b"", "forged").encode()
        return [(topic(GATEWAY, "resp"), fail), (topic(HOSTILE, "resp"), fail)]

    state, done = await _during_pending(stack, payloads)
    return Outcome(state == "settled", f"honest tx {state} after status-3 forgeries ({done})")


async def enroll_hash_gateway(stack: Stack) -> Outcome:
    stack.run("blegw-harness", "provision-module", "--state", "platform", "--module-state",
              "module2")
    cert = (stack.root / "module2" / "certs" / "p256.cbor").read_bytes().hex()
    seen = []
    ok = True
    for gateway_id in ("#", "+", "a/b"):
        code = stack.run("blegw-platform", "enrollment-code", "--state", "platform",
                         "--account", "bob").stdout.splitlines()[0]
        status, body = await asyncio.to_thread(
            stack.http, "POST", "/v1/modules", json.dumps(
                {"certificate": cert, "account": "bob", "gateway_id": gateway_id,
                 "enrollment_code": code, "revocation_token": secrets.token_hex(32)}).encode(),
            {"Content-Type": "application/json"})
        seen.append(f"{gateway_id!r}: {status} {body.get('error')}")
        ok &= status == 400 and body.get("error") == "invalid_gateway_id"
    # Then a payment for bob: nothing may be published to a wildcard topic.
    status, body = await asyncio.to_thread(
        stack.http, "POST", "/v1/transactions", json.dumps(
            {"payer": "bob", "payee": "shop", "order_reference": "x", "order_description": "x",
             "amount_minor": 5, "currency": "EUR"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {stack.key}",
         "Idempotency-Key": f"probe-{secrets.token_hex(8)}"})
    seen.append(f"bob pays: {status} {body.get('state')} {body.get('reason')}")
    ok &= body.get("state") == "rejected"
    return Outcome(ok, "; ".join(seen))


async def unknown_payee(stack: Stack) -> Outcome:
    status, body = await asyncio.to_thread(stack.create, 321, key=stack.key, payee="nobody")
    term = stack.run("blegw-platform", "terminal", "add", "--state", "platform", "--name",
                     f"t-{secrets.token_hex(3)}", "--payee", "nobody", check=False)
    evidence = (f"till-1 key: {status} {body.get('error')}; terminal add --payee nobody: "
                f"exit {term.returncode} {(term.stdout + term.stderr).strip()[-80:]}")
    ok = status in (403, 422) and body.get("error") in ("payee_not_allowed", "unknown_payee")
    if term.returncode == 0:
        key = term.stdout.splitlines()[0]
        status, body = await asyncio.to_thread(stack.create, 321, key=key, payee="nobody")
        evidence += f"; with its key: {status} {body.get('error')}"
        ok &= status == 422 and body.get("error") == "unknown_payee"
    return Outcome(ok, evidence)


async def usd_against_eur(stack: Stack) -> Outcome:
    seen = []
    status, body = await asyncio.to_thread(stack.create, 500, key=stack.key, currency="USD")
    seen.append(f"USD to shop (EUR): {status} {body.get('error')}")
    ok = status == 422 and body.get("error") == "currency_mismatch"
    for currency in ("USD", "EUR"):
        status, body = await asyncio.to_thread(stack.create, 500, key=stack.usd_key,
                                               payee="usdshop", currency=currency)
        seen.append(f"{currency} from alice (EUR) to usdshop (USD): {status} "
                    f"{body.get('error')}")
        ok &= status == 422 and body.get("error") == "currency_mismatch"
    return Outcome(ok, "; ".join(seen))


async def client_id_takeover(stack: Stack) -> Outcome:
    """Gateway H's account claims the platform's and G's client ids with clean session off
    (one at a time: the broker names each session after the user, so all four are one), and
    subscribes to everything while an honest payment runs."""
    stolen: dict[str, int] = {}
    states = []
    reconnects = (stack.log("platform").count("retry in"),
                  stack.log("daemon").count("reconnecting in"))
    for victim in ("blegw-platform", f"blegw-{GATEWAY}", "blegw.platform", GATEWAY):
        async with client(stack, HOSTILE, identifier=victim, clean_session=False) as thief:
            await thief.subscribe("#", qos=1)
            await thief.subscribe("blegw/#", qos=1)
            _, tx = await asyncio.to_thread(stack.create, 13, key=stack.key)
            final = await asyncio.to_thread(stack.outcome, tx["id"])
            if final.get("state") == "settled":
                stack.settled(final)
            states.append(final.get("state"))
            stolen[victim] = len(await collect(thief, 0.3))
    after = (stack.log("platform").count("retry in"), stack.log("daemon").count("reconnecting in"))
    ok = states == ["settled"] * 4 and not any(stolen.values()) and after == reconnects
    return Outcome(ok, f"messages received per claimed id {stolen}; honest payments {states}; "
                       f"platform/daemon reconnects {reconnects}->{after} (owners not "
                       f"kicked)")


async def anonymous_subscribe(stack: Stack) -> Outcome:
    seen = []
    ok = True
    for tls, label in ((True, "TLS"), (False, "plain")):
        try:
            async with client(stack, None, tls=tls) as c:
                await c.subscribe("blegw/#", qos=1)
                got = await collect(c, 1.0)
                seen.append(f"{label}: connected, read {len(got)}")
                ok = False
        except aiomqtt.MqttError as exc:
            seen.append(f"{label}: refused ({exc})")
    return Outcome(ok, "; ".join(seen))


async def oversized(stack: Stack) -> Outcome:
    seen = []
    ok = True
    async with client(stack, MONITOR) as mon:
        await mon.subscribe(topic(HOSTILE, "resp"), qos=1)
        for size in (16385, 1 << 20, 100 << 20):
            try:
                async with client(stack, HOSTILE) as h:
                    await h.publish(topic(HOSTILE, "resp"), b"\0" * size, qos=1)
                    await h.publish(topic(HOSTILE, "resp"), b"after", qos=1)
                    seen.append(f"{size} B: accepted")
                    ok = False
            except aiomqtt.MqttError:
                seen.append(f"{size} B: sender disconnected")
        delivered = await collect(mon, 0.5)
    broker = stack.log("mosquitto").count("disconnected due to oversize packet")
    ok &= not delivered and broker >= 3
    seen.append(f"delivered to a reader of that topic: {len(delivered)}; broker log: "
                f"{broker} x 'disconnected due to oversize packet'")
    return Outcome(ok, "; ".join(seen))


async def wrong_field_type(stack: Stack) -> Outcome:
    rid = secrets.token_bytes(16)
    payload = cbor2.dumps({1: rid, 2: 12345, 3: b"\xa0", 4: time.time() + 10}, canonical=True)
    before = await asyncio.to_thread(_malformed_count, stack)
    async with client(stack, MONITOR) as mon:
        await mon.subscribe(topic(GATEWAY, "resp"), qos=1)
        async with client(stack, HOSTILE) as h:
            await h.publish(topic(GATEWAY, "req"), payload, qos=1)
        hostile = _response_for(await collect(mon, 1.5), rid)
        middle = await asyncio.to_thread(_malformed_count, stack)
        await mon.publish(topic(GATEWAY, "req"), payload, qos=1)
        answers = _response_for(await collect(
            mon, 5, lambda m: bool(_response_for([m], rid))), rid)
        # Exactly one answer: nothing more arrives later.
        answers += _response_for(await collect(mon, 1.0), rid)
    after = await asyncio.to_thread(_malformed_count, stack)
    statuses = [int(a.status) for a in answers]
    ok = not hostile and before == middle and statuses == [7] and after == before + 1
    return Outcome(ok, f"as {HOSTILE}: {len(hostile)} answer(s), malformed_requests "
                       f"{before}->{middle} (ACL dropped it); as platform rights: statuses "
                       f"{statuses}, malformed_requests ->{after}")


async def http_terminal_keys(stack: Stack) -> Outcome:
    none_status, none_body = await asyncio.to_thread(stack.create, 100, key=None)
    other_status, other_body = await asyncio.to_thread(stack.create, 100, key=stack.bob_key)
    bad_status, _ = await asyncio.to_thread(stack.create, 100,
                                                   key="till-1." + "A" * 43)
    ok = (none_status, other_status, bad_status) == (401, 403, 401)
    return Outcome(ok, f"no key {none_status} {none_body.get('error')}; bob's till for shop "
                       f"{other_status} {other_body.get('error')}; forged key {bad_status}")


async def injected_request(stack: Stack) -> Outcome:
    def request() -> tuple[bytes, bytes]:
        tx = secrets.token_bytes(16)
        req = ConfirmationRequest(tx, "alice", "mallory", "URGENT",
                                  "\x1b[2J\u202epay now or lose access", 99999999, "EUR",
                                  secrets.token_bytes(16), int(time.time()) + 60,
                                  Suite.P256_SHA256)
        return tx, relay_request(tx, stack.module_id, encode_envelope(req))

    hostile_tx, hostile_payload = request()
    tx, payload = request()
    async with client(stack, MONITOR) as mon:
        await mon.subscribe(topic(GATEWAY, "resp"), qos=1)
        async with client(stack, HOSTILE) as h:
            await h.publish(topic(GATEWAY, "req"), hostile_payload, qos=1)
        hostile = _response_for(await collect(mon, 2.5), hostile_tx)
        await mon.publish(topic(GATEWAY, "req"), payload, qos=1)
        answers = _response_for(await collect(
            mon, 10, lambda m: bool(_response_for([m], tx))), tx)
    kinds = []
    signed = False
    for a in answers:
        if a.status != RelayStatus.OK:
            kinds.append(f"status {int(a.status)}")
            continue
        try:
            message = decode_envelope(a.envelope)
        except Exception as exc:
            kinds.append(f"undecodable {exc}")
            continue
        if isinstance(message, ConfirmationResponse):
            signed = True
            kinds.append(f"SIGNED decision {message.decision.name}")
        elif isinstance(message, ErrorResponse):
            kinds.append(f"error {message.code.name}")
        else:
            kinds.append(type(message).__name__)
    ok = not hostile and not signed and kinds == ["error UNTRUSTED_REQUEST"]
    return Outcome(ok, f"as {HOSTILE}: {len(hostile)} answer(s) (ACL); unsigned with platform "
                       f"rights: {kinds}")


async def http_hostile_bodies(stack: Stack) -> Outcome:
    base = {"payer": "alice", "payee": "shop", "order_reference": "x",
            "order_description": "x", "currency": "EUR"}
    bodies = {
        "5000-digit amount": json.dumps(base)[:-1].encode() + b', "amount_minor": '
        + b"9" * 5000 + b"}",
        "nested 20000": b'{"payer": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        "lone surrogate": json.dumps({**base, "amount_minor": 5,
                                      "order_description": "\ud800"}).encode(),
    }
    seen = []
    ok = True
    for name, raw in bodies.items():
        status, body = await asyncio.to_thread(stack.create, 0, key=stack.key, raw=raw)
        seen.append(f"{name}: {status} {body.get('error')}")
        ok &= status == 400
    return Outcome(ok, "; ".join(seen))


async def loose_decoders(stack: Stack) -> Outcome:
    """``true``, ``1.0`` and ``2.0`` as map keys of the gateway's request, and as the version of
    the envelope the module reads; plus non-canonical bytes (a long-form integer)."""
    seen = []
    ok = True
    before = await asyncio.to_thread(_malformed_count, stack)
    valid_env = encode_envelope(ConfirmationRequest(
        secrets.token_bytes(16), "alice", "shop", "x", "x", 1, "EUR", secrets.token_bytes(16),
        int(time.time()) + 60, Suite.P256_SHA256))
    async with client(stack, MONITOR) as mon:
        await mon.subscribe(topic(GATEWAY, "resp"), qos=1)
        # Relay request keys: the request id under key true / 1.0 is unreadable, never answered;
        # under key 1 with key 2 spelled 2.0 it is answered status 7.
        cases: list[tuple[str, bytes, bytes, set[int]]] = []
        for label, key in (("key true", True), ("key 1.0", 1.0)):
            keyed: dict[object, object] = {key: b"r" * 16, 2: stack.module_id, 3: valid_env,
                                           4: time.time() + 10}
            cases.append((label, cbor2.dumps(keyed), b"r" * 16, {-1}))
        rid = secrets.token_bytes(16)
        cases.append(("key 2.0", cbor2.dumps({1: rid, 2.0: stack.module_id, 3: valid_env,
                                              4: time.time() + 10}), rid, {7}))
        rid = secrets.token_bytes(16)
        # A deadline float32 holds exactly, sent as a float64: not the shortest form.
        deadline = float((int(time.time()) + 200) // 128 * 128)
        canonical = cbor2.dumps({1: rid, 2: stack.module_id, 3: valid_env, 4: deadline},
                                canonical=True)
        assert canonical[-5] == 0xFA
        cases.append(("non-canonical float", canonical[:-5] + b"\xfb"
                      + struct.pack(">d", deadline), rid, {7}))
        for version in (True, 1.0, 2.0):
            tx = secrets.token_bytes(16)
            body = decode_body(valid_env)
            body[1] = tx
            env = cbor2.dumps({1: version, 2: 1, 3: body})
            cases.append((f"envelope version {version!r}", relay_request(tx, stack.module_id,
                                                                          env), tx, {0}))
        for label, payload, rid, expect in cases:
            await mon.publish(topic(GATEWAY, "req"), payload, qos=1)
            def answered(m: aiomqtt.Message, r: bytes = rid) -> bool:
                return bool(_response_for([m], r))

            answers = _response_for(await collect(mon, 1.0 if -1 in expect else 4, answered),
                                    rid)
            statuses = {int(a.status) for a in answers}
            detail = ""
            for a in answers:
                if a.status == RelayStatus.OK:
                    message = decode_envelope(a.envelope)
                    detail = (f" {message.code.name}" if isinstance(message, ErrorResponse)
                              else " SIGNED")
                    ok &= isinstance(message, ErrorResponse)
            seen.append(f"{label}: statuses {sorted(statuses)}{detail}")
            # {-1}: the request id is not under the integer key 1: no answer can name it.
            ok &= not statuses if -1 in expect else statuses == expect
    after = await asyncio.to_thread(_malformed_count, stack)
    seen.append(f"malformed_requests {before}->{after}")
    return Outcome(ok, "; ".join(seen))


def decode_body(envelope: bytes) -> dict[int, Any]:
    body: dict[int, Any] = cbor2.loads(envelope)[3]
    return body


async def bad_queue_size(stack: Stack) -> Outcome:
    config = stack.root / "blegw-qs.toml"
    config.write_text((stack.root / "blegw.toml").read_text()
                      .replace('id = "gw-try"', 'id = "gw-qs"')
                      .replace("gateway/control.sock", "qs/control.sock")
                      .replace("gateway/registry.json", "qs/registry.json")
                      .replace('adapter = "hci0"', 'adapter = "hci9"'))
    env = {**stack.env, "BLEGW_QUEUE_SIZE": "abc", "BLEGW_CONFIG": str(config)}
    try:
        proc = await asyncio.to_thread(stack.run, "blegw", "run", check=False, env=env,
                                       timeout=20)
    except subprocess.TimeoutExpired:
        return Outcome(False, "blegw run started with BLEGW_QUEUE_SIZE=abc")
    text = (proc.stdout + proc.stderr).strip()
    ok = proc.returncode != 0 and "Traceback" not in text and "BLEGW_QUEUE_SIZE" in text
    return Outcome(ok, f"exit {proc.returncode}: {text.splitlines()[-1] if text else ''}")


async def keepalive_note(stack: Stack) -> Outcome:
    return Outcome(True, "not reachable from outside: only the module writes KEEPALIVE/ERROR "
                         "frames on the BLE link; tests/blegw/test_hostile_link.py covers it")


ATTACKS: list[tuple[str, Attack, bool]] = [
    # (name, attack, in the --quick subset)
    ("huge-int envelope on resp", huge_int_envelope, True),
    ("gateway_id '#' enrollment", enroll_hash_gateway, False),
    ("pay to unknown payee", unknown_payee, True),
    ("USD against EUR", usd_against_eur, False),
    ("response on another gateway's resp", foreign_resp, True),
    ("client-id takeover, clean session off", client_id_takeover, False),
    ("anonymous subscribe blegw/#", anonymous_subscribe, True),
    ("payload over the broker limit", oversized, False),
    ("readable id + wrong field type on req", wrong_field_type, True),
    ("POST /v1/transactions without / with another payee's key", http_terminal_keys, True),
    ("injected request on req (ACL; unsigned)", injected_request, True),
    ("HTTP 5000 digits / 20000 deep / lone surrogate", http_hostile_bodies, False),
    ("true / 1.0 / 2.0 as keys or version", loose_decoders, False),
    ("BLEGW_QUEUE_SIZE=abc blegw run", bad_queue_size, False),
]


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """A connection the broker drops on purpose leaves futures nobody awaits: not news."""
    if not isinstance(context.get("exception"), aiomqtt.MqttError):
        loop.default_exception_handler(context)


async def run_attacks(stack: Stack, quick: bool, only: str | None = None) -> int:
    asyncio.get_running_loop().set_exception_handler(_quiet)
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    failures = 0
    total = 0
    for name, attack, in_quick in ATTACKS:
        if (quick and not in_quick) or (only and only not in name):
            continue
        total += 1
        try:
            outcome = await attack(stack)
        except Exception as exc:
            outcome = Outcome(False, f"probe error {type(exc).__name__}: {exc}")
        problems = await asyncio.to_thread(stack.invariants)
        ok = outcome.ok and not problems
        failures += not ok
        after = "; after: " + ("; ".join(problems) if problems else
                               "all alive, honest payment settled, audit clean, balances "
                               "as expected, nothing pending past expiry")
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {outcome.evidence}{after}", flush=True)
    # Every transaction ends: wait for the expiry of any still pending, then none may be left.
    latest = await asyncio.to_thread(stack.pending_until)
    if latest is not None:
        await asyncio.sleep(max(0.0, latest + 5 - time.time()))
    left = await asyncio.to_thread(stack.pending_until)
    print(f"{'PASS' if left is None else 'FAIL'}  every transaction final after its expiry: "
          f"{'none pending' if left is None else 'some still pending'}", flush=True)
    total += 1
    failures += left is not None
    note = await keepalive_note(stack)
    print(f"N/A   malformed KEEPALIVE from the module: {note.evidence}", flush=True)
    held = stack.balances()
    totals = re.findall(r"^([A-Z]{3}): .* holding (\d+) minor units", stack.run(
        "blegw-platform", "audit", "--state", "platform", check=False).stdout, re.M)
    print(f"summary: {total - failures} of {total} checks PASS, {failures} FAIL; "
          f"{stack.honest} honest payments settled; balances {held}; totals "
          f"{', '.join(f'{c} {t}' for c, t in totals)} (seeded EUR 150000, USD 0)", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hostile-probe", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a subset for the test suite")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--only", metavar="TEXT", help="only the attacks whose name has TEXT")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hostile-probe-"))
    stack = Stack(root)
    started = time.monotonic()
    try:
        stack.start()
        print(f"stack up in {time.monotonic() - started:.1f} s in {root}: vbluez, mosquitto "
              f"(port {stack.broker_port}), platform (http {stack.http_port}), module "
              f"{stack.module_id.hex()} paired for alice through {GATEWAY}", flush=True)
        code = asyncio.run(run_attacks(stack, args.quick, args.only))
    except Exception as exc:
        print(f"FAIL  setup: {exc}", flush=True)
        code = 1
    finally:
        stack.stop()
        if code and not args.keep:
            for name in ("platform", "daemon", "module"):
                with contextlib.suppress(OSError):
                    print(f"--- {name}.log (tail)\n" + "\n".join(
                        stack.log(name).splitlines()[-15:]))
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"done in {time.monotonic() - started:.1f} s", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
