"""The module's BLE side: a bless GATT server for the link profile, with service-data adverts.

Thin adapter: it moves bytes between BlueZ (through bless) and the module logic. Two things bless
0.3 lacks are added here without changing bless: advertisements that carry service data (bless
advertises only its first service UUID) and the options BlueZ passes with reads and writes
(see :mod:`wearable_sim._bless_options`).

bluetoothd keeps an application and an advertisement only as long as it runs: after a restart
(or when the adapter is removed and comes back) the module would stay up but unreachable, with
no advert. So the peripheral watches ``org.bluez`` (NameOwnerChanged) and its adapter
(InterfacesAdded) and, when the adapter is announced again, first lets the module restore its
own registrations (``on_bluez_back``: Pairable, its agent), then registers the application and
the advertisement again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from bless import (
    BlessServer,
    GATTAttributePermissions,
    GATTCharacteristicProperties,
)
from bless.backends.bluezdbus.dbus.advertisement import BlueZLEAdvertisement, Type
from dbus_next.constants import MessageType
from dbus_next.message import Message
from dbus_next.signature import Variant

from ._bless_options import OptionsCharacteristic

__all__ = ["CharacteristicSpec", "ModulePeripheral", "PeripheralError"]

log = logging.getLogger("wearable_sim.peripheral")

APP_PATH_PREFIX = "/net/blegw/sim/"
"""Where the simulator's GATT application and advertisements live on the bus (not under
``/org/bluez/``, which bleak reads as BlueZ's own objects)."""


class PeripheralError(Exception):
    """The BLE side of the module could not start or stopped working."""


@dataclass(frozen=True, slots=True)
class CharacteristicSpec:
    uuid: str
    properties: int
    permissions: int


class ModulePeripheral:
    """One GATT service on one adapter; ``on_read``/``on_write`` get BlueZ's options."""

    def __init__(self, *, name: str, adapter: str, service_uuid: str,
                 characteristics: list[CharacteristicSpec],
                 on_read: Callable[[str, dict[str, Any]], bytes],
                 on_write: Callable[[str, bytes, dict[str, Any]], None],
                 on_unsubscribe: Callable[[str], None] = lambda _uuid: None,
                 on_bluez_back: Callable[[], Awaitable[None]] | None = None) -> None:
        self.name = name
        self.adapter_name = adapter
        self.service_uuid = service_uuid
        self._specs = characteristics
        self._on_read = on_read
        self._on_write = on_write
        self._on_unsubscribe = on_unsubscribe
        self._server: Any = None
        self._chars: dict[str, Any] = {}
        self._advert: Any = None
        self._adv_index = 0
        self._bus_ended: asyncio.Future[Any] | None = None
        self._on_bluez_back = on_bluez_back
        self._service_data: dict[str, bytes] = {}
        self._restore: asyncio.Task[None] | None = None
        self._restore_again = False
        self._unusable: asyncio.Future[str] | None = None
        self.restarts_seen = 0
        """Times BlueZ (or the adapter) came back and the registrations were made again."""

    async def start(self, service_data: dict[str, bytes]) -> None:
        try:
            self._server = BlessServer(name=self.name, adapter=self.adapter_name)
            server = self._server
            await server.setup_task
            # bless exports its objects under /org/bluez/<name>: every bleak central on the same
            # bus (the demo, a rig with two adapters on one machine) takes the InterfacesAdded of
            # that GattService1 for a remote device's and fails on its missing "Device" property.
            # BlueZ accepts an application at any path, so keep ours out of BlueZ's namespace.
            server.app.base_path = APP_PATH_PREFIX + re.sub("[^A-Za-z0-9_]", "", self.name)
            await server.add_new_service(self.service_uuid)
            for spec in self._specs:
                await server.add_new_characteristic(
                    self.service_uuid, spec.uuid, GATTCharacteristicProperties(spec.properties),
                    None, GATTAttributePermissions(spec.permissions))
            self._swap_in_option_characteristics()
            await server.setup_task
            self._bus_ended = _watch_bus(server.bus)
            self._unusable = asyncio.get_running_loop().create_future()
            await self._watch_bluez(server.bus)
            server.bus.export(server.app.path, server.app)
            await server.app.register(server.adapter)
            await server.app.set_name(server.adapter, self.name)
            await self._advertise(service_data)
        except PeripheralError:
            raise
        except Exception as exc:
            await self.stop()
            raise PeripheralError(f"could not start the GATT server on {self.adapter_name}: "
                                  f"{exc}") from exc

    def _swap_in_option_characteristics(self) -> None:
        """Replace bless's exported characteristic objects with option-passing ones."""
        server = self._server
        for service in server.app.services:
            for i, old in enumerate(service.characteristics):
                flags = [f for f in _flag_enum() if f.value in old._flags]
                new: Any = OptionsCharacteristic(old._uuid, flags, i + 1, service)
                new._value = old._value
                new.on_read = self._on_read
                new.on_write = self._on_write
                new.on_unsubscribe = self._on_unsubscribe
                server.bus.unexport(old.path)
                server.bus.export(new.path, new)
                service.characteristics[i] = new
                self._chars[old._uuid.lower()] = new

    async def _watch_bluez(self, bus: Any) -> None:
        bus.add_message_handler(self._on_bus_message)
        for rule in ("type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                     "arg0='org.bluez'",
                     "type='signal',interface='org.freedesktop.DBus.ObjectManager',"
                     "member='InterfacesAdded',arg0path='/org/bluez/'"):
            reply = await bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                body=[rule]))
            if reply.message_type == MessageType.ERROR:
                raise PeripheralError(f"cannot watch BlueZ: {reply.body}")

    def _on_bus_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or self._server is None:
            return
        if msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == "org.bluez":
            if not msg.body[2]:
                log.warning("BlueZ (org.bluez) went away: the module is not advertising; "
                            "it registers again when bluetoothd is back")
            return
        if (msg.member == "InterfacesAdded" and msg.body
                and msg.body[0] == f"/org/bluez/{self.adapter_name}"
                and "org.bluez.Adapter1" in msg.body[1]):
            if self._restore is not None and not self._restore.done():
                self._restore_again = True
                return
            self._restore = asyncio.ensure_future(self._register_again())

    async def _register_again(self) -> None:
        """The adapter is on the bus again (bluetoothd restarted, or the controller came
        back): everything BlueZ held for us is gone; make it again."""
        while True:
            self._restore_again = False
            server = self._server
            if server is None:
                return
            log.warning("adapter %s announced again (bluetoothd restarted or the controller "
                        "came back): registering the module again", self.adapter_name)
            old, self._advert = self._advert, None
            if old is not None:
                try:
                    server.bus.unexport(old.path)
                except Exception as exc:  # the advert died with bluetoothd; nothing to undo
                    log.debug("unexporting the old advertisement failed: %r", exc)
            try:
                if self._on_bluez_back is not None:
                    await self._on_bluez_back()
                await asyncio.wait_for(server.app.register(server.adapter), STOP_TIMEOUT)
                await asyncio.wait_for(server.app.set_name(server.adapter, self.name),
                                       STOP_TIMEOUT)
                await self._advertise(self._service_data)
            except Exception as exc:  # any failure is reported; the module cannot go on silently
                reason = f"{type(exc).__name__}: {exc}"
                log.error("could not register with BlueZ again (%s): the module is not "
                          "reachable", reason)
                if self._unusable is not None and not self._unusable.done():
                    self._unusable.set_result(reason)
                return
            else:
                self.restarts_seen += 1
                log.info("registered with BlueZ again: advertising on %s", self.adapter_name)
            if not self._restore_again:
                return

    async def _advertise(self, service_data: dict[str, bytes]) -> None:
        self._service_data = dict(service_data)
        server = self._server
        self._adv_index += 1
        advert = BlueZLEAdvertisement(Type.PERIPHERAL, self._adv_index, server.app)
        advert._service_uuids = [self.service_uuid]
        advert._service_data = {k: Variant("ay", v) for k, v in service_data.items()}
        advert._tx_power = 0
        server.bus.export(advert.path, advert)
        iface = server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
        try:
            await iface.call_register_advertisement(advert.path, {})
        except Exception as exc:
            server.bus.unexport(advert.path)
            raise PeripheralError(f"BlueZ refused the advertisement: {exc}") from exc
        self._advert = advert

    async def readvertise(self, service_data: dict[str, bytes]) -> None:
        """Change the advertised service data (e.g. entering or leaving pairing mode)."""
        await self._stop_advertising()
        await self._advertise(service_data)

    async def _stop_advertising(self) -> None:
        if self._advert is None or self._server is None:
            return
        advert, self._advert = self._advert, None
        with contextlib.suppress(Exception):
            iface = self._server.adapter.get_interface("org.bluez.LEAdvertisingManager1")
            # A bounded wait: if bluetoothd (or the bus) is gone, dbus-next never answers.
            await asyncio.wait_for(iface.call_unregister_advertisement(advert.path),
                                   STOP_TIMEOUT)
        with contextlib.suppress(Exception):
            self._server.bus.unexport(advert.path)

    async def wait_bus_lost(self) -> str:
        """Return (with the reason) when the D-Bus connection to BlueZ ends under us."""
        if self._bus_ended is None:
            return "not started"
        try:
            await asyncio.shield(self._bus_ended)  # a caller's cancel must not end the watch
        except Exception as exc:  # dbus-next hands back whatever ended the connection
            return f"{type(exc).__name__}: {exc}".rstrip(": ")
        return "closed"

    async def wait_unreachable(self) -> str:
        """Return (with the reason) if BlueZ came back but the module could not register
        again: it would run on with no advert and no service, so its owner must know."""
        if self._unusable is None:
            return "not started"
        return await asyncio.shield(self._unusable)

    def notify(self, char_uuid: str, value: bytes) -> None:
        """Publish ``value``; BlueZ sends it to every subscribed central."""
        char = self._chars[char_uuid.lower()]
        char.Value = bytes(value)  # the setter emits PropertiesChanged(Value)

    async def stop(self) -> None:
        if self._restore is not None:
            self._restore.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._restore
            self._restore = None
        server, self._server = self._server, None
        if server is None:
            return
        bus = getattr(server, "bus", None)
        if bus is None or not bus.connected:
            # BlueZ (or the bus) is gone: nothing to unregister, and no one would answer.
            self._advert = None
        else:
            self._server = server
            await self._stop_advertising()
            self._server = None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.setup_task, STOP_TIMEOUT)
                await asyncio.wait_for(server.app.unregister(server.adapter), STOP_TIMEOUT)
        if bus is not None:
            # dbus-next's disconnect() only shuts the socket down; close it too.
            bus.disconnect()
            if self._bus_ended is not None:
                await asyncio.wait({self._bus_ended}, timeout=STOP_TIMEOUT)
            with contextlib.suppress(Exception):
                bus._sock.close()


STOP_TIMEOUT = 2.0
"""Seconds each clean-up call to BlueZ may take when stopping (it may already be gone)."""


def _watch_bus(bus: Any) -> asyncio.Future[Any]:
    """One task that ends with the bus connection, however it ends.

    dbus-next hands every waiter the bus's own future: a waiter that is cancelled cancels it
    for everyone. One owned task, awaited only through ``shield`` or ``wait``, avoids that, and
    its done-callback collects the error (an EOF when BlueZ goes away) so asyncio does not log
    it as never retrieved.
    """
    task: asyncio.Future[Any] = asyncio.ensure_future(bus.wait_for_disconnect())
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


def _flag_enum() -> list[Any]:
    from bless.backends.bluezdbus.dbus.characteristic import Flags

    return list(Flags)
