"""vbluez: a virtual BlueZ so that unmodified bleak and bless run without a radio.

A private ``dbus-daemon`` and an emulator that owns ``org.bluez`` on it; adapters ``hci0``,
``hci1``, ... each stand for a separate host. See ``docs/vbluez.md``.
"""

from .config import ConfigError, RadioConfig
from .control import AdapterInfo, LinkInfo, RadioControl
from .errors import BluezError, VBluezError
from .runtime import VirtualBluez, VirtualBluezError

__all__ = [
    "AdapterInfo",
    "BluezError",
    "ConfigError",
    "LinkInfo",
    "RadioConfig",
    "RadioControl",
    "VBluezError",
    "VirtualBluez",
    "VirtualBluezError",
]
