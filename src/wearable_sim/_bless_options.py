"""bless's characteristic object, with BlueZ's call options passed on.

bless 0.3's ``ReadValue``/``WriteValue`` drop the options BlueZ sends (``offset``, ``mtu``,
``device``, ``type``). A module needs them: ``offset`` to answer long reads correctly and ``mtu``
to size its notifications. This subclass keeps bless's properties and behaviour and only passes
the options on. No ``from __future__ import annotations`` here: dbus-next reads the D-Bus
signatures from the annotations.
"""

from typing import Any, Callable, Dict

from bless.backends.bluezdbus.dbus.characteristic import BlueZGattCharacteristic
from dbus_next.service import method

ReadHandler = Callable[[str, Dict[str, Any]], bytes]
WriteHandler = Callable[[str, bytes, Dict[str, Any]], None]


def _plain(options: Dict[str, Any]) -> Dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in options.items()}


class OptionsCharacteristic(BlueZGattCharacteristic):
    on_read: ReadHandler
    on_write: WriteHandler
    on_unsubscribe: Callable[[str], None]

    @method()
    def StopNotify(self):
        # BlueZ calls this when the last subscriber goes, also when its link drops: the module
        # uses it to abandon a request nobody can receive the answer to.
        f = self._service.app.StopNotify
        if f is not None:
            f(None)
        if self._uuid in self._service.app.subscribed_characteristics:
            self._service.app.subscribed_characteristics.remove(self._uuid)
        self.on_unsubscribe(self._uuid)

    @method()
    def ReadValue(self, options: "a{sv}") -> "ay":
        return self.on_read(self._uuid, _plain(options))

    @method()
    def WriteValue(self, value: "ay", options: "a{sv}"):
        self.on_write(self._uuid, bytes(value), _plain(options))
