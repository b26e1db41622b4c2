"""BlueZ pairing for both ends of the profile: an Agent1, its registration, and bonds.

The gateway daemon registers one that refuses every pairing (it starts none). The pairing CLI
registers one to show the numeric-comparison code and ask y/n; the simulated
module registers one to confirm the same code on its side (a real module shows it on its display
and takes a button press). The CLI also asks BlueZ whether a device is bonded and removes bonds.
Kept apart from ``ble_profile``, which is sans-IO.
"""

from __future__ import annotations

import contextlib
from typing import Any

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface

from ._agent import Confirm, Display, PairingAgent, Refused, RefusingAgent

__all__ = ["AgentError", "BluezCallError", "Confirm", "Display", "PairingAgent", "Refused",
           "RefusingAgent", "bluez_call",
           "device_path", "is_bonded", "register_agent", "remove_device", "set_pairable",
           "unregister_agent"]

CAPABILITY = "DisplayYesNo"


class BluezCallError(Exception):
    """BlueZ answered a call with an error, or not at all; the message names both."""

    def __init__(self, message: str, error_name: str = "") -> None:
        super().__init__(message)
        self.error_name = error_name
        """The D-Bus error name (``org.bluez.Error.DoesNotExist``...); "" when none came."""


_NO_SUCH_DEVICE = ("org.bluez.Error.DoesNotExist", "org.freedesktop.DBus.Error.UnknownObject")
"""The errors by which BlueZ says it does not know a device (any other failure is raised)."""


class AgentError(BluezCallError):
    """BlueZ refused the agent (another default agent, no bluetoothd, no permission)."""


async def bluez_call(bus: MessageBus, path: str, interface: str, member: str, signature: str,
                     body: list[Any]) -> Message:
    """One method call to bluetoothd; an error reply becomes :class:`BluezCallError`."""
    reply = await bus.call(Message(destination="org.bluez", path=path, interface=interface,
                                   member=member, signature=signature, body=body))
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply is not None and reply.body else ""
        name = (reply.error_name or "") if reply is not None else ""
        raise BluezCallError(f"{member}: {name or 'no reply'} {detail}".strip(), name)
    return reply


async def _manager_call(bus: MessageBus, member: str, signature: str, body: list[object]) -> None:
    try:
        await bluez_call(bus, "/org/bluez", "org.bluez.AgentManager1", member, signature, body)
    except BluezCallError as exc:
        raise AgentError(str(exc), exc.error_name) from exc


def device_path(adapter: str, address: str) -> str:
    """BlueZ's object path for a device seen by ``adapter``."""
    return f"/org/bluez/{adapter}/dev_{address.upper().replace(':', '_')}"


async def is_bonded(bus: MessageBus, adapter: str, address: str) -> bool:
    """Whether ``adapter`` holds a bond with the device (False if BlueZ does not know it).

    Raises :class:`BluezCallError` when BlueZ cannot say (no reply, access denied,
    bluetoothd down): a bond that may exist is never reported absent.
    """
    try:
        reply = await bluez_call(bus, device_path(adapter, address),
                                 "org.freedesktop.DBus.Properties", "Get", "ss",
                                 ["org.bluez.Device1", "Bonded"])
    except BluezCallError as exc:
        if exc.error_name in _NO_SUCH_DEVICE:
            return False  # no such device object: certainly no bond
        raise
    return bool(reply.body[0].value)


async def remove_device(bus: MessageBus, adapter: str, address: str) -> bool:
    """Forget the device and its bond on ``adapter``; False if BlueZ did not know it.

    Raises :class:`BluezCallError` for any other failure (no reply, access denied, no
    bluetoothd)."""
    try:
        await bluez_call(bus, f"/org/bluez/{adapter}", "org.bluez.Adapter1", "RemoveDevice",
                         "o", [device_path(adapter, address)])
    except BluezCallError as exc:
        if exc.error_name in _NO_SUCH_DEVICE:
            return False
        raise
    return True


async def set_pairable(bus: MessageBus, adapter: str, on: bool) -> None:
    """Set ``adapter``'s ``Pairable``: when false, BlueZ refuses every new bond from a peer
    (bonds it already holds still re-encrypt), so nobody can bond with a module outside its
    pairing mode, by numeric comparison or just works."""
    await bluez_call(bus, f"/org/bluez/{adapter}", "org.freedesktop.DBus.Properties", "Set",
                     "ssv", ["org.bluez.Adapter1", "Pairable", Variant("b", on)])


async def register_agent(bus: MessageBus, agent: ServiceInterface, path: str, *,
                         default: bool = True, capability: str = CAPABILITY) -> None:
    """Export ``agent`` at ``path`` and register it with BlueZ (as the default agent)."""
    bus.export(path, agent)
    try:
        await _manager_call(bus, "RegisterAgent", "os", [path, capability])
        if default:
            await _manager_call(bus, "RequestDefaultAgent", "o", [path])
    except AgentError:
        bus.unexport(path)
        raise


async def unregister_agent(bus: MessageBus, path: str) -> None:
    """Unregister and unexport; quiet if BlueZ already forgot it (its owner may be leaving)."""
    with contextlib.suppress(AgentError):
        await _manager_call(bus, "UnregisterAgent", "o", [path])
    bus.unexport(path)
