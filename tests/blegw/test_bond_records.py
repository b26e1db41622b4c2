"""How a module was bonded is recorded, older registries still load, and the guard's reading of
BlueZ's signals: hostile or unexpected bodies change nothing, a lost bond marks the module once.

No BlueZ here: the guard's signal handler and marks are fed D-Bus messages directly (the agent
and the checks against a running BlueZ are in test_bond_downgrade.py)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from dbus_fast import Message, MessageType, Variant

from blegw.config import ConfigError, parse_config
from blegw.pairing_guard import BondNotTrusted, PairingGuard
from blegw.registry import Registry, RegistryEntry, RegistryError

MODULE = bytes.fromhex("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
ADDRESS = "5A:00:00:00:00:02"
PATH = "/org/bluez/hci0/dev_5A_00_00_00_00_02"


def _entry(**changes: object) -> dict[str, object]:
    entry: dict[str, object] = {"module_id": MODULE.hex(), "address": ADDRESS, "name": "band",
                                "account": "alice", "suites": ["p256"], "paired_at": 1.0e9,
                                "revocation_token": ""}
    entry.update(changes)
    return entry


def test_a_registry_written_before_bonds_were_recorded_reads_as_unknown(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"modules": [_entry()]}))
    (entry,) = Registry(path).load()
    assert entry.bond == "unknown"
    registry = Registry(path)
    registry.add(RegistryEntry(**{**_entry(bond="numeric_comparison"),  # type: ignore[arg-type]
                                  "suites": ("p256",)}))
    assert json.loads(path.read_text())["modules"][0]["bond"] == "numeric_comparison"
    assert registry.load()[0].bond == "numeric_comparison"


@pytest.mark.parametrize("bond", ["authenticated", "", 1, None, ["just_works"]])
def test_a_forged_bond_kind_in_the_registry_is_refused_naming_the_entry(
        tmp_path: Path, bond: object) -> None:
    path = tmp_path / "registry.json"
    path.write_text(json.dumps({"modules": [_entry(bond=bond)]}))
    with pytest.raises(RegistryError, match="malformed entry 0: bond is not one of"):
        Registry(path).load()


def test_metrics_are_off_by_default_and_listen_on_loopback_when_enabled() -> None:
    base = {"gateway": {"id": "gw-1"}}
    assert parse_config(base, env={}).metrics_listen == ""
    assert parse_config({**base, "metrics": {"enabled": True}}, env={}).metrics_listen == \
        "127.0.0.1:9464"
    assert parse_config({**base, "metrics": {"enabled": True, "listen": "[::1]:9100"}},
                        env={}).metrics_listen == "[::1]:9100"
    assert parse_config(base, env={"BLEGW_METRICS_ENABLED": "true"}).metrics_listen == \
        "127.0.0.1:9464"
    for bad, message in (({"listen": "9464"}, "metrics.listen: expected host:port"),
                         ({"listen": "h:70000"}, "metrics.listen"),
                         ({"enabled": "yes"}, "metrics.enabled: expected bool"),
                         ({"port": 1}, "metrics.port: unknown key")):
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, "metrics": {"enabled": True, **bad}}, env={})


def _signal(member: str, body: list[object], signature: str, path: str = PATH) -> Message:
    return Message(message_type=MessageType.SIGNAL, path=path, member=member, body=body,
                   interface="org.freedesktop.DBus.Properties" if member == "PropertiesChanged"
                   else "org.freedesktop.DBus.ObjectManager", signature=signature)


def _guard(strength: str = "numeric_comparison") -> PairingGuard:
    guard = PairingGuard("hci0")
    guard.track(MODULE, ADDRESS, strength, "alice", 1.0e9)
    return guard


async def test_paired_false_marks_the_module_once_with_the_command(
        caplog: pytest.LogCaptureFixture) -> None:
    guard = _guard()
    caplog.set_level(logging.WARNING, "blegw.bonds")
    for _ in range(3):
        guard._on_message(_signal("PropertiesChanged", ["org.bluez.Device1", {
            "Paired": Variant("b", False)}, []], "sa{sv}as"))
    record = guard.records[MODULE]
    assert record.needs_re_pairing
    assert [r.getMessage() for r in caplog.records if "needs re-pairing" in r.getMessage()] \
        == [f"module {MODULE.hex()[:8]}: needs re-pairing: the bond with module {ADDRESS} "
            "was lost (BlueZ says it is no longer paired); no request goes to it until it is "
            "paired again. put the module in pairing mode, get a new enrollment code from the "
            f"platform and run `blegw pair {ADDRESS} --account alice --code CODE`"]
    with pytest.raises(BondNotTrusted):
        await guard.check(MODULE)
    # `blegw pair` records a new bond: the mark goes, requests may go again.
    guard.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9 + 60)
    assert not guard.records[MODULE].needs_re_pairing


async def test_a_bond_made_during_an_announced_pairing_is_not_a_downgrade() -> None:
    guard = _guard()
    assert guard.announce(ADDRESS, True) is False
    with pytest.raises(BondNotTrusted, match="being paired again"):  # no use meanwhile
        await guard.check(MODULE)
    guard._on_message(_signal("PropertiesChanged", ["org.bluez.Device1", {
        "Paired": Variant("b", True)}, []], "sa{sv}as"))
    assert not guard.records[MODULE].needs_re_pairing
    guard.announce(ADDRESS, False)
    guard._on_message(_signal("PropertiesChanged", ["org.bluez.Device1", {
        "Bonded": Variant("b", True), "RSSI": Variant("n", -61)}, []], "sa{sv}as"))
    assert "replaced" in guard.records[MODULE].needs_re_pairing
    assert guard.records[MODULE].rssi == -61
    assert guard.announce(ADDRESS, True) is True  # pair is told to make a new bond


def test_hostile_or_unrelated_signals_change_nothing() -> None:
    guard = _guard()
    for message in (
            _signal("PropertiesChanged", ["org.bluez.Device1", {
                "Paired": Variant("b", False)}, []], "sa{sv}as",
                path="/org/bluez/hci1/dev_5A_00_00_00_00_02"),            # another adapter
            _signal("PropertiesChanged", ["org.bluez.Device1", {
                "Paired": Variant("b", False)}, []], "sa{sv}as",
                path="/org/bluez/hci0/dev_5A_00_00_00_00_09"),            # another device
            _signal("PropertiesChanged", ["org.bluez.Device1", {}, []], "sa{sv}as"),
            _signal("PropertiesChanged", ["org.bluez.Device1", {
                "RSSI": Variant("s", "loud")}, []], "sa{sv}as"),
            _signal("InterfacesRemoved", ["/org/bluez/hci0/dev_garbage",
                                          ["org.bluez.Device1"]], "oas"),
            _signal("InterfacesRemoved", [PATH, ["org.bluez.GattService1"]], "oas"),
            _signal("PropertiesChanged", ["org.bluez.Adapter1", {
                "Powered": Variant("b", False)}, []], "sa{sv}as", path="/org/bluez/hci0")):
        assert guard._on_message(message) is False
    record = guard.records[MODULE]
    assert (record.needs_re_pairing, record.rssi) == ("", None)


async def test_an_unknown_bond_in_the_registry_is_guarded_like_a_recorded_one() -> None:
    """An older registry entry (kind not recorded): `blegw pair` always bonded, so the bond
    must still be there; lost, the module is marked, and the next `blegw pair` (a new entry)
    lifts the mark."""
    guard = _guard("unknown")
    guard._on_message(_signal("PropertiesChanged", ["org.bluez.Device1", {
        "Paired": Variant("b", False)}, []], "sa{sv}as"))
    assert "no longer paired" in guard.records[MODULE].needs_re_pairing
    with pytest.raises(BondNotTrusted, match="blegw pair"):
        await guard.check(MODULE)
    guard.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9 + 60)
    assert not guard.records[MODULE].needs_re_pairing


def test_a_configured_module_is_never_marked() -> None:
    """A [[modules]] entry of the configuration: no pairing recorded in the registry could
    lift a mark, so none is made (its failed writes keep their own fault, bond_refused or
    key_missing)."""
    guard = PairingGuard("hci0")
    guard.track(MODULE, ADDRESS, "unknown", "", 0.0, registered=False)
    for changed in ({"Paired": Variant("b", True)}, {"Bonded": Variant("b", False)}):
        guard._on_message(_signal("PropertiesChanged", ["org.bluez.Device1", changed, []],
                                  "sa{sv}as"))
    assert guard.mark(MODULE, "was lost") is None
    assert not guard.records[MODULE].needs_re_pairing


async def _saved(guard: PairingGuard) -> None:
    for _ in range(100):
        if not guard._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the marks were never written")


async def test_a_mark_survives_a_restart_until_the_module_is_paired_again(
        tmp_path: Path) -> None:
    """A replaced bond looks like any bond once the daemon that saw it is gone: the mark is
    kept beside the registry and read back; a newer pairing lifts it and the file forgets it."""
    marks = tmp_path / "bond-marks.json"
    guard = PairingGuard("hci0", marks)
    guard.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9)
    guard.mark(MODULE, "was replaced by a pairing the gateway did not start")
    await _saved(guard)
    assert marks.stat().st_mode & 0o077 == 0
    restarted = PairingGuard("hci0", marks)
    await restarted.load_marks()
    restarted.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9)
    assert "replaced" in restarted.records[MODULE].needs_re_pairing
    with pytest.raises(BondNotTrusted):
        await restarted.check(MODULE)
    restarted.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9 + 60)  # paired again
    await _saved(restarted)
    assert not restarted.records[MODULE].needs_re_pairing
    assert json.loads(marks.read_text()) == {}


@pytest.mark.parametrize("content", [
    b"[]", b"not json", b"{" * 100_000, b'{"zz": {}}',
    json.dumps({MODULE.hex(): {"reason": "x\n\x1b[2J", "marked_at": 1, "paired_at": 1}}).encode(),
    json.dumps({MODULE.hex(): {"reason": "r", "marked_at": True, "paired_at": 1}}).encode(),
    b" " * (1 << 17)])
async def test_a_forged_marks_file_is_reported_and_ignored(
        tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture) -> None:
    marks = tmp_path / "bond-marks.json"
    marks.write_bytes(content)
    guard = PairingGuard("hci0", marks)
    await guard.load_marks()
    guard.track(MODULE, ADDRESS, "numeric_comparison", "alice", 1.0e9)
    assert not guard.records[MODULE].needs_re_pairing
    assert any("bond marks in" in r.getMessage() for r in caplog.records)


def test_a_pairing_request_under_a_modules_address_does_not_take_it_out_of_service() -> None:
    """Anyone in range can ask to pair under a module's address: the agent refuses and logs
    it, but only an exchange of the daemon's own that failed because of it marks the module."""
    guard = _guard()
    guard._on_refused(PATH, "RequestAuthorization")
    assert guard.refusals == 1
    assert not guard.records[MODULE].needs_re_pairing
    assert guard.refused_since(ADDRESS, 0.0)
