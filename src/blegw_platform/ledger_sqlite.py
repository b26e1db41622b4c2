"""The ledger's SQLite store: one file in WAL mode, the one-machine default.

Every write transaction is ``BEGIN IMMEDIATE``: it takes the file's write lock first, so two
connections (two processes) never interleave a read-check-write, and nothing needs retrying.
``synchronous=FULL``: a commit is on disk when it returns. CHECK constraints and foreign keys
back the ledger's rules whatever writes to the file.

The schema is versioned in ``schema_migrations``; a file made before the table existed is
version 0 and is brought up in place, in one transaction (a crash leaves it as it was).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .ledger_store import Cursor, LedgerUnavailable, Store

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    balance_minor INTEGER NOT NULL
        CHECK (typeof(balance_minor) = 'integer' AND balance_minor >= 0
               AND balance_minor <= 100000000000000000)
);
CREATE TABLE IF NOT EXISTS modules (
    module_id BLOB NOT NULL,
    account TEXT NOT NULL REFERENCES accounts(id),
    gateway_id TEXT NOT NULL,
    suite INTEGER NOT NULL,
    certificate BLOB NOT NULL,
    last_counter INTEGER NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1,
    revoke_hash BLOB,
    PRIMARY KEY (module_id, suite)
);
CREATE TABLE IF NOT EXISTS enrollment_codes (
    code_hash BLOB PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(id),
    expires_at INTEGER NOT NULL,
    module_id BLOB
);
CREATE TABLE IF NOT EXISTS transactions (
    id BLOB PRIMARY KEY,
    idempotency_key TEXT UNIQUE NOT NULL,
    request_hash TEXT NOT NULL,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    amount_minor INTEGER NOT NULL,
    currency TEXT NOT NULL,
    order_reference TEXT NOT NULL,
    order_description TEXT NOT NULL,
    suite INTEGER NOT NULL,
    module_id BLOB,
    nonce BLOB UNIQUE NOT NULL,
    expires_at INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    counter INTEGER,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
"""

BOOKS = """
CREATE TABLE IF NOT EXISTS issuance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (typeof(amount_minor) = 'integer'),
    kind TEXT NOT NULL CHECK (kind IN ('issuance', 'adjustment', 'opening')),
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id BLOB NOT NULL REFERENCES transactions(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor INTEGER NOT NULL
        CHECK (typeof(amount_minor) = 'integer' AND amount_minor != 0),
    created REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS postings_one_per_side ON postings (tx_id, amount_minor > 0);
CREATE TABLE IF NOT EXISTS terminals (
    name TEXT PRIMARY KEY,
    key_hash BLOB NOT NULL,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS terminal_payees (
    terminal TEXT NOT NULL REFERENCES terminals(name),
    account TEXT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (terminal, account)
);
"""

CODES = """
CREATE TABLE IF NOT EXISTS used_codes (
    code_id BLOB PRIMARY KEY CHECK (length(code_id) = 32),
    tx_id BLOB NOT NULL UNIQUE REFERENCES transactions(id),
    kind INTEGER NOT NULL,
    code_account TEXT NOT NULL,
    scanner_account TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    created REAL NOT NULL
);
"""
"""Transaction codes already paid (docs/transaction-codes.md): the primary key is the code's
single-use id, written in the same database transaction as the transfer it paid."""

VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied REAL NOT NULL
);
"""


def _statements(script: str) -> list[str]:
    return [statement for statement in script.split(";") if statement.strip()]


def _to_version_1(db: sqlite3.Connection) -> None:
    """Every schema before the version table, brought to version 1 (add, never drop).

    A ledger from before the books had balances but no issuance or postings: the books are
    created, each settled transaction gets its debit and credit (for the accounts that exist:
    a payment to an account that never existed stays visible to the audit), and each account
    an opening entry for the rest of its balance.
    """
    for statement in _statements(SCHEMA):
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(modules)")}
    if "revoke_hash" not in columns:
        db.execute("ALTER TABLE modules ADD COLUMN revoke_hash BLOB")
    columns = {row[1] for row in db.execute("PRAGMA table_info(transactions)")}
    if "terminal" not in columns:
        db.execute("ALTER TABLE transactions ADD COLUMN terminal TEXT")
    if "progress" not in columns:
        db.execute("ALTER TABLE transactions ADD COLUMN progress TEXT NOT NULL DEFAULT ''")
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "issuance" not in tables:
        for statement in _statements(BOOKS):
            db.execute(statement)
        now = time.time()
        accounts = {row[0] for row in db.execute("SELECT id FROM accounts")}
        for tx_id, payer, payee, amount, currency in db.execute(
                "SELECT id, payer, payee, amount_minor, currency FROM transactions "
                "WHERE state='settled'").fetchall():
            for account, signed in ((payer, -amount), (payee, amount)):
                if account in accounts:
                    db.execute("INSERT INTO postings (tx_id, account, currency, amount_minor, "
                               "created) VALUES (?, ?, ?, ?, ?)",
                               (tx_id, account, currency, signed, now))
        for account, currency, balance in db.execute(
                "SELECT id, currency, balance_minor FROM accounts").fetchall():
            posted = db.execute("SELECT COALESCE(SUM(amount_minor), 0) FROM postings "
                                "WHERE account=?", (account,)).fetchone()[0]
            if balance - posted:
                db.execute("INSERT INTO issuance (account, currency, amount_minor, kind, "
                           "created) VALUES (?, ?, ?, 'opening', ?)",
                           (account, currency, balance - posted, now))
    for statement in _statements(CODES):
        db.execute(statement)


DYNAMIC_CODES = """
CREATE TABLE IF NOT EXISTS used_dynamic_codes (
    payment_id BLOB PRIMARY KEY CHECK (length(payment_id) = 32),
    merchant_device BLOB NOT NULL,
    perturbation BLOB NOT NULL,
    request_hash TEXT NOT NULL,
    terminal TEXT NOT NULL,
    tx_id BLOB NOT NULL UNIQUE REFERENCES transactions(id),
    created REAL NOT NULL,
    UNIQUE (merchant_device, perturbation)
);
CREATE INDEX IF NOT EXISTS used_dynamic_codes_request ON used_dynamic_codes (request_hash);
"""
"""Dynamic-code payments already settled (docs/dynamic-codes.md): each payment code and each
perturbation code of a merchant device pays once; written with the transfer it paid."""


def _to_version_2(db: sqlite3.Connection) -> None:
    """Version 2 adds the dynamic codes' single-use table (flow F-E)."""
    for statement in _statements(DYNAMIC_CODES):
        db.execute(statement)


SIDE_TABLES = """
CREATE TABLE IF NOT EXISTS card_enrollments (
    card_ref BLOB PRIMARY KEY,
    account TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    enrolled REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    revoke_hash BLOB
);
CREATE TABLE IF NOT EXISTS card_relays (
    relay_id BLOB PRIMARY KEY,
    tx_id BLOB NOT NULL,
    step TEXT NOT NULL CHECK (step IN ('challenge', 'request')),
    answered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS card_replay (
    entry BLOB PRIMARY KEY,
    last_valid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payment_modes (
    account TEXT PRIMARY KEY,
    no_verification_up_to INTEGER NOT NULL CHECK (no_verification_up_to >= 0),
    fingerprint_from INTEGER CHECK (fingerprint_from IS NULL OR fingerprint_from > 0)
);
"""
"""The platform's other state, kept on the ledger's store so a worker needs nothing else: the
cards (``card_payments``) and the payers' payment modes (``payment_modes``)."""


def _to_version_3(db: sqlite3.Connection) -> None:
    """Version 3 makes the card and payment-mode tables part of the schema. A version-2 file
    may hold them already (made beside the ledger by the card and mode stores, the card
    enrollments perhaps without ``revoke_hash``): they are kept, rows and all."""
    for statement in _statements(SIDE_TABLES):
        db.execute(statement)
    columns = {row[1] for row in db.execute("PRAGMA table_info(card_enrollments)")}
    if "revoke_hash" not in columns:
        db.execute("ALTER TABLE card_enrollments ADD COLUMN revoke_hash BLOB")


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_version_1, _to_version_2,
                                                               _to_version_3)
"""Migration ``n`` (0-based) brings the schema from version ``n`` to ``n + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)


class SqliteStore:
    """The ledger's connection to its SQLite file (see the module's docstring)."""

    retryable: tuple[type[BaseException], ...] = ()
    """``BEGIN IMMEDIATE`` serialises writers: a transaction never has to run again."""
    retry_once: tuple[type[BaseException], ...] = ()

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.Error as exc:
            raise LedgerUnavailable(f"ledger {path}: {exc}") from exc
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._depth = 0
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        with self.transaction():
            self._db.execute(_statements(VERSIONS)[0])
            version = self._db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LedgerUnavailable(
                    f"ledger {self.path}: schema version {version} is newer than this "
                    f"program's {SCHEMA_VERSION}; upgrade the program")
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](self._db)
                self._db.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                                 (step + 1, time.time()))

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        return self._db.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        self._db.executemany(sql, rows)

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Store]:
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        self._depth = 1
        try:
            yield self
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def reset(self) -> None:
        """Nothing to do: a file connection does not break between calls."""

    def close(self) -> None:
        self._db.close()
