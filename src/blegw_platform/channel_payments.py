"""Payments over the secure channel (flow F-B) through the untrusted gateway.

Once the platform holds channel keys (``blegw-platform channel-keys``), every module payment
travels inside the channel: the platform-signed confirmation request and the verification the
payer's mode asks for go to the module in a record, and the module's signed approval comes
back in a record. Each step is one relay request with its own id, so the gateway relays it as
any other and sees only channel envelopes (docs/secure-channel.md, "Through the gateway").

One channel per module, held here between payments:

* no channel yet (or its family differs from the payment's suite, or it ended): the platform
  sends an *open*; the module answers its hello (with its resumption ticket when it has one);
  a full handshake takes three exchanges, a resumption two;
* a live channel: one exchange per payment (order out, approval back);
* anything that is not exactly the next expected unit (an altered, dropped, replayed,
  reordered or truncated unit, a relay status other than OK, a session past its lifetime) ends
  the channel on this side; the payment whose step failed ends ``rejected`` with
  ``channel:<code>`` and nothing settles. The next payment opens again (and resumes, if the
  module still holds its ticket).

A module whose link dropped ends its channel (its ticket stays); the first record it then gets
is answered with an error unit, and the platform resumes and sends the same order once more in
the new session (the module never read it: it had no keys for it).

Settlement is the platform's own: the approval is verified against the request envelope the
ledger stored (:meth:`Platform._decide`), then its user verification against what was asked
(:func:`payment_modes.satisfies`), then settled exactly once by the ledger. State of a channel
and of the steps in flight lives in memory: after a restart a step's answer is unknown here and
its payment ends ``timed_out`` at its expiry, never settled.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from e2e import (
    Certificate,
    ConfirmationResponse,
    E2EError,
    Suite,
    UserVerification,
    decode_envelope,
)
from relay_contract import (
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    topic,
)
from secure_channel import (
    ChannelError,
    ChannelResponder,
    ChannelSuite,
    PlatformCredentials,
    ResponderPolicy,
    Session,
    SessionCache,
)
from secure_channel.application import (
    PAD_TO,
    Approval,
    Order,
    Ping,
    Pong,
    Refusal,
    decode_app,
)
from secure_channel.carriage import ChannelOpen, ChannelUnits, decode_carried
from secure_channel.errors import ChannelErrorCode, PeerError, Unexpected
from secure_channel.wire import ContentType, decode_error

from .card_payments import RELAY_STATUS_REJECTS
from .channel_keys import load_channel_credentials
from .ledger import FINAL_STATES
from .payment_modes import PaymentModes, satisfies

if TYPE_CHECKING:
    from .ledger import ModuleRecord, TransactionRecord
    from .platform import Platform

__all__ = ["DEFAULT_SUITES", "ChannelPayments", "ChannelPingFailed"]

log = logging.getLogger("blegw.platform.channel")

DEFAULT_SUITES = [ChannelSuite.DHE_SM2_SM4GCM_SM3, ChannelSuite.DHE_P256_AES128GCM_SHA256,
                  ChannelSuite.DHE_P256_AES256GCM_SHA256, ChannelSuite.KT_SM2_SM4GCM_SM3,
                  ChannelSuite.KT_P256_AES128GCM_SHA256, ChannelSuite.KT_P256_AES256GCM_SHA256]
"""The platform's preference: ephemeral key agreement first (forward secrecy, see the threat
model); the payment's signature suite picks the family."""
OVERDUE_GRACE = 10.0
"""Seconds past a step's relay deadline before the platform stops waiting for its answer (the
gateway answers DEADLINE_PASSED itself at the deadline)."""
RENEW_BEFORE = 60.0
"""A session this close to its lifetime's end is not used for an order: the module's clock may
run ahead, and a resumption costs less than a refused payment."""
HANDSHAKE_STEP = 30.0
"""Seconds the gateway has for one handshake step (the handshake's own limit)."""


_NO_SESSION = (ChannelErrorCode.UNEXPECTED_MESSAGE, ChannelErrorCode.SESSION_EXPIRED)
"""What a module answers a record it holds no live session for (its link dropped, or its clock
ended the session first): it read nothing, so the order goes once more in a new session."""


@dataclass(frozen=True, slots=True)
class _Send:
    units: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class _Finish:
    payment: _Payment | _Ping
    state: str
    reason: str


@dataclass(frozen=True, slots=True)
class _Pong:
    ping: _Ping


@dataclass(frozen=True, slots=True)
class _Answer:
    payment: _Payment
    message: ConfirmationResponse | Refusal
    envelope: bytes


@dataclass(slots=True)
class _Payment:
    tx_id: bytes
    required: UserVerification
    module: ModuleRecord
    """The enrollment of the payment's suite: the channel accepts its certificate only."""
    resent: bool = False


@dataclass(slots=True)
class _Ping:
    """A ping through the channel: on the air a record of the same size as an order."""

    nonce: bytes
    family: Suite
    module: ModuleRecord
    done: asyncio.Future[float]
    sent: float = 0.0
    resent: bool = False

    def fail(self, reason: str) -> None:
        if not self.done.done():
            self.done.set_exception(ChannelPingFailed(reason))


class ChannelPingFailed(Exception):
    """A channel ping got no pong; ``args[0]`` is the reason (as a payment's would be)."""


@dataclass(slots=True)
class _Channel:
    """The platform's side of one module's channel and the payments waiting for it."""

    module: ModuleRecord
    family: Suite | None = None
    responder: ChannelResponder | None = None
    session: Session | None = None
    queue: deque[_Payment | _Ping] = field(default_factory=deque)
    in_flight: bytes | None = None
    """The relay request awaiting its answer (one at a time per module)."""
    deadline: float = 0.0
    """When the gateway should have answered it (its relay deadline)."""
    order: _Payment | _Ping | None = None
    """The payment whose order (or the ping) is in flight."""
    suite: ChannelSuite | None = None
    """The suite the last handshake agreed."""
    handshakes: int = 0
    resumptions: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while a step is chosen and sent: two payments arriving together must not both
    find the channel idle."""

    def end(self) -> None:
        self.responder = None
        self.session = None


class ChannelPayments:
    """The platform's channel side: one :class:`_Channel` per module, payments through it."""

    def __init__(self, platform: Platform, suites: list[ChannelSuite] | None = None,
                 session_lifetime: int = 3600) -> None:
        self.platform = platform
        self.credentials: PlatformCredentials | None = load_channel_credentials(
            platform.state_dir, platform.cas)
        self.modes = PaymentModes(platform.ledger)
        self.suites = suites or DEFAULT_SUITES
        self.session_lifetime = session_lifetime
        self.cache = SessionCache()
        self._channels: dict[bytes, _Channel] = {}
        self._relays: dict[bytes, bytes] = {}
        """Relay request id -> module id, for the steps in flight."""

    @property
    def enabled(self) -> bool:
        """Channel keys are provisioned: module payments go through the channel."""
        return self.credentials is not None

    def close(self) -> None:
        self.modes.close()

    def channel(self, module_id: bytes) -> _Channel | None:
        """A module's channel state (for tests and status)."""
        return self._channels.get(module_id)

    # -- payments in -----------------------------------------------------------------------------
    async def submit(self, tx: TransactionRecord, module: ModuleRecord) -> None:
        """Queue a recorded payment for its module's channel and move the channel on."""
        required = await self.modes.required(tx.payer, tx.amount_minor)
        ch = self._channels.get(module.module_id)
        if ch is None:
            ch = self._channels[module.module_id] = _Channel(module)
        ch.module = module
        ch.queue.append(_Payment(tx.id, required, module))
        await self._pump(ch)

    async def ping(self, module: ModuleRecord, timeout: float = 30.0) -> float:
        """Seconds for a ping through the module's channel (opened first if it must be): a
        liveness check that the gateway cannot tell from a payment. Raises
        :class:`ChannelPingFailed` or ``TimeoutError``."""
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        ch = self._channels.get(module.module_id)
        if ch is None:
            ch = self._channels[module.module_id] = _Channel(module)
        ch.queue.append(_Ping(secrets.token_bytes(16), Suite(module.suite), module, done))
        await self._pump(ch)
        return await asyncio.wait_for(done, timeout)

    def owns(self, relay_id: bytes) -> bool:
        return relay_id in self._relays

    async def sweep(self) -> None:
        """Move every channel whose step the gateway never answered (called with the
        platform's expiry sweep, so queued payments do not wait for the next one)."""
        for ch in list(self._channels.values()):
            await self._pump(ch)

    def _abandon_overdue(self, ch: _Channel) -> None:
        """A step unanswered past its deadline (a gateway that lost or withheld it) ends the
        channel; its payment ends at its own expiry, ``timed_out``, never settled."""
        if ch.in_flight is not None and time.time() > ch.deadline + OVERDUE_GRACE:
            log.warning("channel step to %s unanswered past its deadline: channel ended",
                        ch.module.module_id.hex())
            self._relays.pop(ch.in_flight, None)
            if isinstance(ch.order, _Ping):
                ch.order.fail("gateway:no_answer")
            ch.in_flight, ch.order = None, None
            ch.end()

    async def _pump(self, ch: _Channel) -> None:
        """Send the channel's next step if nothing is in flight."""
        async with ch.lock:
            await self._next(ch)

    async def _next(self, ch: _Channel) -> None:
        self._abandon_overdue(ch)
        ledger = self.platform.ledger
        while ch.in_flight is None and ch.queue:
            head = ch.queue[0]
            now = time.time()
            if isinstance(head, _Ping):
                if head.done.done():            # its caller gave up
                    ch.queue.popleft()
                    continue
                family, expires, module = head.family, now + HANDSHAKE_STEP, head.module
                message = Ping(head.nonce).encode()
            else:
                tx: TransactionRecord | None = await ledger.run(ledger.get, head.tx_id)
                if tx is None or tx.state in FINAL_STATES:
                    ch.queue.popleft()          # cancelled or expired while it waited
                    continue
                family, expires, module = Suite(tx.suite), float(tx.expires_at), head.module
                message = Order(tx.envelope, int(head.required)).encode()
            if ch.session is not None and ch.family is family and not ch.session.closed \
                    and ch.suite in self.suites and now < ch.session.expires_at - RENEW_BEFORE:
                ch.queue.popleft()
                ch.order = head
                try:
                    units = ch.session.seal(message, now, pad_to=PAD_TO)
                except ChannelError as exc:
                    ch.end()
                    ch.queue.appendleft(head)
                    ch.order = None
                    log.info("channel to %s ended before an order: %s",
                             ch.module.module_id.hex(), exc)
                    continue
                if isinstance(head, _Ping):
                    head.sent = time.perf_counter()
                await self._send(ch, ChannelUnits(tuple(units), True).encode(), expires)
                return
            ch.end()
            ch.family = family
            assert self.credentials is not None
            ch.responder = ChannelResponder(self.credentials, self._policy(module, family))
            offer = tuple(int(s) for s in self.suites if s.params.signature is family)
            await self._send(ch, ChannelOpen(offer).encode(), min(expires, now + HANDSHAKE_STEP))

    def _policy(self, module: ModuleRecord, family: Suite) -> ResponderPolicy:
        enrolled = module.certificate

        def revoked(cert: Certificate) -> bool:
            # The channel is for the enrolled module only: its exact certificate, while the
            # enrollment is active (this state is rebuilt from the ledger at each payment).
            return cert.encode() != enrolled

        # Only the payment's family: a relay that changed the open's list cannot move it.
        suites = [s for s in self.suites if s.params.signature is family]
        return ResponderPolicy(suites, revoked, session_lifetime=self.session_lifetime,
                               cache=self.cache)

    async def _send(self, ch: _Channel, envelope: bytes, deadline: float) -> None:
        relay_id = secrets.token_bytes(16)
        ch.in_flight, ch.deadline = relay_id, deadline
        self._relays[relay_id] = ch.module.module_id
        request = RelayRequest(relay_id, ch.module.module_id, envelope, deadline)
        await self.platform._outbox.put((topic(ch.module.gateway_id, "req"), request.encode()))

    # -- answers in ------------------------------------------------------------------------------
    async def handle(self, relay: RelayResponse, gateway_id: str | None
                     ) -> TransactionRecord | None:
        """One relay response to a channel step: the next step, or a payment's outcome."""
        module_id = self._relays.get(relay.request_id)
        ch = self._channels.get(module_id) if module_id is not None else None
        if ch is None or ch.in_flight != relay.request_id:
            return None
        if gateway_id is not None and ch.module.gateway_id != gateway_id:
            self.platform.counters["foreign_responses"] += 1
            log.warning("channel response from gateway %s, not the module's: ignored",
                        gateway_id)
            return None
        async with ch.lock:
            if ch.in_flight != relay.request_id:    # a duplicate answered while we waited
                return None
            return await self._answered(ch, relay)

    async def _answered(self, ch: _Channel, relay: RelayResponse) -> TransactionRecord | None:
        del self._relays[relay.request_id]
        ch.in_flight = None
        order, ch.order = ch.order, None
        try:
            step = self._step(ch, relay, order)
        except ChannelError as exc:
            ch.end()
            step = self._failed(ch, order, exc)
        record = None
        if isinstance(step, _Send):
            await self._send(ch, ChannelUnits(step.units, True).encode(),
                             time.time() + HANDSHAKE_STEP)
            return None
        if isinstance(step, _Pong):
            if not step.ping.done.done():
                step.ping.done.set_result(time.perf_counter() - step.ping.sent)
        elif isinstance(step, _Finish):
            if isinstance(step.payment, _Ping):
                step.payment.fail(step.reason)
            else:
                record = await self._finish(step.payment, step.state, step.reason, None)
        elif isinstance(step, _Answer):
            record = await self._approved(step.payment, step)
        await self._next(ch)
        return record

    def _failed(self, ch: _Channel, order: _Payment | _Ping | None, exc: ChannelError
                ) -> _Finish | None:
        """A channel error: the payment it concerns ends rejected, unless the module only
        lost its session (its link dropped): then the same order goes once more, resumed."""
        log.info("channel with %s ended: %s", ch.module.module_id.hex(), exc)
        if isinstance(exc, PeerError) and order is not None and not order.resent \
                and exc.peer_code in _NO_SESSION:
            order.resent = True
            ch.queue.appendleft(order)
            return None
        payment = order if order is not None else (ch.queue.popleft() if ch.queue else None)
        if payment is None:
            return None
        name = (f"peer_{exc.peer_code}" if isinstance(exc, PeerError)
                else exc.code.name.lower())
        return _Finish(payment, "rejected", f"channel:{name}")

    def _step(self, ch: _Channel, relay: RelayResponse, order: _Payment | _Ping | None
              ) -> _Send | _Finish | _Answer | _Pong | None:
        """Feed one answer to the channel: the next units to send, or what it means for a
        payment. A :class:`ChannelError` ends the channel."""
        if relay.status is not RelayStatus.OK:
            ch.end()
            payment = order if order is not None else (ch.queue.popleft() if ch.queue
                                                       else None)
            if payment is None:
                return None
            state = "rejected" if relay.status in RELAY_STATUS_REJECTS else "timed_out"
            if relay.status is RelayStatus.CANCELLED:
                state = "cancelled"
            return _Finish(payment, state, f"gateway:{relay.status.name.lower()}")
        carried = decode_carried(relay.envelope, to_module=False)
        assert isinstance(carried, ChannelUnits)
        now = time.time()
        units = carried.units
        if units[0][:1] == bytes([ContentType.ERROR]):
            raise PeerError(decode_error(units[0]))
        if ch.responder is not None:
            responder = ch.responder
            out: list[bytes] = []
            for unit in units:
                out += responder.receive(unit, now)
            if responder.session is None:
                if not out:
                    raise Unexpected("the handshake stalled")
                return _Send(tuple(out))
            ch.session, ch.responder, ch.suite = responder.session, None, responder.suite
            if responder.resumed:
                ch.resumptions += 1
            else:
                ch.handshakes += 1
            if out:
                raise Unexpected("units after the handshake ended")
            return None
        if ch.session is None or order is None or len(units) != 1:
            raise Unexpected("a record without an order in flight")
        plaintext = ch.session.open(units[0], now)
        if plaintext is None:
            raise Unexpected("a key update instead of an answer")
        message = decode_app(plaintext)
        if isinstance(order, _Ping):
            if not isinstance(message, Pong) or message.nonce != order.nonce:
                raise Unexpected("not the pong of this ping")
            return _Pong(order)
        if isinstance(message, Approval):
            try:
                answer = decode_envelope(message.response)
            except E2EError as exc:
                return _Finish(order, "rejected", f"malformed_answer:{exc.code.name.lower()}")
            if not isinstance(answer, ConfirmationResponse):
                return _Finish(order, "rejected", "wrong_request")
            return _Answer(order, answer, message.response)
        if isinstance(message, Refusal):
            if message.transaction_id != order.tx_id:
                return _Finish(order, "rejected", "wrong_request")
            return _Answer(order, message, b"")
        raise Unexpected("not an answer to an order")

    async def _approved(self, payment: _Payment, answer: _Answer) -> TransactionRecord | None:
        """Verify the module's answer against the stored request and the mode asked for, then
        settle once."""
        message = answer.message
        if isinstance(message, Refusal):
            state = "timed_out" if message.reason in ("user_timeout", "cancelled") else \
                "rejected"
            return await self._finish(payment, state, f"module:{message.reason}", None)
        ledger = self.platform.ledger
        context: tuple[TransactionRecord | None, ModuleRecord | None, int] = \
            await ledger.run(ledger.context, payment.tx_id)
        tx, module, last = context
        if tx is None:
            return None
        if tx.state in FINAL_STATES:
            return tx
        relay = RelayResponse(payment.tx_id, RelayStatus.OK, answer.envelope)
        state, reason, counter = self.platform._decide(tx, relay, module, last)
        done = message.user_verification
        if state == "settled" and not satisfies(done, payment.required):
            state, reason = "rejected", "verification_too_weak"
            log.warning("approval of %s verified by %s, the mode asks %s: refused",
                        payment.tx_id.hex(), done.name, payment.required.name)
            counter = None
        return await self._finish(payment, state, reason, counter)

    async def _finish(self, payment: _Payment, state: str, reason: str, counter: int | None
                      ) -> TransactionRecord:
        record = await self.platform._settle(payment.tx_id, state, reason, counter)
        self.platform._notify(record)
        return record

    # -- progress and cancel ---------------------------------------------------------------------
    async def progress(self, progress: RelayProgress, gateway_id: str | None
                       ) -> TransactionRecord | None:
        """The module asks its owner about the order in flight: shown on its transaction."""
        module_id = self._relays.get(progress.request_id)
        ch = self._channels.get(module_id) if module_id is not None else None
        if ch is None or not isinstance(ch.order, _Payment) \
                or ch.in_flight != progress.request_id:
            return None
        if gateway_id is not None and ch.module.gateway_id != gateway_id:
            self.platform.counters["foreign_progress"] += 1
            return None
        state = ("awaiting_owner" if progress.status is OwnerStatus.AWAITING_OWNER
                 else "processing")
        ledger = self.platform.ledger
        tx_id = ch.order.tx_id
        record: TransactionRecord | None = await ledger.run(ledger.set_progress, tx_id, state)
        if record is not None:
            self.platform._changed(tx_id)
        return record

    async def cancelled(self, tx: TransactionRecord) -> bool:
        """The terminal cancelled a payment (the ledger ended it): withdraw its order at the
        gateway if it is in flight, or drop it from the queue. False if it is not ours."""
        for ch in self._channels.values():
            if isinstance(ch.order, _Payment) and ch.order.tx_id == tx.id and ch.in_flight:
                await self.platform._outbox.put((topic(ch.module.gateway_id, "req"),
                                                 RelayCancel(ch.in_flight,
                                                             ch.module.module_id).encode()))
                return True
            for payment in ch.queue:
                if isinstance(payment, _Payment) and payment.tx_id == tx.id:
                    ch.queue.remove(payment)
                    return True
        return False

