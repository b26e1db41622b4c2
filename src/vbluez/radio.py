# mypy: disable-error-code="misc"
# (mypy cannot type the default-argument lambdas that bind D-Bus properties to their objects.)
"""The virtual BlueZ: owns ``org.bluez`` on a bus and simulates the radio between its adapters.

Each adapter stands for a separate host. A bless (or any BlueZ GATT) application registered on one
adapter becomes a remote peripheral for every other adapter: advertisements show up as
``Device1`` objects to discovering adapters, ``Device1.Connect`` makes a link, the peripheral's
GATT database is mirrored under the device path, and reads, writes and notifications are carried
across with BlueZ's option keys, errors, ordering and (optionally) connection-interval timing.

Theory of operation
-------------------
* Every incoming method call becomes a task; its answer (reply or error) is always sent, so no
  caller is left hanging. Signals are handled synchronously, which keeps notifications in the
  order the peripheral emitted them.
* Requests on a link are serialised with ``Link.att_lock`` (ATT allows one outstanding request
  per bearer); a link's notifications go through one queue and one delivery task.
* Losing a link resolves ``Link.lost``; every operation on the link races against it.
* Bus peers that vanish (NameOwnerChanged) lose their discovery sessions, notify sessions,
  agents, applications and advertisements, as in BlueZ.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from .att import ATT_MAX_VALUE_LEN, AttError, att_error_from_app_error, central_error_from_att
from .config import ConfigError, RadioConfig
from .errors import BluezError
from .model import (
    CCCD_UUID,
    KNOWN_FLAGS,
    READ_FLAGS,
    SECURITY_AUTHENTICATED,
    SECURITY_NONE,
    WRITE_FLAGS,
    Adapter,
    Advertisement,
    Agent,
    Bond,
    Device,
    DiscoveryFilter,
    GattApplication,
    Link,
    LocalCharacteristic,
    LocalDescriptor,
    LocalService,
    Notification,
    full_uuid,
    notify_level,
    required_level,
)
from .objects import (
    INTROSPECT_IFACE,
    OM_IFACE,
    PEER_IFACE,
    PROPS_IFACE,
    DBusObject,
    Interface,
    ObjectTree,
    Prop,
    error_reply,
)
from .pairing import IoCapability, PairingMethod, PairingPlan, plan_pairing
from .timing import ConnectionTiming

__all__ = ["CONTROL_IFACE", "CONTROL_PATH", "VirtualRadio"]

log = logging.getLogger("vbluez")

BLUEZ = "org.bluez"
ADAPTER = "org.bluez.Adapter1"
DEVICE = "org.bluez.Device1"
GATT_MANAGER = "org.bluez.GattManager1"
ADV_MANAGER = "org.bluez.LEAdvertisingManager1"
AGENT_MANAGER = "org.bluez.AgentManager1"
SERVICE = "org.bluez.GattService1"
CHARACTERISTIC = "org.bluez.GattCharacteristic1"
DESCRIPTOR = "org.bluez.GattDescriptor1"
AGENT = "org.bluez.Agent1"
ADVERTISEMENT = "org.bluez.LEAdvertisement1"
CONTROL_IFACE = "vbluez.Control1"
CONTROL_PATH = "/vbluez"
BLUEZ_VERSION_UUIDS = [
    "00001800-0000-1000-8000-00805f9b34fb",
    "00001801-0000-1000-8000-00805f9b34fb",
]

T = TypeVar("T")


class FdReply:
    """A method reply that hands a file descriptor to the caller (AcquireWrite/Notify)."""

    def __init__(self, fd: int, body: list[Any]) -> None:
        self.fd = fd
        self.body = body

SCAN_FIRST_REPORT_DELAY = 0.02
"""Seconds from StartDiscovery to the first advertising reports."""


def _v(sig: str, value: Any) -> Variant:
    return Variant(sig, value)


def _unpack(value: Any) -> Any:
    """Strip D-Bus variants at every level (ServiceData is a{sv} of byte arrays)."""
    if isinstance(value, Variant):
        return _unpack(value.value)
    if isinstance(value, dict):
        return {k: _unpack(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unpack(v) for v in value]
    return value


CONNECT_FAULTS = ("abort-by-local", "in-progress")
"""Connect faults ``SetConnectFault`` injects (``vbluez ctl connect-fault``)."""
ABORT_SECONDS = 0.05
"""Shortest time a connect that ends in ``le-connection-abort-by-local`` takes."""
RETIRE_SECONDS = 1.0
"""How long a restarted bluetoothd's old bus connection lives on to finish its replies."""


class VirtualRadio:
    """The emulator. ``await start(bus_address)`` then ``await stop()``."""

    def __init__(self, config: RadioConfig | None = None) -> None:
        self.config = config or RadioConfig()
        self.rng = random.Random(self.config.seed)  # noqa: S311 - simulation noise, not crypto
        self.bus: MessageBus | None = None
        self.tree: ObjectTree | None = None
        self.adapters: list[Adapter] = []
        self.agents: dict[str, Agent] = {}
        self.default_agent: str | None = None
        self.links: list[Link] = []
        self.local_chars: dict[tuple[str, str], LocalCharacteristic] = {}
        self.rssi_overrides: dict[tuple[int, int], int] = {}
        self.owner_matches: set[str] = set()
        self.pids: dict[str, int | None] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.adv_changed = asyncio.Event()
        self.unplugged: dict[str, Adapter] = {}
        """Adapters taken off the bus (``RemoveAdapter``), by hci name, with their bonds."""
        self._restarting = False
        self._stopping = False
        self._bus_address: str | None = None
        self._handlers: dict[MessageBus, Callable[[Message], bool | Message | None]] = {}

    # ------------------------------------------------------------------------------ lifecycle
    async def start(self, bus_address: str | None = None) -> None:
        self._bus_address = bus_address
        self.bus = await self._connect_bus()
        self.tree = ObjectTree(self._send)
        self._export_root()
        for i in range(self.config.adapters):
            self._add_adapter(i)
        await self._own_name()
        self._spawn(self._reporter(), "reporter")
        self._spawn(self._housekeeper(), "housekeeper")

    async def stop(self) -> None:
        self._stopping = True
        for link in list(self.links):
            self._teardown(link, announce=True)
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.bus is not None:
            self.bus.disconnect()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.bus.wait_for_disconnect(), 2)  # type: ignore[no-untyped-call]
            self.bus = None

    async def _connect_bus(self) -> MessageBus:
        """A new connection to the bus, as a process that starts gets: its own unique name,
        our handler for the calls it receives, and the NameOwnerChanged watch."""
        if self._bus_address:
            bus = MessageBus(bus_address=self._bus_address, negotiate_unix_fd=True)
        else:
            bus = MessageBus(bus_type=BusType.SYSTEM, negotiate_unix_fd=True)
        await bus.connect()

        def handler(msg: Message) -> bool | Message | None:
            return self._on_message(msg, bus)

        self._handlers[bus] = handler
        bus.add_message_handler(handler)
        await bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s",
            body=["type='signal',sender='org.freedesktop.DBus',"
                  "interface='org.freedesktop.DBus',member='NameOwnerChanged'"]))
        return bus

    async def bus_gone(self) -> None:
        """Return when the bus connection in use ends (the bus itself went away); the old
        connection a restart retires does not count."""
        while True:
            bus = self.bus
            if bus is None:
                return
            with contextlib.suppress(Exception):
                await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
            if self.bus is bus:
                return

    async def _retire(self, bus: MessageBus) -> None:
        """The previous bluetoothd's connection ends once its last replies are out (the
        RestartDaemon call that asked for the restart is answered on it)."""
        try:
            await asyncio.sleep(RETIRE_SECONDS)
        finally:
            bus.disconnect()

    async def _own_name(self) -> None:
        assert self.bus is not None
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="RequestName", signature="su",
            body=[BLUEZ, 4]))
        if reply is None or reply.message_type == MessageType.ERROR or reply.body[0] != 1:
            raise BluezError.failed(f"could not own {BLUEZ} on the bus (already taken?)")

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(f"vbluez:{name}")
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self._stopping:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    def _send(self, msg: Message) -> None:
        if self.bus is not None and self.bus.connected:
            self.bus.send(msg)

    async def _add_match(self, rule: str) -> None:
        assert self.bus is not None
        await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule]))

    async def _call(self, dest: str, path: str, iface: str, member: str, sig: str = "",
                    body: list[Any] | None = None, timeout: float = 25.0,
                    ) -> Message:
        """Call a peer; raise BluezError with the peer's error name if it answers with one."""
        assert self.bus is not None
        msg = Message(destination=dest, path=path, interface=iface, member=member,
                      signature=sig, body=body or [])
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), timeout)
        except TimeoutError as exc:
            raise BluezError("org.freedesktop.DBus.Error.NoReply",
                             f"{iface}.{member} on {dest} did not answer") from exc
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise BluezError(reply.error_name or "org.freedesktop.DBus.Error.Failed", text)
        return reply

    # --------------------------------------------------------------------------- the object tree
    def _export_root(self) -> None:
        assert self.tree is not None
        root = DBusObject("/org/bluez")
        am = root.add(Interface(AGENT_MANAGER))
        am.method("RegisterAgent", "os", "", self._register_agent)
        am.method("UnregisterAgent", "o", "", self._unregister_agent)
        am.method("RequestDefaultAgent", "o", "", self._request_default_agent)
        self.tree.export(root, announce=False)
        ctl = DBusObject(CONTROL_PATH)
        c = ctl.add(Interface(CONTROL_IFACE))
        c.method("GetAdapters", "", "a(ss)", self._ctl_get_adapters)
        c.method("GetLinks", "", "aa{sv}", self._ctl_get_links)
        c.method("LinkLoss", "ss", "", self._ctl_link_loss)
        c.method("SetLinkInterval", "ssd", "", self._ctl_set_link_interval)
        c.method("DropNotifications", "ssu", "", self._ctl_drop_notifications)
        c.method("AbortConnects", "ssu", "", self._ctl_abort_connects)
        c.method("SetConnectFault", "sssi", "", self._ctl_set_connect_fault)
        c.method("SetResponsive", "sb", "", self._ctl_set_responsive)
        c.method("SetRssi", "ssn", "", self._ctl_set_rssi)
        c.method("AddAdapter", "", "(ss)", self._ctl_add_adapter)
        c.method("RemoveAdapter", "s", "", self._ctl_remove_adapter)
        c.method("RestoreAdapter", "s", "", self._ctl_restore_adapter)
        c.method("RestartDaemon", "das", "", self._ctl_restart_daemon)
        c.method("Configure", "a{sv}", "", self._ctl_configure)
        c.method("GetConfig", "", "s", self._ctl_get_config)
        self.tree.export(ctl, announce=False)

    def _add_adapter(self, index: int) -> Adapter:
        address = f"5A:00:00:00:00:{index + 1:02X}"
        a = Adapter(index=index, address=address, name=f"vbluez-hci{index}",
                    alias=f"vbluez-hci{index}")
        self.adapters.append(a)
        self._export_adapter(a, announce=False)
        return a

    def _export_adapter(self, a: Adapter, *, announce: bool) -> None:
        assert self.tree is not None
        obj = DBusObject(a.path)
        i = obj.add(Interface(ADAPTER))
        i.props = {
            "Address": Prop("s", lambda: a.address),
            "AddressType": Prop("s", lambda: "public"),
            "Name": Prop("s", lambda: a.name),
            "Alias": Prop("s", lambda: a.alias, lambda v: self._set_adapter(a, "Alias", v)),
            "Class": Prop("u", lambda: 0),
            "Powered": Prop("b", lambda: a.powered, lambda v: self._set_adapter(a, "Powered", v)),
            "PowerState": Prop("s", lambda: "on" if a.powered else "off"),
            "Discoverable": Prop("b", lambda: a.discoverable,
                                 lambda v: self._set_adapter(a, "Discoverable", v)),
            "DiscoverableTimeout": Prop("u", lambda: a.discoverable_timeout,
                                        lambda v: self._set_adapter(a, "DiscoverableTimeout", v)),
            "Pairable": Prop("b", lambda: a.pairable,
                             lambda v: self._set_adapter(a, "Pairable", v)),
            "PairableTimeout": Prop("u", lambda: a.pairable_timeout,
                                    lambda v: self._set_adapter(a, "PairableTimeout", v)),
            "Discovering": Prop("b", lambda: a.discovering),
            "UUIDs": Prop("as", lambda: self._adapter_uuids(a)),
            "Modalias": Prop("s", lambda: "usb:v1D6Bp0246d0542"),
            "Roles": Prop("as", lambda: ["central", "peripheral"]),
        }
        i.method("StartDiscovery", "", "", lambda m: self._start_discovery(a, m))
        i.method("StopDiscovery", "", "", lambda m: self._stop_discovery(a, m))
        i.method("SetDiscoveryFilter", "a{sv}", "", lambda m: self._set_discovery_filter(a, m))
        i.method("GetDiscoveryFilters", "", "as", self._get_discovery_filters)
        i.method("RemoveDevice", "o", "", lambda m: self._remove_device(a, m))
        g = obj.add(Interface(GATT_MANAGER))
        g.method("RegisterApplication", "oa{sv}", "", lambda m: self._register_app(a, m))
        g.method("UnregisterApplication", "o", "", lambda m: self._unregister_app(a, m))
        adv = obj.add(Interface(ADV_MANAGER))
        adv.props = {
            "ActiveInstances": Prop("y", lambda: len(a.adverts)),
            "SupportedInstances": Prop(
                "y", lambda: max(0, self.config.max_adv_instances - len(a.adverts))),
            "SupportedIncludes": Prop("as", lambda: ["tx-power", "appearance", "local-name"]),
            "SupportedSecondaryChannels": Prop("as", lambda: []),
        }
        adv.method("RegisterAdvertisement", "oa{sv}", "", lambda m: self._register_adv(a, m))
        adv.method("UnregisterAdvertisement", "o", "", lambda m: self._unregister_adv(a, m))
        self.tree.export(obj, announce=announce)

    def _adapter_uuids(self, a: Adapter) -> list[str]:
        uuids = list(BLUEZ_VERSION_UUIDS)
        for app in a.apps:
            for s in app.services:
                if s.uuid not in uuids:
                    uuids.append(s.uuid)
        return uuids

    def _set_adapter(self, a: Adapter, name: str, value: Any) -> None:
        assert self.tree is not None
        if name == "Powered":
            if bool(value) != a.powered:
                self._set_powered(a, bool(value))
            return
        if name == "Alias":
            a.alias = str(value) or a.name
        elif name == "Discoverable":
            a.discoverable = bool(value)
            self.adv_changed.set()
            self._after_adv_change(a)
        elif name == "Pairable":
            a.pairable = bool(value)
        elif name == "DiscoverableTimeout":
            a.discoverable_timeout = int(value)
        elif name == "PairableTimeout":
            a.pairable_timeout = int(value)
        self.tree.changed(a.path, ADAPTER, [name])

    def _set_powered(self, a: Adapter, on: bool) -> None:
        assert self.tree is not None
        was_discovering = a.discovering
        a.powered = on
        if not on:
            for link in [lk for lk in self.links if a in (lk.central, lk.peripheral)]:
                self._teardown(link, announce=True)
            a.sessions.clear()
        self.tree.changed(a.path, ADAPTER, ["Powered", "PowerState"])
        if was_discovering != a.discovering:
            self.tree.changed(a.path, ADAPTER, ["Discovering"])
        self._after_adv_change(a)
        self.adv_changed.set()

    # ------------------------------------------------------------------------- message dispatch
    def _on_message(self, msg: Message, bus: MessageBus) -> bool | Message | None:
        if msg.message_type == MessageType.SIGNAL:
            self._on_signal(msg)
            return None
        if msg.message_type != MessageType.METHOD_CALL:
            return None  # replies to our own calls are routed by dbus-fast
        self._spawn(self._dispatch(msg, bus), f"call:{msg.member}")
        return True

    async def _dispatch(self, msg: Message, bus: MessageBus) -> None:
        """Answer one call, on the connection that received it (after a restart, a call the
        old bluetoothd took is still answered by it)."""
        assert self.tree is not None

        def reply(answer: Message) -> None:
            if bus.connected:
                bus.send(answer)

        try:
            result = await self._route(msg)
            sig, body = result[0], result[1]
            if isinstance(body, FdReply):
                # Close our copy of the descriptor only once the reply carrying it is written.
                try:
                    await bus.send(Message.new_method_return(
                        msg, sig, body.body, unix_fds=[body.fd]))
                finally:
                    os.close(body.fd)
            elif not msg.flags & 0x1:  # NO_REPLY_EXPECTED
                reply(Message.new_method_return(msg, sig, body))
        except BluezError as err:
            reply(error_reply(msg, err))
        except asyncio.CancelledError:
            reply(error_reply(msg, BluezError.failed("Canceled: the emulator is stopping")))
            raise
        except Exception as exc:  # the caller must get an answer whatever went wrong here
            log.exception("internal error in %s.%s", msg.interface, msg.member)
            reply(error_reply(msg, BluezError.failed(f"internal error: {exc!r}")))

    async def _route(self, msg: Message) -> tuple[str, list[Any]]:
        assert self.tree is not None
        path, iface, member = msg.path or "", msg.interface, msg.member or ""
        log.debug("call %s %s.%s %s", msg.sender, iface, member, path)
        self._note_user(msg.sender or "", path)
        if iface == INTROSPECT_IFACE and member == "Introspect":
            if path not in self.tree.objects and path != "/" and not self.tree.has_children(path):
                raise BluezError("org.freedesktop.DBus.Error.UnknownObject", f"no object {path}")
            return "s", [self.tree.introspect(path)]
        if iface == PEER_IFACE:
            if member == "Ping":
                return "", []
            if member == "GetMachineId":
                return "s", ["7669727475616c626c75657a00000000"]
        if path == "/" and iface in (OM_IFACE, None) and member == "GetManagedObjects":
            return "a{oa{sa{sv}}}", [self.tree.managed_objects()]
        obj = self.tree.objects.get(path)
        if obj is None:
            raise BluezError("org.freedesktop.DBus.Error.UnknownObject",
                             f"Method \"{member}\" with signature \"{msg.signature}\" on "
                             f"interface \"{iface}\" doesn't exist (no object {path})")
        if iface == PROPS_IFACE:
            return self.tree.properties_call(msg)
        candidates = [obj.interfaces[iface]] if iface in obj.interfaces else (
            list(obj.interfaces.values()) if iface is None else [])
        for interface in candidates:
            entry = interface.methods.get(member)
            if entry is None:
                continue
            in_sig, _out_sig, handler = entry
            if msg.signature != in_sig:
                raise BluezError("org.bluez.Error.InvalidArguments",
                                 "Invalid arguments in method call")
            return await handler(msg)
        raise BluezError("org.freedesktop.DBus.Error.UnknownMethod",
                         f"Method \"{member}\" with signature \"{msg.signature}\" on interface "
                         f"\"{iface}\" doesn't exist")

    def _note_user(self, sender: str, path: str) -> None:
        for a in self.adapters:
            if path == a.path or path.startswith(a.path + "/"):
                a.users.add(sender)
                return

    def _on_signal(self, msg: Message) -> None:
        if msg.member == "NameOwnerChanged" and msg.interface == "org.freedesktop.DBus":
            name, _old, new = msg.body
            if name.startswith(":") and not new:
                self._peer_gone(name)
            return
        if msg.member == "PropertiesChanged" and msg.interface == PROPS_IFACE:
            iface, changed, _inv = msg.body
            sender = msg.sender or ""
            if iface == CHARACTERISTIC and "Value" in changed:
                char = self.local_chars.get((sender, msg.path or ""))
                if char is not None:
                    self._on_app_value(char, bytes(changed["Value"].value))
            elif iface == ADVERTISEMENT:
                for a in self.adapters:
                    for adv in a.adverts:
                        if adv.owner == sender and adv.path == msg.path:
                            self._spawn(self._refresh_adv(adv), "refresh-adv")

    def _peer_gone(self, name: str) -> None:
        """A bus peer went away: drop everything it owned, as BlueZ does."""
        self.pids.pop(name, None)
        for a in self.adapters:
            a.users.discard(name)
            a.filters.pop(name, None)
            if name in a.sessions:
                del a.sessions[name]
                if not a.sessions:
                    self._discovery_stopped(a)
            for adv in [x for x in a.adverts if x.owner == name]:
                self._drop_adv(adv)
            for app in [x for x in a.apps if x.owner == name]:
                self._drop_app(app)
        for link in list(self.links):
            for char, clients in list(link.notify_clients.items()):
                if name in clients:
                    clients.discard(name)
                    if not clients:
                        self._spawn(self._unsubscribe(link, char), "unsubscribe")
        if name in self.agents:
            del self.agents[name]
            if self.default_agent == name:
                self.default_agent = None
        self.owner_matches.discard(name)

    # ------------------------------------------------------------- adapter and bluetoothd loss
    def _unplug(self, a: Adapter) -> None:
        """Take ``a`` off the bus as BlueZ's ``adapter_remove`` does when a controller goes
        (USB dongle pulled, ``hciconfig down`` of the index, the kernel driver reset).

        Its links drop (both sides see ``Connected`` false), pending connects fail, its
        ``Device1`` objects go first and then the adapter's own interfaces
        (InterfacesRemoved for each); the applications, advertisements and discovery
        sessions peers registered on it are forgotten. Its bonds stay on the adapter (as
        ``/var/lib/bluetooth/<address>`` keeps them) for :meth:`_plug`.
        """
        assert self.tree is not None
        for link in [lk for lk in self.links if a in (lk.central, lk.peripheral)]:
            self._teardown(link, announce=True)
        for dev in list(a.devices.values()):
            if dev.connect_task is not None:
                dev.connect_task.cancel()
            a.devices.pop(dev.address, None)
            self.tree.unexport_tree(dev.path)
        for adv in list(a.adverts):
            a.adverts.remove(adv)
        for app in list(a.apps):
            self._drop_app(app)
        a.sessions.clear()
        a.filters.clear()
        a.users.clear()
        self.tree.unexport_tree(a.path)
        self.adapters.remove(a)
        self.unplugged[a.hci] = a
        self._after_adv_change(a)
        self.adv_changed.set()
        log.info("adapter %s removed", a.hci)

    def _plug(self, a: Adapter) -> None:
        """Bring a removed adapter back as BlueZ does when the controller reappears: a fresh
        adapter (powered, Pairable as BlueZ's default, handles from 0x000a again), then one
        ``Device1`` per stored bond, Paired/Bonded/Trusted, as BlueZ loads them from storage."""
        self.unplugged.pop(a.hci, None)
        a.powered, a.discoverable, a.pairable = True, False, True
        a.next_handle = 0x000A
        self.adapters.append(a)
        self.adapters.sort(key=lambda x: x.index)
        self._export_adapter(a, announce=True)
        for address in a.bonds:
            dev = self._new_device(a, address, announce=False)
            dev.paired = dev.bonded = dev.trusted = True
            self._export_device(dev)
        self.adv_changed.set()
        log.info("adapter %s added", a.hci)

    async def _restart(self, downtime: float, wipe: set[str]) -> None:
        """bluetoothd stops and starts again (``systemctl restart bluetooth``, a crash and
        systemd's restart): every adapter and device object is removed, the ``org.bluez``
        name is released (NameOwnerChanged to ""), and after ``downtime`` re-acquired and the
        adapters re-announced with the devices of their stored bonds. Everything peers
        registered (agents, applications, advertisements, discovery sessions) is gone, as
        the old bluetoothd took it with it: they must register again. Adapters named in
        ``wipe`` lose their bonds (``/var/lib/bluetooth`` wiped, a re-imaged gateway)."""
        assert self.bus is not None
        self._restarting = True
        try:
            present = list(self.adapters)
            for a in reversed(present):
                self._unplug(a)
            self.agents.clear()
            self.default_agent = None
            await self.bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="ReleaseName", signature="s",
                body=[BLUEZ]))
            log.info("org.bluez released (bluetoothd restarting)")
            await asyncio.sleep(downtime)
            for hci in wipe:
                wiped = self.unplugged.get(hci) or self._find_adapter(hci)
                wiped.bonds.clear()
                wiped.gatt_cache.clear()
            for a in present:
                a.alias = a.name if a.hci in wipe else a.alias
            # The new bluetoothd is a new process: a new connection, a new unique name.
            old = self.bus
            self.bus = await self._connect_bus()
            old.remove_message_handler(self._handlers.pop(old))
            self.owner_matches.clear()  # the watches were the old connection's
            self._spawn(self._retire(old), "retire-bus")
            await self._own_name()
            for a in present:
                self._plug(a)
            log.info("org.bluez owned again (bluetoothd restarted, as %s)",
                     self.bus.unique_name)
        finally:
            self._restarting = False

    # ------------------------------------------------------------------------------ discovery
    async def _start_discovery(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        assert self.tree is not None
        sender = msg.sender or ""
        if not a.powered:
            raise BluezError.not_ready()
        if sender in a.sessions:
            raise BluezError.in_progress("Operation already in progress")
        was = a.discovering
        a.sessions[sender] = a.filters.get(sender, DiscoveryFilter())
        if not was:
            self.tree.changed(a.path, ADAPTER, ["Discovering"])
        # The first advertising reports arrive after the reply, as on air: a controller needs at
        # least part of an advertising interval to hear anything.
        self._spawn(self._first_reports(a), "first-reports")
        return "", []

    async def _first_reports(self, a: Adapter) -> None:
        await asyncio.sleep(SCAN_FIRST_REPORT_DELAY)
        self._report_all(a, force=True)

    async def _stop_discovery(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        sender = msg.sender or ""
        if sender not in a.sessions:
            raise BluezError.failed("No discovery started")
        del a.sessions[sender]
        if not a.sessions:
            self._discovery_stopped(a)
        return "", []

    def _discovery_stopped(self, a: Adapter) -> None:
        assert self.tree is not None
        self.tree.changed(a.path, ADAPTER, ["Discovering"])
        for dev in a.devices.values():
            if dev.rssi is not None:
                dev.rssi = None
                self.tree.changed(dev.path, DEVICE, [], invalidated=["RSSI"])

    async def _set_discovery_filter(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        sender = msg.sender or ""
        options: dict[str, Variant] = msg.body[0]
        f = DiscoveryFilter()
        expected = {"UUIDs": "as", "RSSI": "n", "Pathloss": "q", "Transport": "s",
                    "DuplicateData": "b", "Discoverable": "b", "Pattern": "s"}
        for key, value in options.items():
            if key not in expected or value.signature != expected[key]:
                raise BluezError.invalid_args()
        try:
            if "UUIDs" in options:
                f.uuids = [full_uuid(u) for u in options["UUIDs"].value]
        except ValueError as exc:
            raise BluezError.invalid_args() from exc
        if "RSSI" in options and "Pathloss" in options:
            raise BluezError.invalid_args()
        if "RSSI" in options:
            f.rssi = int(options["RSSI"].value)
        if "Pathloss" in options:
            f.pathloss = int(options["Pathloss"].value)
        if "Transport" in options:
            if options["Transport"].value not in ("auto", "bredr", "le"):
                raise BluezError.invalid_args()
            f.transport = options["Transport"].value
        if "DuplicateData" in options:
            f.duplicate_data = bool(options["DuplicateData"].value)
        if "Discoverable" in options:
            f.discoverable = bool(options["Discoverable"].value)
        if "Pattern" in options:
            f.pattern = str(options["Pattern"].value)
        if options:
            a.filters[sender] = f
        else:
            a.filters.pop(sender, None)
        if sender in a.sessions:
            a.sessions[sender] = a.filters.get(sender, DiscoveryFilter())
        return "", []

    async def _get_discovery_filters(self, msg: Message) -> tuple[str, list[Any]]:
        return "as", [["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData",
                       "Discoverable", "Pattern"]]

    def _visible_adverts(self, scanner: Adapter) -> list[Advertisement]:
        out: list[Advertisement] = []
        for a in self.adapters:
            if a is scanner or not a.powered:
                continue
            out.extend(a.adverts)
        return out

    def _rssi_for(self, scanner: Adapter, adv: Advertisement) -> int:
        base = self.rssi_overrides.get((scanner.index, adv.adapter.index), self.config.rssi)
        if self.config.rssi_noise > 0:
            base = round(base + self.rng.gauss(0, self.config.rssi_noise))
        return max(-127, min(20, int(base)))

    @staticmethod
    def _matches(f: DiscoveryFilter, adv: Advertisement, name: str | None, rssi: int,
                 discoverable: bool) -> bool:
        if f.transport == "bredr":
            return False
        if f.uuids:
            offered = set(adv.service_uuids) | set(adv.service_data)
            if not offered.intersection(f.uuids):
                return False
        if f.rssi is not None and rssi < f.rssi:
            return False
        if f.pathloss is not None:
            tx = adv.tx_power
            if tx is None or tx - rssi > f.pathloss:
                return False
        if f.discoverable and not discoverable:
            return False
        if f.pattern:
            addr = adv.adapter.address
            if not (addr.startswith(f.pattern) or (name or "").startswith(f.pattern)):
                return False
        return True

    def _report_all(self, scanner: Adapter, *, force: bool = False) -> None:
        if not scanner.discovering:
            return
        for adv in self._visible_adverts(scanner):
            self._report(scanner, adv, force=force)

    def _report(self, scanner: Adapter, adv: Advertisement, *, force: bool = False) -> None:
        """One advertising report from ``adv`` received by ``scanner``."""
        assert self.tree is not None
        src = adv.adapter
        name = adv.local_name(src.alias)
        rssi = self._rssi_for(scanner, adv)
        discoverable = adv.discoverable(src.discoverable)
        sessions = list(scanner.sessions.values())
        matching = [f for f in sessions if self._matches(f, adv, name, rssi, discoverable)]
        if not matching:
            return
        duplicate = any(f.duplicate_data for f in matching)
        dev = scanner.devices.get(src.address)
        flags = bytes([(0x02 if discoverable else 0x00) | 0x04])
        known = dev.uuids if dev and dev.connected else []
        uuids = list(dict.fromkeys(adv.service_uuids + known))
        fields: dict[str, Any] = {
            "Name": name, "UUIDs": uuids, "ManufacturerData": adv.manufacturer_data,
            "ServiceData": adv.service_data, "TxPower": adv.tx_power, "AdvertisingFlags": flags,
        }
        if dev is None:
            dev = self._new_device(scanner, src.address, announce=False)
            self._apply_adv_fields(dev, fields)
            dev.rssi = rssi
            dev.last_seen = time.monotonic()
            dev.advertised = True
            self._export_device(dev)
            return
        changed = self._apply_adv_fields(dev, fields)
        dev.last_seen = time.monotonic()
        dev.advertised = True
        if dev.rssi != rssi or duplicate or force:
            dev.rssi = rssi
            changed.append("RSSI")
        if changed:
            self.tree.changed(dev.path, DEVICE, changed)

    @staticmethod
    def _apply_adv_fields(dev: Device, fields: dict[str, Any]) -> list[str]:
        changed: list[str] = []
        mapping = {"Name": "name", "UUIDs": "uuids", "ManufacturerData": "manufacturer_data",
                   "ServiceData": "service_data", "TxPower": "tx_power",
                   "AdvertisingFlags": "adv_flags"}
        for prop, attr in mapping.items():
            value = fields[prop]
            if prop == "Name" and value is None:
                continue
            if getattr(dev, attr) != value:
                setattr(dev, attr, value)
                changed.append(prop)
                if prop == "Name" and not dev.alias:
                    changed.append("Alias")
        return changed

    async def _reporter(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.adv_changed.wait(), self.config.report_interval)
            self.adv_changed.clear()
            for scanner in self.adapters:
                self._report_all(scanner)

    async def _housekeeper(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.config.temporary_timeout / 4))
            now = time.monotonic()
            for a in self.adapters:
                for dev in list(a.devices.values()):
                    if dev.temporary and now - dev.last_seen > self.config.temporary_timeout:
                        self._forget_device(dev)

    # --------------------------------------------------------------------------------- devices
    def _new_device(self, a: Adapter, address: str, *, announce: bool = True) -> Device:
        dev = Device(adapter=a, address=address, path=a.device_path(address),
                     last_seen=time.monotonic())
        a.devices[address] = dev
        if announce:
            self._export_device(dev)
        return dev

    def _export_device(self, dev: Device) -> None:
        assert self.tree is not None
        obj = DBusObject(dev.path)
        i = obj.add(Interface(DEVICE))
        i.props = {
            "Address": Prop("s", lambda: dev.address),
            "AddressType": Prop("s", lambda: "public"),
            "Name": Prop("s", lambda: dev.name),
            "Alias": Prop("s", lambda: dev.display_alias,
                          lambda v: self._set_device(dev, "Alias", v)),
            "Paired": Prop("b", lambda: dev.paired),
            "Bonded": Prop("b", lambda: dev.bonded),
            "Trusted": Prop("b", lambda: dev.trusted,
                          lambda v: self._set_device(dev, "Trusted", v)),
            "Blocked": Prop("b", lambda: dev.blocked,
                          lambda v: self._set_device(dev, "Blocked", v)),
            "LegacyPairing": Prop("b", lambda: False),
            "RSSI": Prop("n", lambda: dev.rssi),
            "TxPower": Prop("n", lambda: dev.tx_power),
            "Connected": Prop("b", lambda: dev.connected),
            "UUIDs": Prop("as", lambda: dev.uuids),
            "Adapter": Prop("o", lambda: dev.adapter.path),
            "ManufacturerData": Prop(
                "a{qv}", lambda: {k: _v("ay", v) for k, v in dev.manufacturer_data.items()}
                if dev.manufacturer_data else None),
            "ServiceData": Prop(
                "a{sv}", lambda: {k: _v("ay", v) for k, v in dev.service_data.items()}
                if dev.service_data else None),
            "ServicesResolved": Prop("b", lambda: dev.services_resolved),
            "AdvertisingFlags": Prop("ay", lambda: dev.adv_flags or None),
        }
        i.method("Connect", "", "", lambda m: self._connect(dev, m))
        i.method("Disconnect", "", "", lambda m: self._disconnect(dev, m))
        i.method("Pair", "", "", lambda m: self._pair(dev, m))
        i.method("CancelPairing", "", "", lambda m: self._cancel_pairing(dev, m))
        i.method("ConnectProfile", "s", "", self._not_supported)
        i.method("DisconnectProfile", "s", "", self._not_supported)
        self.tree.export(obj)

    async def _not_supported(self, msg: Message) -> tuple[str, list[Any]]:
        raise BluezError.not_supported()

    def _set_device(self, dev: Device, name: str, value: Any) -> None:
        assert self.tree is not None
        if name == "Alias":
            dev.alias = str(value) or None
        elif name == "Trusted":
            dev.trusted = bool(value)
        elif name == "Blocked":
            dev.blocked = bool(value)
            if dev.blocked and dev.link is not None:
                self._teardown(dev.link, announce=True)
        self.tree.changed(dev.path, DEVICE, [name])

    def _forget_device(self, dev: Device) -> None:
        assert self.tree is not None
        if dev.link is not None:
            self._teardown(dev.link, announce=True)
        dev.adapter.devices.pop(dev.address, None)
        dev.adapter.gatt_cache.pop(dev.address, None)  # its stored data goes with it
        self.tree.unexport_tree(dev.path)

    async def _remove_device(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        path = msg.body[0]
        dev = next((d for d in a.devices.values() if d.path == path), None)
        if dev is None:
            raise BluezError.does_not_exist()
        a.bonds.pop(dev.address, None)
        a.gatt_cache.pop(dev.address, None)  # RemoveDevice is how a BlueZ cache is cleared
        self._forget_device(dev)
        return "", []

    def _after_adv_change(self, a: Adapter) -> None:
        """Advertisers on ``a`` changed: forget scanners' devices that no longer advertise."""
        advertising = a.powered and bool(a.adverts)
        if advertising:
            return
        for scanner in self.adapters:
            dev = scanner.devices.get(a.address)
            if dev is not None and dev.advertised:
                dev.advertised = False
                if dev.temporary:
                    self._forget_device(dev)

    # ----------------------------------------------------------------------------- advertising
    async def _register_adv(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        assert self.tree is not None
        sender, path = msg.sender or "", msg.body[0]
        if any(x.owner == sender and x.path == path for x in a.adverts):
            raise BluezError.already_exists()
        if len(a.adverts) >= self.config.max_adv_instances:
            raise BluezError.not_permitted("Maximum advertisements reached")
        props = await self._fetch_adv_props(sender, path)
        adv = Advertisement(owner=sender, path=path, adapter=a, props=props)
        self._check_adv(adv)
        a.adverts.append(adv)
        await self._watch_owner(sender)
        self.tree.changed(a.path, ADV_MANAGER, ["ActiveInstances", "SupportedInstances"])
        for scanner in self.adapters:
            if scanner is not a and scanner.discovering:
                self._report(scanner, adv, force=True)
        self.adv_changed.set()
        return "", []

    async def _fetch_adv_props(self, sender: str, path: str) -> dict[str, Any]:
        try:
            reply = await self._call(sender, path, PROPS_IFACE, "GetAll", "s", [ADVERTISEMENT],
                                     timeout=5)
        except BluezError as exc:
            raise BluezError.failed(f"Failed to parse advertisement: {exc.text}") from exc
        return {k: _unpack(v) for k, v in reply.body[0].items()}

    def _check_adv(self, adv: Advertisement) -> None:
        kind = adv.props.get("Type", "")
        if kind not in ("broadcast", "peripheral"):
            raise BluezError.invalid_args("Failed to parse advertisement")
        try:
            adv.service_uuids  # noqa: B018 - validates the UUID strings
            adv.service_data  # noqa: B018
            size = adv.payload_length()
        except (ValueError, TypeError) as exc:
            raise BluezError.invalid_args("Failed to parse advertisement") from exc
        if size > self.config.max_adv_len:
            raise BluezError.invalid_length(
                f"Advertising data too long: {size} bytes, the limit is "
                f"{self.config.max_adv_len}")

    async def _refresh_adv(self, adv: Advertisement) -> None:
        try:
            props = await self._fetch_adv_props(adv.owner, adv.path)
            candidate = Advertisement(adv.owner, adv.path, adv.adapter, props)
            self._check_adv(candidate)
        except BluezError as exc:
            log.warning("advertisement %s changed to something invalid: %s", adv.path, exc)
            return
        adv.props = props
        self.adv_changed.set()

    async def _unregister_adv(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        sender, path = msg.sender or "", msg.body[0]
        adv = next((x for x in a.adverts if x.owner == sender and x.path == path), None)
        if adv is None:
            raise BluezError.does_not_exist()
        self._drop_adv(adv)
        return "", []

    def _drop_adv(self, adv: Advertisement) -> None:
        assert self.tree is not None
        a = adv.adapter
        if adv in a.adverts:
            a.adverts.remove(adv)
            self.tree.changed(a.path, ADV_MANAGER, ["ActiveInstances", "SupportedInstances"])
        self._after_adv_change(a)
        self.adv_changed.set()

    async def _watch_owner(self, sender: str) -> None:
        if sender in self.owner_matches:
            return
        self.owner_matches.add(sender)
        await self._add_match(f"type='signal',sender='{sender}',"
                              f"interface='{PROPS_IFACE}',member='PropertiesChanged'")

    # ------------------------------------------------------------------------ GATT applications
    async def _register_app(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        sender, root = msg.sender or "", msg.body[0]
        if any(x.owner == sender and x.root == root for x in a.apps):
            raise BluezError.already_exists()
        try:
            reply = await self._call(sender, root, OM_IFACE, "GetManagedObjects", timeout=5)
        except BluezError as exc:
            raise BluezError.failed(f"Failed to read the application's objects: {exc}") from exc
        app = GattApplication(owner=sender, root=root, adapter=a)
        self._parse_app(app, reply.body[0])
        if not app.services:
            raise BluezError.failed("No valid service object found")
        await self._watch_owner(sender)
        self._assign_handles(a, app)
        a.apps.append(app)
        for s in app.services:
            for c in s.characteristics:
                self.local_chars[(sender, c.path)] = c
        assert self.tree is not None
        self.tree.changed(a.path, ADAPTER, ["UUIDs"])
        for link in self.links:
            if link.peripheral is a and not link.closed:
                self._mirror(link, app.services)  # Service Changed on a live link
                self._remember_database(link)
        return "", []

    @staticmethod
    def _parse_app(app: GattApplication, objects: dict[str, dict[str, dict[str, Variant]]]
                   ) -> None:
        prefix = app.root.rstrip("/") + "/"
        services: dict[str, LocalService] = {}
        chars: dict[str, LocalCharacteristic] = {}
        descs: list[tuple[str, dict[str, Variant]]] = []
        pending_chars: list[tuple[str, dict[str, Variant]]] = []

        def text(props: dict[str, Variant], key: str) -> Any:
            if key not in props:
                raise BluezError.failed(f"Failed to parse: property {key} missing")
            return props[key].value

        try:
            for path in sorted(objects):
                if not (path.startswith(prefix) or app.root == "/"):
                    continue
                ifaces = objects[path]
                if SERVICE in ifaces:
                    p = ifaces[SERVICE]
                    services[path] = LocalService(app, path, full_uuid(text(p, "UUID")),
                                                  bool(p["Primary"].value) if "Primary" in p
                                                  else True)
                if CHARACTERISTIC in ifaces:
                    pending_chars.append((path, ifaces[CHARACTERISTIC]))
                if DESCRIPTOR in ifaces:
                    descs.append((path, ifaces[DESCRIPTOR]))
            for path, p in pending_chars:
                service = services.get(text(p, "Service"))
                if service is None:
                    raise BluezError.failed(f"Characteristic {path} has no service")
                flags = list(text(p, "Flags"))
                unknown = [f for f in flags if f not in KNOWN_FLAGS]
                if unknown:
                    raise BluezError.failed(f"Invalid characteristic flags {unknown}")
                c = LocalCharacteristic(app, path, full_uuid(text(p, "UUID")), flags)
                service.characteristics.append(c)
                chars[path] = c
            for path, p in descs:
                owner = chars.get(text(p, "Characteristic"))
                if owner is None:
                    raise BluezError.failed(f"Descriptor {path} has no characteristic")
                uuid = full_uuid(text(p, "UUID"))
                if uuid == CCCD_UUID:
                    continue  # BlueZ adds the CCCD itself
                owner.descriptors.append(
                    LocalDescriptor(path, uuid, list(p["Flags"].value) if "Flags" in p else []))
        except ValueError as exc:
            raise BluezError.failed(f"Failed to parse application: {exc}") from exc
        app.services = list(services.values())

    @staticmethod
    def _assign_handles(a: Adapter, app: GattApplication) -> None:
        """Handles as BlueZ's gatt-database lays them out: declaration, value, CCCD, descriptors."""
        h = a.next_handle
        for s in app.services:
            s.handle = h
            h += 1
            for c in s.characteristics:
                c.handle, c.value_handle = h, h + 1
                h += 2
                if c.can_notify:
                    c.cccd_handle = h
                    h += 1
                for d in c.descriptors:
                    d.handle = h
                    h += 1
            s.end_handle = h - 1
        a.next_handle = h

    async def _unregister_app(self, a: Adapter, msg: Message) -> tuple[str, list[Any]]:
        sender, root = msg.sender or "", msg.body[0]
        app = next((x for x in a.apps if x.owner == sender and x.root == root), None)
        if app is None:
            raise BluezError.does_not_exist()
        self._drop_app(app)
        return "", []

    def _drop_app(self, app: GattApplication) -> None:
        assert self.tree is not None
        a = app.adapter
        if app in a.apps:
            a.apps.remove(app)
        for s in app.services:
            for c in s.characteristics:
                self.local_chars.pop((app.owner, c.path), None)
        for link in self.links:
            if link.peripheral is not a:
                continue
            for path, service in list(link.mirror_services.items()):
                if service.app is app:
                    del link.mirror_services[path]
                    self.tree.unexport_tree(path)
            for cpath, char in list(link.mirror_chars.items()):
                if char.app is app:
                    del link.mirror_chars[cpath]
                    link.cccd.pop(char, None)
                    link.notify_clients.pop(char, None)
            for dpath, (char, _d) in list(link.mirror_descs.items()):
                if char.app is app:
                    del link.mirror_descs[dpath]
            self._remember_database(link)
        self.tree.changed(a.path, ADAPTER, ["UUIDs"])

    # ----------------------------------------------------------------------------- connections
    async def _connect(self, dev: Device, msg: Message) -> tuple[str, list[Any]]:
        await self._ensure_connected(dev)
        return "", []

    async def _ensure_connected(self, dev: Device) -> Link:
        a = dev.adapter
        if not a.powered:
            raise BluezError.not_ready()
        if dev.connected and dev.link is not None:
            raise BluezError.already_connected()
        if dev.connecting:
            raise BluezError.in_progress()
        if dev.busy_next:
            dev.busy_next -= dev.busy_next > 0
            raise BluezError.in_progress()
        if dev.blocked:
            raise BluezError.failed("le-connection-abort-by-local")
        # The attempt runs as its own task so that Disconnect can cancel it (BlueZ's
        # device_request_disconnect shuts the pending ATT channel down and answers the pending
        # Connect "br-connection-canceled"): no link may appear after that answer. Only
        # Disconnect cancels the task, so a cancelled attempt is always that answer.
        task: asyncio.Task[Link] = asyncio.ensure_future(self._connect_attempt(dev))
        dev.connect_task = task
        try:
            await asyncio.wait({task})
        finally:
            if not task.done():
                task.cancel()
            dev.connect_task = None
        if task.cancelled():
            raise BluezError.failed("br-connection-canceled")
        return task.result()

    async def _connect_attempt(self, dev: Device) -> Link:
        peer = await self._wait_connectable(dev)
        if dev.abort_next:
            dev.abort_next -= dev.abort_next > 0
            # The controller tried for a moment: two connection events, and never less than
            # a real attempt takes (bleak retries at once, so no busy loop either).
            await self._until(max(ConnectionTiming(
                interval=self.config.conn_interval_ms / 1000.0,
                anchor=time.monotonic()).events_after(time.monotonic(), 2),
                time.monotonic() + ABORT_SECONDS))
            self._abort_by_local(dev)
        return await self._establish(dev.adapter, peer, dev)

    def _abort_by_local(self, dev: Device) -> NoReturn:
        """Fail a Connect the way BlueZ reports ``le-connection-abort-by-local``.

        BlueZ had the link up for a moment (interference, a controller that gave up): the
        device's ``Connected`` goes true then false, and only then does Connect fail. bleak 3.1
        waits for that false before it retries; without it bleak hangs to its timeout.
        """
        assert self.tree is not None
        if not dev.connected:
            dev.connected = True
            self.tree.changed(dev.path, DEVICE, ["Connected"])
            dev.connected = False
            self.tree.changed(dev.path, DEVICE, ["Connected"])
        raise BluezError.failed("le-connection-abort-by-local")

    async def _wait_connectable(self, dev: Device) -> Adapter:
        deadline = time.monotonic() + self.config.connect_timeout
        while True:
            peer = next((x for x in self.adapters if x.address == dev.address), None)
            if (peer is not None and peer.powered and peer.responsive
                    and any(adv.connectable for adv in peer.adverts)):
                return peer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._abort_by_local(dev)
            self.adv_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.adv_changed.wait(), min(remaining, 0.25))

    def _check_slots(self, *sides: Adapter) -> None:
        """A controller holds at most ``max_links`` links; one more fails as BlueZ reports it."""
        for side in sides:
            if sum(1 for lk in self.links if side in (lk.central, lk.peripheral)) >= \
                    self.config.max_links:
                raise BluezError.failed("le-connection-abort-by-local: out of connection slots")

    async def _establish(self, central: Adapter, peripheral: Adapter, c_dev: Device) -> Link:
        assert self.tree is not None
        self._check_slots(central, peripheral)
        interval = self.config.conn_interval_ms / 1000.0
        timing = ConnectionTiming(interval=interval, anchor=time.monotonic())
        # Connection setup plus MTU exchange and primary/characteristic discovery: about one
        # connection event each for the connect, the MTU exchange and each discovery round.
        # Nothing exists yet while it runs, so a Disconnect that cancels it leaves no trace.
        rounds = 3 + sum(1 + len(s.characteristics) for app in peripheral.apps
                         for s in app.services)
        await self._until(timing.events_after(time.monotonic(), rounds))
        self._check_slots(central, peripheral)  # again: another link may have taken the last
        bond_c, bond_p = central.bonds.get(peripheral.address), peripheral.bonds.get(
            central.address)
        if bond_c is not None and bond_p is None:
            await self._key_missing(c_dev, timing)
        p_dev = peripheral.devices.get(central.address)
        if p_dev is None:
            p_dev = self._new_device(peripheral, central.address, announce=False)
            p_dev.name = central.alias
            p_dev.connected = True
            self._export_device(p_dev)
        link = Link(central=central, peripheral=peripheral, c_dev=c_dev, p_dev=p_dev,
                    mtu=self.config.mtu, timing=timing)
        self.links.append(link)
        c_dev.link = p_dev.link = link
        if bond_c is not None and bond_p is not None:
            # BlueZ re-encrypts a bonded LE link at once (device_attach_att: BT_IO_SEC_MEDIUM).
            link.encrypted = True
            link.authenticated = bond_c.authenticated and bond_p.authenticated
        c_dev.connected = True
        self.tree.changed(c_dev.path, DEVICE, ["Connected"])
        if not p_dev.connected or p_dev.link is link:
            p_dev.connected = True
            self.tree.changed(p_dev.path, DEVICE, ["Connected"])
        cached = central.gatt_cache.get(peripheral.address) if self.config.gatt_cache \
            else None
        stale = cached is not None and \
            self._layout(cached) != self._layout(self._database(peripheral))
        if stale:
            assert cached is not None
            self._mirror(link, cached)  # what the central knows, not what the peer has now
        else:
            for app in peripheral.apps:
                self._mirror(link, app.services)
            self._remember_database(link)
        c_dev.uuids = list(dict.fromkeys(
            c_dev.uuids + [s.uuid for s in link.mirror_services.values()]))
        c_dev.services_resolved = True
        p_dev.services_resolved = True
        self.tree.changed(c_dev.path, DEVICE, ["UUIDs", "ServicesResolved"])
        self.tree.changed(p_dev.path, DEVICE, ["ServicesResolved"])
        self._start_link_tasks(link)
        if stale and bond_c is not None and bond_p is not None:
            # A bonded peer indicates Service Changed once the link is encrypted; a peer that
            # does not know the central (no bond) cannot, and the cache stays stale.
            link.tasks.add(self._spawn(self._service_changed(link), "service-changed"))
        return link

    async def _key_missing(self, c_dev: Device, timing: ConnectionTiming) -> NoReturn:
        """The central holds a key for the peer, the peer has none (it was reset, its bonds
        wiped): what BlueZ does, before any GATT operation and whatever its cache holds.

        A bonded LE link is encrypted at once with the stored key (``device_attach_att``
        asks for BT_IO_SEC_MEDIUM); the peer's controller rejects the encryption request
        with HCI error 0x06 "PIN or Key Missing", the kernel disconnects with Authentication
        Failure, and bluetoothd answers the pending ``Connect`` ``br-connection-key-missing``
        (BlueZ 5.83's ``device_remove_connection``), after ``Connected`` went true and back
        to false and a ``Disconnected`` signal with ``org.bluez.Reason.Authentication``. The
        central's bond is kept (``Paired`` stays true): BlueZ never pairs again on its own
        here, so nothing can go over a weaker link; only a new pairing, after
        ``RemoveDevice``, makes the link usable again.
        """
        assert self.tree is not None
        await self._until(timing.events_after(time.monotonic(), 2))  # LL_ENC_REQ, REJECT
        if not c_dev.connected:
            c_dev.connected = True
            self.tree.changed(c_dev.path, DEVICE, ["Connected"])
            c_dev.connected = False
            self.tree.changed(c_dev.path, DEVICE, ["Connected"])
        self._send(Message.new_signal(c_dev.path, DEVICE, "Disconnected", "ss", [
            "org.bluez.Reason.Authentication",
            "Connection terminated due to authentication failure"]))
        log.info("%s -> %s: encryption failed (PIN or Key Missing): the peer has no key",
                 c_dev.adapter.hci, c_dev.address)
        raise BluezError.failed("br-connection-key-missing")

    @staticmethod
    def _layout(services: list[LocalService]) -> list[tuple[Any, ...]]:
        """What a cache must match to stay valid: every handle, UUID and property."""
        return [(s.handle, s.end_handle, s.uuid, [
            (c.handle, c.value_handle, c.cccd_handle, c.uuid, tuple(c.flags),
             [(d.handle, d.uuid) for d in c.descriptors]) for c in s.characteristics])
            for s in services]

    @staticmethod
    def _database(peripheral: Adapter) -> list[LocalService]:
        return [s for app in peripheral.apps for s in app.services]

    def _remember_database(self, link: Link) -> None:
        """BlueZ's client cache (``/var/lib/bluetooth/<adapter>/cache/<peer>``): what the
        central discovered on this link is what it will mirror at the next connect. An empty
        database is no cache: BlueZ discovers in full when it has nothing stored."""
        if not self.config.gatt_cache:
            return
        database = self._database(link.peripheral)
        if database:
            link.central.gatt_cache[link.peripheral.address] = database
        else:
            link.central.gatt_cache.pop(link.peripheral.address, None)

    async def _service_changed(self, link: Link) -> None:
        """The peer's Service Changed indication: the central drops the stale services and
        objects (InterfacesRemoved), discovers the peer's database again (InterfacesAdded)
        and updates its cache. Subscriptions on the stale characteristics are gone."""
        assert self.tree is not None
        try:
            await self._on_link(link, asyncio.sleep(self.config.service_changed_delay))
            await self._on_link(link, self._until(link.timing.events_after(time.monotonic(),
                                                                            2)))
        except BluezError:
            return  # the link went first: the cache stays stale until the next bonded link
        for spath in list(link.mirror_services):
            self.tree.unexport_tree(spath)
        for char in list(link.mirror_chars.values()):
            link.cccd.pop(char, None)
            link.notify_clients.pop(char, None)
        link.mirror_services.clear()
        link.mirror_chars.clear()
        link.mirror_descs.clear()
        for app in link.peripheral.apps:
            self._mirror(link, app.services)
        self._remember_database(link)
        link.c_dev.uuids = list(dict.fromkeys(
            link.c_dev.uuids + [s.uuid for s in link.mirror_services.values()]))
        self.tree.changed(link.c_dev.path, DEVICE, ["UUIDs"])
        log.info("%s rediscovered %s after Service Changed", link.central.hci,
                 link.peripheral.address)

    def _mirror(self, link: Link, services: list[LocalService]) -> None:
        """Export the peripheral's services under the central's device path, BlueZ style."""
        assert self.tree is not None
        dev = link.c_dev
        for s in services:
            spath = f"{dev.path}/service{s.handle:04x}"
            link.mirror_services[spath] = s
            sobj = DBusObject(spath)
            si = sobj.add(Interface(SERVICE))
            si.props = {
                "UUID": Prop("s", lambda s=s: s.uuid),
                "Device": Prop("o", lambda: dev.path),
                "Primary": Prop("b", lambda s=s: s.primary),
                "Includes": Prop("ao", lambda: []),
                "Handle": Prop("q", lambda s=s: s.handle),
            }
            self.tree.export(sobj)
            for c in s.characteristics:
                cpath = f"{spath}/char{c.handle:04x}"
                link.mirror_chars[cpath] = c
                cobj = DBusObject(cpath)
                ci = cobj.add(Interface(CHARACTERISTIC))
                ci.props = {
                    "UUID": Prop("s", lambda c=c: c.uuid),
                    "Service": Prop("o", lambda spath=spath: spath),
                    "Value": Prop("ay", lambda cpath=cpath: link.values.get(cpath, b"")),
                    "Notifying": Prop("b", lambda c=c: bool(link.notify_clients.get(c))
                                      or c in link.notify_socks),
                    "Flags": Prop("as", lambda c=c: list(c.flags)),
                    "MTU": Prop("q", lambda: link.mtu),
                    "Handle": Prop("q", lambda c=c: c.value_handle),
                    "WriteAcquired": Prop("b", lambda c=c: c in link.write_socks
                                          if "write-without-response" in c.flags else None),
                    "NotifyAcquired": Prop("b", lambda c=c: c in link.notify_socks
                                           if c.can_notify else None),
                }
                ci.method("ReadValue", "a{sv}", "ay",
                          lambda m, cpath=cpath: self._read_char(link, cpath, m))
                ci.method("WriteValue", "aya{sv}", "",
                          lambda m, cpath=cpath: self._write_char(link, cpath, m))
                ci.method("StartNotify", "", "", lambda m, c=c, cpath=cpath:
                          self._start_notify(link, c, cpath, m))
                ci.method("StopNotify", "", "", lambda m, c=c, cpath=cpath:
                          self._stop_notify(link, c, cpath, m))
                ci.method("AcquireWrite", "a{sv}", "hq", lambda m, c=c, cpath=cpath:
                          self._acquire_write(link, c, cpath, m))
                ci.method("AcquireNotify", "a{sv}", "hq", lambda m, c=c, cpath=cpath:
                          self._acquire_notify(link, c, cpath, m))
                self.tree.export(cobj)
                descs: list[tuple[int, str, LocalDescriptor | None]] = []
                if c.cccd_handle:
                    descs.append((c.cccd_handle, CCCD_UUID, None))
                descs.extend((d.handle, d.uuid, d) for d in c.descriptors)
                for handle, uuid, d in descs:
                    dpath = f"{cpath}/desc{handle:04x}"
                    link.mirror_descs[dpath] = (c, d)
                    dobj = DBusObject(dpath)
                    di = dobj.add(Interface(DESCRIPTOR))
                    di.props = {
                        "UUID": Prop("s", lambda uuid=uuid: uuid),
                        "Characteristic": Prop("o", lambda cpath=cpath: cpath),
                        "Value": Prop("ay", lambda dpath=dpath: link.values.get(dpath, b"")),
                        "Handle": Prop("q", lambda handle=handle: handle),
                    }
                    di.method("ReadValue", "a{sv}", "ay",
                              lambda m, dpath=dpath: self._read_desc(link, dpath, m))
                    di.method("WriteValue", "aya{sv}", "",
                              lambda m, dpath=dpath: self._write_desc(link, dpath, m))
                    self.tree.export(dobj)

    async def _acquire_write(self, link: Link, char: LocalCharacteristic, cpath: str,
                             msg: Message) -> tuple[str, Any]:
        """BlueZ's AcquireWrite: a SOCK_SEQPACKET socket whose packets are write commands."""
        assert self.tree is not None
        if "write-without-response" not in char.flags:
            raise BluezError.not_supported()
        if char in link.write_socks:
            raise BluezError.not_permitted("Write acquired")
        async with link.att_lock:
            await self._ensure_security(link, required_level(char.flags, WRITE_FLAGS),
                                        msg.sender or "")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        link.write_socks[char] = ours
        self.tree.changed(cpath, CHARACTERISTIC, ["WriteAcquired"])
        task = self._spawn(self._pump_acquired_write(link, char, cpath, ours), "acquired-write")
        link.tasks.add(task)
        return "hq", FdReply(theirs.detach(), [0, link.mtu])

    async def _pump_acquired_write(self, link: Link, char: LocalCharacteristic, cpath: str,
                                   sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(sock, link.mtu)
                if not data:
                    break
                link.commands.put_nowait((char, data))
        except OSError:
            pass
        finally:
            sock.close()
            if link.write_socks.get(char) is sock:
                del link.write_socks[char]
                if self.tree is not None and not link.closed:
                    self.tree.changed(cpath, CHARACTERISTIC, ["WriteAcquired"])

    async def _acquire_notify(self, link: Link, char: LocalCharacteristic, cpath: str,
                              msg: Message) -> tuple[str, Any]:
        """BlueZ's AcquireNotify: notifications arrive as packets on a socket, not as signals."""
        assert self.tree is not None
        if not char.can_notify:
            raise BluezError.not_supported()
        if char in link.notify_socks:
            raise BluezError.not_permitted("Notify acquired")
        if link.notify_clients.get(char):
            raise BluezError.in_progress()
        async with link.att_lock:
            await self._ensure_security(link, notify_level(char.flags), msg.sender or "")
            await self._att_exchange(link, lambda: asyncio.sleep(0))  # CCCD write
            first_anywhere = not self._char_subscribed_elsewhere(char, link)
            link.cccd[char] = 2 if char.indicates else 1
            if first_anywhere:
                await self._app_notify(char, start=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        link.notify_socks[char] = ours
        self.tree.changed(cpath, CHARACTERISTIC, ["NotifyAcquired", "Notifying"])
        task = self._spawn(self._watch_acquired_notify(link, char, cpath, ours), "acq-notify")
        link.tasks.add(task)
        return "hq", FdReply(theirs.detach(), [0, link.mtu])

    async def _watch_acquired_notify(self, link: Link, char: LocalCharacteristic, cpath: str,
                                     sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while await loop.sock_recv(sock, 1):
                pass
        except OSError:
            pass
        finally:
            sock.close()
            if link.notify_socks.get(char) is sock:
                del link.notify_socks[char]
                if not link.closed:
                    await self._unsubscribe(link, char)
                    if self.tree is not None:
                        self.tree.changed(cpath, CHARACTERISTIC, ["NotifyAcquired", "Notifying"])

    def _start_link_tasks(self, link: Link) -> None:
        link.tasks.add(self._spawn(self._deliver_notifications(link), "notify-delivery"))
        link.tasks.add(self._spawn(self._deliver_commands(link), "command-delivery"))

    async def _disconnect(self, dev: Device, msg: Message) -> tuple[str, list[Any]]:
        link = dev.link
        if link is None or not dev.connected:
            pending = dev.connect_task
            if pending is not None and not pending.done():
                # BlueZ answers the pending Connect "br-connection-canceled" and this call
                # with success; the attempt is abandoned, so no link appears afterwards.
                pending.cancel()
                return "", []
            raise BluezError.not_connected()
        await self._until(link.timing.next_event(time.monotonic()))
        self._teardown(link, announce=True)
        return "", []

    def _teardown(self, link: Link, *, announce: bool) -> None:
        """End ``link``: both sides see the disconnect; pending operations fail."""
        if link.closed:
            return
        link.closed = True
        if not link.lost.done():
            link.lost.set_result(None)
        for task in list(link.tasks):
            task.cancel()
        if link in self.links:
            self.links.remove(link)
        # BlueZ stops notify sessions on the application when its last subscriber goes.
        for char in list(link.cccd):
            if link.cccd.get(char) and not self._char_subscribed_elsewhere(char, link):
                self._spawn(self._app_notify(char, start=False), "app-stop-notify")
        link.cccd.clear()
        link.notify_clients.clear()
        for sock in [*link.write_socks.values(), *link.notify_socks.values()]:
            sock.close()
        link.write_socks.clear()
        link.notify_socks.clear()
        if self.tree is None:
            return
        for dev in (link.c_dev, link.p_dev):
            if dev.link is link:
                dev.link = None
            dev.connected = False
            dev.services_resolved = False
            dev.last_seen = time.monotonic()
            if announce:
                self.tree.changed(dev.path, DEVICE, ["ServicesResolved", "Connected"])
        for spath in list(link.mirror_services):
            self.tree.unexport_tree(spath)
        link.mirror_services.clear()
        link.mirror_chars.clear()
        link.mirror_descs.clear()

    @staticmethod
    async def _until(when: float) -> None:
        delay = when - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _on_link(self, link: Link, aw: Awaitable[T], *,
                       timeout: float | None = None) -> T:
        """Run ``aw`` unless the link is lost first; a lost link fails it as BlueZ does."""
        if link.closed:
            raise BluezError.failed("Not connected")
        task: asyncio.Future[T] = asyncio.ensure_future(aw)
        waiters: set[asyncio.Future[Any]] = {task, link.lost}
        done, _ = await asyncio.wait(waiters, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, BluezError):
            await task
        if link.lost in done:
            raise BluezError.failed("Not connected")
        # ATT transaction timeout: BlueZ drops the bearer, so the link goes too.
        self._teardown(link, announce=True)
        raise BluezError.failed("Operation failed: ATT transaction timeout")

    # ---------------------------------------------------------------------------------- security
    async def _ensure_security(self, link: Link, level: int, requester: str) -> None:
        """Elevate the link's security as BlueZ does on an insufficient-encryption ATT error."""
        if level == SECURITY_NONE:
            return
        if link.encrypted and (level < SECURITY_AUTHENTICATED or link.authenticated):
            return
        bond_c = link.central.bonds.get(link.peripheral.address)
        bond_p = link.peripheral.bonds.get(link.central.address)
        if bond_c and bond_p and (level < SECURITY_AUTHENTICATED or (
                bond_c.authenticated and bond_p.authenticated)):
            await self._on_link(link, self._until(link.timing.events_after(time.monotonic(), 2)))
            link.encrypted = True
            link.authenticated = bond_c.authenticated and bond_p.authenticated
            return
        try:
            await self._run_pairing(link, link.central, requester,
                                    need_mitm=level >= SECURITY_AUTHENTICATED)
        except BluezError as exc:
            log.info("security elevation failed: %s", exc)
            code = (AttError.INSUFFICIENT_AUTHENTICATION if level >= SECURITY_AUTHENTICATED
                    else AttError.INSUFFICIENT_ENCRYPTION)
            raise central_error_from_att(code) from exc

    async def _pair(self, dev: Device, msg: Message) -> tuple[str, list[Any]]:
        if dev.paired:
            raise BluezError.already_exists("Already Paired")
        if dev.pairing:
            raise BluezError.in_progress()
        dev.pairing = True
        try:
            link = dev.link
            if link is None or link.closed:
                link = await self._ensure_connected(dev)
            await self._run_pairing(link, dev.adapter, msg.sender or "", need_mitm=False)
        finally:
            dev.pairing = False
        return "", []

    async def _cancel_pairing(self, dev: Device, msg: Message) -> tuple[str, list[Any]]:
        if not dev.pairing:
            raise BluezError.does_not_exist("No pairing in progress")
        link = dev.link
        if link is not None:
            self._teardown(link, announce=True)
        return "", []

    async def _agent_for(self, adapter: Adapter, requester: str | None) -> Agent | None:
        """The agent that answers for ``adapter``'s host (see docs: one host per adapter).

        1. the requester's own process, if it registered an agent;
        2. an agent whose process uses this adapter (registered an application or an
           advertisement on it, or called its methods);
        3. the default agent, if its process uses no adapter at all (an agent-only tool such as
           ``bluetoothctl`` serves every adapter, as on a single host);
        otherwise none, and the host pairs as NoInputNoOutput.
        """
        for agent in self.agents.values():
            if agent.pid is None:
                agent.pid = await self._pid(agent.owner)
        if requester:
            rpid = await self._pid(requester)
            for agent in self.agents.values():
                if agent.owner == requester or (rpid is not None and agent.pid == rpid):
                    return agent
        user_pids = {await self._pid(u) for u in adapter.users}
        for agent in reversed(list(self.agents.values())):
            if agent.owner in adapter.users or (agent.pid is not None and agent.pid in user_pids):
                return agent
        if self.default_agent is not None:
            agent = self.agents[self.default_agent]
            for other in self.adapters:
                pids = {await self._pid(u) for u in other.users}
                if agent.owner in other.users or agent.pid in pids:
                    return None
            return agent
        return None

    async def _pid(self, name: str) -> int | None:
        if name in self.pids:
            return self.pids[name]
        try:
            reply = await self._call("org.freedesktop.DBus", "/org/freedesktop/DBus",
                                     "org.freedesktop.DBus", "GetConnectionUnixProcessID", "s",
                                     [name], timeout=2)
            pid: int | None = int(reply.body[0])
        except BluezError:
            pid = None
        self.pids[name] = pid
        return pid

    async def _run_pairing(self, link: Link, initiator: Adapter, requester: str, *,
                           need_mitm: bool) -> None:
        """LE Secure Connections pairing between the two hosts of ``link``, through their agents."""
        assert self.tree is not None
        responder = link.other(initiator)
        if not responder.pairable:
            raise BluezError("org.bluez.Error.AuthenticationRejected", "Authentication Rejected")
        i_agent = await self._agent_for(initiator, requester)
        r_agent = await self._agent_for(responder, None)
        i_cap = IoCapability.from_agent(i_agent.capability) if i_agent else \
            IoCapability.NO_INPUT_NO_OUTPUT
        r_cap = IoCapability.from_agent(r_agent.capability) if r_agent else \
            IoCapability.NO_INPUT_NO_OUTPUT
        plan = plan_pairing(i_cap, r_cap)
        log.info("pairing %s -> %s: %s (%s / %s)", initiator.hci, responder.hci,
                 plan.method.value, i_cap.value, r_cap.value)
        if need_mitm and not plan.authenticated:
            raise BluezError("org.bluez.Error.AuthenticationFailed",
                             "Authentication Failed: MITM protection needs IO capabilities")
        i_dev, r_dev = link.device_on(initiator), link.device_on(responder)
        # SMP on air: pairing request/response, public keys, confirm/random, DHKey check.
        await self._on_link(link, self._until(link.timing.events_after(time.monotonic(), 4)))
        await self._on_link(link, self._agent_exchange(plan, i_agent, i_dev, r_agent, r_dev))
        await self._on_link(link, self._until(link.timing.events_after(time.monotonic(), 3)))
        for adapter, dev in ((initiator, i_dev), (responder, r_dev)):
            adapter.bonds[dev.address] = Bond(authenticated=plan.authenticated)
            dev.paired = dev.bonded = dev.trusted = True
            self.tree.changed(dev.path, DEVICE, ["Paired", "Bonded", "Trusted"])
        link.encrypted = True
        link.authenticated = plan.authenticated

    async def _agent_exchange(self, plan: PairingPlan, i_agent: Agent | None, i_dev: Device,
                              r_agent: Agent | None, r_dev: Device) -> None:
        calls: list[Awaitable[Any]] = []
        if plan.method is PairingMethod.NUMERIC_COMPARISON:
            passkey = secrets.randbelow(1_000_000)
            for agent, dev in ((i_agent, i_dev), (r_agent, r_dev)):
                assert agent is not None
                calls.append(self._ask_agent(agent, "RequestConfirmation", "ou",
                                             [dev.path, passkey]))
            await self._all_or_cancel(calls)
        elif plan.method is PairingMethod.PASSKEY_ENTRY:
            sides = ((i_agent, i_dev, plan.initiator_displays),
                     (r_agent, r_dev, plan.responder_displays))
            passkey = secrets.randbelow(1_000_000)
            typed: list[Awaitable[Any]] = []
            for agent, dev, displays in sides:
                assert agent is not None
                if displays:
                    calls.append(self._ask_agent(agent, "DisplayPasskey", "ouq",
                                                 [dev.path, passkey, 0]))
                else:
                    typed.append(self._ask_agent(agent, "RequestPasskey", "o", [dev.path]))
            results = await self._all_or_cancel(calls + typed)
            entered = [int(r.body[0]) for r in results[len(calls):]]
            expected = entered[0] if len(entered) == 2 else passkey
            if any(value != expected for value in entered):
                raise BluezError("org.bluez.Error.AuthenticationFailed",
                                 "Authentication Failed: passkey mismatch")
        elif r_agent is not None and IoCapability.from_agent(r_agent.capability) is not \
                IoCapability.NO_INPUT_NO_OUTPUT:
            # Incoming just-works pairing: BlueZ asks the responder's agent to authorize it.
            await self._all_or_cancel([self._ask_agent(r_agent, "RequestAuthorization", "o",
                                                       [r_dev.path])])

    async def _all_or_cancel(self, calls: list[Awaitable[Message]]) -> list[Message]:
        tasks = [asyncio.ensure_future(c) for c in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _ask_agent(self, agent: Agent, member: str, sig: str, body: list[Any]) -> Message:
        try:
            return await self._call(agent.owner, agent.path, AGENT, member, sig, body,
                                    timeout=self.config.agent_timeout)
        except BluezError as exc:
            if exc.name == "org.freedesktop.DBus.Error.NoReply":
                with contextlib.suppress(BluezError):
                    await self._call(agent.owner, agent.path, AGENT, "Cancel", timeout=2)
                raise BluezError("org.bluez.Error.AuthenticationTimeout",
                                 "Authentication Timeout") from exc
            if exc.name == "org.bluez.Error.Canceled" or exc.name.startswith(
                    "org.freedesktop.DBus.Error.ServiceUnknown"):
                raise BluezError("org.bluez.Error.AuthenticationCanceled",
                                 "Authentication Canceled") from exc
            raise BluezError("org.bluez.Error.AuthenticationFailed",
                             "Authentication Failed") from exc
        except asyncio.CancelledError:
            with contextlib.suppress(BluezError, asyncio.CancelledError):
                self._spawn(self._call(agent.owner, agent.path, AGENT, "Cancel", timeout=2),
                            "agent-cancel")
            raise

    # ---------------------------------------------------------------------------------- agents
    async def _register_agent(self, msg: Message) -> tuple[str, list[Any]]:
        sender = msg.sender or ""
        path, capability = msg.body
        try:
            IoCapability.from_agent(capability)
        except ValueError as exc:
            raise BluezError.invalid_args() from exc
        if sender in self.agents:
            raise BluezError.already_exists()
        self.agents[sender] = Agent(owner=sender, path=path, capability=capability,
                                    pid=await self._pid(sender))
        return "", []

    async def _unregister_agent(self, msg: Message) -> tuple[str, list[Any]]:
        sender = msg.sender or ""
        agent = self.agents.get(sender)
        if agent is None or agent.path != msg.body[0]:
            raise BluezError.does_not_exist("No such Agent")
        del self.agents[sender]
        if self.default_agent == sender:
            self.default_agent = None
        return "", []

    async def _request_default_agent(self, msg: Message) -> tuple[str, list[Any]]:
        sender = msg.sender or ""
        agent = self.agents.get(sender)
        if agent is None or agent.path != msg.body[0]:
            raise BluezError.does_not_exist("No such Agent")
        self.default_agent = sender
        return "", []

    # ------------------------------------------------------------------------ GATT operations
    def _app_options(self, link: Link, **extra: Any) -> dict[str, Variant]:
        options = {"device": _v("o", link.p_dev.path), "link": _v("s", "LE"),
                   "mtu": _v("q", link.mtu)}
        for key, (sig, value) in extra.items():
            options[key] = _v(sig, value)
        return options

    async def _att_exchange(self, link: Link, call: Callable[[], Awaitable[T]]) -> T:
        """One ATT request/response: carried at the next event, answered one event later."""
        await self._on_link(link, self._until(link.timing.next_event(time.monotonic())))
        if not link.peripheral.responsive:
            await self._on_link(link, asyncio.sleep(self.config.att_timeout * 2),
                                timeout=self.config.att_timeout)
        result = await self._on_link(link, call(), timeout=self.config.att_timeout)
        await self._on_link(link, self._until(link.timing.next_event(time.monotonic())))
        return result

    async def _app_call(self, link: Link, char: LocalCharacteristic, path: str, member: str,
                        sig: str, body: list[Any], *, reading: bool) -> Message:
        try:
            return await self._call(char.app.owner, path,
                                    DESCRIPTOR if path != char.path else CHARACTERISTIC,
                                    member, sig, body, timeout=self.config.att_timeout)
        except BluezError as exc:
            if exc.name == "org.freedesktop.DBus.Error.NoReply":
                raise
            raise central_error_from_att(
                att_error_from_app_error(exc.name, reading=reading)) from exc

    def _check_owner_alive(self, char: LocalCharacteristic) -> None:
        if char.app not in char.app.adapter.apps:
            raise central_error_from_att(AttError.INVALID_HANDLE)

    async def _read_char(self, link: Link, cpath: str, msg: Message) -> tuple[str, list[Any]]:
        char = link.mirror_chars[cpath]
        if not any(f in READ_FLAGS for f in char.flags):
            raise BluezError.not_permitted("Read not permitted")
        offset = int(msg.body[0].get("offset", _v("q", 0)).value)
        async with link.att_lock:
            await self._ensure_security(link, required_level(char.flags, READ_FLAGS),
                                        msg.sender or "")
            value = await self._long_read(link, char, char.path, offset)
        link.values[cpath] = value
        assert self.tree is not None
        self.tree.changed(cpath, CHARACTERISTIC, ["Value"])
        return "ay", [value]

    async def _long_read(self, link: Link, char: LocalCharacteristic, path: str,
                         offset: int) -> bytes:
        """Read, then Read Blob while the answer fills the PDU (Core Vol 3 Part G 4.8.3)."""
        out = b""
        chunk_max = link.mtu - 1
        while True:
            self._check_owner_alive(char)
            opts = self._app_options(link, **({"offset": ("q", offset)} if offset else {}))
            reply = await self._att_exchange(link, lambda opts=opts: self._app_call(
                link, char, path, "ReadValue", "a{sv}", [opts], reading=True))
            chunk = bytes(reply.body[0])[:chunk_max]
            out += chunk
            offset += len(chunk)
            if len(chunk) < chunk_max or offset >= ATT_MAX_VALUE_LEN:
                return out[:ATT_MAX_VALUE_LEN]

    async def _write_char(self, link: Link, cpath: str, msg: Message) -> tuple[str, list[Any]]:
        char = link.mirror_chars[cpath]
        value: bytes = bytes(msg.body[0])
        options: dict[str, Variant] = msg.body[1]
        kind = options["type"].value if "type" in options else None
        offset = int(options["offset"].value) if "offset" in options else 0
        can_request = any(f in WRITE_FLAGS for f in char.flags)
        can_command = "write-without-response" in char.flags
        if kind is None:
            kind = "request" if can_request else "command"
        if kind not in ("request", "command", "reliable"):
            raise BluezError.invalid_args()
        if (kind == "command" and not can_command) or (kind != "command" and not can_request):
            raise BluezError.not_permitted("Write not permitted")
        if len(value) + offset > ATT_MAX_VALUE_LEN:
            raise BluezError.invalid_args("Invalid Length")
        level = required_level(char.flags, WRITE_FLAGS)
        if kind == "command":
            if len(value) > link.mtu - 3:
                raise BluezError.failed("Failed to initiate write")
            async with link.att_lock:
                await self._ensure_security(link, level, msg.sender or "")
            # BlueZ answers a write command as soon as it is queued; the PDUs go out in the
            # order they were queued, a few per connection event.
            link.commands.put_nowait((char, value))
            return "", []
        async with link.att_lock:
            await self._ensure_security(link, level, msg.sender or "")
            await self._write_request(link, char, char.path, value, offset)
        return "", []

    async def _deliver_commands(self, link: Link) -> None:
        """Carry queued write commands to the application in order, as one ATT bearer does."""
        per_event = 6
        while not link.closed:
            first = await link.commands.get()
            await self._until(link.timing.next_event(time.monotonic()))
            batch = [first]
            while len(batch) < per_event and not link.commands.empty():
                batch.append(link.commands.get_nowait())
            for char, value in batch:
                if link.closed:
                    return
                if not link.peripheral.responsive:
                    continue
                opts = self._app_options(link, type=("s", "command"))
                with contextlib.suppress(BluezError):
                    await self._on_link(link, self._call(
                        char.app.owner, char.path, CHARACTERISTIC, "WriteValue", "aya{sv}",
                        [value, opts], timeout=self.config.att_timeout))

    async def _write_request(self, link: Link, char: LocalCharacteristic, path: str,
                             value: bytes, offset: int) -> None:
        self._check_owner_alive(char)
        iface_path = path
        if len(value) <= link.mtu - 3 and offset == 0:
            opts = self._app_options(link, type=("s", "request"))
            await self._att_exchange(link, lambda: self._app_call(
                link, char, iface_path, "WriteValue", "aya{sv}", [value, opts], reading=False))
            return
        # Long write: Prepare Write requests of MTU-5 bytes each, then Execute Write. BlueZ's
        # server hands each prepared part to the application with its offset.
        step = link.mtu - 5
        parts = [(offset + i, value[i:i + step]) for i in range(0, len(value), step)] or \
            [(offset, b"")]
        for _ in parts:
            await self._att_exchange(link, lambda: asyncio.sleep(0))
        await self._on_link(link, self._until(link.timing.next_event(time.monotonic())))
        for part_offset, part in parts:
            opts = self._app_options(link, type=("s", "request"), offset=("q", part_offset))
            await self._on_link(link, self._app_call(
                link, char, iface_path, "WriteValue", "aya{sv}", [part, opts], reading=False),
                timeout=self.config.att_timeout)
        await self._on_link(link, self._until(link.timing.next_event(time.monotonic())))

    async def _read_desc(self, link: Link, dpath: str, msg: Message) -> tuple[str, list[Any]]:
        char, desc = link.mirror_descs[dpath]
        async with link.att_lock:
            if desc is None:
                await self._att_exchange(link, lambda: asyncio.sleep(0))
                value = link.cccd.get(char, 0).to_bytes(2, "little")
            else:
                if not any(f in READ_FLAGS for f in desc.flags):
                    raise BluezError.not_permitted("Read not permitted")
                await self._ensure_security(link, required_level(desc.flags, READ_FLAGS),
                                            msg.sender or "")
                value = await self._long_read(link, char, desc.path, 0)
        link.values[dpath] = value
        assert self.tree is not None
        self.tree.changed(dpath, DESCRIPTOR, ["Value"])
        return "ay", [value]

    async def _write_desc(self, link: Link, dpath: str, msg: Message) -> tuple[str, list[Any]]:
        char, desc = link.mirror_descs[dpath]
        if desc is None:
            # BlueZ keeps the CCCD to itself: clients use StartNotify/StopNotify.
            raise BluezError.not_permitted("Write not permitted")
        if not any(f in WRITE_FLAGS for f in desc.flags):
            raise BluezError.not_permitted("Write not permitted")
        value = bytes(msg.body[0])
        async with link.att_lock:
            await self._ensure_security(link, required_level(desc.flags, WRITE_FLAGS),
                                        msg.sender or "")
            await self._write_request(link, char, desc.path, value, 0)
        return "", []

    # ---------------------------------------------------------------------------- notifications
    async def _start_notify(self, link: Link, char: LocalCharacteristic, cpath: str,
                            msg: Message) -> tuple[str, list[Any]]:
        assert self.tree is not None
        if not char.can_notify:
            raise BluezError.not_supported()
        sender = msg.sender or ""
        if char in link.notify_socks:
            raise BluezError.not_permitted("Notify acquired")
        clients = link.notify_clients.setdefault(char, set())
        if sender in clients:
            return "", []
        async with link.att_lock:
            if not link.cccd.get(char):
                self._check_owner_alive(char)  # a stale cached CCCD handle: Invalid Handle
                await self._ensure_security(link, notify_level(char.flags), sender)
                await self._att_exchange(link, lambda: asyncio.sleep(0))  # CCCD write
                first_anywhere = not self._char_subscribed_elsewhere(char, link)
                link.cccd[char] = 2 if char.indicates else 1
                if first_anywhere:
                    await self._app_notify(char, start=True)
        clients.add(sender)
        self.tree.changed(cpath, CHARACTERISTIC, ["Notifying"])
        return "", []

    async def _stop_notify(self, link: Link, char: LocalCharacteristic, cpath: str,
                           msg: Message) -> tuple[str, list[Any]]:
        assert self.tree is not None
        sender = msg.sender or ""
        clients = link.notify_clients.get(char, set())
        if sender not in clients:
            raise BluezError.failed("No notify session started")
        clients.discard(sender)
        if not clients:
            await self._unsubscribe(link, char)
        self.tree.changed(cpath, CHARACTERISTIC, ["Notifying"])
        return "", []

    async def _unsubscribe(self, link: Link, char: LocalCharacteristic) -> None:
        if not link.cccd.get(char) or link.closed:
            return
        link.cccd[char] = 0
        with contextlib.suppress(BluezError):
            async with link.att_lock:
                await self._att_exchange(link, lambda: asyncio.sleep(0))  # CCCD write
        if not self._char_subscribed_elsewhere(char, None):
            await self._app_notify(char, start=False)

    def _char_subscribed_elsewhere(self, char: LocalCharacteristic, but: Link | None) -> bool:
        return any(lk.cccd.get(char) for lk in self.links if lk is not but and not lk.closed)

    async def _app_notify(self, char: LocalCharacteristic, *, start: bool) -> None:
        # A stop still goes out when the application was just dropped with its adapter (a
        # bluetoothd restart): BlueZ stops the notify session as the links go down, before it
        # forgets the application, and the application learns that nobody listens any more.
        if start and char.app not in char.app.adapter.apps:
            return
        try:
            await self._call(char.app.owner, char.path, CHARACTERISTIC,
                             "StartNotify" if start else "StopNotify", timeout=5)
        except BluezError as exc:
            log.info("application %s refused %s: %s", char.app.owner,
                     "StartNotify" if start else "StopNotify", exc)

    def _on_app_value(self, char: LocalCharacteristic, value: bytes) -> None:
        """The peripheral application changed a value: notify or indicate subscribed links."""
        for link in self.links:
            if link.closed or link.peripheral is not char.app.adapter:
                continue
            if not link.cccd.get(char):
                continue
            if not link.peripheral.responsive:
                continue
            link.outbound.put_nowait(Notification(char, value[: link.mtu - 3],
                                                  indicate=link.cccd[char] == 2))

    async def _deliver_notifications(self, link: Link) -> None:
        assert self.tree is not None
        per_event = 6
        while not link.closed:
            first = await link.outbound.get()
            await self._until(link.timing.next_event(time.monotonic()))
            batch = [first]
            while len(batch) < per_event and not link.outbound.empty():
                batch.append(link.outbound.get_nowait())
            for n in batch:
                if link.closed:
                    return
                if link.drop_next > 0:
                    link.drop_next -= 1
                    continue
                if self.config.notification_loss and \
                        self.rng.random() < self.config.notification_loss:
                    continue
                cpath = next((p for p, c in link.mirror_chars.items() if c is n.char), None)
                if cpath is None:
                    continue
                sock = link.notify_socks.get(n.char)
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.send(n.value)
                else:
                    link.values[cpath] = n.value
                    self.tree.changed(cpath, CHARACTERISTIC, ["Value"])
                if n.indicate:
                    # The server waits for the confirmation before the next indication.
                    await self._until(link.timing.next_event(time.monotonic()))
                    self._spawn(self._confirm(n.char), "indication-confirm")

    async def _confirm(self, char: LocalCharacteristic) -> None:
        with contextlib.suppress(BluezError):
            await self._call(char.app.owner, char.path, CHARACTERISTIC, "Confirm", timeout=5)

    # ------------------------------------------------------------------------------- control
    def _find_link(self, adapter: str, address: str) -> Link:
        for link in self.links:
            for side in (link.central, link.peripheral):
                if side.hci == adapter and link.device_on(side).address == address.upper():
                    return link
        raise BluezError.does_not_exist(f"no link from {adapter} to {address}")

    def _find_adapter(self, name: str) -> Adapter:
        for a in self.adapters:
            if name in (a.hci, a.address, a.path):
                return a
        raise BluezError.does_not_exist(f"no adapter {name}")

    async def _ctl_get_adapters(self, msg: Message) -> tuple[str, list[Any]]:
        return "a(ss)", [[[a.hci, a.address] for a in self.adapters]]

    async def _ctl_get_links(self, msg: Message) -> tuple[str, list[Any]]:
        out = []
        for link in self.links:
            out.append({
                "central": _v("s", link.central.hci),
                "central_address": _v("s", link.central.address),
                "peripheral": _v("s", link.peripheral.hci),
                "peripheral_address": _v("s", link.peripheral.address),
                "mtu": _v("q", link.mtu),
                "interval_ms": _v("d", link.timing.interval * 1000),
                "encrypted": _v("b", link.encrypted),
                "authenticated": _v("b", link.authenticated),
            })
        return "aa{sv}", [out]

    async def _ctl_link_loss(self, msg: Message) -> tuple[str, list[Any]]:
        self._teardown(self._find_link(*msg.body), announce=True)
        return "", []

    async def _ctl_set_link_interval(self, msg: Message) -> tuple[str, list[Any]]:
        adapter, address, interval_ms = msg.body
        link = self._find_link(adapter, address)
        try:
            link.timing = ConnectionTiming(interval=interval_ms / 1000.0,
                                           anchor=time.monotonic())
        except ValueError as exc:
            raise BluezError.invalid_args(str(exc)) from exc
        return "", []

    async def _ctl_drop_notifications(self, msg: Message) -> tuple[str, list[Any]]:
        adapter, address, count = msg.body
        self._find_link(adapter, address).drop_next += int(count)
        return "", []

    async def _ctl_abort_connects(self, msg: Message) -> tuple[str, list[Any]]:
        adapter, address, count = msg.body
        dev = self._find_adapter(adapter).devices.get(str(address).upper())
        if dev is None:
            raise BluezError.does_not_exist(f"{adapter} knows no device {address}")
        dev.abort_next = int(count)
        return "", []

    async def _ctl_set_connect_fault(self, msg: Message) -> tuple[str, list[Any]]:
        """A connect fault on ``adapter``'s device ``address``: ``abort-by-local`` or
        ``in-progress`` for the next ``count`` connects, -1 until lifted, 0 lifts it."""
        adapter, address, kind, count = msg.body
        dev = self._find_adapter(adapter).devices.get(str(address).upper())
        if dev is None:
            raise BluezError.does_not_exist(f"{adapter} knows no device {address}")
        if kind not in CONNECT_FAULTS or int(count) < -1:
            raise BluezError.invalid_args(f"kind one of {', '.join(CONNECT_FAULTS)}, "
                                          "count -1 (until lifted), 0 (lift) or more")
        if kind == "abort-by-local":
            dev.abort_next = int(count)
        else:
            dev.busy_next = int(count)
        return "", []

    async def _ctl_set_responsive(self, msg: Message) -> tuple[str, list[Any]]:
        adapter, responsive = msg.body
        self._find_adapter(adapter).responsive = bool(responsive)
        self.adv_changed.set()
        return "", []

    async def _ctl_add_adapter(self, msg: Message) -> tuple[str, list[Any]]:
        """A new controller is plugged in: the next free hciN, announced (InterfacesAdded)."""
        taken = {a.index for a in self.adapters} | {a.index for a in self.unplugged.values()}
        index = next(i for i in range(64) if i not in taken)
        if index >= 16:
            raise BluezError.not_permitted("at most 16 adapters")
        a = self._add_adapter(index)
        self.adapters.sort(key=lambda x: x.index)
        assert self.tree is not None
        self.tree.export(self.tree.objects[a.path])  # announce it
        return "(ss)", [[a.hci, a.address]]

    async def _ctl_remove_adapter(self, msg: Message) -> tuple[str, list[Any]]:
        self._unplug(self._find_adapter(msg.body[0]))
        return "", []

    async def _ctl_restore_adapter(self, msg: Message) -> tuple[str, list[Any]]:
        a = self.unplugged.get(msg.body[0])
        if a is None:
            raise BluezError.does_not_exist(f"no removed adapter {msg.body[0]}")
        self._plug(a)
        return "", []

    async def _ctl_restart_daemon(self, msg: Message) -> tuple[str, list[Any]]:
        downtime, wipe = msg.body
        if self._restarting:
            raise BluezError.in_progress("a restart is already under way")
        if not 0 <= downtime <= 60:
            raise BluezError.invalid_args("downtime must be 0..60 s")
        names = {a.hci for a in self.adapters} | set(self.unplugged)
        unknown = set(wipe) - names
        if unknown:
            raise BluezError.does_not_exist(f"no adapter {sorted(unknown)[0]}")
        await self._restart(float(downtime), set(wipe))
        return "", []

    async def _ctl_set_rssi(self, msg: Message) -> tuple[str, list[Any]]:
        scanner, advertiser, rssi = msg.body
        if not -127 <= rssi <= 20:
            raise BluezError.invalid_args("rssi must be -127..20")
        key = (self._find_adapter(scanner).index, self._find_adapter(advertiser).index)
        self.rssi_overrides[key] = int(rssi)
        self.adv_changed.set()
        return "", []

    async def _ctl_configure(self, msg: Message) -> tuple[str, list[Any]]:
        values = {k: v.value for k, v in msg.body[0].items()}
        if "adapters" in values:
            raise BluezError.invalid_args("the number of adapters is fixed at start")
        try:
            self.config.update(values)
        except ConfigError as exc:
            raise BluezError.invalid_args(str(exc)) from exc
        self.adv_changed.set()
        return "", []

    async def _ctl_get_config(self, msg: Message) -> tuple[str, list[Any]]:
        return "s", [self.config.to_json()]
