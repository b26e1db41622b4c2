"""The ledger's PostgreSQL store: one database shared by every platform worker.

Driver: psycopg 3, used synchronously in the ledger's worker thread exactly as sqlite3 is
(the ledger's logic and its callers stay the same for both stores); its binary package
bundles libpq, so nothing else is installed on the worker.

Every transaction runs at ``SERIALIZABLE`` isolation (the session's default, so even a single
statement does): PostgreSQL aborts whichever of two concurrent transactions would make the
outcome differ from running them one after the other, with SQLSTATE 40001, and the ledger runs
that call again from the start (:attr:`PostgresStore.retryable`). Two workers settling from
one payer, or one transaction twice, therefore behave as on SQLite's single writer. CHECK,
UNIQUE and foreign-key constraints back every money rule in the database itself.

The schema is versioned in ``schema_migrations``; migrations run under a transaction-scoped
advisory lock, so workers starting together do not race on DDL.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors

from .ledger_store import Cursor, LedgerError, LedgerUnavailable, Store

__all__ = ["SCHEMA_VERSION", "PostgresStore"]

SCHEMA = """
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    currency TEXT NOT NULL,
    balance_minor BIGINT NOT NULL
        CHECK (balance_minor >= 0 AND balance_minor <= 100000000000000000)
);
CREATE TABLE modules (
    module_id BYTEA NOT NULL,
    account TEXT NOT NULL REFERENCES accounts(id),
    gateway_id TEXT NOT NULL,
    suite INTEGER NOT NULL,
    certificate BYTEA NOT NULL,
    last_counter BIGINT NOT NULL DEFAULT 0,
    active INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    revoke_hash BYTEA,
    PRIMARY KEY (module_id, suite)
);
CREATE TABLE enrollment_codes (
    code_hash BYTEA PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(id),
    expires_at BIGINT NOT NULL,
    module_id BYTEA
);
CREATE TABLE transactions (
    id BYTEA PRIMARY KEY,
    idempotency_key TEXT UNIQUE NOT NULL,
    request_hash TEXT NOT NULL,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency TEXT NOT NULL,
    order_reference TEXT NOT NULL,
    order_description TEXT NOT NULL,
    suite INTEGER NOT NULL,
    module_id BYTEA,
    nonce BYTEA UNIQUE NOT NULL,
    expires_at BIGINT NOT NULL,
    envelope BYTEA NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'settled', 'declined', 'rejected',
                                         'timed_out', 'cancelled')),
    reason TEXT NOT NULL DEFAULT '',
    counter BIGINT,
    created DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    terminal TEXT,
    progress TEXT NOT NULL DEFAULT ''
);
CREATE TABLE issuance (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('issuance', 'adjustment', 'opening')),
    created DOUBLE PRECISION NOT NULL
);
CREATE TABLE postings (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id BYTEA NOT NULL REFERENCES transactions(id),
    account TEXT NOT NULL REFERENCES accounts(id),
    currency TEXT NOT NULL,
    amount_minor BIGINT NOT NULL CHECK (amount_minor != 0),
    created DOUBLE PRECISION NOT NULL
);
CREATE UNIQUE INDEX postings_one_per_side ON postings (tx_id, (amount_minor > 0));
CREATE TABLE terminals (
    name TEXT PRIMARY KEY,
    key_hash BYTEA NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    revoked DOUBLE PRECISION
);
CREATE TABLE terminal_payees (
    terminal TEXT NOT NULL REFERENCES terminals(name),
    account TEXT NOT NULL REFERENCES accounts(id),
    PRIMARY KEY (terminal, account)
);
CREATE TABLE used_codes (
    code_id BYTEA PRIMARY KEY CHECK (octet_length(code_id) = 32),
    tx_id BYTEA NOT NULL UNIQUE REFERENCES transactions(id),
    kind INTEGER NOT NULL,
    code_account TEXT NOT NULL,
    scanner_account TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    created DOUBLE PRECISION NOT NULL
);
CREATE INDEX transactions_pending ON transactions (expires_at) WHERE state = 'pending';
CREATE INDEX modules_account ON modules (account, suite);
"""
"""Version 1: the same tables, columns and rules as the SQLite ledger's version 1."""

DYNAMIC_CODES = """
CREATE TABLE used_dynamic_codes (
    payment_id BYTEA PRIMARY KEY CHECK (octet_length(payment_id) = 32),
    merchant_device BYTEA NOT NULL,
    perturbation BYTEA NOT NULL,
    request_hash TEXT NOT NULL,
    terminal TEXT NOT NULL,
    tx_id BYTEA NOT NULL UNIQUE REFERENCES transactions(id),
    created DOUBLE PRECISION NOT NULL,
    UNIQUE (merchant_device, perturbation)
);
CREATE INDEX used_dynamic_codes_request ON used_dynamic_codes (request_hash);
"""
"""Version 2: the dynamic codes' single-use table, as the SQLite ledger's version 2."""

SIDE_TABLES = """
CREATE TABLE card_enrollments (
    card_ref BYTEA PRIMARY KEY,
    account TEXT NOT NULL,
    gateway_id TEXT NOT NULL,
    enrolled DOUBLE PRECISION NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    revoke_hash BYTEA
);
CREATE TABLE card_relays (
    relay_id BYTEA PRIMARY KEY,
    tx_id BYTEA NOT NULL,
    step TEXT NOT NULL CHECK (step IN ('challenge', 'request')),
    answered INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE card_replay (
    entry BYTEA PRIMARY KEY,
    last_valid BIGINT NOT NULL
);
CREATE TABLE payment_modes (
    account TEXT PRIMARY KEY,
    no_verification_up_to BIGINT NOT NULL CHECK (no_verification_up_to >= 0),
    fingerprint_from BIGINT CHECK (fingerprint_from IS NULL OR fingerprint_from > 0)
);
"""
"""Version 3: the card and payment-mode tables, as the SQLite ledger's version 3."""

MIGRATIONS: tuple[str, ...] = (SCHEMA, DYNAMIC_CODES, SIDE_TABLES)
"""Migration ``n`` (0-based) brings the schema from version ``n`` to ``n + 1``."""

SCHEMA_VERSION = len(MIGRATIONS)

MIGRATION_LOCK = 0x626C6567775F6C67
"""The advisory lock key held while the schema is checked and migrated ("blegw_lg")."""

CONNECT_TIMEOUT = 10
"""Seconds to reach the server before the ledger reports it unavailable."""


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """The ledger's ``?`` placeholders as psycopg's ``%s`` (the ledger's SQL has no ``%``)."""
    if "%" in sql:
        raise LedgerError("a ledger statement may not contain '%'")
    return sql.replace("?", "%s")


class PostgresStore:
    """The ledger's connection to its PostgreSQL database (see the module's docstring)."""

    retryable: tuple[type[BaseException], ...] = (errors.SerializationFailure,
                                                  errors.DeadlockDetected)
    retry_once: tuple[type[BaseException], ...] = (errors.UniqueViolation,)
    """PostgreSQL reports a key taken by a concurrent transaction as a serialization failure
    only when this transaction had read that key's index; the ledger reads by idempotency key
    or code id, not by every unique column (a transaction id, a nonce), so a duplicate of
    those from a concurrent twin arrives as a unique violation. Run once more, the call reads
    the twin's committed row and answers as for a retry."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = psycopg.conninfo.conninfo_to_dict(url)
        self.location = "postgresql database " + str(parsed.get("dbname", ""))
        self._depth = 0
        self._conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _connect(self) -> psycopg.Connection[Any]:
        """A connection whose every transaction is serializable and commits synchronously
        (set on the session, so parameters in the URL, ``options`` included, stay the
        deployment's)."""
        url = self.url
        if "connect_timeout" not in psycopg.conninfo.conninfo_to_dict(url):
            url = psycopg.conninfo.make_conninfo(url, connect_timeout=CONNECT_TIMEOUT)
        try:
            conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerUnavailable(f"ledger {self.location}: {exc}") from exc
        try:
            conn.execute("SET default_transaction_isolation = 'serializable'")
            conn.execute("SET synchronous_commit = on")
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self) -> None:
        conn = self._conn
        with conn.transaction():
            # DDL under READ COMMITTED: the advisory lock, not serializability, orders it.
            conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations ("
                         "version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
            row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
                               ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise LedgerUnavailable(
                    f"ledger {self.location}: schema version {version} is newer than this "
                    f"program's {SCHEMA_VERSION}; upgrade the program")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement.encode())
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)",
                             (step + 1, time.time()))

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        for value in params:
            if isinstance(value, str) and "\x00" in value:
                # PostgreSQL text cannot hold NUL; refuse it as a rule, not a driver error.
                raise LedgerError("a text value contains a NUL character")
        with self._unavailable_if_broken():
            cursor: Cursor = self._conn.execute(_placeholders(sql), params)
        return cursor

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        with self._unavailable_if_broken(), self._conn.cursor() as cursor:
            cursor.executemany(_placeholders(sql), rows)

    @contextlib.contextmanager
    def _unavailable_if_broken(self) -> Iterator[None]:
        """A lost connection (server gone, fail-over, network) as :class:`LedgerUnavailable`,
        the typed error the platform answers with 503; a conflict stays itself (retried)."""
        try:
            yield
        except psycopg.OperationalError as exc:
            if not self._conn.broken or isinstance(exc, self.retryable):
                raise
            raise LedgerUnavailable(f"ledger {self.location}: the connection was lost") \
                from exc

    @contextlib.contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Store]:
        if self._depth:
            self._depth += 1
            try:
                yield self
            finally:
                self._depth -= 1
            return
        self._depth = 1
        try:
            with self._unavailable_if_broken(), self._conn.transaction():
                if not write:
                    # A consistent snapshot that never aborts and never holds writers back.
                    self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ "
                                       "READ ONLY")
                yield self
        finally:
            self._depth = 0

    def reset(self) -> None:
        """Reconnect when the connection broke (server restart, network): the call that saw
        the break failed; the next one gets a new connection."""
        if self._conn.broken:           # not after close(): a closed ledger stays closed
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = self._connect()

    def close(self) -> None:
        self._conn.close()

