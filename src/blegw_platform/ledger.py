"""The platform's ledger in SQLite (WAL): accounts, enrolled modules, transactions.

Settlement is one database transaction (``BEGIN IMMEDIATE``): the transaction must still be
pending, the module counter must rise, the payer's balance cannot go negative (a CHECK
constraint backs the code), and the state change is final. A transaction settles at most once,
whatever arrives twice. Calls run in a worker thread so the event loop never blocks on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_COLUMNS = ", ".join(
    ("id", "idempotency_key", "request_hash", "payer", "payee", "amount_minor", "currency",
     "order_reference", "order_description", "suite", "module_id", "nonce", "expires_at",
     "envelope", "state", "reason", "counter", "created", "updated"))
# A fixed list of column names (no input reaches it), so the queries below are constant.
_INSERT = f"INSERT INTO transactions ({_COLUMNS}) VALUES ({', '.join('?' * 19)})"  # noqa: S608
_SELECT = f"SELECT {_COLUMNS} FROM transactions"  # noqa: S608

__all__ = ["FINAL_STATES", "EnrollmentCodeRefused", "Ledger", "LedgerError", "ModuleRecord",
           "RevocationRefused", "TransactionRecord"]

FINAL_STATES = {"settled", "declined", "rejected", "timed_out"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    balance_minor INTEGER NOT NULL CHECK (balance_minor >= 0)
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


class LedgerError(Exception):
    """A ledger rule would be broken (unknown account, duplicate key with other content...)."""


class EnrollmentCodeRefused(LedgerError):
    """The enrollment code is unknown, for another account, expired, or used for another module."""


class RevocationRefused(LedgerError):
    """The caller's revocation token is not the one the module was enrolled with."""


@dataclass(frozen=True, slots=True)
class ModuleRecord:
    module_id: bytes
    account: str
    gateway_id: str
    suite: int
    certificate: bytes
    last_counter: int


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    id: bytes
    idempotency_key: str
    request_hash: str
    payer: str
    payee: str
    amount_minor: int
    currency: str
    order_reference: str
    order_description: str
    suite: int
    module_id: bytes | None
    nonce: bytes
    expires_at: int
    envelope: bytes
    state: str
    reason: str
    counter: int | None
    created: float
    updated: float

    def public(self) -> dict[str, Any]:
        return {"id": self.id.hex(), "state": self.state, "reason": self.reason,
                "payer": self.payer, "payee": self.payee, "amount_minor": self.amount_minor,
                "currency": self.currency, "order_reference": self.order_reference,
                "order_description": self.order_description, "suite": self.suite,
                "expires_at": self.expires_at, "created": self.created, "updated": self.updated}


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Bring a ledger made by an earlier version up to this schema (add, never drop)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(modules)")}
        if "revoke_hash" not in columns:
            self._db.execute("ALTER TABLE modules ADD COLUMN revoke_hash BLOB")

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed if the block ends, rolled back if not."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            return fn(*args)

    # -- accounts and modules (sync; call through run()) ---------------------------------------
    def add_account(self, account: str, currency: str, balance_minor: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)",
                         (account, currency, balance_minor))

    def balance(self, account: str) -> int:
        row = self._db.execute("SELECT balance_minor FROM accounts WHERE id=?",
                               (account,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown account {account}")
        return int(row[0])

    def enroll(self, module_id: bytes, account: str, gateway_id: str, suite: int,
               certificate: bytes, revoke_hash: bytes | None = None) -> None:
        """Enroll (or re-enroll) one suite of a module; the signature counter is kept.

        ``revoke_hash`` is the hash of the token that may revoke it over the API (the pairing
        tool keeps the token); None leaves revocation to the operator.
        """
        if self._db.execute("SELECT 1 FROM accounts WHERE id=?", (account,)).fetchone() is None:
            raise LedgerError(f"unknown account {account}")
        self._db.execute(
            "INSERT INTO modules (module_id, account, gateway_id, suite, certificate, "
            "revoke_hash) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(module_id, suite) DO UPDATE SET "
            "account=excluded.account, gateway_id=excluded.gateway_id, "
            "certificate=excluded.certificate, active=1, revoke_hash=excluded.revoke_hash",
            (module_id, account, gateway_id, suite, certificate, revoke_hash))

    def add_enrollment_code(self, code_hash: bytes, account: str, expires_at: int) -> None:
        if self._db.execute("SELECT 1 FROM accounts WHERE id=?", (account,)).fetchone() is None:
            raise LedgerError(f"unknown account {account}")
        self._db.execute("INSERT INTO enrollment_codes VALUES (?, ?, ?, NULL)",
                         (code_hash, account, expires_at))

    def enroll_with_code(self, code_hash: bytes, now: int, module_id: bytes, account: str,
                         gateway_id: str, suite: int, certificate: bytes,
                         revoke_hash: bytes | None = None) -> None:
        """Claim an account holder's enrollment code and enroll, in one database transaction.

        A code belongs to one account and, from its first use, to one module: the same pairing
        may enroll that module's other suites with it, nothing else can. Refusals say which
        rule failed but never whether a code exists for some other account.
        """
        with self._transaction() as db:
            row = db.execute("SELECT account, expires_at, module_id FROM enrollment_codes "
                             "WHERE code_hash=?", (code_hash,)).fetchone()
            if row is None or row[0] != account:
                raise EnrollmentCodeRefused(
                    f"the enrollment code is not valid for account {account}")
            if row[1] < now:
                raise EnrollmentCodeRefused("the enrollment code has expired; ask for a new one")
            if row[2] is not None and bytes(row[2]) != module_id:
                raise EnrollmentCodeRefused(
                    "the enrollment code was already used for another module")
            db.execute("UPDATE enrollment_codes SET module_id=? WHERE code_hash=?",
                       (module_id, code_hash))
            self.enroll(module_id, account, gateway_id, suite, certificate, revoke_hash)

    def revoke(self, module_id: bytes, revoke_hash: bytes | None = None) -> int:
        """Deactivate a module's enrollments; return how many there were.

        With ``revoke_hash`` only the enrollments that token was given for (an API caller);
        without, all of them (the operator). Raises :class:`RevocationRefused` when the module
        has active enrollments but the token matches none.
        """
        if revoke_hash is None:
            cursor = self._db.execute(
                "UPDATE modules SET active=0 WHERE module_id=? AND active=1", (module_id,))
            return int(cursor.rowcount)
        with self._transaction() as db:
            cursor = db.execute("UPDATE modules SET active=0 WHERE module_id=? AND active=1 "
                                "AND revoke_hash=?", (module_id, revoke_hash))
            count = int(cursor.rowcount)
            if not count and db.execute("SELECT 1 FROM modules WHERE module_id=? AND active=1",
                                        (module_id,)).fetchone():
                raise RevocationRefused("this token does not revoke that module's enrollment")
        return count

    def module_for(self, account: str, suite: int) -> ModuleRecord | None:
        row = self._db.execute(
            "SELECT module_id, account, gateway_id, suite, certificate, last_counter "
            "FROM modules WHERE account=? AND suite=? AND active=1", (account, suite)).fetchone()
        return ModuleRecord(*row) if row else None

    def module(self, module_id: bytes, suite: int) -> ModuleRecord | None:
        row = self._db.execute(
            "SELECT module_id, account, gateway_id, suite, certificate, last_counter "
            "FROM modules WHERE module_id=? AND suite=? AND active=1",
            (module_id, suite)).fetchone()
        return ModuleRecord(*row) if row else None

    def context(self, tx_id: bytes) -> tuple[TransactionRecord | None, ModuleRecord | None, int]:
        """A transaction, its module and the module's last counter, read in one go."""
        tx = self.get(tx_id)
        if tx is None or tx.module_id is None:
            return tx, None, 0
        return tx, self.module(tx.module_id, tx.suite), self.last_counter(tx.module_id)

    def last_counter(self, module_id: bytes) -> int:
        row = self._db.execute("SELECT MAX(last_counter) FROM modules WHERE module_id=?",
                               (module_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- transactions --------------------------------------------------------------------------
    def create(self, record: TransactionRecord) -> tuple[TransactionRecord, bool]:
        """Insert, or return the existing transaction for the same idempotency key.

        Returns (record, created). The same key with different content is an error.
        """
        existing = self._by_key(record.idempotency_key)
        if existing is not None:
            if existing.request_hash != record.request_hash:
                raise LedgerError("idempotency key reused with a different request")
            return existing, False
        fields = [getattr(record, f) for f in TransactionRecord.__slots__]
        self._db.execute(_INSERT, fields)
        return record, True

    def _by_key(self, key: str) -> TransactionRecord | None:
        row = self._db.execute(
            _SELECT + " WHERE idempotency_key=?", (key,)).fetchone()
        return TransactionRecord(*row) if row else None

    def get(self, tx_id: bytes) -> TransactionRecord | None:
        row = self._db.execute(
            _SELECT + " WHERE id=?", (tx_id,)).fetchone()
        return TransactionRecord(*row) if row else None

    def finish(self, tx_id: bytes, state: str, reason: str = "", *,
               counter: int | None = None, settle: bool = False) -> TransactionRecord:
        """Move a pending transaction to a final state, atomically; settle funds if asked.

        A transaction that is already final is returned unchanged (first outcome wins).
        """
        return self.finish_many([(tx_id, state, reason, counter, settle)])[0]

    def finish_many(self, items: list[tuple[bytes, str, str, int | None, bool]]
                    ) -> list[TransactionRecord]:
        """Several outcomes in one database transaction (one fsync: group commit).

        Each item is applied as :meth:`finish` would, in order; a failure rolls all back.
        """
        with self._transaction():
            for item in items:
                self._apply(*item)
        results = [self.get(item[0]) for item in items]
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def _apply(self, tx_id: bytes, state: str, reason: str, counter: int | None,
               settle: bool) -> None:
        assert state in FINAL_STATES
        db = self._db
        tx = self.get(tx_id)
        if tx is None:
            raise LedgerError(f"unknown transaction {tx_id.hex()}")
        if tx.state in FINAL_STATES:
            return
        if counter is not None and tx.module_id is not None:
            # One counter per module, whatever the suite: it is the module's own.
            last = self.last_counter(tx.module_id)
            if counter <= last:
                state, reason, settle = "rejected", "replay", False
            else:
                db.execute("UPDATE modules SET last_counter=? WHERE module_id=?",
                           (counter, tx.module_id))
        if settle:
            payer = db.execute("SELECT balance_minor FROM accounts WHERE id=?",
                               (tx.payer,)).fetchone()
            if payer is None or payer[0] < tx.amount_minor:
                state, reason = "rejected", "insufficient_funds"
            else:
                db.execute("UPDATE accounts SET balance_minor=balance_minor-? WHERE id=?",
                           (tx.amount_minor, tx.payer))
                db.execute("UPDATE accounts SET balance_minor=balance_minor+? WHERE id=?",
                           (tx.amount_minor, tx.payee))
        db.execute("UPDATE transactions SET state=?, reason=?, counter=?, updated=? "
                   "WHERE id=?", (state, reason, counter, time.time(), tx_id))

    def pending_expired(self, now: float) -> list[bytes]:
        return [row[0] for row in self._db.execute(
            "SELECT id FROM transactions WHERE state='pending' AND expires_at < ?", (now,))]
