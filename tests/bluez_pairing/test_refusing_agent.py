"""The daemon's agent refuses every question BlueZ can ask an agent, over a real D-Bus: each
method called from another connection (as bluetoothd calls it) gets org.bluez.Error.Rejected,
or, for the display-only calls, no acceptance of anything, and the owner hears of each."""

from __future__ import annotations

import pytest
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from bluez_pairing import RefusingAgent
from vbluez import VirtualBluez

PATH = "/test/refusing_agent"
DEVICE = "/org/bluez/hci0/dev_5A_00_00_00_00_02"

QUESTIONS = [("RequestConfirmation", "ou", [DEVICE, 123456]),
             ("RequestAuthorization", "o", [DEVICE]),
             ("RequestPasskey", "o", [DEVICE]),
             ("RequestPinCode", "o", [DEVICE]),
             ("AuthorizeService", "os", [DEVICE, "0000180f-0000-1000-8000-00805f9b34fb"]),
             ("DisplayPinCode", "os", [DEVICE, "0000"])]


async def test_every_pairing_question_is_rejected_and_reported(vbluez: VirtualBluez) -> None:
    owner = await MessageBus(bus_address=vbluez.bus_address).connect()
    asker = await MessageBus(bus_address=vbluez.bus_address).connect()
    refused: list[tuple[str, str]] = []
    owner.export(PATH, RefusingAgent(lambda device, what: refused.append((device, what))))
    try:
        for member, signature, body in QUESTIONS:
            reply = await asker.call(Message(
                destination=owner.unique_name, path=PATH, interface="org.bluez.Agent1",
                member=member, signature=signature, body=body))
            assert reply is not None
            assert reply.message_type == MessageType.ERROR, member
            assert reply.error_name == "org.bluez.Error.Rejected", member
        # DisplayPasskey only shows a code: answered (there is nothing to refuse), but reported.
        reply = await asker.call(Message(
            destination=owner.unique_name, path=PATH, interface="org.bluez.Agent1",
            member="DisplayPasskey", signature="ouq", body=[DEVICE, 1, 0]))
        assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
        for member in ("Cancel", "Release"):
            reply = await asker.call(Message(
                destination=owner.unique_name, path=PATH, interface="org.bluez.Agent1",
                member=member))
            assert reply is not None and reply.message_type == MessageType.METHOD_RETURN
    finally:
        owner.disconnect()
        asker.disconnect()
    assert refused == [(DEVICE, m) for m, _, _ in QUESTIONS] + [(DEVICE, "DisplayPasskey")]


@pytest.mark.parametrize("body", [["not a path"], []])
async def test_a_malformed_question_is_an_error_not_an_acceptance(
        vbluez: VirtualBluez, body: list[object]) -> None:
    owner = await MessageBus(bus_address=vbluez.bus_address).connect()
    asker = await MessageBus(bus_address=vbluez.bus_address).connect()
    refused: list[tuple[str, str]] = []
    owner.export(PATH, RefusingAgent(lambda device, what: refused.append((device, what))))
    try:
        reply = await asker.call(Message(
            destination=owner.unique_name, path=PATH, interface="org.bluez.Agent1",
            member="RequestAuthorization", signature="s" if body else "", body=body))
        assert reply is not None and reply.message_type == MessageType.ERROR
    finally:
        owner.disconnect()
        asker.disconnect()
