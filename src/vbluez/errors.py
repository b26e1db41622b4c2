"""Errors the virtual BlueZ answers with, named exactly as BlueZ names them.

bleak turns a D-Bus error into ``BleakDBusError(name, text)`` and code in the field matches on the
name (``org.bluez.Error.InProgress`` is retried, ``NotPermitted`` is not), so the name is the
contract. The texts follow BlueZ's own where they are known.
"""

from __future__ import annotations

__all__ = ["BluezError", "VBluezError"]

ERROR_PREFIX = "org.bluez.Error."


class VBluezError(Exception):
    """Base of everything the virtual BlueZ raises in the caller's process."""


class BluezError(VBluezError):
    """A D-Bus error to send back to the caller of a BlueZ method.

    ``name`` is the full D-Bus error name (``org.bluez.Error.Failed``); ``text`` is the message.
    """

    def __init__(self, name: str, text: str = "") -> None:
        if "." not in name:
            name = ERROR_PREFIX + name
        super().__init__(f"{name}: {text}" if text else name)
        self.name = name
        self.text = text

    # The constructors below mirror BlueZ's src/error.c so call sites read like BlueZ.
    @classmethod
    def failed(cls, text: str = "Operation failed") -> BluezError:
        return cls("Failed", text)

    @classmethod
    def in_progress(cls, text: str = "In Progress") -> BluezError:
        return cls("InProgress", text)

    @classmethod
    def not_permitted(cls, text: str = "Operation not permitted") -> BluezError:
        return cls("NotPermitted", text)

    @classmethod
    def not_authorized(cls, text: str = "Operation Not Authorized") -> BluezError:
        return cls("NotAuthorized", text)

    @classmethod
    def invalid_args(cls, text: str = "Invalid arguments in method call") -> BluezError:
        return cls("InvalidArguments", text)

    @classmethod
    def not_supported(cls, text: str = "Operation is not supported") -> BluezError:
        return cls("NotSupported", text)

    @classmethod
    def already_connected(cls) -> BluezError:
        return cls("AlreadyConnected", "Already Connected")

    @classmethod
    def already_exists(cls, text: str = "Already Exists") -> BluezError:
        return cls("AlreadyExists", text)

    @classmethod
    def does_not_exist(cls, text: str = "Does Not Exist") -> BluezError:
        return cls("DoesNotExist", text)

    @classmethod
    def not_connected(cls, text: str = "Not Connected") -> BluezError:
        return cls("NotConnected", text)

    @classmethod
    def not_ready(cls) -> BluezError:
        return cls("NotReady", "Resource Not Ready")

    @classmethod
    def invalid_length(cls, text: str = "Invalid Length") -> BluezError:
        return cls("InvalidLength", text)
