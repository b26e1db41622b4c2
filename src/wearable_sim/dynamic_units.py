"""The secure units of flow F-E hosted by a simulated module, and its fingerprint sensor.

A merchant's payment device and a payer's phone each have a module; the module holds the
unit's key pair (made inside it: :meth:`DynamicUnits.new_key` gives out only the public key),
the certificate the platform's CA issued for it, and a simulated fingerprint sensor whose
finger tests choose (:attr:`DynamicUnits.sensor`, the simulator's test control). Requests
arrive as unit envelopes (``dynamic_code.radio``) through the module's gateway, which is
hostile: the owner's prompt is read from the merchant-signed consumption code the payer's unit
checked, never from a field the gateway chose, and no operation returns a key, a perturbation
code or a decrypted payment.

The payer's owner approves every payment on the module; the merchant's unit needs no approval
(it only makes and checks codes for the till it is part of).

With a :class:`~wearable_sim.state.ModuleState` the units persist in the module's owner-only
state directory (``units/``: each role's key, certificate, CA key and, for FIDO's mode, the
owner's template), as the module's other keys do; ``wearable-sim unit-key`` and
``unit-cert`` provision them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from decimal import Decimal
from pathlib import Path
from typing import Any

from dynamic_code import (
    DynamicCodeError,
    MerchantUnit,
    PayerUnit,
    Role,
    SimulatedSensor,
    Verification,
)
from dynamic_code.radio import (
    Accept,
    AcceptResult,
    Forward,
    Offer,
    Pay,
    UnitAnswer,
    UnitRequest,
    decode_request,
)
from e2e.cbor import dumps, loads, peek, peeked_field
from e2e.errors import MalformedMessage
from e2e.suites import PrivateKey, PublicKey, Suite, generate_private_key
from terminal_input import sanitise

from .codes import CodePrompt
from .policy import UserPolicy
from .state import ModuleState, StateError

__all__ = ["PAY_PROMPT_TIMEOUT", "DynamicUnits"]

log = logging.getLogger("wearable_sim.dynamic")

PAY_PROMPT_TIMEOUT = 60.0
"""Seconds the payer's owner has to approve (the gateway's wait is longer)."""

Keepalives = Callable[[], Coroutine[Any, Any, None]]


class DynamicUnits:
    """The F-E units one module hosts (a merchant unit, a payer unit, or both)."""

    def __init__(self, policy: UserPolicy, state: ModuleState | None = None) -> None:
        self.policy = policy
        self.sensor = SimulatedSensor()
        """The device's fingerprint sensor; tests put a finger on it (``present``)."""
        self._state = state
        self._keys: dict[Role, PrivateKey] = {}
        self._merchant: MerchantUnit | None = None
        self._payer: PayerUnit | None = None
        self.handled: list[str] = []
        """What happened to each unit request, for logs and tests."""
        if state is not None:
            self._load(state)

    # -- persistence ---------------------------------------------------------------------------
    @staticmethod
    def _path(state: ModuleState, role: Role, what: str) -> Path:
        directory = state.directory / "units"
        directory.mkdir(mode=0o700, exist_ok=True)
        return directory / f"{role.name.lower()}.{what}"

    def _load(self, state: ModuleState) -> None:
        """The units provisioned earlier; a corrupt file is a :class:`StateError`."""
        for role in (Role.MERCHANT, Role.MOBILE):
            raw = state.read_secret(self._path(state, role, "key"))
            if raw is None:
                continue
            try:
                body = loads(raw)
                suite = Suite(body[1])
                self._keys[role] = PrivateKey(suite, body[2])
                cert = state.read_file(self._path(state, role, "cert"))
                ca = state.read_file(self._path(state, role, "ca"))
                if cert is None or ca is None:
                    continue  # a key made, its certificate not installed yet
                template = state.read_secret(self._path(state, role, "template"))
                self._build(role, cert, PublicKey(suite, ca), template)
            except (MalformedMessage, DynamicCodeError, KeyError, TypeError,
                    ValueError) as exc:
                raise StateError(f"the {role.name.lower()} unit's files are corrupt: "
                                 f"{exc}") from None

    def _build(self, role: Role, certificate: bytes, ca_public: PublicKey,
               template: bytes | None) -> None:
        key = self._keys[role]
        if role is Role.MERCHANT:
            self._merchant = MerchantUnit(key, certificate, ca_public)
        else:
            self._payer = PayerUnit(key, certificate, ca_public, template=template)

    @property
    def roles(self) -> list[Role]:
        """The units installed (for ``wearable-sim info``)."""
        return [role for role, unit in ((Role.MERCHANT, self._merchant),
                                        (Role.MOBILE, self._payer)) if unit is not None]

    # -- provisioning --------------------------------------------------------------------------
    def new_key(self, role: Role, suite: Suite) -> PublicKey:
        """Make the unit's key pair inside the module; only the public key comes out (for the
        CA's enrollment)."""
        if role is Role.SETTLEMENT:
            raise ValueError("a module hosts a merchant or a mobile unit")
        key = generate_private_key(suite)
        if self._state is not None:
            self._state.write_secret(self._path(self._state, role, "key"),
                                     dumps({1: int(suite), 2: key.private_bytes()}))
        self._keys[role] = key
        return key.public_key

    def install(self, role: Role, certificate: bytes, ca_public: PublicKey, *,
                enroll_finger: bool = False) -> None:
        """Install the CA's certificate for the key :meth:`new_key` made. ``enroll_finger``
        (a payer in FIDO's mode): the finger now on the sensor is enrolled inside the unit
        and never leaves it."""
        if role not in self._keys:
            raise ValueError("no key made for this role")
        template = self.sensor.enroll() if enroll_finger and role is Role.MOBILE else None
        self._build(role, certificate, ca_public, template)  # checks key, role, certificate
        if self._state is not None:
            state = self._state
            state.write_file(self._path(state, role, "cert"), certificate)
            state.write_file(self._path(state, role, "ca"), ca_public.encode())
            if template is not None:
                state.write_secret(self._path(state, role, "template"), template)

    # -- requests ------------------------------------------------------------------------------
    async def answer(self, payload: bytes, keepalives: Keepalives | None = None) -> bytes:
        """The unit answer envelope for one unit request; always exactly one."""
        try:
            request = decode_request(payload)
        except DynamicCodeError as exc:
            self.handled.append("malformed")
            return UnitAnswer(_readable_id(payload), exc.code, None, str(exc)).encode()
        rid = request.request_id
        try:
            result = await self._run(request, keepalives)
        except DynamicCodeError as exc:
            self.handled.append(exc.code)
            log.info("unit request refused: %s", exc)
            return UnitAnswer(rid, exc.code, None, str(exc)).encode()
        except _Refused as exc:
            self.handled.append(exc.code)
            return UnitAnswer(rid, exc.code, None, str(exc)).encode()
        self.handled.append(type(request.operation).__name__.lower())
        return UnitAnswer(rid, "ok", result).encode()

    async def _run(self, request: UnitRequest, keepalives: Keepalives | None
                   ) -> bytes | AcceptResult:
        op = request.operation
        now = int(time.time())
        if isinstance(op, Pay):
            return await self._pay(op, now, keepalives)
        merchant = self._merchant
        if merchant is None:
            raise _Refused("no_unit", "this module hosts no merchant unit")
        if isinstance(op, Offer):
            return await asyncio.to_thread(merchant.consumption_code, op.amount_minor,
                                           op.currency, now=now, lifetime=op.lifetime)
        if isinstance(op, Accept):
            accepted = await asyncio.to_thread(merchant.accept, op.payment_code, now=now)
            return AcceptResult(accepted.handle, accepted.payer_account,
                                accepted.amount_minor, accepted.currency,
                                accepted.verification, accepted.needs_features)
        assert isinstance(op, Forward)
        features = self.sensor.capture() if op.till_sensor else None
        return await asyncio.to_thread(merchant.forward, op.handle, op.settlement_certificate,
                                       now=now, features=features)

    async def _pay(self, op: Pay, now: int, keepalives: Keepalives | None) -> bytes:
        payer = self._payer
        if payer is None:
            raise _Refused("no_unit", "this module hosts no payer unit")
        offer = await asyncio.to_thread(payer.read, op.consumption_code, now=now)
        money = f"{Decimal(offer.amount_minor).scaleb(-2)} {sanitise(offer.currency, 3)}"
        finger = ("your finger on this device" if op.verification is Verification.DEVICE
                  or op.phone_sensor else "your finger at the till")
        line = (f"Pay {money} to {sanitise(offer.merchant_account, 64)} "
                f"({sanitise(offer.merchant_device, 64)}), {finger}")
        prompt = CodePrompt(offer.amount_minor, offer.currency, offer.merchant_account,
                            "dynamic code", line, line)
        keepalive = asyncio.ensure_future(keepalives()) if keepalives else None
        try:
            approved = await asyncio.wait_for(self.policy.decide(prompt), PAY_PROMPT_TIMEOUT)
        except TimeoutError:
            raise _Refused("user_timeout", "the owner did not answer") from None
        except asyncio.CancelledError:
            raise _Refused("cancelled", "cancelled by the gateway") from None
        finally:
            if keepalive is not None:
                keepalive.cancel()
        if not approved:
            raise _Refused("declined", "declined by the owner")
        features = (self.sensor.capture() if op.verification is Verification.DEVICE
                    or op.phone_sensor else None)
        return await asyncio.to_thread(payer.pay, op.consumption_code, now=now,
                                       verification=op.verification, features=features)


class _Refused(Exception):
    """A unit request refused outside the core's checks (no unit, the owner, CANCEL)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _readable_id(payload: bytes) -> bytes:
    """The request id of a refused request when it can be read, else 16 zero bytes."""
    rid = peeked_field(peeked_field(peek(payload), 3), 2)
    return rid if type(rid) is bytes and len(rid) == 16 else bytes(16)
