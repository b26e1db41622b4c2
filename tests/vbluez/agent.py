"""A pairing agent (org.bluez.Agent1) for tests; no ``from __future__`` (dbus-fast reads the
D-Bus signatures from the annotations)."""

from dbus_fast import DBusError
from dbus_fast.service import ServiceInterface, method


class RecordingAgent(ServiceInterface):
    """Answers confirmations with ``accept``; records every call."""

    def __init__(self, accept: bool = True, passkey: int = 0) -> None:
        super().__init__("org.bluez.Agent1")
        self.accept = accept
        self.passkey = passkey
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    def _answer(self) -> None:
        if not self.accept:
            raise DBusError("org.bluez.Error.Rejected", "rejected by the test agent")

    @method()
    def Release(self):  # type: ignore[no-untyped-def]
        self.calls.append(("Release", ()))

    @method()
    def RequestConfirmation(self, device: "o", passkey: "u"):  # type: ignore[no-untyped-def]  # noqa: F821
        self.calls.append(("RequestConfirmation", (device, passkey)))
        self._answer()

    @method()
    def RequestAuthorization(self, device: "o"):  # type: ignore[no-untyped-def]  # noqa: F821
        self.calls.append(("RequestAuthorization", (device,)))
        self._answer()

    @method()
    def RequestPasskey(self, device: "o") -> "u":  # type: ignore[no-untyped-def]  # noqa: F821
        self.calls.append(("RequestPasskey", (device,)))
        self._answer()
        return self.passkey

    @method()
    def DisplayPasskey(self, device: "o", passkey: "u", entered: "q"):  # type: ignore[no-untyped-def]  # noqa: F821
        self.calls.append(("DisplayPasskey", (device, passkey, entered)))

    @method()
    def Cancel(self):  # type: ignore[no-untyped-def]
        self.calls.append(("Cancel", ()))
