"""The pure parts of the virtual radio: timing model, pairing table, ATT mapping, config."""

from __future__ import annotations

import pytest

from vbluez import ConfigError, RadioConfig
from vbluez.att import AttError, att_error_from_app_error, central_error_from_att
from vbluez.model import Advertisement, full_uuid
from vbluez.objects import _split_sig
from vbluez.pairing import IoCapability, PairingMethod, plan_pairing
from vbluez.timing import ConnectionTiming


def test_next_event_is_strictly_after_now() -> None:
    t = ConnectionTiming(interval=0.015, anchor=10.0)
    assert t.next_event(10.0) == pytest.approx(10.015)
    assert t.next_event(10.0149) == pytest.approx(10.015)
    assert t.next_event(10.015) == pytest.approx(10.030)
    assert t.events_after(10.0, 3) == pytest.approx(10.045)


def test_timing_off_means_now() -> None:
    t = ConnectionTiming()
    assert not t.enabled
    assert t.next_event(5.0) == 5.0


@pytest.mark.parametrize("interval", [0.005, 4.5])
def test_interval_out_of_range_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="connection interval"):
        ConnectionTiming(interval=interval)


@pytest.mark.parametrize(
    ("initiator", "responder", "method"),
    [
        ("DisplayYesNo", "DisplayYesNo", PairingMethod.NUMERIC_COMPARISON),
        ("KeyboardDisplay", "KeyboardDisplay", PairingMethod.NUMERIC_COMPARISON),
        ("NoInputNoOutput", "DisplayYesNo", PairingMethod.JUST_WORKS),
        ("DisplayYesNo", "NoInputNoOutput", PairingMethod.JUST_WORKS),
        ("KeyboardOnly", "DisplayOnly", PairingMethod.PASSKEY_ENTRY),
        ("DisplayOnly", "KeyboardOnly", PairingMethod.PASSKEY_ENTRY),
        ("KeyboardOnly", "KeyboardOnly", PairingMethod.PASSKEY_ENTRY),
        ("DisplayOnly", "DisplayYesNo", PairingMethod.JUST_WORKS),
    ],
)
def test_pairing_method_table(initiator: str, responder: str, method: PairingMethod) -> None:
    plan = plan_pairing(IoCapability(initiator), IoCapability(responder))
    assert plan.method is method
    assert plan.authenticated == (method is not PairingMethod.JUST_WORKS)


def test_passkey_roles() -> None:
    plan = plan_pairing(IoCapability.KEYBOARD_ONLY, IoCapability.DISPLAY_ONLY)
    assert plan.responder_displays and not plan.initiator_displays


def test_empty_agent_capability_is_keyboard_display() -> None:
    assert IoCapability.from_agent("") is IoCapability.KEYBOARD_DISPLAY
    with pytest.raises(ValueError):
        IoCapability.from_agent("Telepathy")


def test_att_error_translation_both_ends() -> None:
    assert att_error_from_app_error("org.bluez.Error.NotPermitted", reading=True) == \
        AttError.READ_NOT_PERMITTED
    assert att_error_from_app_error("org.bluez.Error.NotPermitted", reading=False) == \
        AttError.WRITE_NOT_PERMITTED
    assert att_error_from_app_error("org.bluez.Error.ATT.0x81", reading=False) == 0x81
    assert att_error_from_app_error("org.freedesktop.DBus.Error.Failed", reading=False) == \
        AttError.UNLIKELY
    err = central_error_from_att(AttError.WRITE_NOT_PERMITTED)
    assert (err.name, err.text) == ("org.bluez.Error.NotPermitted", "Write not permitted")
    assert central_error_from_att(0x0E).text == "Operation failed with ATT error: 0x0e"
    assert central_error_from_att(AttError.INSUFFICIENT_ENCRYPTION).name == \
        "org.bluez.Error.NotPermitted"


def test_uuid_normalisation() -> None:
    assert full_uuid("180D") == "0000180d-0000-1000-8000-00805f9b34fb"
    with pytest.raises(ValueError):
        full_uuid("xyz")


def test_advertising_budget() -> None:
    adv = Advertisement("o", "/a", None, {  # type: ignore[arg-type]
        "Type": "peripheral", "ServiceUUIDs": ["6d2a0001-8f3c-4b6e-9a57-3c1d2e4f5a60"],
        "ServiceData": {"fffd": b"\x01\x02\x03\x04"}})
    # flags 3 + one 128-bit UUID 18 + service data under a 16-bit UUID 2+2+4
    assert adv.payload_length() == 29


def test_config_rejects_bad_values_atomically() -> None:
    config = RadioConfig()
    with pytest.raises(ConfigError, match="mtu"):
        config.update({"conn_interval_ms": 15.0, "mtu": 10})
    assert config.conn_interval_ms == 0.0
    with pytest.raises(ConfigError, match="unknown setting"):
        config.update({"colour": "blue"})
    with pytest.raises(ConfigError):
        RadioConfig.from_json("[1, 2]")
    assert RadioConfig.from_json(RadioConfig(mtu=23).to_json()).mtu == 23


def test_signature_splitting_for_introspection() -> None:
    assert _split_sig("oa{sv}") == ["o", "a{sv}"]
    assert _split_sig("a{oa{sa{sv}}}") == ["a{oa{sa{sv}}}"]
    assert _split_sig("(ss)ay") == ["(ss)", "ay"]
