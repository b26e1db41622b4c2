"""Helpers for the virtual-radio tests: real bless peripherals and raw D-Bus calls.

Nothing here is mocked: bless and bleak are the unmodified PyPI packages, the bus is a real
dbus-daemon, and the emulator runs in its own process (the ``vbluez`` fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio
from bless import BlessServer, GATTAttributePermissions, GATTCharacteristicProperties
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from vbluez import VirtualBluez

SVC = "6d2a0001-8f3c-4b6e-9a57-3c1d2e4f5a60"
CMD = "6d2a0002-8f3c-4b6e-9a57-3c1d2e4f5a60"  # write / write-without-response
EVT = "6d2a0003-8f3c-4b6e-9a57-3c1d2e4f5a60"  # notify
INFO = "6d2a0004-8f3c-4b6e-9a57-3c1d2e4f5a60"  # read
SECRET = "6d2a0005-8f3c-4b6e-9a57-3c1d2e4f5a60"  # encrypted read/write
IND = "6d2a0006-8f3c-4b6e-9a57-3c1d2e4f5a60"  # indicate

P = GATTCharacteristicProperties
A = GATTAttributePermissions


@dataclass
class Peripheral:
    """A bless GATT server that echoes each CMD write, reversed, as an EVT notification."""

    server: BlessServer
    adapter: str
    address: str
    writes: list[bytes] = field(default_factory=list)
    info: bytes = b"module-info"

    def notify(self, uuid: str, value: bytes) -> None:
        self.server.get_characteristic(uuid).value = bytearray(value)
        self.server.update_value(SVC, uuid)


async def start_peripheral(radio: VirtualBluez, adapter: str, name: str,
                           on_write: Callable[[Peripheral, bytes], None] | None = None,
                           ) -> Peripheral:
    server = BlessServer(name=name, adapter=adapter)
    address = next(a.address for a in radio.adapters if a.name == adapter)
    periph = Peripheral(server, adapter, address)

    def read(char: Any, **kwargs: Any) -> bytearray:
        if char.uuid.lower() == INFO:
            return bytearray(periph.info)
        return bytearray(char.value or b"")

    def write(char: Any, value: Any, **kwargs: Any) -> None:
        char.value = value
        if char.uuid.lower() == CMD:
            periph.writes.append(bytes(value))
            if on_write is not None:
                on_write(periph, bytes(value))
            else:
                periph.notify(EVT, bytes(value)[::-1])

    server.read_request_func = read
    server.write_request_func = write
    await server.add_new_service(SVC)
    await server.add_new_characteristic(SVC, CMD, P.write | P.write_without_response, None,
                                        A.writeable)
    await server.add_new_characteristic(SVC, EVT, P.notify, None, A.readable)
    await server.add_new_characteristic(SVC, INFO, P.read, bytearray(b""), A.readable)
    await server.add_new_characteristic(
        SVC, SECRET, P.read | P.write, bytearray(b"secret"),
        A.read_encryption_required | A.write_encryption_required)
    await server.add_new_characteristic(SVC, IND, P.indicate, None, A.readable)
    await server.start()
    return periph


async def stop_peripheral(periph: Peripheral) -> None:
    try:
        await periph.server.stop()
    finally:
        # bless never closes its dbus-next connection, and dbus-next's disconnect() only shuts
        # the socket down; close it so it does not leak into the next test.
        bus = periph.server.bus
        bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.wait_for_disconnect(), 2)
        bus._sock.close()


@pytest_asyncio.fixture
async def peripheral(vbluez: VirtualBluez) -> AsyncIterator[Peripheral]:
    periph = await start_peripheral(vbluez, "hci1", "VPeriph")
    try:
        yield periph
    finally:
        await stop_peripheral(periph)


class RawBus:
    """Plain D-Bus calls to org.bluez, for what bleak and bless do not expose."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    async def call(self, path: str, iface: str, member: str, sig: str = "",
                   body: list[Any] | None = None, dest: str = "org.bluez") -> Message:
        reply = await self.bus.call(Message(destination=dest, path=path, interface=iface,
                                            member=member, signature=sig, body=body or []))
        assert reply is not None
        return reply

    async def ok(self, *args: Any, **kwargs: Any) -> list[Any]:
        reply = await self.call(*args, **kwargs)
        assert reply.message_type == MessageType.METHOD_RETURN, (reply.error_name, reply.body)
        return list(reply.body)

    async def error(self, *args: Any, **kwargs: Any) -> tuple[str, str]:
        reply = await self.call(*args, **kwargs)
        assert reply.message_type == MessageType.ERROR, reply.body
        return reply.error_name or "", reply.body[0] if reply.body else ""

    async def get(self, path: str, iface: str, prop: str) -> Any:
        (v,) = await self.ok(path, "org.freedesktop.DBus.Properties", "Get", "ss", [iface, prop])
        return v.value

    async def set(self, path: str, iface: str, prop: str, sig: str, value: Any) -> None:
        await self.ok(path, "org.freedesktop.DBus.Properties", "Set", "ssv",
                      [iface, prop, Variant(sig, value)])

    async def objects(self) -> dict[str, dict[str, dict[str, Variant]]]:
        (objs,) = await self.ok("/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
        return dict(objs)


@pytest_asyncio.fixture
async def raw(vbluez: VirtualBluez) -> AsyncIterator[RawBus]:
    bus = await MessageBus(bus_address=vbluez.bus_address).connect()
    try:
        yield RawBus(bus)
    finally:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.wait_for_disconnect(), 2)


def dev_path(adapter: str, address: str) -> str:
    return f"/org/bluez/{adapter}/dev_{address.replace(':', '_')}"


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait until ``check()`` is true; fail with a clear message after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
