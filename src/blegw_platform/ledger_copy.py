"""Copy an SQLite ledger into an empty PostgreSQL ledger: the move from one platform process to
several workers sharing one database (docs/scale-out.md, "Moving a ledger to PostgreSQL").

Every table of the source (the money, the transactions and what settled them, the terminals,
the cards, the payment modes; whatever its schema version holds) is copied in ONE PostgreSQL
transaction: a copy that fails part way leaves the target as empty as it was. The target must
be empty (a ledger that already took payments is never merged into: two books would be one).
Before the transaction commits, the copy compares, table by table, the number of rows, and per
currency the sum of the balances, with the source's snapshot; a difference rolls it all back.
After the commit the target's own audit runs (money conserved, one debit and one credit per
settlement...) and its findings are reported.

The source is read in one read transaction (WAL: a platform still serving on it is not held
back, but its payments after the snapshot are not copied; stop it first).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .ledger import Ledger, Violation
from .ledger_postgres import PostgresStore
from .ledger_sqlite import SqliteStore
from .ledger_store import LedgerError, Store, check_postgres_url, is_postgres_url

__all__ = ["CopyMismatch", "CopyResult", "LedgerCopyError", "TargetNotEmpty", "copy_ledger"]

TABLE_ORDER = ("accounts", "modules", "enrollment_codes", "transactions", "issuance",
               "postings", "terminals", "terminal_payees", "used_codes", "used_dynamic_codes",
               "card_enrollments", "card_relays", "card_replay", "payment_modes")
"""Tables referred to first (foreign keys); a table not named here is copied after these."""

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
"""A table or column name the copy puts into its SQL; every one is also checked to exist in
the target's schema, which this program made, so a hostile file's names reach no statement."""

IDENTITY_TABLES = ("issuance", "postings")
"""Tables whose ``id`` PostgreSQL generates: copied as they are, then the generator moved on."""


class LedgerCopyError(LedgerError):
    """The ledger cannot be copied (no SQLite source, a target that is not PostgreSQL...)."""


class TargetNotEmpty(LedgerCopyError):
    """The target ledger already holds rows: a copy never merges two sets of books."""


class CopyMismatch(LedgerCopyError):
    """What the target holds after the copy is not what the source held (rolled back)."""


@dataclass(frozen=True, slots=True)
class CopyResult:
    rows: dict[str, int]
    """Rows copied, per table."""
    balances: dict[str, int]
    """Sum of the balances per currency, the same in both ledgers."""
    violations: list[Violation]
    """The target's audit after the copy (empty: its books balance)."""


def copy_ledger(source: Path | str, target: str) -> CopyResult:
    """Copy the SQLite ledger at ``source`` into the empty PostgreSQL ledger at ``target``."""
    if not isinstance(source, Path) or is_postgres_url(str(source)):
        raise LedgerCopyError("the configured ledger is not an SQLite file; the copy reads an "
                              "SQLite ledger")
    if not is_postgres_url(target):
        raise LedgerCopyError("--to: a postgresql://... URL")
    check_postgres_url(target)
    if not source.is_file():
        raise LedgerCopyError(f"no ledger at {source}")
    src = SqliteStore(source)           # brings an older file to this program's schema first
    try:
        dst = PostgresStore(target)
        try:
            rows, balances = _copy(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    ledger = Ledger(target)
    try:
        violations = ledger.audit()
    finally:
        ledger.close()
    return CopyResult(rows, balances, violations)


def _tables(src: Store) -> list[str]:
    names = [str(row[0]) for row in src.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "AND name != 'schema_migrations'")]
    return sorted(names, key=lambda n: (TABLE_ORDER.index(n) if n in TABLE_ORDER
                                        else len(TABLE_ORDER), n))


def _balances(db: Store) -> dict[str, int]:
    return {str(currency): int(total) for currency, total in db.execute(
        "SELECT currency, SUM(balance_minor) FROM accounts GROUP BY currency")}


def _copy(src: Store, dst: Store) -> tuple[dict[str, int], dict[str, int]]:
    with src.transaction(write=False), dst.transaction():
        tables = _tables(src)
        target_columns: dict[str, set[str]] = {}
        for table, column in dst.execute(
                "SELECT table_name, column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema()"):
            target_columns.setdefault(str(table), set()).add(str(column))
        for table in tables:
            if not _NAME.fullmatch(table):
                raise LedgerCopyError(f"the source has a table named {table!r}")
            if table not in target_columns:
                raise LedgerCopyError(f"the target has no table {table}: its schema is older "
                                      "than the source's")
            if dst.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is not None:  # noqa: S608
                raise TargetNotEmpty(f"the target ledger is not empty (table {table} has "
                                     "rows); a copy goes into a new, empty database")
        rows: dict[str, int] = {}
        for table in tables:
            columns = [str(row[1]) for row in src.execute(f"PRAGMA table_info({table})")]
            # the names below were matched with _NAME and exist in the target: S608 is answered
            missing = sorted(set(columns) - target_columns[table])
            if missing:
                raise LedgerCopyError(f"the target's {table} has no column {missing[0]}")
            names = ", ".join(columns)
            data = [tuple(row) for row in src.execute(f"SELECT {names} FROM {table}")]  # noqa: S608
            overriding = " OVERRIDING SYSTEM VALUE" if table in IDENTITY_TABLES else ""
            if data:
                marks = ", ".join("?" for _ in columns)
                insert = f"INSERT INTO {table} ({names}){overriding} VALUES ({marks})"  # noqa: S608
                dst.executemany(insert, data)
            if table in IDENTITY_TABLES:
                advance = (f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                           f"COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM {table}")
                dst.execute(advance)
            rows[table] = len(data)
        for table in tables:
            copied = dst.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            if int(copied) != rows[table]:
                raise CopyMismatch(f"{table}: {rows[table]} rows read, {copied} in the target")
        balances = _balances(src)
        if _balances(dst) != balances:
            raise CopyMismatch(f"balances per currency differ: {balances} in the source, "
                               f"{_balances(dst)} in the target")
    return rows, balances
