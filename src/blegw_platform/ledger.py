"""The platform's ledger: accounts, enrolled modules, transactions, the books.

The books are double-entry. Money enters an account only through an ``issuance`` row (an
operator's adjustment when ``seed`` sets a balance, or the opening entry of a ledger migrated
from before the books); it moves only through ``postings``: a settled transaction has exactly
one debit of its payer and one credit of its payee, of its amount and currency, written in the
same database transaction as the state change. :meth:`Ledger.audit` checks that the books
balance (``blegw-platform audit``).

Settlement is one database transaction: the transaction must still be
pending, the module counter must rise, payer and payee must still exist and hold the
transaction's currency (an account can change between creation and settlement), the payer's
balance cannot go negative and no balance can pass :data:`MAX_BALANCE_MINOR` (CHECK constraints
back the code), and the state change is final. A transaction settles at most once, whatever
arrives twice. Calls run in a worker thread so the event loop never blocks on disk.

The logic here is written once, in SQL that SQLite and PostgreSQL both speak; a store
(:mod:`.ledger_store`) connects it to one database: an SQLite file (:mod:`.ledger_sqlite`, the
default) or a PostgreSQL database shared by several workers (:mod:`.ledger_postgres`). Each
store makes a write transaction behave as if it ran alone (SQLite's write lock; PostgreSQL's
serializable isolation, whose conflicts make the whole call run again here) and holds the
schema, its constraints and its migrations.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from e2e.messages import (
    ACCOUNT_RULE,
    MAX_AMOUNT_MINOR,
    is_account_name,
    is_currency,
)

from .ledger_store import (
    LEDGER_FILE,
    LedgerConfigError,
    LedgerError,
    LedgerUnavailable,
    Store,
    is_postgres_url,
    ledger_location,
)

__all__ = ["ACCOUNT_RULE", "FINAL_STATES", "LEDGER_FILE", "MAX_BALANCE_MINOR", "PROGRESS",
           "AccountRefused", "EnrollmentCodeRefused", "Ledger", "LedgerBusy",
           "LedgerConfigError", "LedgerError", "LedgerUnavailable", "ModuleRecord",
           "PaymentRefused", "RevocationRefused", "Summary", "TerminalRecord",
           "TransactionRecord", "Violation", "is_account_name", "ledger_location"]

FINAL_STATES = {"settled", "declined", "rejected", "timed_out", "cancelled"}

PROGRESS = ("processing", "awaiting_owner")
"""What a pending transaction's module last said it was doing (its gateway forwards the
module's KEEPALIVE): ``awaiting_owner`` while it asks its owner. Empty until then."""

MAX_BALANCE_MINOR = 10**17
"""No balance may exceed this (a hundred times the largest payment, ``MAX_AMOUNT_MINOR``); a
balance plus any payment stays far below 2**63 - 1 (SQLite's INTEGER, PostgreSQL's BIGINT),
so integer arithmetic in the database can never overflow or turn into a float."""

# Account (and terminal) names are shown on the module's prompt and signed: printable ASCII
# only, so no control, escape or bidi character can reach a person through a name. The rule
# (ACCOUNT_RULE, is_account_name) is e2e's, shared with every message that names an account.

class LedgerBusy(LedgerError):
    """A call met a concurrent conflicting one on every attempt (PostgreSQL only); nothing
    of it was recorded, and it may be sent again."""


class EnrollmentCodeRefused(LedgerError):
    """The enrollment code is unknown, for another account, expired, or used for another module."""


class RevocationRefused(LedgerError):
    """The caller's revocation token is not the one the module was enrolled with."""


class AccountRefused(LedgerError):
    """An account or terminal cannot be created or changed as asked (name, currency, bounds)."""


class PaymentRefused(LedgerError):
    """A payment breaks a money rule; ``code`` says which, for the terminal's error answer."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken ledger invariant found by :meth:`Ledger.audit`."""

    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Summary:
    """What ``blegw-platform audit`` reports besides violations."""

    currencies: dict[str, tuple[int, int]]
    """currency -> (accounts, sum of balances)"""
    transactions: int
    settled: int
    postings: int
    issuance: int


@dataclass(frozen=True, slots=True)
class TerminalRecord:
    """A terminal (a merchant's till or web shop) and the payee accounts it may collect for."""

    name: str
    payees: tuple[str, ...]
    created: float
    revoked: float | None


@dataclass(frozen=True, slots=True)
class ModuleRecord:
    module_id: bytes
    account: str
    gateway_id: str
    suite: int
    certificate: bytes


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
    terminal: str | None = None
    """The terminal that created it; None for transactions made before terminals existed."""
    progress: str = ""
    """While pending: one of :data:`PROGRESS`, or empty before the module said anything."""

    def public(self) -> dict[str, Any]:
        return {"id": self.id.hex(), "state": self.state, "reason": self.reason,
                "progress": self.progress if self.state == "pending" else "",
                "payer": self.payer, "payee": self.payee, "amount_minor": self.amount_minor,
                "currency": self.currency, "order_reference": self.order_reference,
                "order_description": self.order_description, "suite": self.suite,
                "expires_at": self.expires_at, "created": self.created, "updated": self.updated}


_FIELDS = tuple(field.name for field in fields(TransactionRecord))
"""The transactions table's columns, in the order of :class:`TransactionRecord`'s fields."""
_COLUMNS = ", ".join(_FIELDS)
# Column names from the dataclass (no input reaches them), so the queries below are constant.
_PLACES = ", ".join("?" * len(_FIELDS))
_INSERT = f"INSERT INTO transactions ({_COLUMNS}) VALUES ({_PLACES})"  # noqa: S608
_SELECT = f"SELECT {_COLUMNS} FROM transactions"  # noqa: S608
_CONTEXT = ("SELECT " + ", ".join("t." + name for name in _FIELDS)  # noqa: S608
            + ", m.module_id, m.account, m.gateway_id, m.suite, m.certificate, "
            "(SELECT MAX(c.last_counter) FROM modules c WHERE c.module_id = t.module_id) "
            "FROM transactions t LEFT JOIN modules m ON m.module_id = t.module_id "
            "AND m.suite = t.suite AND m.active = 1 WHERE t.id = ?")
"""A transaction, its active module and the module's last counter: one statement, one round
trip (read on every gateway response)."""


MAX_ATTEMPTS = 20
"""How often a call that met a concurrent conflicting one runs before :class:`LedgerBusy`."""

P = ParamSpec("P")
R = TypeVar("R")


def _retrying(method: Callable[Concatenate[Ledger, P], R]) -> Callable[Concatenate[Ledger, P], R]:
    """Run a ledger call again, from the start, when its store reports a conflict.

    Only the outermost call retries (a call inside another's transaction lets the conflict
    reach the one that began it). A conflict means the database rolled the whole transaction
    back, nothing of it was written, so the retry is exact: it reads again and decides on what
    is now committed. A unique key taken by a concurrent twin is retried once (the rerun finds
    the twin's row); met again, it is no race and is raised. A broken connection is not
    retried here (a commit may or may not have happened): that call fails, and the next one
    reconnects first.
    """
    @functools.wraps(method)
    def call(self: Ledger, /, *args: P.args, **kwargs: P.kwargs) -> R:
        store = self._db
        if store.in_transaction:
            return method(self, *args, **kwargs)
        store.reset()
        once = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                return method(self, *args, **kwargs)
            except store.retryable:
                # Back off a little, with jitter, so two workers do not collide again at once.
                time.sleep(random.uniform(0, min(0.05, 0.001 * 2 ** attempt)))  # noqa: S311
            except store.retry_once:
                if once:
                    raise
                once = True
        raise LedgerBusy(f"{method.__name__}: conflicting concurrent calls on every one of "
                         f"{MAX_ATTEMPTS} attempts")
    return call


def open_store(location: Path | str) -> Store:
    """The store for ``location``: a ``postgresql://`` URL, else a path to an SQLite file."""
    if isinstance(location, str) and is_postgres_url(location):
        from .ledger_postgres import PostgresStore  # the driver loads only when it is used

        return PostgresStore(location)
    from .ledger_sqlite import SqliteStore

    return SqliteStore(Path(location))


class Ledger:
    """The ledger on one store; the same methods and rules whatever the database."""

    def __init__(self, location: Path | str) -> None:
        self._db = open_store(location)
        self.location = self._db.location
        self.path: Path | None = getattr(self._db, "path", None)
        """The SQLite file, None for a PostgreSQL ledger."""
        self._transaction = self._db.transaction
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Close the database once no call runs on it. A task cancelled while awaiting
        :meth:`run` leaves its call running in the worker thread; closing SQLite's connection
        under that call crashed the process (a segfault in sqlite3), so ``close`` waits for
        the lock every :meth:`run` call holds, and later calls get :class:`LedgerUnavailable`."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    async def run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(self._locked, fn, *args)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise LedgerUnavailable("the ledger is closed (the platform is stopping)")
            return fn(*args)

    # -- accounts and modules (sync; call through run()) ---------------------------------------
    @_retrying
    def add_account(self, account: str, currency: str, balance_minor: int) -> None:
        """Create an account or set its balance (``blegw-platform seed``).

        The difference from the old balance is recorded as an adjustment, so the books still
        balance. An account keeps the currency it was created with: a payment moves money
        between two accounts of its currency, never converts it.
        """
        if not is_account_name(account):
            raise AccountRefused(f"account name: {ACCOUNT_RULE}")
        if not is_currency(currency):
            raise AccountRefused("currency: an ISO 4217 code, three capital letters")
        if isinstance(balance_minor, bool) or not isinstance(balance_minor, int) \
                or not 0 <= balance_minor <= MAX_BALANCE_MINOR:
            raise AccountRefused(f"balance: 0..{MAX_BALANCE_MINOR} minor units")
        with self._transaction() as db:
            row = db.execute("SELECT currency, balance_minor FROM accounts WHERE id=?",
                             (account,)).fetchone()
            if row is None:
                db.execute("INSERT INTO accounts VALUES (?, ?, 0)", (account, currency))
                old = 0
            elif row[0] != currency:
                raise AccountRefused(f"account {account} holds {row[0]}, not {currency}")
            else:
                old = int(row[1])
            if balance_minor != old:
                db.execute("INSERT INTO issuance (account, currency, amount_minor, kind, "
                           "created) VALUES (?, ?, ?, 'adjustment', ?)",
                           (account, currency, balance_minor - old, time.time()))
                db.execute("UPDATE accounts SET balance_minor=? WHERE id=?",
                           (balance_minor, account))

    @_retrying
    def balance(self, account: str) -> int:
        row = self._db.execute("SELECT balance_minor FROM accounts WHERE id=?",
                               (account,)).fetchone()
        if row is None:
            raise LedgerError(f"unknown account {account}")
        return int(row[0])

    @_retrying
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

    @_retrying
    def add_enrollment_code(self, code_hash: bytes, account: str, expires_at: int) -> None:
        if self._db.execute("SELECT 1 FROM accounts WHERE id=?", (account,)).fetchone() is None:
            raise LedgerError(f"unknown account {account}")
        self._db.execute("INSERT INTO enrollment_codes VALUES (?, ?, ?, NULL)",
                         (code_hash, account, expires_at))

    @_retrying
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

    @_retrying
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

    @_retrying
    def module_for(self, account: str, suite: int) -> ModuleRecord | None:
        row = self._db.execute(
            "SELECT module_id, account, gateway_id, suite, certificate "
            "FROM modules WHERE account=? AND suite=? AND active=1", (account, suite)).fetchone()
        return ModuleRecord(*row) if row else None

    @_retrying
    def module(self, module_id: bytes, suite: int) -> ModuleRecord | None:
        row = self._db.execute(
            "SELECT module_id, account, gateway_id, suite, certificate "
            "FROM modules WHERE module_id=? AND suite=? AND active=1",
            (module_id, suite)).fetchone()
        return ModuleRecord(*row) if row else None

    @_retrying
    def context(self, tx_id: bytes) -> tuple[TransactionRecord | None, ModuleRecord | None, int]:
        """A transaction, its module and the module's last counter, read in one statement."""
        row = self._db.execute(_CONTEXT, (tx_id,)).fetchone()
        if row is None:
            return None, None, 0
        n = len(_FIELDS)
        tx = TransactionRecord(*row[:n])
        if tx.module_id is None:
            return tx, None, 0
        module = None if row[n] is None else ModuleRecord(*row[n:n + 5])
        last = row[n + 5]
        return tx, module, 0 if last is None else int(last)

    @_retrying
    def certificates_for(self, account: str, suite: int) -> list[bytes]:
        """The certificates of every active enrolment of ``account`` in ``suite``."""
        return [bytes(row[0]) for row in self._db.execute(
            "SELECT certificate FROM modules WHERE account=? AND suite=? AND active=1",
            (account, suite))]

    @_retrying
    def last_counter(self, module_id: bytes) -> int:
        row = self._db.execute("SELECT MAX(last_counter) FROM modules WHERE module_id=?",
                               (module_id,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    # -- transactions --------------------------------------------------------------------------
    @_retrying
    def create(self, record: TransactionRecord) -> tuple[TransactionRecord, bool]:
        """Insert, or return the existing transaction for the same idempotency key.

        Returns (record, created). The same key with different content is an error. A new
        payment must be one that could settle: payer and payee exist, differ and hold its
        currency, and its amount is 1..``MAX_AMOUNT_MINOR`` (:class:`PaymentRefused`
        otherwise, nothing is recorded). Settlement checks again: accounts can change.
        """
        with self._transaction() as db:
            existing = self._by_key(record.idempotency_key)
            if existing is not None:
                if existing.request_hash != record.request_hash:
                    raise LedgerError("idempotency key reused with a different request")
                return existing, False
            self._check_payment(db, record.payer, record.payee, record.amount_minor,
                                record.currency, funds=False)
            db.execute(_INSERT, [getattr(record, name) for name in _FIELDS])
        return record, True

    @staticmethod
    def _check_payment(db: Store, payer: str, payee: str, amount: int,
                       currency: str, *, funds: bool) -> None:
        """Raise :class:`PaymentRefused` unless moving ``amount`` from payer to payee keeps
        every rule: both accounts exist, differ, hold ``currency``; the amount is in range;
        with ``funds`` also that the payer has it and the payee can take it."""
        if isinstance(amount, bool) or not isinstance(amount, int) \
                or not 0 < amount <= MAX_AMOUNT_MINOR:
            raise PaymentRefused("invalid_amount", f"amount: 1..{MAX_AMOUNT_MINOR} minor units")
        if payer == payee:
            raise PaymentRefused("same_account", "payer and payee are the same account")
        rows = {row[0]: (row[1], int(row[2])) for row in db.execute(
            "SELECT id, currency, balance_minor FROM accounts WHERE id IN (?, ?)",
            (payer, payee))}
        if payer not in rows:
            raise PaymentRefused("unknown_payer", f"no account {payer}")
        if payee not in rows:
            raise PaymentRefused("unknown_payee", f"no account {payee}")
        for account, (held, _) in rows.items():
            if held != currency:
                raise PaymentRefused("currency_mismatch",
                                     f"account {account} holds {held}, not {currency}")
        if funds:
            if rows[payer][1] < amount:
                raise PaymentRefused("insufficient_funds", f"{payer} cannot pay {amount}")
            if rows[payee][1] + amount > MAX_BALANCE_MINOR:
                raise PaymentRefused("balance_limit", f"{payee} would pass the balance limit")

    def _by_key(self, key: str) -> TransactionRecord | None:
        row = self._db.execute(
            _SELECT + " WHERE idempotency_key=?", (key,)).fetchone()
        return TransactionRecord(*row) if row else None

    @_retrying
    def get(self, tx_id: bytes) -> TransactionRecord | None:
        row = self._db.execute(
            _SELECT + " WHERE id=?", (tx_id,)).fetchone()
        return TransactionRecord(*row) if row else None

    @_retrying
    def finish(self, tx_id: bytes, state: str, reason: str = "", *,
               counter: int | None = None) -> TransactionRecord:
        """Move a pending transaction to a final state, atomically; a ``settled`` state moves
        the money with it.

        A transaction that is already final is returned unchanged (first outcome wins).
        """
        return self.finish_many([(tx_id, state, reason, counter)])[0]

    @_retrying
    def finish_many(self, items: list[tuple[bytes, str, str, int | None]]
                    ) -> list[TransactionRecord]:
        """Several outcomes in one database transaction (one fsync: group commit).

        Each item is applied as :meth:`finish` would, in order; a failure rolls all back.
        Returns the final records, in the order of ``items``.
        """
        with self._transaction():
            return [self._apply(*item) for item in items]

    def _apply(self, tx_id: bytes, state: str, reason: str, counter: int | None
               ) -> TransactionRecord:
        assert state in FINAL_STATES
        # Money moves exactly when the state becomes "settled": never for another state, and a
        # settled state never without its debit and credit.
        settle = state == "settled"
        db = self._db
        tx = self.get(tx_id)
        if tx is None:
            raise LedgerError(f"unknown transaction {tx_id.hex()}")
        if tx.state in FINAL_STATES:
            return tx
        now = time.time()
        if counter is not None and tx.module_id is not None:
            # One counter per module, whatever the suite: it is the module's own.
            last = self.last_counter(tx.module_id)
            if counter <= last:
                # The counter was spent before: it is not recorded again on this transaction.
                state, reason, settle, counter = "rejected", "replay", False, None
            else:
                db.execute("UPDATE modules SET last_counter=? WHERE module_id=?",
                           (counter, tx.module_id))
        if settle:
            try:
                self._check_payment(db, tx.payer, tx.payee, tx.amount_minor, tx.currency,
                                    funds=True)
            except PaymentRefused as exc:
                state, reason = "rejected", exc.code
            else:
                sides = ((tx.payer, -tx.amount_minor), (tx.payee, tx.amount_minor))
                # Two statements for both sides (PostgreSQL pipelines each executemany).
                db.executemany("UPDATE accounts SET balance_minor=balance_minor+? WHERE id=?",
                               [(signed, account) for account, signed in sides])
                db.executemany("INSERT INTO postings (tx_id, account, currency, amount_minor, "
                               "created) VALUES (?, ?, ?, ?, ?)",
                               [(tx_id, account, tx.currency, signed, now)
                                for account, signed in sides])
        db.execute("UPDATE transactions SET state=?, reason=?, counter=?, updated=? "
                   "WHERE id=?", (state, reason, counter, now, tx_id))
        return replace(tx, state=state, reason=reason, counter=counter, updated=now)

    @_retrying
    def cancel(self, tx_id: bytes) -> TransactionRecord:
        """End a pending transaction ``cancelled`` (``cancelled_by_terminal``); no money moves.

        The same database transaction as every other outcome decides: if an approval settled
        first, the settled record comes back unchanged, and an approval that arrives after the
        cancel finds the transaction final and changes nothing. Exactly one outcome counts.
        """
        return self.finish(tx_id, "cancelled", "cancelled_by_terminal")

    @_retrying
    def set_progress(self, tx_id: bytes, progress: str) -> TransactionRecord | None:
        """Record what the module of a pending transaction is doing; the record if it changed,
        None if the transaction is not pending or already showed that."""
        if progress not in PROGRESS:
            raise LedgerError(f"progress is one of {', '.join(PROGRESS)}")
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE transactions SET progress=?, updated=? "
                "WHERE id=? AND state='pending' AND progress!=?",
                (progress, time.time(), tx_id, progress)).rowcount
            return self.get(tx_id) if changed else None

    @_retrying
    def settle_code(self, record: TransactionRecord, code_id: bytes, kind: int,
                    code_account: str, scanner_account: str) -> tuple[TransactionRecord, bool]:
        """Pay a verified transaction code once: record its use and settle, atomically.

        ``record`` is the pending transaction to create. In one database transaction: if the
        code was paid before, the earlier transaction is returned when it came from the same
        submission (``request_hash``, a retry: ``created`` False) and :class:`PaymentRefused`
        ``code_used`` otherwise; the money rules are checked (nothing is recorded if one
        fails); then the transaction, the code's use and the transfer are written together.
        The primary key on ``used_codes`` backs the check: a second use cannot commit.
        """
        with self._transaction() as db:
            row = db.execute("SELECT tx_id FROM used_codes WHERE code_id=?",
                             (code_id,)).fetchone()
            if row is not None:
                earlier = self.get(bytes(row[0]))
                if earlier is not None and earlier.request_hash == record.request_hash \
                        and earlier.terminal == record.terminal:
                    return earlier, False
                raise PaymentRefused("code_used", "this transaction code was already used")
            return self._record_use_and_settle(
                db, record, "INSERT INTO used_codes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (code_id, record.id, kind, code_account, scanner_account, record.expires_at,
                 time.time())), True

    def _record_use_and_settle(self, db: Store, record: TransactionRecord, use: str,
                               use_row: tuple[object, ...]) -> TransactionRecord:
        """Inside the caller's transaction: check the money rules, write the transaction and
        the single-use row of what paid it (``use``: its INSERT), and settle it. Shared by the
        codes of flows F-D and F-E, whose use and transfer commit together or not at all."""
        self._check_payment(db, record.payer, record.payee, record.amount_minor,
                            record.currency, funds=True)
        db.execute(_INSERT, [getattr(record, name) for name in _FIELDS])
        db.execute(use, use_row)
        settled = self._apply(record.id, "settled", "", None)
        if settled.state != "settled":  # _apply re-checks the money rules: cannot differ
            raise PaymentRefused(settled.reason or "not_settled", "the code did not settle")
        return settled

    @_retrying
    def settle_dynamic_code(self, record: TransactionRecord, payment_id: bytes,
                            merchant_device: bytes, perturbation: bytes
                            ) -> tuple[TransactionRecord, bool]:
        """Pay a verified dynamic-code payment once (flow F-E), like :meth:`settle_code`.

        In one database transaction: the same submission from the same terminal again returns
        the earlier transaction (``created`` False); a payment code paid before is refused
        ``payment_code_used``, a perturbation code of the merchant device used before
        ``stale_perturbation``; the money rules are checked; then the transaction, the use and
        the transfer are written together. The table's primary and unique keys back both
        checks: a second use cannot commit.
        """
        with self._transaction() as db:
            row = db.execute("SELECT tx_id, request_hash, terminal FROM used_dynamic_codes "
                             "WHERE payment_id=? OR (merchant_device=? AND perturbation=?)",
                             (payment_id, merchant_device, perturbation)).fetchone()
            if row is not None:
                earlier = self.get(bytes(row[0]))
                if earlier is not None and row[1] == record.request_hash \
                        and row[2] == record.terminal:
                    return earlier, False
                used = db.execute("SELECT 1 FROM used_dynamic_codes WHERE payment_id=?",
                                  (payment_id,)).fetchone()
                if used is not None:
                    raise PaymentRefused("payment_code_used",
                                         "this payment code was already paid")
                raise PaymentRefused("stale_perturbation",
                                     "this consumption code was already paid")
            return self._record_use_and_settle(
                db, record, "INSERT INTO used_dynamic_codes VALUES (?, ?, ?, ?, ?, ?, ?)",
                (payment_id, merchant_device, perturbation, record.request_hash,
                 record.terminal, record.id, time.time())), True

    @_retrying
    def dynamic_retry(self, request_hash: str, terminal: str) -> TransactionRecord | None:
        """The transaction an identical earlier submission from ``terminal`` settled, if any:
        a merchant device's retry gets it back even after the codes expired."""
        row = self._db.execute("SELECT tx_id FROM used_dynamic_codes WHERE request_hash=? "
                               "AND terminal=?", (request_hash, terminal)).fetchone()
        return None if row is None else self.get(bytes(row[0]))

    @_retrying
    def is_merchant(self, account: str) -> bool:
        """Whether an active terminal collects for ``account`` (the operator registered it)."""
        return self._db.execute(
            "SELECT 1 FROM terminal_payees JOIN terminals ON terminals.name = "
            "terminal_payees.terminal WHERE account=? AND revoked IS NULL LIMIT 1",
            (account,)).fetchone() is not None

    @_retrying
    def code_transaction(self, code_id: bytes) -> TransactionRecord | None:
        """The transaction that paid a code, if it was paid."""
        row = self._db.execute("SELECT tx_id FROM used_codes WHERE code_id=?",
                               (code_id,)).fetchone()
        return None if row is None else self.get(bytes(row[0]))

    @_retrying
    def reserve_code(self, record: TransactionRecord, code_id: bytes, kind: int,
                     code_account: str, scanner_account: str
                     ) -> tuple[TransactionRecord, bool]:
        """Spend a verified code on a *pending* transaction that waits for the payer's
        confirmation (``code_confirmation``); the confirmation's outcome settles it through
        :meth:`finish` like any approval.

        As :meth:`settle_code`, in one database transaction: a retry of the same submission
        returns the earlier transaction (``created`` False), any other second use is
        ``code_used``, the money rules (funds included: the payer is not asked for a payment
        that could not settle) are checked first, then the pending transaction and the code's
        use are written together. The code stays spent whatever the payer answers.
        """
        with self._transaction() as db:
            row = db.execute("SELECT tx_id FROM used_codes WHERE code_id=?",
                             (code_id,)).fetchone()
            if row is not None:
                earlier = self.get(bytes(row[0]))
                if earlier is not None and earlier.request_hash == record.request_hash \
                        and earlier.terminal == record.terminal:
                    return earlier, False
                raise PaymentRefused("code_used", "this transaction code was already used")
            self._check_payment(db, record.payer, record.payee, record.amount_minor,
                                record.currency, funds=True)
            db.execute(_INSERT, [getattr(record, name) for name in _FIELDS])
            db.execute("INSERT INTO used_codes VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (code_id, record.id, kind, code_account, scanner_account,
                        record.expires_at, time.time()))
        return record, True

    @_retrying
    def gateways_for(self, account: str) -> list[str]:
        """The gateways serving an active module of ``account`` (where its side is told how
        its transaction codes ended)."""
        return sorted({str(row[0]) for row in self._db.execute(
            "SELECT gateway_id FROM modules WHERE account=? AND active=1", (account,))})

    @_retrying
    def pending_expired(self, now: float) -> list[bytes]:
        return [row[0] for row in self._db.execute(
            "SELECT id FROM transactions WHERE state='pending' AND expires_at < ?", (now,))]

    # -- terminals -----------------------------------------------------------------------------
    @_retrying
    def add_terminal(self, name: str, key_hash: bytes, payees: list[str]) -> TerminalRecord:
        """Register a terminal that may collect for ``payees`` (existing accounts).

        Names are never reused, not even after revocation, so every transaction stays
        attributable to the one terminal that created it.
        """
        if not is_account_name(name):
            raise AccountRefused(f"terminal name: {ACCOUNT_RULE}")
        if not payees:
            raise AccountRefused("a terminal collects for at least one payee account")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM terminals WHERE name=?", (name,)).fetchone():
                raise AccountRefused(f"terminal {name} exists (names are never reused)")
            for payee in payees:
                if db.execute("SELECT 1 FROM accounts WHERE id=?", (payee,)).fetchone() is None:
                    raise AccountRefused(f"no account {payee}")
            now = time.time()
            db.execute("INSERT INTO terminals VALUES (?, ?, ?, NULL)", (name, key_hash, now))
            db.executemany("INSERT INTO terminal_payees VALUES (?, ?) ON CONFLICT DO NOTHING",
                           [(name, payee) for payee in payees])
        return TerminalRecord(name, tuple(sorted(set(payees))), now, None)

    @_retrying
    def terminal(self, name: str) -> tuple[TerminalRecord, bytes] | None:
        """A terminal (revoked ones too) and the hash of its key."""
        row = self._db.execute("SELECT name, key_hash, created, revoked FROM terminals "
                               "WHERE name=?", (name,)).fetchone()
        if row is None:
            return None
        payees = tuple(r[0] for r in self._db.execute(
            "SELECT account FROM terminal_payees WHERE terminal=? ORDER BY account", (name,)))
        return TerminalRecord(row[0], payees, row[2], row[3]), bytes(row[1])

    @_retrying
    def terminals(self) -> list[TerminalRecord]:
        names = [row[0] for row in self._db.execute("SELECT name FROM terminals ORDER BY name")]
        return [found[0] for name in names if (found := self.terminal(name)) is not None]

    @_retrying
    def revoke_terminal(self, name: str) -> bool:
        """Revoke a terminal's key at once; False when there is no such active terminal."""
        cursor = self._db.execute("UPDATE terminals SET revoked=? WHERE name=? AND revoked "
                                  "IS NULL", (time.time(), name))
        return bool(cursor.rowcount)

    # -- audit ---------------------------------------------------------------------------------
    @_retrying
    def summary(self) -> Summary:
        """What the books hold (see :meth:`report`)."""
        return self.report()[1]

    @_retrying
    def audit(self) -> list[Violation]:
        """The broken invariants (see :meth:`report`); an empty list means the books balance."""
        return self.report()[0]

    @_retrying
    def report(self) -> tuple[list[Violation], Summary]:
        """Check the books on one consistent snapshot and summarise that same snapshot.

        An empty list of violations means the books balance:

        * per currency, the balances add up to what was issued (no money created or lost);
        * no balance is negative or above :data:`MAX_BALANCE_MINOR`;
        * each account's balance is its issuance plus its postings, all in its currency;
        * each settled transaction has exactly one debit of its payer and one credit of its
          payee, of its amount and currency; no other transaction has postings;
        * no module signature counter was consumed twice, and no module's last counter is
          behind one it consumed.
        Sums are taken in Python, so they cannot overflow.
        """
        with self._transaction(write=False) as db:
            accounts = {row[0]: (row[1], row[2]) for row in db.execute(
                "SELECT id, currency, balance_minor FROM accounts")}
            issuance = db.execute("SELECT account, currency, amount_minor FROM issuance"
                                  ).fetchall()
            postings = db.execute("SELECT tx_id, account, currency, amount_minor FROM postings"
                                  ).fetchall()
            transactions = db.execute(
                "SELECT id, state, payer, payee, amount_minor, currency, module_id, counter "
                "FROM transactions").fetchall()
            last_counters = db.execute(
                "SELECT module_id, MAX(last_counter) FROM modules GROUP BY module_id").fetchall()
        found: list[Violation] = []
        expected: dict[str, int] = dict.fromkeys(accounts, 0)
        issued: dict[str, int] = {}
        for account, currency, amount in issuance:
            issued[currency] = issued.get(currency, 0) + amount
            if account not in accounts or accounts[account][0] != currency:
                found.append(Violation("issuance_currency",
                                       f"{amount} {currency} issued to {account}"))
            else:
                expected[account] += amount
        by_tx: dict[bytes, list[tuple[str, str, int]]] = {}
        for tx_id, account, currency, amount in postings:
            by_tx.setdefault(bytes(tx_id), []).append((account, currency, amount))
            if account not in accounts or accounts[account][0] != currency:
                found.append(Violation("posting_currency",
                                       f"{amount} {currency} posted to {account}"))
            else:
                expected[account] += amount
        held: dict[str, int] = {}
        for account, (currency, balance) in sorted(accounts.items()):
            held[currency] = held.get(currency, 0) + balance
            if not isinstance(balance, int) or not 0 <= balance <= MAX_BALANCE_MINOR:
                found.append(Violation("balance_out_of_range", f"{account}: {balance}"))
            if balance != expected[account]:
                found.append(Violation("balance_mismatch",
                                       f"{account}: balance {balance}, issuance and postings "
                                       f"{expected[account]}"))
        for currency in sorted(set(held) | set(issued)):
            if held.get(currency, 0) != issued.get(currency, 0):
                found.append(Violation(
                    "not_conserved", f"{currency}: balances {held.get(currency, 0)}, "
                                     f"issued {issued.get(currency, 0)}"))
        counters: dict[bytes, set[int]] = {}
        known: set[bytes] = set()
        for tx_id, state, payer, payee, amount, currency, module_id, counter in transactions:
            tx_id = bytes(tx_id)
            known.add(tx_id)
            lines = sorted(by_tx.get(tx_id, []), key=lambda line: line[2])
            if state == "settled":
                if lines != [(payer, currency, -amount), (payee, currency, amount)] \
                        or payer == payee or amount <= 0:
                    found.append(Violation("settlement_postings",
                                           f"transaction {tx_id.hex()}: {lines}"))
            elif lines:
                found.append(Violation("postings_without_settlement",
                                       f"transaction {tx_id.hex()} is {state}: {lines}"))
            if counter is not None and module_id is not None:
                seen = counters.setdefault(bytes(module_id), set())
                if counter in seen:
                    found.append(Violation("counter_reused",
                                           f"module {bytes(module_id).hex()} counter {counter}"))
                seen.add(counter)
        for tx_id in sorted(set(by_tx) - known):
            found.append(Violation("orphan_postings", f"no transaction {tx_id.hex()}"))
        for module_id, last in last_counters:
            spent = counters.get(bytes(module_id), set())
            if spent and max(spent) > last:
                found.append(Violation("counter_behind",
                                       f"module {bytes(module_id).hex()}: last {last}, "
                                       f"consumed {max(spent)}"))
        currencies: dict[str, tuple[int, int]] = {}
        for currency, balance in accounts.values():
            count, total = currencies.get(currency, (0, 0))
            currencies[currency] = (count + 1, total + balance)
        settled = sum(1 for row in transactions if row[1] == "settled")
        return found, Summary(currencies, len(transactions), settled, len(postings),
                              len(issuance))

    # -- side tables: the platform's other state on the same store (schema version 3) ---------
    def transact(self, fn: Callable[..., R], *args: Any) -> R:
        """Run ``fn(store, *args)`` in one transaction of the ledger's store, on its worker
        thread's connection and under its lock, rerun from the start on a conflict as every
        ledger call is. For the platform's other tables (cards, payment modes): they live in
        the same database as the money, so a worker needs one store, and a write that touches
        both (a card claiming an enrollment code) is one transaction."""
        result: R = self._locked(self._transact, fn, *args)
        return result

    async def run_transact(self, fn: Callable[..., R], *args: Any) -> R:
        """:meth:`transact` off the event loop."""
        return await asyncio.to_thread(self.transact, fn, *args)

    async def run_read(self, fn: Callable[..., R], *args: Any) -> R:
        """``fn(store, *args)`` off the event loop for a read of ONE statement (atomic on its
        own): no explicit transaction, so no write lock on SQLite and one round trip instead of
        three on PostgreSQL; the card relay look-up runs on every gateway response."""
        return await asyncio.to_thread(self._locked, self._read, fn, *args)

    @_retrying
    def _read(self, fn: Callable[..., R], *args: Any) -> R:
        return fn(self._db, *args)

    @_retrying
    def _transact(self, fn: Callable[..., R], *args: Any) -> R:
        with self._transaction() as db:
            return fn(db, *args)
