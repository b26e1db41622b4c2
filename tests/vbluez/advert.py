"""A hand-written LEAdvertisement1 for tests (no ``from __future__ import annotations``:
dbus-fast reads D-Bus signatures from the annotations)."""

from dbus_fast import Variant
from dbus_fast.service import ServiceInterface, dbus_property, method


class HandmadeAdvertisement(ServiceInterface):
    """A hand-written LEAdvertisement1 with service and manufacturer data (bless has neither)."""

    def __init__(self, service_data: dict[str, bytes], manufacturer: dict[int, bytes]) -> None:
        super().__init__("org.bluez.LEAdvertisement1")
        self._sd = {k: Variant("ay", v) for k, v in service_data.items()}
        self._md = {k: Variant("ay", v) for k, v in manufacturer.items()}

    @method()
    def Release(self):  # type: ignore[no-untyped-def]
        pass

    @dbus_property()
    def Type(self) -> "s":  # noqa: F821
        return "peripheral"

    @Type.setter
    def Type(self, value: "s") -> None:  # noqa: F821
        pass

    @dbus_property()
    def ServiceUUIDs(self) -> "as":  # noqa: F722
        return ["fffd"]

    @ServiceUUIDs.setter
    def ServiceUUIDs(self, value: "as") -> None:  # noqa: F722
        pass

    @dbus_property()
    def ServiceData(self) -> "a{sv}":  # noqa: F722
        return self._sd

    @ServiceData.setter
    def ServiceData(self, value: "a{sv}") -> None:  # noqa: F722
        pass

    @dbus_property()
    def ManufacturerData(self) -> "a{qv}":  # noqa: F722
        return self._md

    @ManufacturerData.setter
    def ManufacturerData(self, value: "a{qv}") -> None:  # noqa: F722
        pass

    @dbus_property()
    def LocalName(self) -> "s":  # noqa: F821
        return "Carded"

    @LocalName.setter
    def LocalName(self, value: "s") -> None:  # noqa: F821
        pass

    @dbus_property()
    def Includes(self) -> "as":  # noqa: F722
        return ["tx-power"]

    @Includes.setter
    def Includes(self, value: "as") -> None:  # noqa: F722
        pass

    @dbus_property()
    def TxPower(self) -> "n":  # noqa: F821
        return 4

    @TxPower.setter
    def TxPower(self, value: "n") -> None:  # noqa: F821
        pass
