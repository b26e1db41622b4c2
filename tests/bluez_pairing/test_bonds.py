"""Whether a bond exists, and removing one: only "BlueZ does not know the device" means no bond;
any other failure is raised, so ``blegw pair`` never removes a bond it did not make."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from bluez_pairing import BluezCallError, is_bonded, remove_device


@dataclass
class _Reply:
    message_type: MessageType
    error_name: str | None = None
    body: list[Any] = field(default_factory=list)


class _Bus:
    """Answers every call with one reply (None: no reply at all)."""

    def __init__(self, reply: _Reply | None) -> None:
        self.reply = reply

    async def call(self, _msg: Message) -> _Reply | None:
        return self.reply


def _error(name: str) -> _Reply:
    return _Reply(MessageType.ERROR, name, ["what BlueZ said"])


def _bus(reply: _Reply | None) -> MessageBus:
    return cast(MessageBus, _Bus(reply))


@pytest.mark.parametrize("name", ["org.bluez.Error.DoesNotExist",
                                  "org.freedesktop.DBus.Error.UnknownObject"])
async def test_an_unknown_device_has_no_bond(name: str) -> None:
    assert await is_bonded(_bus(_error(name)), "hci0", "AA:BB:CC:DD:EE:FF") is False
    assert await remove_device(_bus(_error(name)), "hci0", "AA:BB:CC:DD:EE:FF") is False


@pytest.mark.parametrize("reply", [
    _error("org.freedesktop.DBus.Error.AccessDenied"),
    _error("org.freedesktop.DBus.Error.ServiceUnknown"),
    _error("org.freedesktop.DBus.Error.NoReply"),
    None,
], ids=["access-denied", "no-bluetoothd", "timeout", "no-reply"])
async def test_any_other_failure_is_raised_with_its_name(reply: _Reply | None) -> None:
    for call in (is_bonded, remove_device):
        with pytest.raises(BluezCallError) as info:
            await call(_bus(reply), "hci0", "AA:BB:CC:DD:EE:FF")
        expected = reply.error_name if reply is not None else ""
        assert info.value.error_name == expected
        assert (expected or "no reply") in str(info.value)


async def test_a_known_device_answers() -> None:
    bonded = _Reply(MessageType.METHOD_RETURN, body=[Variant("b", True)])
    assert await is_bonded(_bus(bonded), "hci0", "AA:BB:CC:DD:EE:FF") is True
    assert await remove_device(_bus(_Reply(MessageType.METHOD_RETURN)), "hci0",
                               "AA:BB:CC:DD:EE:FF") is True
