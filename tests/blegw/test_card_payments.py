"""Symmetric-key card payments (flow F-C) through the whole chain with real parts: the virtual
radio (only the radio is simulated), mosquitto, the platform on real SQLite, the gateway, the
card's GATT server (bless) and the public-key module beside it.

Each attack test asserts the typed refusal, that no money moved, and that an honest card payment
still settles afterwards.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiomqtt
import pytest

from blegw.registry import Registry
from blegw_harness.chain import (
    CARD_PAYER,
    GATEWAY_ID,
    PAYEE,
    PAYER,
    Chain,
    _bond_with,
    running_chain,
)
from blegw_platform.issuer_keys import ISSUER_DIR, FileIssuerKeys, IssuedCards, issue_card
from e2e import Suite
from private_files import write_atomic
from relay_contract import (
    RelayRequest,
    RelayResponse,
    RelayStatus,
    decode_from_gateway,
    decode_from_platform,
    topic,
)
from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorMessage,
    CardProvision,
    MessageType,
    SealedMessage,
    decode,
)
from wearable_sim.card_element import CARD_FILE, CardElement
from wearable_sim.card_module import CardModule
from wearable_sim.policy import FixedPolicy, Prompt

from .conftest import Mosquitto


class NeverPressed:
    """The card's owner never presses the button."""

    name = "never"
    verification = "none"

    async def decide(self, prompt: Prompt) -> bool:
        await asyncio.Event().wait()
        return False

    async def close(self) -> None:
        return None


async def balances(chain: Chain) -> tuple[int, int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, CARD_PAYER),
            await ledger.run(ledger.balance, PAYEE))


async def honest_card_payment(chain: Chain, key: str, amount: int = 70,
                              suite: Suite = Suite.P256_SHA256) -> None:
    before = await balances(chain)
    outcome = await chain.pay(amount, "honest card payment", suite, key, CARD_PAYER)
    assert (outcome["state"], outcome["reason"]) == ("settled", "")
    after = await balances(chain)
    assert after == (before[0], before[1] - amount, before[2] + amount)


async def test_card_payment_settles_beside_a_module_payment_in_both_suites(
        mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(True)) as chain:
        assert chain.card is not None
        assert chain.card.info.is_card and not chain.module.info.is_card
        for i, suite in enumerate(Suite):
            before = await balances(chain)
            module = await chain.pay(1250, "coffee", suite, f"card-mod-{i}-0001")
            card = await chain.pay(480, "bus ticket", suite, f"card-card-{i}-001", CARD_PAYER)
            assert (module["state"], card["state"]) == ("settled", "settled")
            assert await balances(chain) == (before[0] - 1250, before[1] - 480,
                                             before[2] + 1730)
            again = await chain.pay(480, "bus ticket", suite, f"card-card-{i}-001", CARD_PAYER)
            assert again["id"] == card["id"]        # idempotent: not paid twice
            assert await balances(chain) == (before[0] - 1250, before[1] - 480,
                                             before[2] + 1730)
        # the card answered challenge -> hello and request -> result, nothing else
        assert chain.card.handled == ["card-hello", "card-result"] * 2
        violations, _ = await chain.platform.ledger.run(chain.platform.ledger.report)
        assert violations == []


async def test_card_declined_by_its_owner_moves_nothing(mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(False)) as chain:
        before = await balances(chain)
        outcome = await chain.pay(300, "declined", Suite.SM2_SM3, "card-decline-01", CARD_PAYER)
        assert (outcome["state"], outcome["reason"]) == ("declined", "declined_by_user")
        assert await balances(chain) == before


async def test_card_button_never_pressed_times_out_and_nothing_moves(
        mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=NeverPressed(), approval_window=4) as chain:
        assert chain.card is not None
        chain.card.owner_timeout = 1.5           # the card gives up before the deadline
        before = await balances(chain)
        outcome = await chain.pay(300, "nobody presses", Suite.P256_SHA256, "card-never-001",
                                  CARD_PAYER)
        assert (outcome["state"], outcome["reason"]) == ("timed_out", "card:user_timeout")
        assert await balances(chain) == before
        # the card answered its own authenticated timeout; the module's payer still pays
        assert chain.card.handled[-1] == "card-result"
        module = await chain.pay(100, "after", Suite.P256_SHA256, "card-never-002")
        assert module["state"] == "settled"


def _forms(secret: bytes) -> list[str]:
    """Every way a key could show up in a log line."""
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode(),
            base64.b64encode(secret).decode().rstrip("="), repr(secret)[2:-1]]


class HostileGateway:
    """The gateway the platform talks to (``gw-demo``) is a man in the middle in front of the
    real daemon (``gw-real``, a subprocess): it forwards relay requests and answers, records
    them, and can answer in the daemon's place or hold a request back. It sees everything the
    untrusted gateway sees; it holds no key."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.log: list[tuple[RelayRequest, RelayResponse]] = []
        self._pending: dict[bytes, RelayRequest] = {}
        self.intercept: Callable[[RelayRequest], Awaitable[RelayResponse | None]] | None = None
        self._client: aiomqtt.Client | None = None

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            self._client = client
            await client.subscribe(topic(GATEWAY_ID, "req"), qos=1)
            await client.subscribe(topic(REAL_GATEWAY, "resp"), qos=1)
            async for message in client.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                if message.topic.matches(topic(GATEWAY_ID, "req")):
                    request = decode_from_platform(payload)
                    if isinstance(request, RelayRequest):
                        await self._request(client, request)
                    else:                 # a cancel: passed on
                        await client.publish(topic(REAL_GATEWAY, "req"), payload, qos=1)
                else:
                    answer = decode_from_gateway(payload)
                    if isinstance(answer, RelayResponse):
                        await self._answer(client, answer)
                    else:                 # progress: passed on
                        await client.publish(topic(GATEWAY_ID, "resp"), payload, qos=1)

    async def _request(self, client: aiomqtt.Client, request: RelayRequest) -> None:
        self._pending[request.request_id] = request
        if self.intercept is not None:
            own = await self.intercept(request)
            if own is HOLD:
                return                    # neither forwarded nor answered (yet)
            if own is not None:
                await self._answer(client, own)
                return
        await client.publish(topic(REAL_GATEWAY, "req"), request.encode(), qos=1)

    async def _answer(self, client: aiomqtt.Client, response: RelayResponse) -> None:
        request = self._pending.pop(response.request_id, None)
        if request is None:
            return
        self.log.append((request, response))
        await client.publish(topic(GATEWAY_ID, "resp"), response.encode(), qos=1)

    def card_messages(self, kind: MessageType) -> list[bytes]:
        """Envelopes of that card message type seen either way."""
        found = []
        for request, response in self.log:
            for envelope in (request.envelope, response.envelope):
                with contextlib.suppress(CardError):
                    message = decode(envelope)
                    if message.message_type is kind:
                        found.append(envelope)
        return found


REAL_GATEWAY = "gw-real"
HOLD = RelayResponse(bytes(16), RelayStatus.OK)
"""What an interception returns to keep a request back: the hostile gateway answers later."""


async def _daemon(config: Path, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """``blegw -v run``: the real daemon, its log lines (INFO and up) appended to ``log``."""
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw", "-v", "run", "--config", str(config), env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=stderr)


async def _online(mosquitto: Mosquitto, gateway_id: str) -> None:
    """Wait until the daemon says it is online (its retained status): a relay request
    published before it first subscribed would not reach it."""
    async with asyncio.timeout(60), aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe(topic(gateway_id, "status"), qos=1)
        async for message in client.messages:
            if message.payload == b"online":
                return


async def _stop(daemon: asyncio.subprocess.Process) -> None:
    if daemon.returncode is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(daemon.wait(), 20)
        except TimeoutError:
            daemon.kill()
            await daemon.wait()


async def test_hostile_gateway_replayed_hello_and_request_on_another_link_refused(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(True), with_gateway=False) as chain:
        assert chain.card is not None and chain.card_dir is not None
        card_ref = chain.card.card.facts().card_ref
        config = tmp_path / "blegw.toml"
        config.write_text(
            f'[gateway]\nid = "{REAL_GATEWAY}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
            f'[ble]\nadapter = "hci0"\n'
            f'[[modules]]\nid = "{chain.module.element.module_id.hex()}"\n'
            f'address = "{chain.radio.adapters[1].address}"\n'
            f'[[modules]]\nid = "{card_ref.hex()}"\n'
            f'address = "{chain.radio.adapters[2].address}"\n')
        env = {**os.environ, **chain.radio.environ()}
        daemon_log = tmp_path / "daemon.log"
        hostile = HostileGateway(mosquitto.port)
        mitm = asyncio.create_task(hostile.run())
        daemon = await _daemon(config, env, daemon_log)
        nonlocal_daemon = [daemon]            # the daemon now running (step 2 restarts it)
        try:
            await _online(mosquitto, REAL_GATEWAY)
            # the honest path through both gateways, public-key module and card
            assert (await chain.pay(150, "module", Suite.SM2_SM3, "hostile-mod-01"))["state"] \
                == "settled"
            await honest_card_payment(chain, "hostile-card-01")
            hello = hostile.card_messages(MessageType.HELLO)[-1]
            recorded_request = hostile.card_messages(MessageType.TRANSACTION)[-1]
            # the daemon alone answering on its own topic is not the card's gateway: ignored
            assert chain.platform.counters["foreign_responses"] >= 2

            # 1. a recorded hello as the answer to a new payment's challenge: a replay
            async def replay_hello(request: RelayRequest) -> RelayResponse | None:
                if isinstance(decode(request.envelope), CardChallenge):
                    return RelayResponse(request.request_id, RelayStatus.OK, hello)
                return None

            hostile.intercept = replay_hello
            before = await balances(chain)
            outcome = await chain.pay(90, "replayed hello", Suite.P256_SHA256,
                                      "hostile-card-02", CARD_PAYER)
            assert (outcome["state"], outcome["reason"]) == ("rejected", "card:replay")
            assert await balances(chain) == before

            # 2. the transaction request delivered over another link (the daemon restarted
            #    between the two exchanges: a new connection, a new channel) - also what a
            #    link drop mid-payment does: an explicit outcome, nothing settles
            async def other_link(request: RelayRequest) -> RelayResponse | None:
                if isinstance(decode(request.envelope), SealedMessage):
                    await _stop(nonlocal_daemon[0])
                    nonlocal_daemon[0] = await _daemon(config, env, daemon_log)
                    await _online(mosquitto, REAL_GATEWAY)
                return None

            hostile.intercept = other_link
            outcome = await chain.pay(95, "other link", Suite.P256_SHA256, "hostile-card-03",
                                      CARD_PAYER)
            daemon = nonlocal_daemon[0]
            # the card keeps a payment to the connection it began on: on the new one it has
            # no hello (out_of_order); had it one, the channel id would differ (wrong_channel)
            assert outcome["state"] == "rejected"
            assert outcome["reason"] in ("card:out_of_order", "card:wrong_channel")
            assert await balances(chain) == before

            # 3. the recorded request written to the card again by the gateway on its own
            #    (no payment asked for it): the card refuses it, the platform ignores it
            async def resend(request: RelayRequest) -> RelayResponse | None:
                return None

            hostile.intercept = resend
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.subscribe(topic(REAL_GATEWAY, "resp"), qos=1)
                own = RelayRequest(bytes(16), card_ref, recorded_request, 4e9)
                await client.publish(topic(REAL_GATEWAY, "req"), own.encode(), qos=1)
                async with asyncio.timeout(30):
                    async for message in client.messages:
                        answer = decode_from_gateway(bytes(message.payload))  # type: ignore[arg-type]
                        if isinstance(answer, RelayResponse) \
                                and answer.request_id == own.request_id:
                            break
            refusal = decode(answer.envelope)
            assert isinstance(refusal, CardErrorMessage)
            assert refusal.code.name in ("OUT_OF_ORDER", "WRONG_CHANNEL")
            assert await balances(chain) == before

            # the honest path still works, and the daemon is alive
            hostile.intercept = None
            await honest_card_payment(chain, "hostile-card-04")
            assert daemon.returncode is None
        finally:
            mitm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mitm
            for process in (daemon, nonlocal_daemon[0]):
                await _stop(process)
        violations, _ = await chain.platform.ledger.run(chain.platform.ledger.report)
        assert violations == []
        # no card key and no issuer master key in any log of the run: the daemon's, the
        # card simulator's and the platform's (both in this process, captured at DEBUG)
        provision = CardProvision.decode((chain.card_dir / CARD_FILE).read_bytes())
        secrets_ = [key.material() for _, key in provision.keys.values()]
        secrets_ += [p.read_bytes() for p in
                     (chain.platform.state_dir / ISSUER_DIR).glob("*.key")]
        assert len(secrets_) >= 4
        logs = daemon_log.read_text(errors="replace") + caplog.text
        assert "card" in logs and len(logs) > 1000
        for secret in secrets_:
            for form in _forms(secret):
                assert form not in logs


async def test_card_simulator_and_daemon_processes_settle_both_suites_without_leaking_keys(
        mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every part a real process or a real file: ``blegw-platform provision-card`` and
    ``enroll-card`` (an unknown card ref refused), ``wearable-sim run --kind card`` and
    ``blegw run`` as subprocesses over the virtual radio;
    the platform in this process on real SQLite. Their logs hold no key."""
    caplog.set_level(logging.DEBUG)
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url, with_gateway=False,
                             radio_adapters=3) as chain:
        platform = chain.platform
        await platform.ledger.run(platform.ledger.add_account, CARD_PAYER, "EUR", 10_000)
        card_dir = tmp_path / "card"
        env = {**os.environ, **chain.radio.environ()}
        factory = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "blegw_platform", "provision-card",
            "--state", str(platform.state_dir), "--card-state", str(card_dir),
            "--user", CARD_PAYER, env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        factory_out, _ = await asyncio.wait_for(factory.communicate(), 60)
        assert factory.returncode == 0, factory_out
        provision = CardProvision.decode((card_dir / CARD_FILE).read_bytes())
        sim_log = tmp_path / "card.log"
        with sim_log.open("ab") as stderr:
            sim = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "wearable_sim", "run", "--kind", "card",
                "--card-state", str(card_dir), "--adapter", "hci2", "--pairing-mode",
                "--policy", "approve", "-v", env=env, stdout=asyncio.subprocess.PIPE,
                stderr=stderr)
        daemon: asyncio.subprocess.Process | None = None
        daemon_log = tmp_path / "daemon.log"
        try:
            assert sim.stdout is not None
            ready = await asyncio.wait_for(sim.stdout.readline(), 30)
            assert ready.startswith(f"ready card_ref={provision.card_ref.hex()} kind=card"
                                    .encode()), ready
            address = chain.radio.adapters[2].address
            await _bond_with("hci0", address)
            for ref, status in ((bytes(8).hex(), 1), (provision.card_ref.hex(), 0)):
                enroll = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "blegw_platform", "enroll-card", "--state",
                    str(platform.state_dir), "--card-ref", ref, "--gateway", GATEWAY_ID,
                    env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
                enroll_out, _ = await asyncio.wait_for(enroll.communicate(), 60)
                assert enroll.returncode == status, enroll_out
                factory_out += enroll_out
            assert f"for {CARD_PAYER} via {GATEWAY_ID}".encode() in enroll_out
            config = tmp_path / "blegw.toml"
            config.write_text(
                f'[gateway]\nid = "{GATEWAY_ID}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
                f'[ble]\nadapter = "hci0"\n'
                f'[[modules]]\nid = "{provision.card_ref.hex()}"\naddress = "{address}"\n')
            daemon = await _daemon(config, env, daemon_log)
            await _online(mosquitto, GATEWAY_ID)
            for i, suite in enumerate(Suite):
                await honest_card_payment(chain, f"process-card-{i}-1", 210 + i, suite)
            assert daemon.returncode is None and sim.returncode is None
        finally:
            for process in (daemon, sim):
                if process is not None:
                    await _stop(process)
        assert sim.returncode == 0
        secrets_ = [key.material() for _, key in provision.keys.values()]
        secrets_ += [p.read_bytes() for p in (platform.state_dir / ISSUER_DIR).glob("*.key")]
        assert len(secrets_) == 4
        simulator = sim_log.read_text(errors="replace")
        assert "new channel" in simulator               # -v: the card logged its channels
        logs = (factory_out.decode(errors="replace") + simulator
                + daemon_log.read_text(errors="replace") + caplog.text)
        for secret in secrets_:
            for form in _forms(secret):
                assert form not in logs


async def test_hostile_gateway_relays_one_cards_request_to_another_card_refused(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Two cards behind the real daemon. While card B waits for its own transaction request,
    the hostile gateway hands B the request the platform made for card A: B refuses it
    (``wrong_card``), A's payment ends rejected, and B's own payment still settles."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(True), with_gateway=False,
                             radio_adapters=4) as chain:
        assert chain.card is not None
        platform = chain.platform
        other = "dave-003"
        await platform.ledger.run(platform.ledger.add_account, other, "EUR", 5_000)
        provision = issue_card(FileIssuerKeys(platform.state_dir),
                               IssuedCards(platform.state_dir), bound_user=other)
        card_b_dir = tmp_path / "card-b"
        card_b_dir.mkdir(mode=0o700)
        write_atomic(card_b_dir / CARD_FILE, provision.encode())
        card_b = CardModule(CardElement(card_b_dir), FixedPolicy(True), adapter="hci3",
                            name="card-b", pairing_mode=True)
        await card_b.start()
        try:
            await _bond_with("hci0", chain.radio.adapters[3].address)
            await platform.cards.enroll(provision.card_ref, GATEWAY_ID)
            card_a = chain.card.card.facts().card_ref
            config = tmp_path / "blegw.toml"
            config.write_text(
                f'[gateway]\nid = "{REAL_GATEWAY}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
                f'[ble]\nadapter = "hci0"\n'
                f'[[modules]]\nid = "{card_a.hex()}"\n'
                f'address = "{chain.radio.adapters[2].address}"\n'
                f'[[modules]]\nid = "{provision.card_ref.hex()}"\n'
                f'address = "{chain.radio.adapters[3].address}"\n')
            env = {**os.environ, **chain.radio.environ()}
            hostile = HostileGateway(mosquitto.port)
            mitm = asyncio.create_task(hostile.run())
            daemon = await _daemon(config, env, tmp_path / "daemon.log")
            held: list[RelayRequest] = []
            try:
                await _online(mosquitto, REAL_GATEWAY)

                async def cross(request: RelayRequest) -> RelayResponse | None:
                    if not isinstance(decode(request.envelope), SealedMessage):
                        return None
                    if request.module_id == provision.card_ref:
                        held.append(request)          # B's own request waits
                        return HOLD
                    # A's request, written to card B (which waits for a request)
                    moved = RelayRequest(request.request_id, provision.card_ref,
                                         request.envelope, request.deadline)
                    assert hostile._client is not None
                    await hostile._client.publish(topic(REAL_GATEWAY, "req"), moved.encode(),
                                                  qos=1)
                    return HOLD

                hostile.intercept = cross
                before = await balances(chain)
                b_before = await platform.ledger.run(platform.ledger.balance, other)
                pay_b = asyncio.create_task(chain.pay(333, "card b", Suite.P256_SHA256,
                                                      "cross-card-b-001", other))
                for _ in range(200):
                    if held:
                        break
                    await asyncio.sleep(0.05)
                assert held, "card B's request never came"
                outcome = await chain.pay(95, "card a", Suite.P256_SHA256, "cross-card-a-01",
                                          CARD_PAYER)
                assert (outcome["state"], outcome["reason"]) == ("rejected", "card:wrong_card")
                assert await balances(chain) == before
                # card B refused the foreign request and still waits for its own
                hostile.intercept = None
                assert hostile._client is not None
                await hostile._client.publish(topic(REAL_GATEWAY, "req"), held[0].encode(),
                                              qos=1)
                b_outcome = await asyncio.wait_for(pay_b, 60)
                assert (b_outcome["state"], b_outcome["reason"]) == ("settled", "")
                assert await platform.ledger.run(platform.ledger.balance, other) \
                    == b_before - 333
                await honest_card_payment(chain, "cross-card-a-02")
                assert daemon.returncode is None
            finally:
                mitm.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await mitm
                await _stop(daemon)
        finally:
            await card_b.stop()
        violations, _ = await platform.ledger.run(platform.ledger.report)
        assert violations == []


@pytest.mark.needs_vbluez_control("link_loss")
async def test_card_link_lost_while_the_owner_decides_ends_explicitly_and_the_next_pays(
        mosquitto: Mosquitto) -> None:
    """The radio link to the card drops while its owner decides (the virtual radio's link
    loss, as out of range): the payment ends rejected with the gateway's status, nothing moves,
    and the next payment, on a new connection and so a new channel, settles."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(True, delay=1.0)) as chain:
        assert chain.card is not None
        await honest_card_payment(chain, "card-linkloss-01")      # connected once
        before = await balances(chain)
        pending = asyncio.create_task(chain.pay(500, "cut off", Suite.SM2_SM3,
                                                "card-linkloss-02", CARD_PAYER))
        for _ in range(100):                 # the request reached the card: its owner is asked
            if chain.card.handled.count("card-hello") == 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        await chain.radio.control.link_loss("hci0", chain.radio.adapters[2].address)
        outcome = await asyncio.wait_for(pending, 60)
        assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:link_error")
        assert await balances(chain) == before
        await honest_card_payment(chain, "card-linkloss-03", suite=Suite.SM2_SM3)


async def _blegw(chain: Chain, config: Path, *args: str, stdin: bytes = b"y\n"
                 ) -> tuple[int | None, bytes, bytes]:
    """``blegw ARGS`` as a process; fails the test if any card key shows in its output."""
    env = {**os.environ, **chain.radio.environ(), "BLEGW_CONFIG": str(config), "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), 90)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert chain.card_dir is not None
    provision = CardProvision.decode((chain.card_dir / CARD_FILE).read_bytes())
    text = (out + err).decode("utf-8", "replace")
    for _version, key in provision.keys.values():
        for form in _forms(key.material()):
            assert form not in text, f"a card key in the output of blegw {args[0]}"
    return proc.returncode, out, err


async def test_blegw_pair_of_a_card_bonds_enrolls_and_registers_it_and_the_card_pays(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """``blegw pair`` pointed at a card: it bonds (the card has no pairing agent here, so just
    works, accepted by ``--yes``), reads module info (a card), relays a challenge and posts the
    card's hello to the platform, which checks the card's key and the link and enrolls it for
    the account its issuer bound it to. The registry says ``card``, ``devices`` and ``status``
    show the kind, the running daemon serves it, and the card pays. A code of another account
    is refused first (nothing registered, the bond removed); ``forget`` revokes it at the
    platform's card route."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(True), paired=False) as chain:
        assert chain.card is not None
        gw = chain.gateway.config
        config = tmp_path / "blegw.toml"
        config.write_text(
            f'[gateway]\nid = "{GATEWAY_ID}"\nregistry = "{gw.registry}"\n'
            f'control_socket = "{gw.control_socket}"\nplatform_url = "{chain.base_url}"\n'
            f'[mqtt]\nurl = "{gw.mqtt.url}"\n[ble]\nadapter = "hci0"\nconnect_timeout = 5.0\n')
        address = chain.radio.adapters[2].address
        card_ref = chain.card.card.facts().card_ref
        ledger = chain.platform.ledger
        await ledger.run(ledger.add_account, "mallory", "EUR", 0)

        # another account holder's code: the platform refuses, nothing is kept
        wrong = await chain.platform.enrollment_code("mallory")
        code, out, err = await _blegw(chain, config, "pair", address, "--account", "mallory",
                                      "--code", wrong, "--yes")
        assert code == 13, (out, err)
        assert b"not valid for account" in err and b"bond made for this attempt was removed" \
            in err, err
        assert Registry(Path(gw.registry)).load() == []
        assert await chain.platform.cards.card_for(CARD_PAYER) is None

        code_text = await chain.platform.enrollment_code(CARD_PAYER)
        code, out, err = await _blegw(chain, config, "pair", address, "--account", CARD_PAYER,
                                      "--code", code_text, "--yes", "--name", "carol's card")
        assert code == 0, (out, err)
        assert f"card {card_ref.hex()}".encode() in out and b"suites aes, sm4" in out, out
        [entry] = Registry(Path(gw.registry)).load()
        assert (entry.kind, entry.module_id, entry.account, entry.suites, entry.bond) == (
            "card", card_ref.hex(), CARD_PAYER, ("aes", "sm4"), "just_works")
        card = await chain.platform.cards.card_for(CARD_PAYER)
        assert card is not None and (card.card_ref, card.gateway_id) == (card_ref, GATEWAY_ID)
        assert [await ledger.run(ledger.module, card_ref, s) for s in (1, 2)] == [None, None]
        # one challenge per pairing attempt, nothing else
        assert chain.card.handled == ["card-hello", "card-hello"]

        code, out, _ = await _blegw(chain, config, "devices", "--json")
        assert code == 0 and [(r["kind"], r["module_id"]) for r in json.loads(out)] == [
            ("card", card_ref.hex())]
        code, out, _ = await _blegw(chain, config, "status", "--json")
        assert code == 0
        status = json.loads(out)
        assert [(m["kind"], m["module_id"]) for m in status["modules"]] == [
            ("card", card_ref.hex())]

        for suite in Suite:
            await honest_card_payment(chain, f"paired-card-{suite.label}", suite=suite)
        assert chain.platform.counters["card_channel_unchecked"] == 0

        code, out, err = await _blegw(chain, config, "forget", card_ref.hex())
        assert code == 0, (out, err)
        assert b"enrollment revoked" in out, out
        assert await chain.platform.cards.card_for(CARD_PAYER) is None
        assert Registry(Path(gw.registry)).load() == []
