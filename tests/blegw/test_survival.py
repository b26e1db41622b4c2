"""The daemon survives losing its adapter and bluetoothd itself, with payments flowing.

As in test_recovery: the gateway is a real subprocess (`blegw -v run`) against the virtual
BlueZ, the real mosquitto and the real platform; only the radio is simulated. Each test takes
the host's Bluetooth away while payments are made and checks: every payment settled or answered
with an explicit status (never lost), money conserved, the daemon still running, one WARNING
line with the cause and advice, status showing the fault until the module answers again, and
the next payments settling once Bluetooth is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from bleak import BleakClient
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from blegw_harness.chain import _bond_with
from wearable_sim.policy import Prompt

from ..vbluez.conftest import start_peripheral, stop_peripheral
from .conftest import Mosquitto
from .test_recovery import Daemon, running_daemon


class SlowWhenTold:
    """Approves every request, after ``delay`` seconds: a person taking their time, so a
    fault can land while a request is in flight."""

    name = "approve"
    verification = "none"

    def __init__(self) -> None:
        self.delay = 0.0

    async def decide(self, prompt: Prompt) -> bool:
        await asyncio.sleep(self.delay)
        return True

    async def close(self) -> None:
        return None


@pytest_asyncio.fixture
async def slow() -> SlowWhenTold:
    return SlowWhenTold()


@pytest_asyncio.fixture
async def daemon(mosquitto: Mosquitto, tmp_path: Path,
                 slow: SlowWhenTold) -> AsyncIterator[Daemon]:
    async with running_daemon(mosquitto, tmp_path, slow) as running:
        yield running


def _explicit(outcome: dict[str, Any]) -> None:
    """An answer the terminal can act on: never pending, never lost."""
    assert outcome["state"] in ("settled", "rejected", "declined"), outcome
    if outcome["state"] == "rejected":
        assert outcome["reason"].startswith("gateway:"), outcome


async def _in_flight(daemon: Daemon) -> None:
    for _ in range(100):
        if (await daemon.module())["in_flight"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the payment never reached the module")


async def _pairable(daemon: Daemon, adapter: str) -> bool:
    bus = await MessageBus(bus_address=daemon.chain.radio.bus_address).connect()
    try:
        reply = await bus.call(Message(
            destination="org.bluez", path=f"/org/bluez/{adapter}",
            interface="org.freedesktop.DBus.Properties", member="Get", signature="ss",
            body=["org.bluez.Adapter1", "Pairable"]))
    finally:
        bus.disconnect()
    assert reply is not None and reply.message_type == MessageType.METHOD_RETURN, reply
    return bool(reply.body[0].value)


async def _module_back(daemon: Daemon, restarts: int) -> None:
    """The simulator saw bluetoothd come back and registered again."""
    for _ in range(100):
        if daemon.chain.module.peripheral.restarts_seen >= restarts:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the simulator never registered again")


@pytest.mark.needs_vbluez_control("fault injection")
async def test_adapter_removed_mid_payment_is_answered_and_payments_settle_once_it_is_back(
        daemon: Daemon, slow: SlowWhenTold) -> None:
    """The gateway's dongle is pulled while the owner decides, and stays out for a while:
    the request in flight and the next one get an explicit answer; status says the adapter is
    missing with advice; plugged back, the next payment settles and the fault clears."""
    radio = daemon.chain.radio.control
    assert (await daemon.pay(100, "unplug-warm-000"))["state"] == "settled"
    slow.delay = 1.0
    pending = asyncio.create_task(daemon.pay(110, "unplug-pay-0001"))
    await _in_flight(daemon)
    await radio.remove_adapter("hci0")
    _explicit(first := await pending)
    assert first["state"] == "rejected", first
    # The request in flight is the host's fault, not the module's: not link_lost.
    module = await daemon.module()
    assert module["last_error_code"] == "adapter_missing", module
    assert "link_lost" not in daemon.log_text() and "was lost" not in daemon.log_text()
    slow.delay = 0.0
    second = await daemon.pay(120, "unplug-pay-0002")
    assert (second["state"], second["reason"]) == ("rejected", "gateway:module_unreachable")
    module = await daemon.module()
    assert module["last_error_code"] == "adapter_missing"
    assert "Bluetooth adapter hci0 not found" in module["last_error"]
    assert "is it plugged in" in module["last_error"]
    short = daemon.module_id[:8]
    assert f"WARNING module {short}: request " in daemon.log_text()
    assert "Bluetooth adapter hci0 not found. is it plugged in?" in daemon.log_text()

    await radio.restore_adapter("hci0")
    again = await daemon.pay(130, "unplug-pay-0003")
    assert again["state"] == "settled", again
    module = await daemon.module()
    assert (module["last_error"], module["link"]) == (None, "connected")
    assert f"INFO module {short}: recovered (was: adapter_missing)" in daemon.log_text()
    assert module["outcomes"]["ok"] == 2
    assert sum(module["outcomes"].values()) == 4  # every request answered, none lost
    (link,) = await radio.links()
    assert link.encrypted  # the stored bond re-encrypted the link: no new pairing
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("fault injection")
async def test_bluetoothd_restart_with_bonds_kept_the_module_registers_again_and_payments_settle(
        daemon: Daemon, slow: SlowWhenTold) -> None:
    """bluetoothd restarts while a payment waits for the owner: that payment is answered,
    the simulator registers its application and advert again (Pairable back to off), the
    stored bond re-encrypts the next link and the next payments settle."""
    radio = daemon.chain.radio.control
    assert (await daemon.pay(100, "restart-warm-00"))["state"] == "settled"
    slow.delay = 1.0
    pending = asyncio.create_task(daemon.pay(110, "restart-pay-001"))
    await _in_flight(daemon)
    await radio.restart_bluetoothd(0.5)
    _explicit(await pending)
    module = await daemon.module()
    assert module["last_error_code"] == "bluez_restarted", module
    assert "bluetoothd stopped or restarted" in module["last_error"]
    short = daemon.module_id[:8]
    assert f"WARNING module {short}: request " in daemon.log_text()
    assert "the link to module" not in daemon.log_text()  # not taken for the module's loss
    slow.delay = 0.0
    await _module_back(daemon, 1)
    assert await _pairable(daemon, "hci1") is False  # no bond can be added behind our back
    for i in range(3):
        outcome = await daemon.pay(120 + i, f"restart-pay-{i + 2:03d}")
        assert outcome["state"] == "settled", outcome
    (link,) = await radio.links()
    assert link.encrypted
    module = await daemon.module()
    assert module["last_error"] is None
    assert module["outcomes"]["ok"] >= 4
    assert sum(module["outcomes"].values()) == 5
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("fault injection")
async def test_bluetoothd_restart_with_the_gateway_bonds_wiped_needs_pairing_never_silently(
        daemon: Daemon) -> None:
    """The gateway's /var/lib/bluetooth is lost in a restart: the module still holds its bond
    and is not pairable, so no new bond is made behind the owner's back; the payment is
    answered with an explicit status that says to pair again, and after `blegw pair` (here:
    the module in pairing mode and a bond from hci0) payments settle."""
    radio = daemon.chain.radio.control
    module_sim = daemon.chain.module
    assert (await daemon.pay(100, "wiped-warm-0000"))["state"] == "settled"
    handled = len(module_sim.handled)
    await radio.restart_bluetoothd(0.3, wipe_bonds=("hci0",))
    await _module_back(daemon, 1)
    outcome = await daemon.pay(150, "wiped-pay-00001")
    # The link comes up (no security needed to connect); the first write needs the bond.
    assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:link_error")
    module = await daemon.module()
    assert module["last_error_code"] == "bond_refused"
    assert "pair it again with `blegw pair`" in module["last_error"]
    assert len(module_sim.handled) == handled  # nothing reached the module unbonded
    assert all(link.encrypted for link in await radio.links())
    assert "WARNING module" in daemon.log_text()

    # The honest path: pair again (the module in pairing mode), then pay.
    await module_sim.set_pairing_mode(True)
    await _bond_with("hci0", daemon.module_address)
    await module_sim.set_pairing_mode(False)
    again = await daemon.pay(160, "wiped-pay-00002")
    assert again["state"] == "settled", again
    assert (await daemon.module())["last_error"] is None
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("fault injection")
async def test_module_restarted_with_another_gatt_layout_stale_cache_is_rediscovered(
        daemon: Daemon) -> None:
    """BlueZ caches the module's GATT database (``Cache = always``); the module restarts
    while away with its attributes at other handles. The next connect shows the stale
    database: the daemon notices (Invalid Handle on the cached status characteristic), lets
    the module's Service Changed make BlueZ rediscover, connects again and the payment
    settles, with one WARNING naming the stale cache and the fault cleared."""
    radio = daemon.chain.radio.control
    await radio.configure(gatt_cache=True)
    assert (await daemon.pay(100, "stale-warm-0000"))["state"] == "settled"
    await daemon.drop_link()
    module_sim = daemon.chain.module
    await module_sim.stop()
    await module_sim.start()  # handles move on: the cached ones are stale
    for i in range(3):
        outcome = await daemon.pay(110 + i, f"stale-pay-{i:05d}")
        assert outcome["state"] == "settled", outcome
    text = daemon.log_text()
    short = daemon.module_id[:8]
    assert f"WARNING module {short}: its GATT database changed and the copy in use is " \
        "stale" in text
    assert f"WARNING module {short}: connect attempt 1 of 4 failed: BlueZ's copy of the GATT" \
        " database" in text
    module = await daemon.module()
    assert module["last_error"] is None
    assert module["outcomes"] == {"ok": 4}
    assert len(await radio.links()) == 1
    await daemon.books_balance()


async def test_module_restarted_under_a_live_link_stale_objects_are_rediscovered(
        daemon: Daemon) -> None:
    """The module restarts while the link stays up (the controllers keep it): BlueZ replaces
    the module's GATT objects, the paths bleak resolved at connect are gone. The daemon's
    first write of the next payment meets the vanished characteristic; the module never got
    it, so the daemon connects afresh and sends it again: the payment settles once."""
    assert (await daemon.pay(100, "live-warm-00000"))["state"] == "settled"
    module_sim = daemon.chain.module
    await module_sim.stop()
    await module_sim.start()
    assert (await daemon.module())["connected"]  # the link survived the restart
    handled = len(module_sim.handled)
    outcome = await daemon.pay(120, "live-pay-000001")
    assert outcome["state"] == "settled", outcome
    assert len(module_sim.handled) == handled + 1  # delivered once
    assert f"WARNING module {daemon.module_id[:8]}: its GATT database changed and the copy " \
        "in use is stale" in daemon.log_text()
    assert (await daemon.pay(130, "live-pay-000002"))["state"] == "settled"
    module = await daemon.module()
    assert module["last_error"] is None
    assert module["outcomes"] == {"ok": 3}
    await daemon.books_balance()


async def _until_connected(daemon: Daemon, connected: bool = True) -> None:
    for _ in range(200):
        if (await daemon.module())["connected"] is connected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the link never became connected={connected}")


def _connect_seconds(daemon: Daemon, outcome: dict[str, Any]) -> float:
    """How long the gateway spent connecting for this payment (its relay timings)."""
    return float(daemon.chain.platform.timings[bytes.fromhex(outcome["id"])]["gw_connect"])


@pytest.mark.needs_vbluez_control("fault injection")
async def test_keep_links_up_first_request_does_not_pay_the_connect(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """With ``keep_links_up`` the daemon connects before any request and reconnects in the
    background after a loss: each payment's connect time is zero. A module away is logged
    once at WARNING with advice, its return at INFO."""
    async with running_daemon(mosquitto, tmp_path,
                              ble_extra="keep_links_up = true\n") as daemon:
        await _until_connected(daemon)
        first = await daemon.pay(100, "keep-pay-000001")
        assert first["state"] == "settled", first
        assert _connect_seconds(daemon, first) == 0.0
        await daemon.drop_link()
        await _until_connected(daemon)
        again = await daemon.pay(110, "keep-pay-000002")
        assert again["state"] == "settled", again
        assert _connect_seconds(daemon, again) == 0.0
        radio = daemon.chain.radio.control
        await radio.set_responsive("hci1", False)
        await daemon.drop_link()
        short = daemon.module_id[:8]
        for _ in range(100):
            if f"WARNING module {short}: cannot keep the link up" in daemon.log_text():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no WARNING while the module was away")
        await radio.set_responsive("hci1", True)
        await _until_connected(daemon)
        text = daemon.log_text()
        assert text.count(f"WARNING module {short}: cannot keep the link up") == 1
        assert f"INFO module {short}: link up again (was: " in text
        third = await daemon.pay(120, "keep-pay-000003")
        assert third["state"] == "settled", third
        assert _connect_seconds(daemon, third) == 0.0
        assert len(await radio.links()) == 1  # one link: the keeper and requests never race
        await daemon.books_balance()


@pytest.mark.needs_vbluez_control("links")
async def test_without_keep_links_up_the_first_request_pays_the_connect(
        daemon: Daemon) -> None:
    """The default: nothing connects until a request comes, which then pays the connect."""
    await asyncio.sleep(1.5)
    assert (await daemon.module())["connected"] is False
    assert await daemon.chain.radio.control.links() == []
    first = await daemon.pay(100, "lazy-pay-000001")
    assert first["state"] == "settled", first
    assert _connect_seconds(daemon, first) > 0.0
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("add_adapter, configure")
async def test_out_of_connection_slots_is_an_explicit_status_until_a_slot_frees(
        daemon: Daemon) -> None:
    """The gateway's controller holds one link at most, and another program's link takes
    it: the payment is answered at once (no retry can help), status says the adapter is out
    of connection slots with advice; once the other link goes, the next payment settles."""
    radio = daemon.chain.radio
    assert (await daemon.pay(100, "slots-warm-0000"))["state"] == "settled"
    await daemon.drop_link()
    await radio.control.configure(max_links=1)
    radio.adapters.append(await radio.control.add_adapter())  # hci2: some other device
    other = await start_peripheral(radio, "hci2", "OtherDevice")
    try:
        # Another program on the gateway holds a link from hci0: its only slot.
        async with BleakClient(other.address, bluez={"adapter": "hci0"}):
            outcome = await daemon.pay(110, "slots-pay-00001")
            assert (outcome["state"], outcome["reason"]) == \
                ("rejected", "gateway:module_unreachable")
            module = await daemon.module()
            assert module["last_error_code"] == "out_of_slots"
            assert "adapter hci0 is out of connection slots" in module["last_error"]
            assert "give the gateway its own adapter" in module["last_error"]
            assert "connect attempt" not in daemon.log_text()  # not retried: cannot help
    finally:
        await stop_peripheral(other)
    again = await daemon.pay(120, "slots-pay-00002")
    assert again["state"] == "settled", again
    module = await daemon.module()
    assert module["last_error"] is None
    assert module["outcomes"] == {"ok": 2, "module_unreachable": 1}
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("fault injection")
async def test_keep_links_up_sees_the_adapter_go_and_come_back_without_any_request(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """With ``keep_links_up`` the daemon notices the adapter leaving on its own: one WARNING
    with cause and advice while it is gone, one INFO when the link is back, and the next
    payment finds the link already up."""
    async with running_daemon(mosquitto, tmp_path,
                              ble_extra="keep_links_up = true\n") as daemon:
        radio = daemon.chain.radio.control
        short = daemon.module_id[:8]
        await _until_connected(daemon)
        await radio.remove_adapter("hci0")
        await _until_connected(daemon, False)
        warning = (f"WARNING module {short}: cannot keep the link up: Bluetooth adapter hci0 "
                   "not found. is it plugged in?")
        for _ in range(100):
            if warning in daemon.log_text():
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("no WARNING while the adapter was gone")
        module = await daemon.module()  # no request was in flight: status says it too
        assert (module["link"], module["last_error_code"]) == ("failing", "adapter_missing")
        assert "is it plugged in" in module["last_error"] and module["last_error_at"]
        assert any("adapter_missing" in line for line in
                   (await daemon.status())["last_errors"])
        await asyncio.sleep(2.5)  # more keeper passes: still one line
        await radio.restore_adapter("hci0")
        await _until_connected(daemon)
        text = daemon.log_text()
        assert text.count(warning) == 1
        assert f"INFO module {short}: link up again (was: adapter_missing)" in text
        module = await daemon.module()  # cleared on recovery
        assert (module["link"], module["last_error"], module["last_error_code"]) == \
            ("connected", None, None)
        outcome = await daemon.pay(100, "keep-unplug-001")
        assert outcome["state"] == "settled", outcome
        assert _connect_seconds(daemon, outcome) == 0.0
        await daemon.books_balance()
