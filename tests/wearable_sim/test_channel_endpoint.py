"""The module's end of the secure channel on its own: hostile envelopes from whoever holds the
link, and the PIN and fingerprint verification on real files.

The secure element and its state directory are real (keys, certificate, trust anchors, PIN
hash, wrong-entry counter, finger template); the platform's side is the real responder with
real channel keys from a CA. Nothing here needs the radio.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from e2e import CertificateAuthority, Suite, TrustAnchors, generate_private_key
from secure_channel import (
    USAGE_CHANNEL,
    ChannelResponder,
    ChannelSuite,
    PlatformCredentials,
    ResponderPolicy,
)
from secure_channel.carriage import ChannelOpen, ChannelUnits, decode_carried
from secure_channel.errors import ChannelErrorCode
from secure_channel.wire import ContentType, decode_error
from wearable_sim.channel_endpoint import ModuleChannel
from wearable_sim.element import SecureElement
from wearable_sim.policy import FixedPolicy, Prompt
from wearable_sim.state import ModuleState
from wearable_sim.verification import (
    PIN_TRIES,
    FingerprintSensor,
    NoMatch,
    PinLocked,
    PinStore,
    WrongPin,
)

PLATFORM_ID = b"P" * 16
SUITE = ChannelSuite.DHE_P256_AES128GCM_SHA256
PROMPT = Prompt(100, "EUR", "shop", "r", "d")


def make(tmp_path: Path, platform_id: bytes = PLATFORM_ID
         ) -> tuple[ModuleChannel, PlatformCredentials]:
    ca = CertificateAuthority.generate(Suite.P256_SHA256)
    element = SecureElement(ModuleState(tmp_path / "module"), (Suite.P256_SHA256,))
    now = int(time.time())
    element.install_certificate(ca.issue(element.public_key(Suite.P256_SHA256),
                                         element.module_id, not_before=now - 60,
                                         not_after=now + 3600).encode())
    element.install_trust_anchors(TrustAnchors(platform_id, {Suite.P256_SHA256: ca.public_key}))
    key = generate_private_key(Suite.P256_SHA256)
    cert = ca.issue(key.public_key, PLATFORM_ID, not_before=now - 60, not_after=now + 3600,
                    usage=USAGE_CHANNEL)
    return (ModuleChannel(element, FixedPolicy(True)),
            PlatformCredentials({Suite.P256_SHA256: (key, cert)},
                                {Suite.P256_SHA256: ca.public_key}))


def error_code(envelope: bytes) -> int:
    carried = decode_carried(envelope, to_module=False)
    assert isinstance(carried, ChannelUnits)
    (unit,) = carried.units
    assert unit[0] == ContentType.ERROR
    return decode_error(unit)


async def handshake(module: ModuleChannel, platform: PlatformCredentials) -> ChannelResponder:
    responder = ChannelResponder(platform, ResponderPolicy([SUITE], lambda cert: False))
    back = await module.answer(ChannelOpen((int(SUITE),)).encode())
    now = time.time()
    for _ in range(3):
        carried = decode_carried(back, to_module=False)
        assert isinstance(carried, ChannelUnits)
        out = [u for unit in carried.units for u in responder.receive(unit, now)]
        if responder.session is not None:
            return responder
        back = await module.answer(ChannelUnits(tuple(out), True).encode())
    raise AssertionError("handshake did not finish")


@pytest.mark.parametrize("payload", [
    b"", b"\xa3\x01\x01\x02\x18\x20", b"\xa3\x01\x01\x02\x18\x20\x03\xa0",
    ChannelUnits((b"\x17" + bytes(40),), True).encode(),        # a record, no session
    ChannelUnits((b"\x16\xa1\x01\x02",), True).encode(),         # a handshake unit, no open
    ChannelUnits((b"x",), False).encode(),                      # the other direction's type
    ChannelOpen((0x9999,)).encode(),                            # a suite nobody knows
    b"\xa3\x01\x01\x02\x18\x20\x03\xa1\x01\x85" + b"\x41x" * 5,  # five units
], ids=["empty", "truncated", "empty-body", "record-without-session", "unit-without-open",
        "wrong-direction", "unknown-suite", "too-many-units"])
async def test_hostile_channel_envelope_gets_an_error_unit_and_the_module_serves_on(
        tmp_path: Path, payload: bytes) -> None:
    module, platform = make(tmp_path)
    code = error_code(await module.answer(payload))
    assert code in {int(c) for c in ChannelErrorCode}
    responder = await handshake(module, platform)         # the honest open still works
    assert responder.session is not None
    assert module.session is not None


async def test_channel_certificate_for_another_platform_is_refused(tmp_path: Path) -> None:
    """The module's provisioning names the platform: a channel certificate from the same CA
    for any other subject (another deployment's platform) does not open a channel."""
    module, platform = make(tmp_path, platform_id=b"Q" * 16)
    responder = ChannelResponder(platform, ResponderPolicy([SUITE], lambda cert: False))
    back = await module.answer(ChannelOpen((int(SUITE),)).encode())
    carried = decode_carried(back, to_module=False)
    assert isinstance(carried, ChannelUnits)
    server_hello = responder.receive(carried.units[0], time.time())
    back = await module.answer(ChannelUnits(tuple(server_hello), True).encode())
    carried = decode_carried(back, to_module=False)
    assert isinstance(carried, ChannelUnits)
    finished = responder.receive(carried.units[0], time.time())
    assert error_code(await module.answer(ChannelUnits(tuple(finished), True).encode())) == \
        ChannelErrorCode.UNEXPECTED_MESSAGE
    assert module.session is None


def test_pin_is_stored_hashed_and_its_counter_survives_a_restart(tmp_path: Path) -> None:
    state = ModuleState(tmp_path / "m")
    PinStore(state).set("135790")
    stored = (tmp_path / "m" / "pin").read_bytes()
    assert b"135790" not in stored
    assert len(stored) == 48
    assert (tmp_path / "m" / "pin").stat().st_mode & 0o777 == 0o600
    with pytest.raises(WrongPin) as wrong:
        PinStore(state).check("000000")
    assert wrong.value.left == PIN_TRIES - 1
    restarted = PinStore(ModuleState(tmp_path / "m"))      # a restart keeps the count
    assert restarted.wrong_entries() == 1
    restarted.check("135790")                               # right: the count resets
    assert restarted.wrong_entries() == 0
    for _ in range(PIN_TRIES - 1):
        with pytest.raises(WrongPin):
            restarted.check("1")
    with pytest.raises(PinLocked):
        restarted.check("2")
    with pytest.raises(PinLocked):
        restarted.check("135790")                          # locked: even the right PIN
    restarted.set("2468")                                   # provisioning unlocks
    restarted.check("2468")
    with pytest.raises(ValueError, match="4 to 12 digits"):
        restarted.set("12a4")


def test_fingerprint_sensor_matches_only_the_enrolled_finger(tmp_path: Path) -> None:
    sensor = FingerprintSensor(ModuleState(tmp_path / "m"))
    sensor.enroll()
    for _ in range(50):
        sensor.verify(sensor.capture("match"))
        with pytest.raises(NoMatch):
            sensor.verify(sensor.capture("other"))
    with pytest.raises(NoMatch):
        sensor.verify(b"\x00" * 5)                          # a truncated capture


async def test_pin_check_runs_off_the_event_loop(tmp_path: Path) -> None:
    """scrypt takes tens of milliseconds: the loop keeps running while it does."""
    from wearable_sim.verification import ScriptedInput, verify_pin
    store = PinStore(ModuleState(tmp_path / "m"))
    store.set("2468")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await verify_pin(store, ScriptedInput(next_pin="2468"), PROMPT)
    task.cancel()
    assert ticks > 1
