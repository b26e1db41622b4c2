"""What the relay needs of a link to one module, and nothing more.

:class:`blegw.link.ModuleLink` (bleak over BlueZ) is the one real implementation. The relay
depends on this protocol instead, so its rules (one answer per request, the worker never dies,
cancel and keepalive forwarding) are tested over a fake of the radio path without a radio.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ble_profile import KeepaliveStatus

    from .link import ExchangeTimings

__all__ = ["KeepaliveSeen", "Link"]

KeepaliveSeen = Callable[["KeepaliveStatus"], None]
"""Called for each KEEPALIVE the module sends while a request is in flight."""


class Link(Protocol):
    """One module's link, as the relay uses it.

    ``exchange`` and ``ping`` raise :class:`blegw.link.LinkError` (or its subclasses
    ``ModuleUnreachable``, ``DeadlinePassed``, ``ExchangeCancelled``) for every failure the
    link understands; anything else they raise is a defect the relay contains.
    """

    @property
    def label(self) -> str:
        """How log lines name the module."""

    @property
    def adapter(self) -> str:
        """The local adapter (``hci0``), for the operator's advice on a fault."""

    @property
    def address(self) -> str:
        """The module's Bluetooth address."""

    async def exchange(self, envelope: bytes, deadline: float, *,
                       on_keepalive: KeepaliveSeen | None = None,
                       cancel: asyncio.Event | None = None
                       ) -> tuple[bytes, ExchangeTimings]:
        """Send one request envelope; return the module's answer envelope.

        ``on_keepalive`` hears every KEEPALIVE status while the module decides; when
        ``cancel`` is set the link sends CANCEL to the module and raises
        ``ExchangeCancelled``.
        """

    async def ping(self, timeout: float = 10.0) -> ExchangeTimings:
        """One echo round trip (link health)."""

    async def close(self) -> None:
        """Drop the connection, if any; the next exchange reconnects."""
