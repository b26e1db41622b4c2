"""Which link an answer came over, for the platform: the module's (or card's) address and the
gateway adapter's own, as BlueZ names them (relay contract key 7, ``LinkReport``).

The platform recomputes a symmetric-key card's channel id from these and the card's connection
random, so a hello made on another link (a relay's) is refused before the card sees a request
(docs/symmetric-card.md). The gateway reads its adapter's address once, at start.
"""

from __future__ import annotations

import asyncio
import logging

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus

from bluez_pairing import BluezCallError, bluez_call
from e2e.errors import MalformedMessage
from relay_contract import LinkReport

__all__ = ["ADDRESS_TIMEOUT", "adapter_address", "link_report"]

log = logging.getLogger("blegw.link")

ADDRESS_TIMEOUT = 5.0
"""Seconds BlueZ has to name the adapter's address."""


async def adapter_address(adapter: str) -> str | None:
    """The adapter's ``Address`` as BlueZ gives it; None (logged) when BlueZ cannot say: the
    gateway then reports no link, as an older gateway, and the platform checks less."""
    try:
        async with asyncio.timeout(ADDRESS_TIMEOUT):
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            try:
                reply = await bluez_call(bus, f"/org/bluez/{adapter}",
                                         "org.freedesktop.DBus.Properties", "Get", "ss",
                                         ["org.bluez.Adapter1", "Address"])
            finally:
                bus.disconnect()
    except (BluezCallError, DBusError, OSError, EOFError, TimeoutError) as exc:
        log.warning("cannot read %s's address (%s): answers will not report their link",
                    adapter, exc)
        return None
    value = reply.body[0].value if reply.body else None
    return value if isinstance(value, str) else None


def link_report(peer: str, central: str | None) -> LinkReport | None:
    """The report for an answer from ``peer``, or None when either address is unknown or not
    an address (nothing is reported rather than something wrong)."""
    if central is None:
        return None
    try:
        return LinkReport.from_text(peer, central)
    except MalformedMessage:
        return None
