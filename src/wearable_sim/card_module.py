"""The simulated symmetric-key card on the air: the card's secure element behind the same GATT
profile, advert, framing, pairing and owner-policy interface as the public-key module.

It is the public-key module's BLE side with another answer to MSG: every MSG payload goes to
:meth:`CardElement.respond` (one card message in, exactly one out, refusals included as card
error messages), so the gateway relays it exactly as it relays a module's envelope and never
needs to read it. What differs on the air:

* module info names the card protocol (:data:`ble_profile.CARD_PROTOCOL_VERSION`) instead of the
  end-to-end protocol 1, the module id is the card ref (the clear-text handle of every card
  message), and the suites are the card's (1 AES, 2 SM4: the same numbers as P-256 and SM2);
* each connection is a new channel: the first control-point write from a central after the
  status characteristic lost its subscriber (a new connection or the link dropped) calls
  :meth:`CardElement.connected` with the card's and the central's address, which draws a new
  connection random, so a request recorded on one link never passes on another.

KEEPALIVE(user action needed) goes out while the owner decides, as for a module; a CANCEL or a
lost subscriber abandons the card's pending answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, cast

from ble_profile import CARD_PROTOCOL_VERSION, Command, ModuleInfo, uuids
from bluez_pairing import BluezCallError, Confirm, bluez_call
from symmetric_card import CardError, CardErrorMessage, SealedMessage, decode
from symmetric_card.messages import MAX_CARD_MESSAGE

from .card_element import CardElement
from .element import SecureElement
from .module import FIRMWARE, SimulatedModule
from .peripheral import PeripheralError
from .policy import UserPolicy

__all__ = ["CARD_MODEL", "CardModule"]

log = logging.getLogger("wearable_sim.card")

CARD_MODEL = "blegw wearable-sim card"
OWNER_TIMEOUT = 60.0
"""Seconds the card waits for its button before it answers its own authenticated timeout; the
platform's deadline (its approval window) is what ends a payment, this only bounds the card."""


@dataclass(frozen=True, slots=True)
class _CardIdentity:
    """What the module's BLE side reads of its secure element: the id in the advert and the
    suites in module info. A card has no public-key element; this stands in for it."""

    module_id: bytes
    suites: tuple[int, ...]


def _address_of(device_path: str) -> str:
    """``/org/bluez/hci1/dev_AA_BB_CC_DD_EE_FF`` -> ``AA:BB:CC:DD:EE:FF`` (the central's address
    as the card's adapter sees it)."""
    tail = device_path.rsplit("/", 1)[-1]
    return tail.removeprefix("dev_").replace("_", ":")


class CardModule(SimulatedModule):
    """A symmetric-key card served over the link profile (``wearable-sim run --kind card``)."""

    def __init__(self, card: CardElement, policy: UserPolicy, *, adapter: str,
                 name: str = "wearable-card", pairing_mode: bool = False,
                 keepalive_interval: float = 0.5, pairing_consent: Confirm | None = None,
                 owner_timeout: float = OWNER_TIMEOUT) -> None:
        facts = card.facts()
        identity = _CardIdentity(facts.card_ref, tuple(int(s) for s in facts.suites))
        # The module's BLE side reads only module_id and suites of its element (advert, info);
        # the card's own element answers every message (see _answer).
        super().__init__(cast(SecureElement, identity), policy, adapter=adapter, name=name,
                         pairing_mode=pairing_mode, keepalive_interval=keepalive_interval,
                         pairing_consent=pairing_consent)
        self.card = card
        self.owner_timeout = owner_timeout
        self.info = ModuleInfo(model=CARD_MODEL, firmware=FIRMWARE,
                               protocol_versions=(CARD_PROTOCOL_VERSION,),
                               suites=identity.suites, module_id=facts.card_ref,
                               max_message_size=MAX_CARD_MESSAGE)
        self.own_address = ""
        self._central: str | None = None

    async def start(self) -> None:
        await super().start()
        assert self._agent_bus is not None
        try:
            reply = await bluez_call(self._agent_bus, f"/org/bluez/{self.adapter}",
                                     "org.freedesktop.DBus.Properties", "Get", "ss",
                                     ["org.bluez.Adapter1", "Address"])
        except BluezCallError as exc:
            await self.stop()
            raise PeripheralError(f"cannot read {self.adapter}'s address: {exc}") from exc
        self.own_address = str(reply.body[0].value)

    # -- the link: one channel per connection ----------------------------------------------------
    def _on_write(self, uuid: str, value: bytes, options: dict[str, Any]) -> None:
        if uuid.lower() == uuids.CONTROL_POINT:
            device = str(options.get("device", ""))
            if device != self._central:
                self._central = device
                self.card.connected(self.own_address, _address_of(device))
                log.info("new channel with %s", _address_of(device))
        super()._on_write(uuid, value, options)

    def _on_unsubscribe(self, uuid: str) -> None:
        if uuid.lower() == uuids.STATUS:
            self._central = None           # the next write starts a new channel
        super()._on_unsubscribe(uuid)

    # -- MSG: the card's element answers --------------------------------------------------------
    async def _answer(self, payload: bytes) -> None:
        keepalive: asyncio.Task[Any] | None = None
        if _asks_owner(payload):
            keepalive = self._spawn(self._keepalives())
        try:
            answer = await self.card.respond(payload, self.policy, self.owner_timeout)
        except asyncio.CancelledError:
            self.handled.append("cancelled")
            raise
        finally:
            if keepalive is not None:
                keepalive.cancel()
        self.handled.append(_outcome(answer))
        self._send(Command.MSG, answer)


def _asks_owner(payload: bytes) -> bool:
    """Whether the payload is a transaction request (the owner is asked: keepalives go out)."""
    try:
        return isinstance(decode(payload), SealedMessage)
    except CardError:
        return False


def _outcome(answer: bytes) -> str:
    """What the card answered, for logs and tests: ``card-error:<code>`` or the message type."""
    message = decode(answer)
    if isinstance(message, CardErrorMessage):
        return f"card-error:{message.code.name.lower()}"
    return f"card-{message.message_type.name.lower()}"
