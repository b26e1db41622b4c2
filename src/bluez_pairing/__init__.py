"""BlueZ pairing for both ends of the profile: an Agent1 and its registration.

The pairing CLI registers one to show the numeric-comparison code and ask y/n; the simulated
module registers one to confirm the same code on its side (a real module shows it on its display
and takes a button press). Kept apart from ``ble_profile``, which is sans-IO.
"""

from __future__ import annotations

import contextlib

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from ._agent import Confirm, Display, PairingAgent

__all__ = ["AgentError", "Confirm", "Display", "PairingAgent", "register_agent",
           "unregister_agent"]

CAPABILITY = "DisplayYesNo"


class AgentError(Exception):
    """BlueZ refused the agent (another default agent, no bluetoothd, no permission)."""


async def _manager_call(bus: MessageBus, member: str, signature: str, body: list[object]) -> None:
    reply = await bus.call(Message(destination="org.bluez", path="/org/bluez",
                                   interface="org.bluez.AgentManager1", member=member,
                                   signature=signature, body=body))
    if reply is None or reply.message_type == MessageType.ERROR:
        detail = reply.body[0] if reply is not None and reply.body else ""
        name = reply.error_name if reply is not None else "no reply"
        raise AgentError(f"{member}: {name} {detail}".strip())


async def register_agent(bus: MessageBus, agent: PairingAgent, path: str, *,
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
