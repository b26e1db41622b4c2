"""Hardware-in-the-loop mode: the same tests on a BlueZ the suite did not start.

In HIL mode (``pytest --hil``, which sets ``BLEGW_HIL=1`` for the run) the radio is whatever
owns ``org.bluez`` on ``BLEGW_HIL_BUS`` (default: the system bus), a real bluetoothd with real
adapters or a virtual BlueZ started outside the suite. Nothing may start a virtual radio or
reach its control interface then: a test that does would pass on the emulator and mean nothing
on hardware, so :func:`guard` raises :class:`HilViolation` (the test fails, it is not skipped)
and, when ``BLEGW_HIL_VIOLATIONS`` names a file, appends one line to it so that a run that
swallowed the exception is still caught. See ``docs/hil.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from types import TracebackType
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from .config import RadioConfig
from .control import AdapterInfo, RadioControl
from .errors import VBluezError
from .hil_guard import HilViolation, guard, hil_active
from .runtime import VirtualBluez

__all__ = ["HilRadio", "HilViolation", "RigTooSmall", "guard", "hil_active", "open_radio"]

BUS_ENV = "BLEGW_HIL_BUS"
GATEWAY_ADAPTER_ENV = "BLEGW_HIL_GATEWAY_ADAPTER"
MODULE_ADAPTER_ENV = "BLEGW_HIL_MODULE_ADAPTER"
SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"


class RigTooSmall(VBluezError):
    """The test needs more adapters than the rig has: a property of the rig, not a defect, so
    the pytest plugin turns it into a skip with this message (printed with ``-rs``)."""


def bus_address() -> str:
    """The bus the HIL radio is on: ``BLEGW_HIL_BUS``, else the system bus."""
    return os.environ.get(BUS_ENV) or SYSTEM_BUS


class HilRadio:
    """The radio of a HIL run, with the surface tests use from :class:`VirtualBluez`:
    ``bus_address``, ``environ()`` and ``adapters`` (the gateway's adapter first, then the
    module's, then any others, by name). ``control`` is refused."""

    def __init__(self, config: RadioConfig | None = None) -> None:
        self.config = config or RadioConfig()
        self.bus_address = bus_address()
        self.adapters: list[AdapterInfo] = []

    @property
    def control(self) -> RadioControl:
        guard("the vbluez control API (radio.control)")
        raise AssertionError("unreachable")  # pragma: no cover

    def environ(self) -> dict[str, str]:
        """Point bleak, bless and bluetoothctl at the HIL bus."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}

    async def start(self) -> None:
        """Read the adapters from BlueZ's object manager and give the test a clean radio:
        every adapter powered and pairable and no device known (bonds removed), as a fresh
        virtual radio starts. Only standard BlueZ calls; on a rig this forgets its own bonds."""
        bus = await MessageBus(bus_address=self.bus_address,
                               bus_type=BusType.SYSTEM).connect()
        try:
            reply = await self._call(bus, "/", "org.freedesktop.DBus.ObjectManager",
                                     "GetManagedObjects")
            objects: dict[str, dict[str, dict[str, Any]]] = reply.body[0]
            found = {path.rsplit("/", 1)[1]: props["org.bluez.Adapter1"]["Address"].value
                     for path, props in objects.items() if "org.bluez.Adapter1" in props}
            for name in found:
                # Powered and pairable, as BlueZ starts an adapter: a test before may have
                # left the module's adapter out of pairing mode (Pairable false).
                for prop in ("Powered", "Pairable"):
                    await self._call(bus, f"/org/bluez/{name}",
                                     "org.freedesktop.DBus.Properties", "Set", "ssv",
                                     ["org.bluez.Adapter1", prop, Variant("b", True)])
            for path, props in objects.items():
                if "org.bluez.Device1" in props:
                    adapter = props["org.bluez.Device1"]["Adapter"].value
                    await self._call(bus, adapter, "org.bluez.Adapter1", "RemoveDevice", "o",
                                     [path])
        finally:
            bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    bus.wait_for_disconnect(), 2)  # type: ignore[no-untyped-call]
        first = [os.environ.get(GATEWAY_ADAPTER_ENV, "hci0"),
                 os.environ.get(MODULE_ADAPTER_ENV, "hci1")]
        missing = [name for name in first if name not in found]
        if missing:
            raise VBluezError(f"HIL adapters {missing} not on {self.bus_address}: "
                              f"BlueZ has {sorted(found)}")
        if len(found) < self.config.adapters:
            raise RigTooSmall(f"HIL mode: this test needs {self.config.adapters} adapters, "
                              f"BlueZ on {self.bus_address} has {len(found)} "
                              f"({sorted(found)})")
        order = first + sorted(name for name in found if name not in first)
        self.adapters = [AdapterInfo(name, str(found[name])) for name in order]

    async def _call(self, bus: MessageBus, path: str, interface: str, member: str,
                    signature: str = "", body: list[Any] | None = None) -> Message:
        reply = await asyncio.wait_for(bus.call(Message(
            destination="org.bluez", path=path, interface=interface, member=member,
            signature=signature, body=body or [])), 10)
        if reply is None or reply.message_type == MessageType.ERROR:
            detail = reply.body if reply is not None else "no reply"
            raise VBluezError(f"BlueZ on {self.bus_address}: {member} on {path}: {detail}")
        return reply

    async def __aenter__(self) -> HilRadio:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


def open_radio(config: RadioConfig) -> VirtualBluez | HilRadio:
    """The radio for a harness: the HIL radio in HIL mode, else a fresh virtual one."""
    return HilRadio(config) if hil_active() else VirtualBluez(config=config)
