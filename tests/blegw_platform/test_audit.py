"""``blegw-platform audit``, ``seed`` and ``terminal`` as real subprocesses on a real ledger:
the audit finds each kind of tampering, older ledger files are migrated into balanced books."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blegw_platform.ledger import AccountRefused, Ledger, TransactionRecord
from tests.ledger_backends import PostgresServer, raw_execute, raw_query

SRC = Path(__file__).resolve().parents[2] / "src"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blegw_platform", *args], capture_output=True,
                          text=True, timeout=60, check=False,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})


def settled_books(path: Path | str) -> bytes:
    ledger = Ledger(path)
    try:
        ledger.add_account("alice", "EUR", 1000)
        ledger.add_account("shop", "EUR", 0)
        ledger.enroll(b"m" * 16, "alice", "gw", 1, b"cert")
        now = time.time()
        tx = TransactionRecord(b"\x01" * 16, "k-000001", "h", "alice", "shop", 300, "EUR", "o",
                               "d", 1, b"m" * 16, b"\x02" * 16, int(now) + 60, b"e", "pending",
                               "", None, now, now)
        ledger.create(tx)
        assert ledger.finish(tx.id, "settled", "", counter=1).state == "settled"
        assert ledger.audit() == []
        return tx.id
    finally:
        ledger.close()


@pytest.mark.parametrize(("tamper", "code"), [
    ("UPDATE accounts SET balance_minor=balance_minor+500 WHERE id='shop'", "not_conserved"),
    ("UPDATE accounts SET balance_minor=balance_minor+1 WHERE id='shop'", "balance_mismatch"),
    ("DELETE FROM postings WHERE amount_minor > 0", "settlement_postings"),
    ("UPDATE transactions SET state='declined'", "postings_without_settlement"),
    ("UPDATE transactions SET amount_minor=301", "settlement_postings"),
    ("UPDATE modules SET last_counter=0", "counter_behind"),
    ("UPDATE issuance SET currency='USD' WHERE account='alice'", "issuance_currency"),
])
def test_the_audit_finds_tampered_books(ledger_at: Path | str, tamper: str, code: str) -> None:
    path = ledger_at
    settled_books(path)
    raw_execute(path, tamper)
    ledger = Ledger(path)
    try:
        assert code in [v.code for v in ledger.audit()]
    finally:
        ledger.close()


def test_the_audit_command_exits_6_listing_each_violation(tmp_path: Path) -> None:
    state = tmp_path / "platform"
    state.mkdir()
    settled_books(state / "ledger.sqlite3")
    clean = cli("audit", "--state", str(state))
    assert clean.returncode == 0, clean.stderr
    assert "audit: clean" in clean.stdout and "EUR: 2 account(s) holding 1000" in clean.stdout
    db = sqlite3.connect(state / "ledger.sqlite3")
    db.execute("UPDATE accounts SET balance_minor=balance_minor+500 WHERE id='shop'")
    db.commit()
    db.close()
    found = cli("audit", "--state", str(state))
    assert found.returncode == 6, found.stdout + found.stderr
    assert "violation not_conserved: EUR: balances 1500, issued 1000" in found.stdout
    assert "violation balance_mismatch: shop" in found.stdout
    assert "audit: 2 violation(s)" in found.stderr


def test_a_counter_consumed_twice_is_found(ledger_at: Path | str) -> None:
    path = ledger_at
    tx_id = settled_books(path)
    ledger = Ledger(path)
    try:
        now = time.time()
        other = TransactionRecord(b"\x03" * 16, "k-000002", "h2", "alice", "shop", 5, "EUR",
                                  "o", "d", 1, b"m" * 16, b"\x04" * 16, int(now) + 60, b"e",
                                  "pending", "", None, now, now)
        ledger.create(other)
        # A replayed counter is refused and not recorded again...
        assert ledger.finish(other.id, "settled", "", counter=1).reason == "replay"
        assert ledger.audit() == []
        # ...so a counter stored twice can only come from tampering, and the audit says so.
        ledger._db.execute("UPDATE transactions SET counter=1 WHERE id=?", (other.id,))
        assert [v.code for v in ledger.audit()] == ["counter_reused"]
        assert ledger.get(tx_id) is not None
    finally:
        ledger.close()


OLD_SCHEMA = """
CREATE TABLE accounts (id TEXT PRIMARY KEY, currency TEXT NOT NULL,
    balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0));
CREATE TABLE modules (module_id BLOB NOT NULL, account TEXT NOT NULL REFERENCES accounts(id),
    gateway_id TEXT NOT NULL, suite INTEGER NOT NULL, certificate BLOB NOT NULL,
    last_counter INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (module_id, suite));
CREATE TABLE transactions (id BLOB PRIMARY KEY, idempotency_key TEXT UNIQUE NOT NULL,
    request_hash TEXT NOT NULL, payer TEXT NOT NULL, payee TEXT NOT NULL,
    amount_minor INTEGER NOT NULL, currency TEXT NOT NULL, order_reference TEXT NOT NULL,
    order_description TEXT NOT NULL, suite INTEGER NOT NULL, module_id BLOB,
    nonce BLOB UNIQUE NOT NULL, expires_at INTEGER NOT NULL, envelope BLOB NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', counter INTEGER,
    created REAL NOT NULL, updated REAL NOT NULL);
INSERT INTO accounts VALUES ('alice', 'EUR', 700), ('shop', 'EUR', 300);
INSERT INTO modules VALUES (X'6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d', 'alice', 'gw', 1, X'00', 1, 1);
INSERT INTO transactions VALUES (X'01010101010101010101010101010101', 'k1', 'h', 'alice', 'shop',
    300, 'EUR', 'o', 'd', 1, X'6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d6d', X'02', 0, X'00', 'settled',
    '', 1, 0, 0);
"""


def test_an_older_ledger_file_migrates_into_balanced_books(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    ledger = Ledger(path)
    try:
        assert ledger.audit() == []
        assert (ledger.balance("alice"), ledger.balance("shop")) == (700, 300)
        assert ledger.summary().postings == 2
        ledger.add_account("shop", "EUR", 350)                 # seed still sets a balance
        assert ledger.balance("shop") == 350
        assert ledger.audit() == []
    finally:
        ledger.close()
    again = Ledger(path)                                       # a second open changes nothing
    try:
        assert again.summary().issuance == 2
        assert again.audit() == []
    finally:
        again.close()


def test_an_older_ledger_that_paid_into_the_void_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA.replace("'alice', 'shop',\n    300", "'alice', 'nobody',\n    300")
                     .replace("('shop', 'EUR', 300)", "('shop', 'EUR', 0)"))
    db.close()
    ledger = Ledger(path)
    try:
        # The money that vanished shows twice: not conserved, and a settlement without credit.
        assert [v.code for v in ledger.audit()] == ["not_conserved", "settlement_postings"]
    finally:
        ledger.close()


def test_ledger_commands_refuse_a_state_directory_without_a_ledger(tmp_path: Path) -> None:
    typo = tmp_path / "platfrom"
    for command in (("audit",), ("terminal", "list"), ("terminal", "revoke", "--name", "t")):
        refused = cli(*command, "--state", str(typo))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "no ledger" in refused.stderr and "clean" not in refused.stdout
    assert not typo.exists()                        # nothing was created, no CA, no keys


def test_ledger_commands_make_no_keys(tmp_path: Path) -> None:
    state = tmp_path / "platform"
    assert cli("seed", "--state", str(state), "--account", "alice",
               "--balance", "5").returncode == 0
    assert cli("audit", "--state", str(state)).returncode == 0
    assert cli("terminal", "list", "--state", str(state)).returncode == 0
    assert sorted(p.name for p in state.iterdir() if not p.name.startswith("ledger")) == []


def test_seed_and_terminal_commands(tmp_path: Path) -> None:
    state = str(tmp_path / "platform")
    assert cli("seed", "--state", state, "--account", "alice", "--balance", "500").returncode == 0
    assert cli("seed", "--state", state, "--account", "shop", "--balance", "0").returncode == 0
    refused = cli("seed", "--state", state, "--account", "shop", "--balance", "1",
                  "--currency", "USD")
    assert refused.returncode == 1 and "holds EUR" in refused.stderr
    added = cli("terminal", "add", "--state", state, "--name", "till-1", "--payee", "shop")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("till-1.") and len(key) > 40
    ledger = Ledger(tmp_path / "platform" / "ledger.sqlite3")
    try:
        with pytest.raises(AccountRefused, match="account name"):
            ledger.add_account("bad/name", "EUR", 1)
        with pytest.raises(AccountRefused, match="no account nobody"):
            ledger.add_terminal("till-2", b"h" * 32, ["nobody"])
        stored = ledger._db.execute("SELECT key_hash FROM terminals").fetchone()[0]
        secret = key.rpartition(".")[2]                  # only a hash of the secret is kept
        assert bytes(stored) == hashlib.sha256(b"blegw-terminal-key:" + secret.encode()).digest()
    finally:
        ledger.close()
    assert cli("terminal", "add", "--state", state, "--name", "till-1", "--payee",
               "shop").returncode == 1                              # names are never reused
    listed = cli("terminal", "list", "--state", state)
    assert listed.stdout.split("\t")[:3] == ["till-1", "active", "shop\n"]
    assert cli("terminal", "revoke", "--state", state, "--name", "till-1").returncode == 0
    assert "revoked" in cli("terminal", "list", "--state", state).stdout
    assert cli("terminal", "revoke", "--state", state, "--name", "till-1").returncode == 1
    nokey = cli("pay", "--payer", "alice", "--payee", "shop", "--amount", "1")
    assert nokey.returncode == 2 and "API key" in nokey.stderr


def test_seed_and_audit_commands_on_a_postgresql_ledger(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    """``[ledger] url`` in the state directory's platform.toml: seed, audit and terminal
    commands work on the PostgreSQL ledger, the audit finds tampering there, and no SQLite
    file is made."""
    url = postgres_server.new_ledger_url()
    state = tmp_path / "platform"
    state.mkdir()
    (state / "platform.toml").write_text(f'[ledger]\nurl = "{url}"\n')
    for account, balance in (("alice", "700"), ("shop", "300")):
        seeded = cli("seed", "--state", str(state), "--account", account, "--balance", balance)
        assert seeded.returncode == 0, seeded.stderr
    clean = cli("audit", "--state", str(state))
    assert clean.returncode == 0, clean.stderr
    assert "EUR: 2 account(s) holding 1000" in clean.stdout
    assert cli("terminal", "add", "--state", str(state), "--name", "till-1", "--payee",
               "shop").returncode == 0
    assert "till-1\tactive" in cli("terminal", "list", "--state", str(state)).stdout
    raw_execute(url, "UPDATE accounts SET balance_minor=balance_minor+1 WHERE id='shop'")
    found = cli("audit", "--state", str(state))
    assert found.returncode == 6 and "violation balance_mismatch: shop" in found.stdout
    # The books are in PostgreSQL alone: no SQLite file holds an account.
    sqlite_file = state / "ledger.sqlite3"
    assert not sqlite_file.exists() or raw_query(
        sqlite_file, "SELECT name FROM sqlite_master WHERE name='accounts'") == []
