"""The module's end of the secure channel (flow F-B): the handshake's initiator, the session,
its resumption ticket, and payments with their verification inside it.

Every channel envelope (types 0x20/0x21, :mod:`secure_channel.carriage`) that arrives as a MSG
is answered here with exactly one channel envelope:

* an *open* starts a handshake: whatever session this module held ends, and its hello offers
  the suites of the platform's list that this module has a certificate for, with the session
  id of its ticket for that signature family when it holds one (a resumption: no certificate,
  no public-key operation);
* handshake units go to the initiator; when it finishes, the session is the record layer and
  the ticket is kept for the next open. The channel certificate must name the platform id the
  module's provisioning installed;
* a record is opened in the session; an order is a payment: the platform-signed request is
  checked as over the plain path (signature, expiry, replay memory), the owner decides, the
  verification the order asks for is done here (:mod:`.verification`), and the signed approval
  (or a refusal) goes back in a record padded to the same size as every other.

Any channel error ends the session and is answered with an error unit. When the link drops
(:meth:`ModuleChannel.link_lost`) the session ends too but the ticket stays: the platform then
resumes on the next payment, since a record half-delivered on the old link could leave the two
sides' sequence numbers apart. The ticket lives in memory: a module that restarts runs a full
handshake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from e2e import (
    ConfirmationRequest,
    Decision,
    E2EError,
    Suite,
    UserVerification,
    decode_envelope,
    encode_envelope,
)
from secure_channel import (
    ChannelError,
    ChannelInitiator,
    ChannelSuite,
    Resumption,
    Session,
    encode_error,
)
from secure_channel.application import PAD_TO, Approval, Order, Ping, Pong, Refusal, decode_app
from secure_channel.carriage import ChannelOpen, ChannelUnits, decode_carried
from secure_channel.errors import Malformed, Unexpected

from .element import SecureElement
from .policy import Prompt, UserPolicy
from .verification import (
    FingerprintSensor,
    OwnerInput,
    PinStore,
    ScriptedInput,
    VerificationError,
    verify_finger,
    verify_pin,
)

__all__ = ["ModuleChannel"]

log = logging.getLogger("wearable_sim.channel")

MODULE_SUITES = (ChannelSuite.DHE_SM2_SM4GCM_SM3, ChannelSuite.KT_SM2_SM4GCM_SM3,
                 ChannelSuite.DHE_P256_AES128GCM_SHA256, ChannelSuite.DHE_P256_AES256GCM_SHA256,
                 ChannelSuite.KT_P256_AES128GCM_SHA256, ChannelSuite.KT_P256_AES256GCM_SHA256)
"""What the module offers, ephemeral key agreement first."""

Keepalives = Callable[[], Coroutine[Any, Any, None]]


class ModuleChannel:
    """One module's channel state and its payments; ``answer`` is called once per MSG."""

    def __init__(self, element: SecureElement, policy: UserPolicy,
                 owner: OwnerInput | None = None) -> None:
        self.element = element
        self.policy = policy
        self.owner: OwnerInput = owner or ScriptedInput()
        self.pin = PinStore(element.state)
        self.sensor = FingerprintSensor(element.state)
        self._initiator: ChannelInitiator | None = None
        self.session: Session | None = None
        self.tickets: dict[Suite, Resumption] = {}
        self.handled: list[str] = []
        """What each channel message led to, for logs and tests."""

    def link_lost(self) -> None:
        """The link dropped: end the session, keep the ticket (see the module docstring)."""
        self._initiator = None
        self.session = None

    async def answer(self, payload: bytes, keepalives: Keepalives | None = None) -> bytes:
        """The channel envelope that answers one received from the platform."""
        now = time.time()
        try:
            carried = decode_carried(payload, to_module=True)
            if isinstance(carried, ChannelOpen):
                return self._open(carried, now)
            return await self._units(carried.units, now, keepalives)
        except ChannelError as exc:
            self.link_lost()
            self.handled.append(f"channel-error:{exc.code.name.lower()}")
            log.info("channel ended: %s", exc)
            return ChannelUnits((encode_error(exc.code),), False).encode()

    def _open(self, request: ChannelOpen, now: float) -> bytes:
        self.link_lost()
        anchors = self.element.trust_anchors
        if anchors is None:
            raise Unexpected("no trust anchors installed")
        credentials = None
        for value in request.suites:            # the open only names the family
            try:
                suite = ChannelSuite.parse(value)
            except ChannelError:
                continue                        # a suite this module does not know
            credentials = self.element.channel_credentials(suite.params.signature)
            if credentials is not None:
                break
        if credentials is None:
            raise Malformed("no suite offered that this module holds a certificate for")
        family = credentials.certificate.suite
        # The module offers its own preference of that family, whatever order the open had:
        # the offer is in the signed transcript, the open is not.
        offer = [s for s in MODULE_SUITES if s.params.signature is family]
        ticket = self.tickets.pop(family, None)
        if ticket is not None and ticket.expires_at <= now:
            ticket = None
        self._initiator = ChannelInitiator(credentials, suites=offer, resume=ticket)
        self.handled.append("channel-resume" if ticket else "channel-open")
        return ChannelUnits((self._initiator.start(now),), False).encode()

    async def _units(self, units: tuple[bytes, ...], now: float,
                     keepalives: Keepalives | None) -> bytes:
        initiator = self._initiator
        if initiator is not None:
            out: list[bytes] = []
            for unit in units:
                out += initiator.receive(unit, now)
            if initiator.session is not None:
                anchors = self.element.trust_anchors
                if anchors is None or initiator.session.peer_id != anchors.platform_id:
                    raise Unexpected("the channel certificate names another platform")
                self.session, self._initiator = initiator.session, None
                assert initiator.resumption is not None
                assert initiator.suite is not None
                self.tickets[initiator.suite.params.signature] = initiator.resumption
                self.handled.append("channel-established")
            if not out:
                raise Unexpected("nothing to answer")
            return ChannelUnits(tuple(out), False).encode()
        session = self.session
        if session is None or len(units) != 1:
            raise Unexpected("a record without a session")
        plaintext = session.open(units[0], now)
        if plaintext is None:
            raise Unexpected("a key update where an order was expected")
        message = decode_app(plaintext)
        if isinstance(message, Ping):
            reply: bytes = Pong(message.nonce).encode()
            self.handled.append("channel-ping")
        elif isinstance(message, Order):
            reply = await self._pay(message, keepalives)
        else:
            raise Unexpected("the platform sent an answer")
        if self.session is not session:        # the link dropped while the owner decided
            raise Unexpected("the session ended while the owner decided")
        return ChannelUnits(tuple(session.seal(reply, time.time(), pad_to=PAD_TO)),
                            False).encode()

    async def _pay(self, order: Order, keepalives: Keepalives | None) -> bytes:
        """One payment: check the request as the plain path does, ask the owner, verify as
        the order asks, sign. A refusal names its reason; the owner is never asked for a
        request the platform did not sign, nor twice for one request."""
        element = self.element
        try:
            request = decode_envelope(order.request)
        except E2EError as exc:
            return Refusal(bytes(16), f"module:{exc.code.name.lower()}").encode()
        if not isinstance(request, ConfirmationRequest):
            return Refusal(bytes(16), "module:malformed").encode()
        tx = request.transaction_id
        now = time.time()
        try:
            if request.suite not in element.suites:
                return Refusal(tx, "module:unsupported_suite").encode()
            element.authenticate(request, now=now)
            if request.expires_at <= now:
                return Refusal(tx, "module:expired").encode()
            element.admit(request, now=now)
        except E2EError as exc:
            self.handled.append(f"refused:{exc.code.name.lower()}")
            return Refusal(tx, f"module:{exc.code.name.lower()}").encode()
        prompt = Prompt(request.amount_minor, request.currency, request.payee_account,
                        request.order_reference, request.order_description)
        required = UserVerification(order.required)
        keepalive = asyncio.ensure_future(keepalives()) if keepalives else None
        try:
            approved, done = await asyncio.wait_for(self._decide(prompt, required),
                                                    request.expires_at - now)
        except TimeoutError:
            self.handled.append("deadline")
            return Refusal(tx, "user_timeout").encode()
        except VerificationError as exc:
            self.handled.append(exc.reason)
            log.info("payment %s not verified: %s", tx.hex(), exc)
            return Refusal(tx, exc.reason).encode()
        finally:
            if keepalive is not None:
                keepalive.cancel()
        response = await asyncio.to_thread(
            element.sign, order.request, request,
            decision=Decision.APPROVE if approved else Decision.DECLINE, user_verification=done)
        self.handled.append(f"{'approved' if approved else 'declined'}:{done.name.lower()}")
        return Approval(encode_envelope(response)).encode()

    async def _decide(self, prompt: Prompt, required: UserVerification
                      ) -> tuple[bool, UserVerification]:
        """The owner's decision, then the verification the order asks for."""
        if not await self.policy.decide(prompt):
            return False, UserVerification.NONE
        if required is UserVerification.PIN:
            await verify_pin(self.pin, self.owner, prompt)
            return True, UserVerification.PIN
        if required is UserVerification.FINGERPRINT:
            await verify_finger(self.sensor, self.owner, prompt)
            return True, UserVerification.FINGERPRINT
        done = (UserVerification.PRESENCE if self.policy.verification == "presence"
                else UserVerification.NONE)
        return True, done

