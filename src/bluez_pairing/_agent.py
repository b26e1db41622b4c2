"""An ``org.bluez.Agent1`` that hands each pairing decision to a coroutine.

No ``from __future__ import annotations`` here: dbus-fast reads the D-Bus signatures ("o", "u")
from the annotations, so they stay strings that mypy cannot read as types.
"""

from typing import Awaitable, Callable

from dbus_fast import DBusError
from dbus_fast.service import ServiceInterface, method

Confirm = Callable[[str, int], Awaitable[bool]]
Display = Callable[[str, int], None]


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

    async def _ask(self, device: str, passkey: int) -> None:
        self.codes.append(passkey)
        if not await self._confirm(device, passkey):
            raise DBusError("org.bluez.Error.Rejected", "rejected by the user")

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
        pass
