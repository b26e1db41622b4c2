"""An ``org.bluez.Agent1`` that hands each pairing decision to a coroutine.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures ("o", "u")
from the annotations, so they stay strings that mypy cannot read as types.
"""

import asyncio
from typing import Any, Awaitable, Callable

from dbus_fast import DBusError
from dbus_fast.service import ServiceInterface, method

Confirm = Callable[[str, int], Awaitable[bool]]
Display = Callable[[str, int], None]
Refused = Callable[[str, str], None]
"""Told of each refusal of a :class:`RefusingAgent`: (device object path, what BlueZ asked)."""

_REJECTED = "org.bluez.Error.Rejected"


class PairingAgent(ServiceInterface):
    """Numeric comparison and authorization go to ``confirm``; passkey entry is refused.

    ``confirm(device_path, code)`` returns True to accept. A code of 0 asks to authorize an
    incoming just-works pairing (nothing to compare). Every code shown is kept in ``codes`` so a
    test rig can check that both ends saw the same one.
    """

    def __init__(self, confirm: Confirm, display: Display | None = None) -> None:
        super().__init__("org.bluez.Agent1")
        self._confirm = confirm
        self._display = display
        self.codes: list[int] = []
        self._asking: set[asyncio.Task[Any]] = set()

    async def _ask(self, device: str, passkey: int) -> None:
        self.codes.append(passkey)
        task = asyncio.current_task()
        if task is not None:
            self._asking.add(task)
        try:
            accepted = await self._confirm(device, passkey)
        except asyncio.CancelledError:
            # BlueZ cancelled the request or the program is stopping: BlueZ still gets an
            # answer (a refusal), sent while the bus is there, instead of a dangling call.
            raise DBusError("org.bluez.Error.Canceled", "the request was cancelled") from None
        finally:
            if task is not None:
                self._asking.discard(task)
        if not accepted:
            raise DBusError("org.bluez.Error.Rejected", "rejected by the user")

    async def cancel_pending(self, timeout: float = 1.0) -> None:
        """Withdraw any question still waiting for a person; call before leaving the bus."""
        tasks = list(self._asking)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    @method()
    def Release(self):
        pass

    @method()
    async def RequestConfirmation(self, device: "o", passkey: "u"):
        await self._ask(device, passkey)

    @method()
    async def RequestAuthorization(self, device: "o"):
        await self._ask(device, 0)

    @method()
    def DisplayPasskey(self, device: "o", passkey: "u", entered: "q"):
        self.codes.append(passkey)
        if self._display is not None:
            self._display(device, passkey)

    @method()
    def RequestPasskey(self, device: "o") -> "u":
        raise DBusError("org.bluez.Error.Rejected", "passkey entry is not supported")

    @method()
    def AuthorizeService(self, device: "o", uuid: "s"):
        pass

    @method()
    def Cancel(self):
        # BlueZ gave up on the request (timeout, the other side left): stop asking.
        for task in list(self._asking):
            task.cancel()

class RefusingAgent(ServiceInterface):
    """Refuses every pairing and authorization BlueZ asks about, and says which device asked.

    For a program that starts no pairing of its own (the gateway daemon): registered as the
    default agent, it keeps BlueZ from answering other pairings by itself, and tells its
    owner which device tried.
    """

    def __init__(self, refused: Refused) -> None:
        super().__init__("org.bluez.Agent1")
        self._refused = refused

    def _refuse(self, device: str, what: str) -> DBusError:
        self._refused(device, what)
        return DBusError(_REJECTED, "the gateway did not start this pairing")

    @method()
    def Release(self):
        pass

    @method()
    def RequestPinCode(self, device: "o") -> "s":
        raise self._refuse(device, "RequestPinCode")

    @method()
    def DisplayPinCode(self, device: "o", pincode: "s"):
        raise self._refuse(device, "DisplayPinCode")

    @method()
    def RequestPasskey(self, device: "o") -> "u":
        raise self._refuse(device, "RequestPasskey")

    @method()
    def DisplayPasskey(self, device: "o", passkey: "u", entered: "q"):
        self._refused(device, "DisplayPasskey")

    @method()
    def RequestConfirmation(self, device: "o", passkey: "u"):
        raise self._refuse(device, "RequestConfirmation")

    @method()
    def RequestAuthorization(self, device: "o"):
        raise self._refuse(device, "RequestAuthorization")

    @method()
    def AuthorizeService(self, device: "o", uuid: "s"):
        raise self._refuse(device, "AuthorizeService")

    @method()
    def Cancel(self):
        pass
