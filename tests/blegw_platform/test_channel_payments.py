"""Payments inside the secure channel, platform to module, through a gateway the test plays.

Real parts: the platform on a real SQLite ledger with its CA, request signers and channel keys
on disk; the module's soft secure element on disk (keys, certificates, trust anchors, counter,
replay memory, PIN hash, finger template). Only the gateway and the radio are replaced: the
test moves each relay request's envelope to the module's channel end and its answer back, as
the gateway does, and a hostile one alters, drops, replays, reorders or truncates them. Each
attack asserts that nothing settled (balances, audit), the typed reason, and that an honest
payment settles right after.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from blegw_platform.channel_keys import provision_channel_keys
from blegw_platform.code_confirmation import CodeConfirmation
from blegw_platform.code_payments import CodePayments
from blegw_platform.ledger import TerminalRecord, TransactionRecord
from blegw_platform.payment_modes import PaymentMode
from blegw_platform.platform import Platform, TransactionInput
from e2e import Suite, UserVerification
from relay_contract import RelayRequest, RelayResponse, RelayStatus, decode_from_platform
from secure_channel import ChannelSuite
from secure_channel.carriage import ChannelOpen, ChannelUnits, decode_carried, is_channel_envelope
from transaction_code import CodeKind, TransactionCode
from wearable_sim.channel_endpoint import ModuleChannel
from wearable_sim.element import SecureElement
from wearable_sim.policy import FixedPolicy, Prompt
from wearable_sim.state import ModuleState
from wearable_sim.verification import PIN_TRIES, ScriptedInput

PIN = "2468"
Hostile = Callable[[int, str, bytes], bytes | None]
"""(step number, "to_module" or "to_platform", envelope) -> the envelope passed on, or None:
the gateway answers the platform DEADLINE_PASSED instead."""


@dataclass
class World:
    platform: Platform
    module: ModuleChannel
    owner: ScriptedInput
    steps: int = 0
    recorded: list[tuple[str, bytes]] = field(default_factory=list)

    async def balances(self) -> tuple[int, int]:
        ledger = self.platform.ledger
        return (await ledger.run(ledger.balance, "alice"),
                await ledger.run(ledger.balance, "shop"))

    async def pay(self, amount: int, suite: Suite = Suite.P256_SHA256,
                  hostile: Hostile | None = None) -> TransactionRecord:
        """Create a payment and relay every step until it is final."""
        body = {"payer": "alice", "payee": "shop", "order_reference": f"R-{self.steps}",
                "order_description": "beans", "amount_minor": amount, "currency": "EUR",
                "suite": suite.label}
        record, _ = await self.platform.create(TransactionInput.from_json(body),
                                               f"idem-{time.monotonic_ns()}")
        await self.relay(hostile)
        ledger = self.platform.ledger
        final: TransactionRecord | None = await ledger.run(ledger.get, record.id)
        assert final is not None
        return final

    async def relay(self, hostile: Hostile | None = None) -> None:
        queue = self.platform._outbox
        while not queue.empty():
            _topic, payload = queue.get_nowait()
            request = decode_from_platform(payload)
            if not isinstance(request, RelayRequest):
                continue                        # a cancel: nothing in flight here
            self.steps += 1
            step = self.steps
            envelope: bytes | None = request.envelope
            self.recorded.append(("to_module", request.envelope))
            if hostile is not None:
                envelope = hostile(step, "to_module", envelope)
            if envelope is None:
                answer = RelayResponse(request.request_id, RelayStatus.DEADLINE_PASSED)
            else:
                back: bytes | None = await self.module.answer(envelope)
                assert back is not None
                self.recorded.append(("to_platform", back))
                if hostile is not None:
                    back = hostile(step, "to_platform", back)
                answer = (RelayResponse(request.request_id, RelayStatus.OK, back)
                          if back is not None else
                          RelayResponse(request.request_id, RelayStatus.DEADLINE_PASSED))
            await self.platform.handle_response(answer.encode(), "gw-1")

    async def audit_clean(self) -> None:
        ledger = self.platform.ledger
        assert await ledger.run(ledger.audit) == []


async def make_world(tmp_path: Path, policy: FixedPolicy | None = None,
                     channel_cls: type[ModuleChannel] = ModuleChannel, *,
                     pin: bool = False) -> World:
    """With ``pin`` the module has its PIN (scrypt: ~0.1 s per set and check) and alice pays
    with it from 5.01 EUR; without, nothing up to 20.00 EUR asks for a verification."""
    state = tmp_path / "platform"
    first = Platform(state)
    provision_channel_keys(state, first.cas, first.platform_id)
    first.close()
    platform = Platform(state)
    assert platform.channels.enabled
    ledger = platform.ledger
    await ledger.run(ledger.add_account, "alice", "EUR", 100_000)
    await ledger.run(ledger.add_account, "shop", "EUR", 0)
    element = SecureElement(ModuleState(tmp_path / "module"))
    element.install_trust_anchors(platform.trust_anchors())
    now = int(time.time())
    for suite in Suite:
        cert = platform.cas[suite].issue(element.public_key(suite), element.module_id,
                                         not_before=now - 60, not_after=now + 3600)
        element.install_certificate(cert.encode())
        await platform.enroll(cert.encode(), "alice", "gw-1")
    await platform.channels.modes.set("alice", PaymentMode(
        no_verification_up_to=500 if pin else 2000, fingerprint_from=10_000))
    owner = ScriptedInput(next_pin=PIN)
    module = channel_cls(element, policy or FixedPolicy(True), owner)
    if pin:
        module.pin.set(PIN)
    module.sensor.enroll()
    return World(platform, module, owner)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = await make_world(tmp_path)
    try:
        yield w
    finally:
        await w.platform.aclose()


@pytest.fixture
async def pin_world(tmp_path: Path) -> AsyncIterator[World]:
    w = await make_world(tmp_path, pin=True)
    try:
        yield w
    finally:
        await w.platform.aclose()


async def assert_honest(w: World, amount: int = 1200) -> None:
    """After an attack: nothing moved but what settled, and an honest payment settles."""
    alice, shop = await w.balances()
    w.owner.next_pin, w.owner.next_finger = PIN, "match"
    record = await w.pay(amount)
    assert (record.state, record.reason) == ("settled", "")
    assert await w.balances() == (alice - amount, shop + amount)
    await w.audit_clean()


# -- the honest path -------------------------------------------------------------------------
@pytest.mark.parametrize("suite", [Suite.P256_SHA256, Suite.SM2_SM3])
async def test_payment_over_the_channel_settles_in_each_suite_and_mode(
        pin_world: World, suite: Suite) -> None:
    world = pin_world
    for amount, done in ((300, "none"), (1500, "pin"), (20_000, "fingerprint")):
        before = await world.balances()
        record = await world.pay(amount, suite)
        assert (record.state, record.reason) == ("settled", ""), record.reason
        assert await world.balances() == (before[0] - amount, before[1] + amount)
        assert world.module.handled[-1] == f"approved:{done}"
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert (ch.handshakes, ch.resumptions) == (1, 0)   # one channel for the three payments
    await world.audit_clean()


async def test_the_gateway_sees_only_channel_envelopes_of_one_size(pin_world: World) -> None:
    world = pin_world
    await world.pay(300)
    before = len(world.recorded)
    await world.pay(1500)
    await world.pay(20_000)
    payments = world.recorded[before:]
    # One exchange per payment on a live channel; a record each way, all of one length:
    # the gateway cannot tell which verification was asked, nor the amount.
    assert len(payments) == 4
    for _, envelope in payments:
        assert envelope[:6] in (bytes.fromhex("a30101021820"), bytes.fromhex("a30101021821"))
    sizes = {len(e) for _, e in payments}
    assert len(sizes) == 1, sizes
    assert b"alice" not in b"".join(e for _, e in world.recorded)


async def test_reconnect_resumes_without_a_full_handshake(world: World) -> None:
    await world.pay(1500)
    world.module.link_lost()                    # the BLE link dropped and came back
    record = await world.pay(1500)
    assert record.state == "settled"
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert (ch.handshakes, ch.resumptions) == (1, 1)
    assert "channel-resume" in world.module.handled


# -- attacks on the channel ------------------------------------------------------------------
def flip(envelope: bytes, at: int = -20) -> bytes:
    out = bytearray(envelope)
    out[at] ^= 0x01
    return bytes(out)


def on_unit(change: Callable[[bytes], bytes]) -> Callable[[bytes, bool], bytes]:
    """Apply ``change`` to the first unit inside a channel envelope, re-wrapped validly."""
    def apply(envelope: bytes, to_module: bool) -> bytes:
        carried = decode_carried(envelope, to_module=to_module)
        assert isinstance(carried, ChannelUnits)
        units = (change(carried.units[0]), *carried.units[1:])
        return ChannelUnits(units, to_module).encode()
    return apply


STEPS = [(1, "to_platform"), (2, "to_module"), (2, "to_platform"), (3, "to_module"),
         (3, "to_platform"), (4, "to_module"), (4, "to_platform")]


@pytest.mark.parametrize(("kind", "step", "direction"), [
    (kind, step, direction) for kind in ("alter", "truncate", "drop", "replay")
    for step, direction in STEPS if (kind, step) != ("replay", 1)])   # nothing before the hello
async def test_relay_alters_truncates_drops_or_replays_a_handshake_unit_or_record(
        world: World, step: int, direction: str, kind: str) -> None:
    """Steps 1-3 are the handshake (open/hello, server hello/key exchange, finished/finished),
    step 4 the payment's records. (The open carries no unit: a relay that rewrites it is
    the downgrade test's.) ``replay`` puts the same direction's unit of the step before in
    its place (step 1: the hello again where it was)."""
    change = on_unit(flip if kind == "alter" else (lambda u: u[:-5]))
    seen: dict[tuple[int, str], bytes] = {}

    def hostile(n: int, way: str, envelope: bytes) -> bytes | None:
        seen[(n, way)] = envelope
        if (n, way) != (step, direction):
            return envelope
        if kind == "drop":
            return None                    # the gateway claims the deadline passed
        if kind == "replay":
            return seen[(n - 1, way)]
        return change(envelope, way == "to_module")

    before = await world.balances()
    record = await world.pay(1500, hostile=hostile)
    if kind == "drop":
        assert (record.state, record.reason) == ("timed_out", "gateway:deadline_passed")
    elif (kind, step, direction) == ("replay", 4, "to_module"):
        # The platform's finished where the order should be: the module read no order (a
        # handshake unit is no record; it answers unexpected_message) and the platform sends
        # the same order once more in a resumed session: one approval, paid once.
        assert record.state == "settled"
        assert sum(h.startswith("approved:") for h in world.module.handled) == 1
        assert await world.balances() == (before[0] - 1500, before[1] + 1500)
        await assert_honest(world)
        return
    else:
        assert record.state == "rejected"
        assert record.reason.startswith("channel:"), record.reason
    assert await world.balances() == before
    await assert_honest(world)


async def test_relay_rewrites_the_open_to_downgrade_the_suite(world: World) -> None:
    """The open is not authenticated: a relay that asks for key transport only, or for the
    other family, moves nothing (the offer and the choice are in the signed transcript)."""
    def only(suites: tuple[int, ...]) -> Hostile:
        def hostile(n: int, way: str, envelope: bytes) -> bytes:
            carried = decode_carried(envelope, to_module=True) if way == "to_module" else None
            return ChannelOpen(suites).encode() if isinstance(carried, ChannelOpen) \
                else envelope
        return hostile

    record = await world.pay(1500, hostile=only((int(ChannelSuite.KT_P256_AES128GCM_SHA256),)))
    assert record.state == "settled"
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert ch.suite is ChannelSuite.DHE_P256_AES128GCM_SHA256
    ch.end()
    before = await world.balances()
    record = await world.pay(1500, hostile=only((int(ChannelSuite.DHE_SM2_SM4GCM_SM3),)))
    assert (record.state, record.reason) == ("rejected", "channel:unsupported_suite")
    assert await world.balances() == before
    await assert_honest(world)


async def test_relay_drops_the_answer_to_an_order(world: World) -> None:
    await world.pay(300)
    before = await world.balances()
    record = await world.pay(1500, hostile=lambda n, way, e: None if way == "to_platform"
                             else e)
    assert (record.state, record.reason) == ("timed_out", "gateway:deadline_passed")
    assert await world.balances() == before
    await assert_honest(world)


async def test_relay_replays_an_earlier_approval_record(world: World) -> None:
    await world.pay(1500)
    old_answer = world.recorded[-1][1]
    before = await world.balances()
    record = await world.pay(1500, hostile=lambda n, way, e: old_answer
                             if way == "to_platform" else e)
    assert (record.state, record.reason) == ("rejected", "channel:record_replay")
    assert await world.balances() == before
    await assert_honest(world)


async def test_relay_replays_an_earlier_order_to_the_module(world: World) -> None:
    await world.pay(1500)
    old_order = world.recorded[-2][1]
    before = await world.balances()
    record = await world.pay(1500, hostile=lambda n, way, e: old_order
                             if way == "to_module" else e)
    assert record.state == "rejected"
    assert record.reason == "channel:peer_11"         # the module: record_replay
    assert await world.balances() == before
    await assert_honest(world)


async def test_relay_reorders_and_drops_units_of_a_resumption(world: World) -> None:
    for change in (lambda us: tuple(reversed(us)), lambda us: us[:1]):
        assert (await world.pay(300)).state == "settled"  # a live channel and a ticket
        world.module.link_lost()

        def hostile(n: int, way: str, envelope: bytes,
                    change: Callable[[tuple[bytes, ...]], tuple[bytes, ...]] = change
                    ) -> bytes | None:
            carried = decode_carried(envelope, to_module=way == "to_module")
            if isinstance(carried, ChannelUnits) and len(carried.units) == 2:
                return ChannelUnits(change(carried.units), carried.to_module).encode()
            return envelope

        before = await world.balances()
        record = await world.pay(1500, hostile=hostile)
        assert record.state == "rejected"
        assert record.reason.startswith("channel:"), record.reason
        assert await world.balances() == before
    await assert_honest(world)


async def test_relay_replays_a_whole_recorded_session(tmp_path: Path) -> None:
    w = await make_world(tmp_path)
    try:
        await w.pay(1500)
        session = [e for way, e in w.recorded if way == "to_platform"]
        assert len(session) == 4                 # hello, key exchange, finished, approval
        w.platform.channels.channel(w.module.element.module_id).end()  # type: ignore[union-attr]
        before = await w.balances()
        record = await w.pay(1500, hostile=lambda n, way, e: session[n - 5]
                             if way == "to_platform" else e)
        assert (record.state, record.reason) == ("rejected", "channel:bad_signature")
        assert await w.balances() == before
        await assert_honest(w)
    finally:
        await w.platform.aclose()


# -- payment modes ---------------------------------------------------------------------------
async def test_wrong_pin_n_times_locks_the_pin_and_nothing_settles(pin_world: World) -> None:
    world = pin_world
    before = await world.balances()
    world.owner.next_pin = "0000"
    reasons = [(await world.pay(1500)).reason for _ in range(PIN_TRIES + 1)]
    assert reasons == ["module:pin_wrong"] * (PIN_TRIES - 1) + ["module:pin_locked"] * 2
    world.owner.next_pin = PIN                  # even the right PIN: locked
    assert (await world.pay(1500)).reason == "module:pin_locked"
    assert await world.balances() == before
    # Below the payer's limit no PIN is asked; provisioning a new PIN unlocks it.
    assert (await world.pay(300)).state == "settled"
    world.module.pin.set(PIN)
    await assert_honest(world)


async def test_non_matching_finger_is_refused(world: World) -> None:
    before = await world.balances()
    world.owner.next_finger = "other"
    record = await world.pay(20_000)
    assert (record.state, record.reason) == ("rejected", "module:finger_no_match")
    assert await world.balances() == before
    await assert_honest(world, 20_000)


class WeakModule(ModuleChannel):
    """A module (or firmware) that approves without the verification asked, and says so."""

    async def _decide(self, prompt: Prompt, required: UserVerification
                      ) -> tuple[bool, UserVerification]:
        return True, UserVerification.PRESENCE


async def test_approval_weaker_than_the_policy_is_refused(tmp_path: Path) -> None:
    w = await make_world(tmp_path, channel_cls=WeakModule, pin=True)
    try:
        before = await w.balances()
        for amount in (1500, 20_000):
            record = await w.pay(amount)
            assert (record.state, record.reason) == ("rejected", "verification_too_weak")
        assert await w.balances() == before
        assert (await w.pay(300)).state == "settled"   # presence is enough under the limit
        await w.audit_clean()
    finally:
        await w.platform.aclose()


async def test_gateway_that_never_answers_does_not_block_the_channel(world: World) -> None:
    await world.pay(300)
    before = await world.balances()
    body = {"payer": "alice", "payee": "shop", "order_reference": "lost",
            "order_description": "lost", "amount_minor": 1500, "currency": "EUR"}
    lost, _ = await world.platform.create(TransactionInput.from_json(body), "idem-lost")
    world.platform._outbox.get_nowait()         # the gateway swallows the order
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert ch.in_flight is not None
    ch.deadline = time.time() - 60               # its deadline passed long ago
    await world.platform.expire()                # the sweep stops waiting for it
    assert ch.in_flight is None
    await assert_honest(world)                   # the next payment goes through
    ledger = world.platform.ledger
    record = await ledger.run(ledger.get, lost.id)
    assert record is not None
    assert record.state == "pending"             # it ends timed_out at its own expiry
    alice, shop = await world.balances()
    assert (alice, shop) == (before[0] - 1200, before[1] + 1200)


async def test_payments_created_together_share_the_channel_one_at_a_time(world: World) -> None:
    import asyncio
    before = await world.balances()
    bodies = [{"payer": "alice", "payee": "shop", "order_reference": f"T-{i}",
               "order_description": "together", "amount_minor": 100 + i, "currency": "EUR"}
              for i in range(4)]
    created = await asyncio.gather(*(world.platform.create(TransactionInput.from_json(b),
                                                           f"idem-together-{i}")
                                     for i, b in enumerate(bodies)))
    assert world.platform._outbox.qsize() == 1   # one step in flight per module
    await world.relay()
    ledger = world.platform.ledger
    for record, _ in created:
        final = await ledger.run(ledger.get, record.id)
        assert final is not None
        assert final.state == "settled"
    assert await world.balances() == (before[0] - 406, before[1] + 406)
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert ch.handshakes == 1


async def test_module_certificate_other_than_the_enrolled_one_opens_no_channel(
        world: World) -> None:
    """The CA issued it, the key is the module's, but the platform enrolled another
    certificate (this one was never enrolled, or replaced one that was revoked)."""
    await world.pay(300)
    element = world.module.element
    now = int(time.time())
    other = world.platform.cas[Suite.P256_SHA256].issue(
        element.public_key(Suite.P256_SHA256), element.module_id, not_before=now - 60,
        not_after=now + 7200)
    element.install_certificate(other.encode())
    world.module.link_lost()
    world.module.tickets.clear()                 # no ticket: a full handshake
    before = await world.balances()
    record = await world.pay(1500)
    assert (record.state, record.reason) == ("rejected", "channel:certificate_revoked")
    assert await world.balances() == before
    await world.platform.enroll(other.encode(), "alice", "gw-1")   # the operator enrolls it
    await assert_honest(world)


async def test_platform_restart_opens_a_new_channel(tmp_path: Path) -> None:
    """The platform's channels and session cache live in memory: after a restart the module's
    ticket is unknown, the platform answers a full server hello, and the payment settles."""
    w = await make_world(tmp_path)
    await w.pay(1500)
    await w.platform.aclose()
    w.platform = Platform(tmp_path / "platform")
    try:
        record = await w.pay(1500)
        assert record.state == "settled"
        ch = w.platform.channels.channel(w.module.element.module_id)
        assert ch is not None
        assert (ch.handshakes, ch.resumptions) == (1, 0)
        await w.audit_clean()
    finally:
        await w.platform.aclose()


async def test_cancel_racing_the_approval_moves_nothing(world: World) -> None:
    await world.pay(300)
    before = await world.balances()
    body = {"payer": "alice", "payee": "shop", "order_reference": "cancel",
            "order_description": "cancelled", "amount_minor": 1500, "currency": "EUR"}
    record, _ = await world.platform.create(TransactionInput.from_json(body), "idem-cancel")
    cancelled = await world.platform.cancel(record.id)
    assert cancelled.state == "cancelled"
    await world.relay()                          # the module approves anyway: too late
    assert world.module.handled[-1] == "approved:none"
    ledger = world.platform.ledger
    final = await ledger.run(ledger.get, record.id)
    assert final is not None
    assert final.state == "cancelled"
    assert await world.balances() == before
    await assert_honest(world)


async def test_module_session_expired_first_is_renewed_not_refused(world: World) -> None:
    await world.pay(1500)
    assert world.module.session is not None
    world.module.session.expires_at = time.time() - 1   # the module's clock ran ahead
    record = await world.pay(1500)
    assert record.state == "settled"
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert ch.resumptions == 1


async def test_a_ping_looks_like_a_payment_on_the_air(world: World) -> None:
    import asyncio
    await world.pay(1500)
    n = len(world.recorded)
    ledger = world.platform.ledger
    module = await ledger.run(ledger.module_for, "alice", int(Suite.P256_SHA256))
    assert module is not None
    pinged = asyncio.ensure_future(world.platform.channels.ping(module))
    await asyncio.sleep(0)
    await world.relay()
    assert await pinged >= 0
    assert world.module.handled[-1] == "channel-ping"
    ping_sizes = {len(e) for _, e in world.recorded[n:]}
    await world.pay(20_000)
    payment_sizes = {len(e) for _, e in world.recorded[n + 2:]}
    assert ping_sizes == payment_sizes and len(ping_sizes) == 1
    # a ping the relay alters fails like a payment would, and the channel reopens after it
    pinged = asyncio.ensure_future(world.platform.channels.ping(module))
    await asyncio.sleep(0)
    await world.relay(lambda n, way, e: flip(e) if way == "to_platform" else e)
    from blegw_platform.channel_payments import ChannelPingFailed
    with pytest.raises(ChannelPingFailed, match="channel:bad_record"):
        await pinged
    await assert_honest(world)


@pytest.mark.parametrize("suite", list(ChannelSuite))
async def test_payment_settles_in_every_channel_suite(world: World, suite: ChannelSuite) -> None:
    """The platform's suite list is its policy: restricted to one suite, that suite is
    negotiated (key transport or ephemeral, SM4-GCM, AES-128-GCM or AES-256-GCM)."""
    world.platform.channels.suites = [suite]
    family = suite.params.signature
    before = await world.balances()
    record = await world.pay(700, family)
    assert (record.state, record.reason) == ("settled", "")
    ch = world.platform.channels.channel(world.module.element.module_id)
    assert ch is not None
    assert ch.suite is suite
    assert await world.balances() == (before[0] - 700, before[1] + 700)
    # a suite the platform drops from its list is not used again: the next payment renegotiates
    other = next(s for s in ChannelSuite if s.params.signature is family and s is not suite)
    world.platform.channels.suites = [other]
    assert (await world.pay(700, family)).state == "settled"
    assert ch.suite is other


# -- a transaction code the payer confirms (flow F-D above the platform's threshold) -----------
async def _confirmed_code(w: World, amount: int) -> TransactionRecord:
    """Alice's payment code presented at the shop's till, above the confirmation threshold:
    pending until her module answers; every step relayed as the gateway would."""
    w.platform.code_confirmation = CodeConfirmation(above_minor=0)
    element = w.module.element
    suite = Suite.P256_SHA256
    issued = int(time.time())
    code = element.sign_code(TransactionCode(
        CodeKind.PAYMENT, suite, element.code_signer(suite), "alice", amount, "EUR", issued,
        issued + 120, secrets.token_bytes(16)))
    till = TerminalRecord("till", ("shop",), time.time(), None)
    record, created = await CodePayments(w.platform).submit_presented(
        code.encode(), "shop", amount, "EUR", till)
    assert (created, record.state) == (True, "pending")
    await w.relay()
    ledger = w.platform.ledger
    final: TransactionRecord | None = await ledger.run(ledger.get, record.id)
    assert final is not None
    return final


async def test_a_confirmed_code_goes_inside_the_channel_and_a_weaker_approval_is_refused(
        tmp_path: Path) -> None:
    """A code's confirmation once left as a plain request beside the channel: the gateway read
    it, and the payer's payment mode was neither asked for nor checked, so a module (or
    firmware) approving with presence alone settled 15.00 where the mode asks for the PIN."""
    w = await make_world(tmp_path / "weak", channel_cls=WeakModule, pin=True)
    try:
        before = await w.balances()
        record = await _confirmed_code(w, 1500)
        assert (record.state, record.reason) == ("rejected", "verification_too_weak")
        assert w.recorded and all(is_channel_envelope(env) for way, env in w.recorded
                                  if way == "to_module")
        assert await w.balances() == before
        await w.audit_clean()
    finally:
        await w.platform.aclose()
    honest = await make_world(tmp_path / "honest", pin=True)
    try:
        before = await honest.balances()
        record = await _confirmed_code(honest, 1500)
        assert (record.state, record.reason) == ("settled", "")
        assert await honest.balances() == (before[0] - 1500, before[1] + 1500)
        assert all(is_channel_envelope(env) for way, env in honest.recorded
                   if way == "to_module")
        await honest.audit_clean()
    finally:
        await honest.platform.aclose()
