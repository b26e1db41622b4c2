"""The simulated module over the virtual radio, driven by bleak as a plain client."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner

from ble_profile import (
    AdvertData,
    Command,
    ErrorCode,
    KeepaliveStatus,
    ModuleInfo,
    parse_error,
    uuids,
)
from e2e import (
    BadSignature,
    ConfirmationResponse,
    Decision,
    ErrorResponse,
    Suite,
    UserVerification,
    decode_envelope,
    encode_envelope,
    verify_confirmation,
)
from e2e import ErrorCode as E2ECode
from vbluez import VirtualBluez
from wearable_sim.policy import ButtonPolicy

from .conftest import assert_signs_honest_request, make_request, start_module


@pytest.fixture(params=list(Suite), ids=lambda s: s.name)
def suite(request: pytest.FixtureRequest) -> Suite:
    return request.param  # type: ignore[no-any-return]


async def test_advert_info_and_ping(vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    module, element, _, _ = await start_module(vbluez, tmp_path / "m", "approve",
                                               pairing_mode=True)
    try:
        found = await BleakScanner.discover(timeout=1, return_adv=True,
                                            bluez={"adapter": "hci0"})
        (_, adv), = [v for v in found.values() if uuids.SERVICE in v[1].service_uuids]
        data = AdvertData.decode(adv.service_data[uuids.SERVICE_DATA_UUID])
        assert data.short_id == element.module_id[:4]
        assert data.pairing_mode
        link = await link_to(module)
        info = ModuleInfo.decode(bytes(await link.client.read_gatt_char(uuids.MODULE_INFO)))
        assert info.module_id == element.module_id
        assert set(info.suites) == {1, 2}
        assert await link.client.read_gatt_char(uuids.CONTROL_POINT_LENGTH) == b"\x02\x00"
        await link.send(Command.PING, b"are you there")
        echo = await link.receive()
        assert (echo.command, echo.payload) == (Command.PING, b"are you there")
    finally:
        await module.stop()


@pytest.mark.parametrize("decision", [Decision.APPROVE, Decision.DECLINE])
async def test_confirmation_signed_for_the_exact_request(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any, suite: Suite,
        decision: Decision) -> None:
    policy = "approve" if decision is Decision.APPROVE else "decline"
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", policy)
    try:
        link = await link_to(module)
        envelope, request = make_request(suite)
        response = await link.request(envelope)
        assert isinstance(response, ConfirmationResponse)
        assert response.decision is decision
        verified = verify_confirmation(envelope, response, certs[suite], cas[suite].public_key,
                                       now=int(time.time()), last_counter=0)
        assert verified.response.counter == 1
        _, other = make_request(suite, amount=request.amount_minor + 1)
        with pytest.raises(BadSignature):
            verify_confirmation(encode_envelope(other), response, certs[suite],
                                cas[suite].public_key, now=int(time.time()), last_counter=0)
    finally:
        await module.stop()


@pytest.mark.vbluez(mtu=23)
async def test_confirmation_at_mtu_23(vbluez: VirtualBluez, tmp_path: Path,
                                      link_to: Any) -> None:
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", "approve")
    try:
        link = await link_to(module)
        assert link.size == 20
        await assert_signs_honest_request(link, certs, cas, Suite.SM2_SM3)
    finally:
        await module.stop()


async def test_keepalives_while_waiting_then_button(vbluez: VirtualBluez, tmp_path: Path,
                                                    link_to: Any) -> None:
    policy = ButtonPolicy(tmp_path / "button.sock")
    await policy.start()
    module, _, _, _ = await start_module(vbluez, tmp_path / "m", policy,
                                         keepalive_interval=0.1)
    try:
        link = await link_to(module)
        envelope, _ = make_request(Suite.P256_SHA256)
        await link.send(Command.MSG, envelope)
        await link.wait_keepalives(KeepaliveStatus.USER_ACTION_NEEDED, 3)
        assert link.inbox.empty()  # still waiting for the owner: no answer yet
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "button.sock"))
        writer.write(b"approve\n")
        await writer.drain()
        assert await reader.readline() == b"ok\n"
        writer.close()
        message = await link.receive()
        from e2e import decode_envelope
        response = decode_envelope(message.payload)
        assert isinstance(response, ConfirmationResponse)
        assert response.decision is Decision.APPROVE
        assert response.user_verification is UserVerification.PRESENCE
    finally:
        await module.stop()


async def test_cancel_and_deadline(vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    module, _, _, _ = await start_module(vbluez, tmp_path / "m", "never",
                                         keepalive_interval=0.1)
    try:
        link = await link_to(module)
        envelope, _ = make_request(Suite.P256_SHA256)
        await link.send(Command.MSG, envelope)
        await link.wait_keepalives(KeepaliveStatus.USER_ACTION_NEEDED, 1)  # owner is asked
        await link.send(Command.CANCEL, b"")
        from e2e import decode_envelope
        cancelled = decode_envelope((await link.receive()).payload)
        assert isinstance(cancelled, ErrorResponse)
        assert cancelled.code is E2ECode.CANCELLED
        # Expiry is in whole seconds: expires_in=1 could leave a few milliseconds, and a loaded
        # machine then delivered an already expired request (refused, not declined).
        envelope, _ = make_request(Suite.P256_SHA256, expires_in=3, tx=b"\x08" * 16)
        response = await link.request(envelope, timeout=10)
        assert isinstance(response, ConfirmationResponse)
        assert response.decision is Decision.DECLINE  # the deadline declines
        assert module.handled == ["cancelled", "deadline"]
    finally:
        await module.stop()


async def test_busy_while_a_request_is_pending(vbluez: VirtualBluez, tmp_path: Path,
                                               link_to: Any) -> None:
    module, _, _, _ = await start_module(vbluez, tmp_path / "m", "never")
    try:
        link = await link_to(module)
        await link.send(Command.MSG, make_request(Suite.P256_SHA256)[0])
        await link.send(Command.MSG, make_request(Suite.P256_SHA256, tx=b"\x09" * 16)[0])
        busy = await link.receive()
        assert busy.command is Command.ERROR
        assert parse_error(busy.payload) is ErrorCode.BUSY
    finally:
        await module.stop()


@pytest.mark.needs_vbluez_control("adapters")
async def test_garbage_is_answered_and_the_module_keeps_working(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", "approve")
    try:
        link = await link_to(module)
        for frame, code in [(b"\x00abc", ErrorCode.INVALID_SEQ),
                            (b"\x99\x00\x00", ErrorCode.INVALID_CMD),
                            (b"\x83\xff\xff", ErrorCode.INVALID_LEN),
                            (b"\x83", ErrorCode.INVALID_LEN)]:
            await link.write_raw(frame)
            answer = await link.receive()
            assert answer.command is Command.ERROR
            assert parse_error(answer.payload) is code
        for junk in (b"\xff\xfe", b"not cbor at all", encode_envelope(
                ErrorResponse(E2ECode.BUSY, b"", "x"))[:-1]):
            reply = await link.request(junk)
            assert isinstance(reply, ErrorResponse)
            assert reply.code is E2ECode.MALFORMED
        await assert_signs_honest_request(link, certs, cas, Suite.P256_SHA256)
        assert (await vbluez.control.adapters())[1].name == "hci1"
        assert module.element.state.counter() == 1
    finally:
        await module.stop()


async def test_expired_request_is_refused(vbluez: VirtualBluez, tmp_path: Path,
                                          link_to: Any) -> None:
    module, _, _, _ = await start_module(vbluez, tmp_path / "m", "approve")
    try:
        link = await link_to(module)
        reply = await link.request(make_request(Suite.SM2_SM3, expires_in=-5)[0])
        assert isinstance(reply, ErrorResponse)
        assert reply.code is E2ECode.EXPIRED
        assert module.element.state.counter() == 0  # nothing was signed
    finally:
        await module.stop()


def test_key_files_are_owner_only(tmp_path: Path) -> None:
    from wearable_sim.element import SecureElement
    from wearable_sim.state import ModuleState
    SecureElement(ModuleState(tmp_path / "m"))
    keys = sorted((tmp_path / "m" / "keys").iterdir())
    assert [k.name for k in keys] == ["p256.key", "sm2.key"]
    for k in keys:
        assert stat.S_IMODE(k.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o700


async def test_counter_persists_across_a_process_restart(vbluez: VirtualBluez,
                                                         tmp_path: Path) -> None:
    """The module as a real subprocess (`wearable-sim run`), restarted between two approvals."""
    from wearable_sim.element import SecureElement
    from wearable_sim.state import ModuleState

    from .conftest import LinkClient, provision
    state = tmp_path / "m"
    provision(SecureElement(ModuleState(state)))
    counters = []
    for _round in range(2):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "wearable_sim", "run", "--adapter", "hci1", "--state",
            str(state), "--policy", "approve", "--bus", vbluez.bus_address, "--pairing-mode",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
            assert line.startswith("ready module_id="), line
            device = await BleakScanner.find_device_by_filter(
                lambda _d, adv: uuids.SERVICE in adv.service_uuids, timeout=10,
                bluez={"adapter": "hci0"})
            assert device is not None
            async with BleakClient(device, bluez={"adapter": "hci0"}) as client:
                link = LinkClient(client)
                await link.start()
                envelope, _ = make_request(Suite.P256_SHA256, tx=bytes([_round]) * 16)
                response = await link.request(envelope)
                assert isinstance(response, ConfirmationResponse)
                counters.append(response.counter)
        finally:
            proc.send_signal(15)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert counters == [1, 2]
    info = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "wearable_sim", "info", "--state", str(state),
        stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(info.communicate(), 30)
    assert info.returncode == 0
    assert '"counter": 2' in out.decode()
    assert os.listdir(state / "keys") != []


async def test_a_fragment_sent_as_a_long_write_is_refused_whole(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    """A write with response longer than ATT MTU - 3 reaches the module as Prepare Write parts
    with offsets (BlueZ's long write); the module must not take the second part for a new
    fragment. One ERROR INVALID_LEN, then the next honest request is signed."""
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", "approve")
    try:
        link = await link_to(module)
        payload = bytes(range(256)) + b"x" * 44          # 300 bytes of data in one fragment
        frame = bytes([0x83]) + len(payload).to_bytes(2, "big") + payload
        assert len(frame) > 247 - 3                        # longer than the link's MTU - 3
        await link.write_raw(frame)
        answer = await link.receive()
        assert answer.command is Command.ERROR
        assert parse_error(answer.payload) is ErrorCode.INVALID_LEN
        assert module.handled[-1] == "framing-error:INVALID_LEN"
        await assert_signs_honest_request(link, certs, cas, Suite.P256_SHA256)
    finally:
        await module.stop()


@pytest.mark.needs_vbluez_control("adapters")
async def test_the_gateway_fragments_to_the_modules_control_point_length(
        vbluez: VirtualBluez, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A module that accepts fragments of at most 100 bytes on a link with MTU 247: the
    gateway's link reads the control point length when it connects and fragments to it, so a
    request of about 440 bytes goes out as 5 fragments and is signed (at 244-byte fragments the
    module would answer INVALID_LEN)."""
    import wearable_sim.module as module_code
    from blegw.link import ModuleLink

    monkeypatch.setattr(module_code, "CONTROL_POINT_LENGTH", 100)
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", "approve")
    address = (await vbluez.control.adapters())[1].address
    link = ModuleLink(address, "hci0", connect_timeout=10)
    try:
        envelope, _ = make_request(Suite.P256_SHA256)
        answer, _ = await link.exchange(envelope, time.time() + 20)
        response = decode_envelope(answer)
        assert isinstance(response, ConfirmationResponse), response
        verify_confirmation(envelope, response, certs[Suite.P256_SHA256],
                            cas[Suite.P256_SHA256].public_key, now=int(time.time()),
                            last_counter=0)
        assert link._fragment_size() == 100
        assert module.handled.count("framing-error:INVALID_LEN") == 0
    finally:
        await link.close()
        await module.stop()
