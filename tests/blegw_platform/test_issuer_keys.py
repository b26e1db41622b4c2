"""The issuer's master keys (flow F-C): owner-only files, versions and rotation, derivation,
``blegw-platform provision-card`` as a real subprocess, and a search for the key bytes in
every log line and command output of these operations."""

from __future__ import annotations

import base64
import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from blegw_platform.issuer_keys import (
    FileIssuerKeys,
    IssuedCards,
    IssuerKeyError,
    issue_card,
)
from private_files import read_private
from symmetric_card import (
    CardError,
    CardProvision,
    CardSuite,
    CardVerifier,
    UnknownKeyVersion,
    diversify,
    is_card_number,
)
from wearable_sim.card_element import CardElement

NOW = 1_800_000_000
SUITES = list(CardSuite)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blegw_platform", "-v", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_master_keys_are_owner_only_files_one_per_suite_and_version(tmp_path: Path) -> None:
    keys = FileIssuerKeys(tmp_path)
    assert [keys.current_version(s) for s in SUITES] == [1, 1]
    assert _mode(keys.directory) == 0o700
    files = sorted(p.name for p in keys.directory.glob("*.key"))
    assert files == ["aes-v001.key", "sm4-v001.key"]
    assert all(_mode(keys.directory / f) == 0o600 for f in files)
    assert repr(keys) == f"FileIssuerKeys({keys.directory})"


def test_card_keys_are_diversified_by_card_number(tmp_path: Path) -> None:
    keys = FileIssuerKeys(tmp_path)
    for suite in SUITES:
        version = keys.current_version(suite)
        master = read_private(keys.directory / f"{suite.label}-v001.key")
        assert master is not None
        a = keys.derive_card_key("9900001234567899", version, suite)
        assert a.material() == diversify(suite, master, "9900001234567899").material()
        assert a.material() != keys.derive_card_key("9900007654321014", version,
                                                    suite).material()


def test_rotation_keeps_old_cards_paying_until_their_version_is_retired(tmp_path: Path) -> None:
    keys = FileIssuerKeys(tmp_path)
    register = IssuedCards(tmp_path)
    old = issue_card(keys, register, bound_user="alice", now=NOW)
    assert keys.rotate(CardSuite.SM4_GCM_SM3) == 2
    new = issue_card(keys, register, bound_user="bob", now=NOW)
    assert new.keys[CardSuite.SM4_GCM_SM3][0] == 2 and old.keys[CardSuite.SM4_GCM_SM3][0] == 1
    assert new.keys[CardSuite.AES128_GCM_SHA256][0] == 1
    with pytest.raises(IssuerKeyError):
        keys.retire(CardSuite.SM4_GCM_SM3, 2)                       # the current one
    issued = register.get(old.card_ref)
    assert issued is not None
    record = issued.record(keys)
    assert record.key_for(CardSuite.SM4_GCM_SM3, 1) is not None
    assert record.key_for(CardSuite.SM4_GCM_SM3, 2) is None        # not the card's version
    keys.retire(CardSuite.SM4_GCM_SM3, 1)
    assert record.key_for(CardSuite.SM4_GCM_SM3, 1) is None
    assert keys.versions(CardSuite.SM4_GCM_SM3) == [2]


def test_master_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    keys = FileIssuerKeys(tmp_path)
    keys.current_version(CardSuite.AES128_GCM_SHA256)
    path = keys.directory / "aes-v001.key"
    path.chmod(0o644)
    with pytest.raises(IssuerKeyError, match="readable by others"):
        keys.derive_card_key("9900001234567899", 1, CardSuite.AES128_GCM_SHA256)
    path.chmod(0o600)
    keys.derive_card_key("9900001234567899", 1, CardSuite.AES128_GCM_SHA256)


def test_corrupt_master_key_and_unknown_version_are_refused(tmp_path: Path) -> None:
    keys = FileIssuerKeys(tmp_path)
    keys.current_version(CardSuite.AES128_GCM_SHA256)
    with pytest.raises(IssuerKeyError):
        keys.derive_card_key("9900001234567899", 7, CardSuite.AES128_GCM_SHA256)
    (keys.directory / "aes-v001.key").write_bytes(b"short")
    with pytest.raises(IssuerKeyError, match="corrupt"):
        keys.derive_card_key("9900001234567899", 1, CardSuite.AES128_GCM_SHA256)


def test_card_issued_twice_is_refused(tmp_path: Path) -> None:
    keys, register = FileIssuerKeys(tmp_path), IssuedCards(tmp_path)
    issue_card(keys, register, bound_user="alice", card_number="9900001234567899")
    with pytest.raises(IssuerKeyError):
        issue_card(keys, register, bound_user="mallory", card_number="9900001234567899")
    assert len(register.load()) == 1
    register.path.write_bytes(bytes.fromhex("81a0"))                 # [{}]
    with pytest.raises(IssuerKeyError, match="corrupt"):
        register.load()
    register.path.chmod(0o640)
    with pytest.raises(IssuerKeyError, match="readable by others"):
        register.load()


def test_retired_key_version_makes_the_card_refused(tmp_path: Path) -> None:
    keys, register = FileIssuerKeys(tmp_path / "platform"), IssuedCards(tmp_path / "platform")
    card = issue_card(keys, register, bound_user="alice",
                      suites=(CardSuite.AES128_GCM_SHA256,))
    _write_card(tmp_path / "card", card)
    keys.rotate(CardSuite.AES128_GCM_SHA256)
    keys.retire(CardSuite.AES128_GCM_SHA256, 1)
    element = CardElement(tmp_path / "card")
    element.connected("C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13")
    from symmetric_card import CardChallenge, encode

    hello = element.hello(encode(CardChallenge(CardSuite.AES128_GCM_SHA256, NOW)))
    issued = register.get(card.card_ref)
    assert issued is not None
    with pytest.raises(UnknownKeyVersion):
        CardVerifier().open_hello(hello, card=issued.record(keys), now=NOW)


def test_an_unsafe_master_key_is_logged_not_taken_for_a_retired_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A master key file others can read refuses the card as a retired version would, but an
    operator must hear why: one ERROR naming the card and the version, no key bytes."""
    keys, register = FileIssuerKeys(tmp_path / "platform"), IssuedCards(tmp_path / "platform")
    card = issue_card(keys, register, bound_user="alice",
                      suites=(CardSuite.AES128_GCM_SHA256,))
    (master,) = (tmp_path / "platform" / "issuer-keys").glob("*.key")
    secret = master.read_bytes()
    master.chmod(0o644)
    _write_card(tmp_path / "card", card)
    element = CardElement(tmp_path / "card")
    element.connected("C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13")
    from symmetric_card import CardChallenge, encode

    hello = element.hello(encode(CardChallenge(CardSuite.AES128_GCM_SHA256, NOW)))
    issued = register.get(card.card_ref)
    assert issued is not None
    with caplog.at_level(logging.ERROR, logger="blegw.platform.issuer"), \
            pytest.raises(UnknownKeyVersion):
        CardVerifier().open_hello(hello, card=issued.record(keys), now=NOW)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "blegw.platform.issuer"]
    assert card.card_ref.hex() in line and "readable by others" in line
    assert secret.hex() not in line


def _write_card(directory: Path, card: CardProvision) -> None:
    from private_files import write_atomic

    directory.mkdir(mode=0o700, parents=True)
    write_atomic(directory / "card.cbor", card.encode())


def test_provision_card_writes_the_cards_state_owner_only(tmp_path: Path) -> None:
    done = cli("provision-card", "--state", str(tmp_path / "p"), "--card-state",
               str(tmp_path / "card"), "--user", "alice")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "card" / "card.cbor"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    raw = read_private(path)
    assert raw is not None
    card = CardProvision.decode(raw)
    assert is_card_number(card.info.card_number) and card.info.bound_user == "alice"
    assert set(card.keys) == set(CardSuite)
    keys = FileIssuerKeys(tmp_path / "p")
    for suite, (version, key) in card.keys.items():
        assert key.material() == keys.derive_card_key(card.info.card_number, version,
                                                      suite).material()
    assert card.info.card_number in done.stdout and card.card_ref.hex() in done.stdout
    again = cli("provision-card", "--state", str(tmp_path / "p"), "--card-state",
                str(tmp_path / "card"), "--user", "mallory")
    assert again.returncode == 1 and "provisioned once" in again.stderr
    assert CardProvision.decode(path.read_bytes()).info.bound_user == "alice"
    bad = cli("provision-card", "--state", str(tmp_path / "p"), "--card-state",
              str(tmp_path / "card2"), "--user", "bob", "--card-number", "1234")
    assert bad.returncode == 1 and "Luhn" in bad.stderr


def _spellings(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(),
            base64.urlsafe_b64encode(secret).decode(),
            base64.b64encode(secret).decode().rstrip("="), repr(secret)[2:-1]]


def test_no_key_appears_in_a_log_line_or_command_output(tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    """Every output of the key operations, searched for every master and card key, in hex
    (both cases), base64 (both alphabets, padded or not) and Python's bytes repr; and every
    card message of a payment in both suites, for the raw key bytes."""
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    state = tmp_path / "p"
    for n, suites in enumerate((["aes"], ["sm4"], [])):
        args = ["provision-card", "--state", str(state), "--card-state",
                str(tmp_path / f"card{n}"), "--user", f"user{n}"]
        for suite in suites:
            args += ["--suite", suite]
        done = cli(*args)
        assert done.returncode == 0, done.stderr
        outputs += [done.stdout, done.stderr]
    refused = cli("provision-card", "--state", str(state), "--card-state",
                  str(tmp_path / "card0"), "--user", "again")
    outputs += [refused.stdout, refused.stderr]
    # the same operations in-process, with every logger at DEBUG, plus the objects' reprs and
    # every refusal's text
    keys, register = FileIssuerKeys(state), IssuedCards(state)
    keys.rotate(CardSuite.AES128_GCM_SHA256)
    card = issue_card(keys, register, bound_user="carol", now=NOW)
    _write_card(tmp_path / "card-carol", card)
    element = CardElement(tmp_path / "card-carol")
    outputs += [repr(keys), repr(card), repr(element), repr(element.facts()),
                str(card.keys), repr(register.load())]
    from symmetric_card import CardChallenge, TransactionInfo, encode

    messages: list[bytes] = []
    for suite in CardSuite:
        element.connected("C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13")
        hello = element.hello(encode(CardChallenge(suite, NOW)))
        issued = register.get(card.card_ref)
        assert issued is not None
        for wrong in (hello[:-1] + bytes([hello[-1] ^ 1]), hello):
            try:
                CardVerifier().open_hello(wrong, card=issued.record(keys), now=NOW + 999)
            except CardError as exc:
                outputs.append(f"{exc!r} {exc}")
        server = CardVerifier().open_hello(hello, card=issued.record(keys), now=NOW)
        request = server.transaction_request(TransactionInfo(
            bytes(16), 1, "CNY", "shop", NOW, "", card.info.card_number, "carol"), now=NOW)
        element.receive(request)
        result = element.answer(True)
        assert server.read_result(result, now=NOW).approved
        messages += [hello, request, result]
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, caplog.text]
    secrets_ = [p.read_bytes() for p in (state / "issuer-keys").glob("*.key")]
    for n in range(3):
        raw = read_private(tmp_path / f"card{n}" / "card.cbor")
        assert raw is not None
        secrets_ += [key.material() for _v, key in CardProvision.decode(raw).keys.values()]
    secrets_ += [key.material() for _v, key in card.keys.values()]
    assert len(secrets_) == 3 + 4 + 2
    text = "\n".join(outputs)
    assert "card" in text                            # the search does look at real output
    for secret in secrets_:
        for spelling in _spellings(secret):
            assert spelling not in text
        assert not any(secret in message for message in messages)


def test_parallel_provisioning_keeps_every_card_key_valid(tmp_path: Path) -> None:
    """Six provision-card processes at once on a new platform: they all need master key
    version 1 and the register. Without the lock, a second process could replace version 1
    after the first derived a card from it, or drop another's card from the register."""
    state = tmp_path / "p"
    procs = [subprocess.Popen([sys.executable, "-m", "blegw_platform", "provision-card",
                               "--state", str(state), "--card-state", str(tmp_path / f"c{n}"),
                               "--user", f"user{n}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for n in range(6)]
    for proc in procs:
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    keys, register = FileIssuerKeys(state), IssuedCards(state)
    assert len(register.load()) == 6
    assert [keys.versions(s) for s in SUITES] == [[1], [1]]
    for n in range(6):
        raw = read_private(tmp_path / f"c{n}" / "card.cbor")
        assert raw is not None
        card = CardProvision.decode(raw)
        for suite, (version, key) in card.keys.items():
            assert key.material() == keys.derive_card_key(card.info.card_number, version,
                                                          suite).material()
