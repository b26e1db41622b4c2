"""The simulated module: the link profile on one side, the secure element on the other.

Everything that arrives over the control point goes through the profile's
:class:`PeripheralSession` (reassembly per central, PING, BUSY, CANCEL, ERROR for malformed
fragments: the profile's rules, sans-IO); this module moves its frames to bless and answers the
requests it delivers, one at a time. While the owner decides, KEEPALIVE(user action needed) goes
out every ``keepalive_interval``; CANCEL aborts; the request's expiry declines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus

from ble_profile import (
    AdvertData,
    BusyError,
    CancelReceived,
    Command,
    KeepaliveStatus,
    ModuleInfo,
    PeripheralSession,
    PeripheralState,
    RequestReceived,
    SendFrames,
    SessionStateError,
    uuids,
)
from bluez_pairing import (
    AgentError,
    BluezCallError,
    Confirm,
    PairingAgent,
    register_agent,
    set_pairable,
    unregister_agent,
)
from dynamic_code.radio import is_unit_envelope
from e2e import (
    CertificateRequest,
    CertificateResponse,
    ConfirmationRequest,
    Decision,
    E2EError,
    ErrorResponse,
    UserVerification,
    decode_envelope,
    encode_envelope,
)
from e2e import ErrorCode as E2ECode
from e2e.messages import (
    CodeSignRequest,
    CodeSignResponse,
    CountersignRequest,
    readable_transaction_id,
)
from secure_channel.carriage import is_channel_envelope
from transaction_code import CodeError, TransactionCode

from .codes import error_code, prepare
from .dynamic_units import DynamicUnits
from .element import SecureElement
from .peripheral import CharacteristicSpec, ModulePeripheral, PeripheralError
from .policy import Prompt, UserPolicy

__all__ = ["CONTROL_POINT_LENGTH", "SimulatedModule"]

log = logging.getLogger("wearable_sim")

CODE_PROMPT_TIMEOUT = 60.0
"""Seconds the owner has to approve a transaction-code request (no platform deadline here)."""
CONTROL_POINT_LENGTH = 512
MAX_MESSAGE = 4096
MODEL = "blegw wearable-sim"
FIRMWARE = "0.1.0"
AGENT_PATH = "/wearable_sim/agent"

# GATT properties / permissions as bless numbers (bleak's GattCharacteristicsFlags, bless's
# GATTAttributePermissions): read 0x02, write-without-response 0x04, write 0x08, notify 0x10;
# readable 0x01, writeable 0x02, read-encryption 0x04, write-encryption 0x08.
_LAYOUT = [
    CharacteristicSpec(uuids.CONTROL_POINT, 0x04 | 0x08, 0x02 | 0x08),
    CharacteristicSpec(uuids.STATUS, 0x10, 0x01),
    CharacteristicSpec(uuids.CONTROL_POINT_LENGTH, 0x02, 0x01),
    CharacteristicSpec(uuids.MODULE_INFO, 0x02, 0x01),
]

_UV = {"none": UserVerification.NONE, "presence": UserVerification.PRESENCE}


class SimulatedModule:
    def __init__(self, element: SecureElement, policy: UserPolicy, *, adapter: str,
                 name: str = "wearable-sim", pairing_mode: bool = False,
                 keepalive_interval: float = 0.5,
                 pairing_consent: Confirm | None = None) -> None:
        self.element = element
        self.adapter = adapter
        self.pairing_consent = pairing_consent
        """Confirms the numeric-comparison code when a gateway bonds (None: no agent, so the
        module pairs as NoInputNoOutput, "just works")."""
        self.pairing_codes: list[int] = []
        self._agent_bus: MessageBus | None = None
        self._agent: PairingAgent | None = None
        self.policy = policy
        self.pairing_mode = pairing_mode
        self.keepalive_interval = keepalive_interval
        self.info = ModuleInfo(model=MODEL, firmware=FIRMWARE, protocol_versions=(1,),
                               suites=tuple(int(s) for s in element.suites),
                               module_id=element.module_id, max_message_size=MAX_MESSAGE)
        self.peripheral = ModulePeripheral(
            name=name, adapter=adapter, service_uuid=uuids.SERVICE, characteristics=_LAYOUT,
            on_read=self._on_read, on_write=self._on_write, on_unsubscribe=self._on_unsubscribe,
            on_bluez_back=self._bluez_back)
        self.session = PeripheralSession(CONTROL_POINT_LENGTH, MAX_MESSAGE)
        """The link profile's state (sans-IO): this class only moves its frames."""
        self._busy: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sign_seconds: list[float] = []
        """How long each signature took inside the secure element (for benchmarks)."""
        self.handled: list[str] = []
        """What happened to each request, for logs and tests: approved, declined, ..."""
        from .channel_endpoint import ModuleChannel

        self.channel = ModuleChannel(element, policy) if isinstance(element, SecureElement) \
            else None
        """The module's end of the secure channel (flow F-B): envelopes 0x20 go there (a
        card has none)."""
        self.dynamic = DynamicUnits(
            policy, element.state if isinstance(element, SecureElement) else None)
        """The dynamic-code units it hosts (flow F-E, none until installed): envelopes 0x60."""

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        await self.peripheral.start(self._service_data())
        try:
            self._agent_bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            await self._apply_pairable()
            if self.pairing_consent is not None:
                await self._start_agent(self.pairing_consent)
        except BaseException:
            if self._agent_bus is not None:
                self._agent_bus.disconnect()
                self._agent_bus = None
            await self.peripheral.stop()
            raise

    async def _apply_pairable(self) -> None:
        """The adapter takes new bonds only in pairing mode (``Pairable`` follows it): outside
        it, nobody can bond with the module, by numeric comparison or just works, so a bond
        made with the owner's consent cannot be replaced by a weaker one behind their back."""
        assert self._agent_bus is not None
        try:
            await set_pairable(self._agent_bus, self.adapter, self.pairing_mode)
        except BluezCallError as exc:
            raise PeripheralError(f"cannot set {self.adapter} Pairable: {exc}") from exc

    async def _bluez_back(self) -> None:
        """bluetoothd restarted (or the adapter came back): its Pairable is BlueZ's default
        (yes) and, after a restart, the agent is forgotten. Called before the advert is
        registered again, so no central can reach the module while it would still take a
        new bond."""
        if self._agent_bus is None:
            return
        await self._apply_pairable()
        if self._agent is not None:
            # A restarted bluetoothd forgot the agent; one whose adapter only came back still
            # holds it. Unregistering first (quiet if forgotten) serves both.
            await unregister_agent(self._agent_bus, AGENT_PATH)
            try:
                await register_agent(self._agent_bus, self._agent, AGENT_PATH)
            except (AgentError, DBusError) as exc:
                raise PeripheralError(f"cannot register the pairing agent: {exc}") from exc

    async def _start_agent(self, consent: Confirm) -> None:
        async def confirm(device: str, code: int) -> bool:
            if not self.pairing_mode:
                # Pairable is off outside pairing mode, so BlueZ should never ask; if it does
                # (another program turned Pairable on), the answer is still no.
                log.warning("pairing request from %s refused: not in pairing mode", device)
                return False
            self.pairing_codes.append(code)
            accepted = await consent(device, code)
            what = "just works, no code to compare" if code == 0 else f"code {code:06d}"
            log.info("pairing request from %s (%s) %s", device, what,
                     "accepted" if accepted else "refused")
            return accepted

        assert self._agent_bus is not None
        agent = PairingAgent(confirm)
        try:
            await register_agent(self._agent_bus, agent, AGENT_PATH)
        except (AgentError, DBusError) as exc:
            raise PeripheralError(f"cannot register the pairing agent: {exc}") from exc
        self._agent = agent

    def _service_data(self) -> dict[str, bytes]:
        advert = AdvertData(self.element.module_id[:4], self.pairing_mode)
        return {uuids.SERVICE_DATA_UUID16: advert.encode()}

    async def set_pairing_mode(self, on: bool) -> None:
        self.pairing_mode = on
        if self._agent_bus is not None:
            await self._apply_pairable()
        await self.peripheral.readvertise(self._service_data())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._agent_bus is not None:
            if self._agent is not None:
                await self._agent.cancel_pending()
            if self._agent_bus.connected and self._agent is not None:
                with contextlib.suppress(DBusError, OSError, EOFError, TimeoutError):
                    await asyncio.wait_for(unregister_agent(self._agent_bus, AGENT_PATH), 2)
            self._agent_bus.disconnect()
            with contextlib.suppress(Exception):  # collect how it ended, so nothing is left over
                await asyncio.wait_for(self._agent_bus.wait_for_disconnect(), 2)  # type: ignore[no-untyped-call]
            self._agent_bus, self._agent = None, None
        await self.peripheral.stop()
        await self.policy.close()

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- GATT callbacks (called by bless on the event loop) -------------------------------------
    def _on_read(self, uuid: str, options: dict[str, Any]) -> bytes:
        offset = int(options.get("offset", 0))
        if uuid.lower() == uuids.MODULE_INFO:
            return self.info.encode()[offset:]
        if uuid.lower() == uuids.CONTROL_POINT_LENGTH:
            return CONTROL_POINT_LENGTH.to_bytes(2, "big")[offset:]
        return b""

    def _on_write(self, uuid: str, value: bytes, options: dict[str, Any]) -> None:
        if uuid.lower() != uuids.CONTROL_POINT:
            return
        self.session.att_mtu = int(options.get("mtu", self.session.att_mtu))
        device = str(options.get("device", ""))
        for event in self.session.receive(value, central=device,
                                          offset=int(options.get("offset", 0))):
            if isinstance(event, SendFrames):
                self._notify_frames(list(event.frames))
            elif isinstance(event, RequestReceived):
                self._start_request(event.payload)
            elif isinstance(event, CancelReceived):
                if self._busy is not None and not self._busy.done():
                    self._busy.cancel()
            elif isinstance(event.error, BusyError):
                self.handled.append("busy")
            else:
                log.info("malformed fragment from %s: %s", device or "?", event.error)
                self.handled.append(f"framing-error:{event.error.code.name}")

    def _on_unsubscribe(self, uuid: str) -> None:
        """Nobody listens for answers any more (the gateway left or its link dropped): abandon
        the pending request and any half-received one, as a real module must."""
        if uuid.lower() != uuids.STATUS:
            return
        self.session.link_lost()
        if self.channel is not None:
            self.channel.link_lost()
        if self._busy is not None and not self._busy.done():
            log.info("gateway unsubscribed: abandoning the pending request")
            self._busy.cancel()

    def _start_request(self, payload: bytes) -> None:
        """Answer the request the session delivered in a task of its own. A task that ends
        without answering (cancelled where no answer is given) frees the session, so the
        module never stays BUSY for a request nobody works on."""
        task = self._spawn(self._process(payload))
        self._busy = task

        def ended(_task: asyncio.Task[None]) -> None:
            if self._busy is task:
                self.session.abandon()

        task.add_done_callback(ended)

    # -- requests ------------------------------------------------------------------------------
    async def _process(self, payload: bytes) -> None:
        """Answer one MSG; whatever the bytes hold, the gateway gets exactly one answer and the
        module keeps serving (a request task that dies would leave the gateway waiting)."""
        try:
            await self._answer(payload)
        except Exception:  # supervised: an unexpected failure is this request's INTERNAL error
            log.exception("request failed")
            self.handled.append("internal-error")
            self._reply(ErrorResponse(E2ECode.INTERNAL, readable_transaction_id(payload),
                                      "internal error"))

    async def _answer(self, payload: bytes) -> None:
        if self.channel is not None and is_channel_envelope(payload):
            self._send(Command.MSG, await self.channel.answer(payload, self._keepalives))
            return
        if is_unit_envelope(payload):
            self._send(Command.MSG, await self.dynamic.answer(payload, self._keepalives))
            return
        try:
            request = decode_envelope(payload)
        except E2EError as exc:
            self.handled.append("malformed")
            self._reply(ErrorResponse(exc.code, readable_transaction_id(payload), str(exc)))
            return
        if isinstance(request, CertificateRequest):
            cert = self.element.certificate(request.suite)
            if cert is None:
                self._reply(ErrorResponse(E2ECode.CERTIFICATE_INVALID, b"",
                                          f"no {request.suite.name} certificate installed"))
            else:
                self._reply(CertificateResponse(cert))
            return
        if isinstance(request, CodeSignRequest | CountersignRequest):
            await self._sign_code(request)
            return
        if not isinstance(request, ConfirmationRequest):
            self._reply(ErrorResponse(E2ECode.MALFORMED, b"", "not a request"))
            return
        await self._confirm(payload, request)

    async def _sign_code(self, request: CodeSignRequest | CountersignRequest) -> None:
        """Flow F-D: show the owner what the code means, and sign it only if they approve."""
        rid = request.request_id
        if request.suite not in self.element.suites:
            self._reply(ErrorResponse(E2ECode.UNSUPPORTED_SUITE, rid, "suite not supported"))
            return
        try:
            unsigned, prompt = prepare(request, self.element.code_signer(request.suite),
                                       now=int(time.time()))
        except CodeError as exc:
            self.handled.append("code-refused")
            self._reply(ErrorResponse(error_code(exc), rid, str(exc)))
            return
        except E2EError as exc:  # no certificate installed for the suite
            self.handled.append("code-refused")
            self._reply(ErrorResponse(exc.code, rid, str(exc)))
            return
        keepalive = self._spawn(self._keepalives())
        try:
            approved = await asyncio.wait_for(self.policy.decide(prompt), CODE_PROMPT_TIMEOUT)
        except TimeoutError:
            self.handled.append("code-timeout")
            self._reply(ErrorResponse(E2ECode.USER_TIMEOUT, rid, "the owner did not answer"))
            return
        except asyncio.CancelledError:
            self.handled.append("cancelled")
            self._reply(ErrorResponse(E2ECode.CANCELLED, rid, "cancelled by the gateway"))
            return
        finally:
            keepalive.cancel()
        if not approved:
            self.handled.append("code-declined")
            self._reply(ErrorResponse(E2ECode.DECLINED, rid, "declined by the owner"))
            return
        started = time.perf_counter()
        try:
            signed = self.element.sign_code(unsigned) if isinstance(unsigned, TransactionCode) \
                else self.element.countersign(unsigned)
        except (E2EError, CodeError, OSError) as exc:
            log.error("code signing failed: %s", exc)
            self._reply(ErrorResponse(E2ECode.INTERNAL, rid, "signing failed"))
            return
        self.sign_seconds.append(time.perf_counter() - started)
        self.handled.append("code-signed")
        self._reply(CodeSignResponse(rid, signed.encode()))

    async def _confirm(self, envelope: bytes, request: ConfirmationRequest) -> None:
        tx = request.transaction_id
        if request.suite not in self.element.suites:
            self._reply(ErrorResponse(E2ECode.UNSUPPORTED_SUITE, tx, "suite not supported"))
            return
        now = time.time()
        try:
            self.element.authenticate(request, now=now)
        except E2EError as exc:
            self._refuse(request, exc, "untrusted")
            return
        remaining = request.expires_at - now
        if remaining <= 0:
            self.handled.append("expired")
            self._reply(ErrorResponse(E2ECode.EXPIRED, tx, "request already expired"))
            return
        try:
            self.element.admit(request, now=now)
        except E2EError as exc:
            self._refuse(request, exc, exc.code.name.lower())
            return
        except OSError as exc:
            log.error("cannot remember request %s: %s", tx.hex(), exc)
            self._reply(ErrorResponse(E2ECode.INTERNAL, tx, "cannot record the request"))
            return
        prompt = Prompt(request.amount_minor, request.currency, request.payee_account,
                        request.order_reference, request.order_description)
        keepalive = self._spawn(self._keepalives())
        try:
            approved = await asyncio.wait_for(self.policy.decide(prompt), remaining)
            outcome = "approved" if approved else "declined"
        except TimeoutError:
            approved, outcome = False, "deadline"
        except asyncio.CancelledError:
            keepalive.cancel()
            self.handled.append("cancelled")
            self._reply(ErrorResponse(E2ECode.CANCELLED, tx, "cancelled by the gateway"))
            return
        finally:
            keepalive.cancel()
        started = time.perf_counter()
        try:
            response = self.element.sign(
                envelope, request, decision=Decision.APPROVE if approved else Decision.DECLINE,
                user_verification=_UV[self.policy.verification])
        except (E2EError, OSError) as exc:
            log.error("signing failed: %s", exc)
            self._reply(ErrorResponse(E2ECode.INTERNAL, tx, "signing failed"))
            return
        self.sign_seconds.append(time.perf_counter() - started)
        self.handled.append(outcome)
        self._reply(response)

    def _refuse(self, request: ConfirmationRequest, exc: E2EError, outcome: str) -> None:
        """Answer a request the owner must not see (not vouched for by the platform, or one
        already answered) with a typed error, and log it; never prompt."""
        log.warning("refused request %s (%d %s to %r): %s", request.transaction_id.hex(),
                    request.amount_minor, request.currency, request.payee_account, exc)
        self.handled.append(outcome)
        self._reply(ErrorResponse(exc.code, request.transaction_id, str(exc)))

    async def _keepalives(self) -> None:
        while True:
            frames = self.session.keepalive(KeepaliveStatus.USER_ACTION_NEEDED)
            if frames is None:
                return  # answered: no proof of life for a finished request
            self._notify_frames(list(frames.frames))
            await asyncio.sleep(self.keepalive_interval)

    # -- sending -------------------------------------------------------------------------------
    def _reply(self, message: Any) -> None:
        self._send(Command.MSG, encode_envelope(message))

    def _send(self, command: Command, payload: bytes) -> None:
        """Send the answer (MSG) to the request in progress: the session fragments it to the
        link's MTU and takes requests again."""
        if command is not Command.MSG:
            raise SessionStateError(f"the module sends {command.name} only through its session")
        if self.session.state is not PeripheralState.PROCESSING:
            log.error("an answer with no request in progress was dropped")
            return
        self._notify_frames(list(self.session.respond(payload).frames))

    def _notify_frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.peripheral.notify(uuids.STATUS, frame)

