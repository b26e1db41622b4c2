"""A client for the virtual radio's control interface (faults, timing, RSSI) over D-Bus.

The control interface lives on the same bus as ``org.bluez`` (object ``/vbluez``, interface
``vbluez.Control1``), so tests, the ``vbluez ctl`` command and other processes can all steer it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from .config import RadioConfig
from .errors import BluezError
from .hil_guard import guard

__all__ = ["AdapterInfo", "LinkInfo", "RadioControl"]

_SIGS = {bool: "b", int: "i", float: "d", str: "s"}
_CONFIG_SIGS = {"adapters": "i", "mtu": "i", "conn_interval_ms": "d", "att_timeout": "d",
                "connect_timeout": "d", "agent_timeout": "d", "temporary_timeout": "d",
                "report_interval": "d", "rssi": "i", "rssi_noise": "d",
                "notification_loss": "d", "max_links": "i", "max_adv_len": "i",
                "max_adv_instances": "i", "seed": "i",
                "gatt_cache": "b", "service_changed_delay": "d"}


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str
    address: str

    @property
    def path(self) -> str:
        return f"/org/bluez/{self.name}"


@dataclass(frozen=True, slots=True)
class LinkInfo:
    central: str
    central_address: str
    peripheral: str
    peripheral_address: str
    mtu: int
    interval_ms: float
    encrypted: bool
    authenticated: bool


class RadioControl:
    """Steers a running virtual radio. ``async with RadioControl(address) as ctl: ...``"""

    def __init__(self, bus_address: str) -> None:
        self.bus_address = bus_address
        self._bus: MessageBus | None = None

    async def __aenter__(self) -> RadioControl:
        guard("the vbluez control API (RadioControl)")
        self._bus = await MessageBus(bus_address=self.bus_address).connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    async def _call(self, member: str, sig: str = "", body: list[Any] | None = None,
                    path: str = "/vbluez", iface: str = "vbluez.Control1") -> list[Any]:
        guard(f"the vbluez control API ({member})")
        if self._bus is None:
            raise RuntimeError("RadioControl is not open; use 'async with'")
        reply = await self._bus.call(Message(destination="org.bluez", path=path, interface=iface,
                                             member=member, signature=sig, body=body or []))
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            raise BluezError(reply.error_name or "org.bluez.Error.Failed",
                             reply.body[0] if reply.body else "")
        return list(reply.body)

    async def adapters(self) -> list[AdapterInfo]:
        (pairs,) = await self._call("GetAdapters")
        return [AdapterInfo(name, address) for name, address in pairs]

    async def links(self) -> list[LinkInfo]:
        (rows,) = await self._call("GetLinks")
        return [LinkInfo(**{k: v.value for k, v in row.items()}) for row in rows]

    async def link_loss(self, adapter: str, address: str) -> None:
        """Drop the link between ``adapter`` and the peer ``address``, as if out of range."""
        await self._call("LinkLoss", "ss", [adapter, address])

    async def set_link_interval(self, adapter: str, address: str, interval_ms: float) -> None:
        await self._call("SetLinkInterval", "ssd", [adapter, address, float(interval_ms)])

    async def drop_notifications(self, adapter: str, address: str, count: int = 1) -> None:
        """Lose the next ``count`` notifications on that link."""
        await self._call("DropNotifications", "ssu", [adapter, address, count])

    async def abort_connects(self, adapter: str, address: str, count: int = 1) -> None:
        """End the next ``count`` connects from ``adapter`` to ``address`` as BlueZ does on
        interference: ``le-connection-abort-by-local`` after a brief ``Connected`` true."""
        await self._call("AbortConnects", "ssu", [adapter, address, count])

    async def connect_fault(self, adapter: str, address: str, kind: str,
                            count: int = -1) -> None:
        """Make connects from ``adapter`` to ``address`` fail: ``kind`` ``abort-by-local``
        (interference, after a brief ``Connected`` true; bleak retries these itself) or
        ``in-progress`` (``InProgress``: BlueZ busy with another operation on the device),
        for the next ``count`` connects, every one until lifted (-1), or lift it (0)."""
        await self._call("SetConnectFault", "sssi", [adapter, address, kind, int(count)])

    async def set_responsive(self, adapter: str, responsive: bool) -> None:
        """A peripheral that stops answering: its ATT requests time out (``att_timeout``)."""
        await self._call("SetResponsive", "sb", [adapter, responsive])

    async def add_adapter(self) -> AdapterInfo:
        """Plug in one more controller (the next free ``hciN``, a separate host)."""
        ((name, address),) = await self._call("AddAdapter")
        return AdapterInfo(name, address)

    async def remove_adapter(self, adapter: str) -> None:
        """Take ``adapter`` off the bus as when its controller goes (USB dongle pulled): its
        links drop, its devices and then the adapter object are removed (InterfacesRemoved)."""
        await self._call("RemoveAdapter", "s", [adapter])

    async def restore_adapter(self, adapter: str) -> None:
        """Bring a removed adapter back (InterfacesAdded), with a device per stored bond."""
        await self._call("RestoreAdapter", "s", [adapter])

    async def restart_bluetoothd(self, downtime: float = 0.5, *,
                                 wipe_bonds: tuple[str, ...] = ()) -> None:
        """Restart the virtual bluetoothd: every object removed, ``org.bluez`` released for
        ``downtime`` seconds and re-acquired, adapters re-announced. Registrations (agents,
        applications, advertisements) are gone; bonds are kept except on the adapters in
        ``wipe_bonds``. Returns once the new bluetoothd owns the name again."""
        await self._call("RestartDaemon", "das", [float(downtime), list(wipe_bonds)])

    async def set_rssi(self, scanner: str, advertiser: str, rssi: int) -> None:
        await self._call("SetRssi", "ssn", [scanner, advertiser, rssi])

    async def set_powered(self, adapter: str, powered: bool) -> None:
        await self._call("Set", "ssv", ["org.bluez.Adapter1", "Powered", Variant("b", powered)],
                         path=f"/org/bluez/{adapter}", iface="org.freedesktop.DBus.Properties")

    async def configure(self, **values: Any) -> None:
        """Change radio settings (see :class:`RadioConfig`) for new links and reports."""
        body = {}
        for key, value in values.items():
            sig = _CONFIG_SIGS.get(key) or _SIGS[type(value)]
            body[key] = Variant(sig, float(value) if sig == "d" else value)
        await self._call("Configure", "a{sv}", [body])

    async def config(self) -> RadioConfig:
        (text,) = await self._call("GetConfig")
        return RadioConfig(**json.loads(text))
