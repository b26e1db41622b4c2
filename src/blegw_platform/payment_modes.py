"""Payment modes: which verification of its owner a module must do, per payer and amount.

A payer sets two amounts (minor units): up to ``no_verification_up_to`` a payment needs no
verification (the owner's approval alone), from ``fingerprint_from`` on it needs the enrolled
finger, and in between the PIN. A payer who set nothing pays with the PIN. The module does the
verification on its own side (the PIN never leaves it) and reports what it did inside its
signed approval; :func:`satisfies` is the platform's check of that report.

Strength, weakest first: none, presence (a button), PIN, fingerprint. The platform refuses an
approval whose verification ranks below what it asked for; a stronger one passes.

The table ``payment_modes`` lives in the ledger's SQLite file, beside the ledger's own tables.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from e2e import UserVerification

__all__ = ["PaymentMode", "PaymentModeError", "PaymentModes", "required_verification",
           "satisfies"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS payment_modes (
    account TEXT PRIMARY KEY,
    no_verification_up_to INTEGER NOT NULL CHECK (no_verification_up_to >= 0),
    fingerprint_from INTEGER CHECK (fingerprint_from IS NULL OR fingerprint_from > 0)
);
"""

_RANK = {UserVerification.NONE: 0, UserVerification.PRESENCE: 1, UserVerification.PIN: 2,
         UserVerification.FINGERPRINT: 3}
MAX_AMOUNT = 10**15


class PaymentModeError(ValueError):
    """A payment mode that cannot be set (negative limits, fingerprint below the free limit)."""


@dataclass(frozen=True, slots=True)
class PaymentMode:
    no_verification_up_to: int = 0
    fingerprint_from: int | None = None


def required_verification(mode: PaymentMode, amount_minor: int) -> UserVerification:
    """What the module must do for this amount under the payer's mode."""
    if amount_minor <= mode.no_verification_up_to:
        return UserVerification.NONE
    if mode.fingerprint_from is not None and amount_minor >= mode.fingerprint_from:
        return UserVerification.FINGERPRINT
    return UserVerification.PIN


def satisfies(done: UserVerification, required: UserVerification) -> bool:
    """Whether a verification the module reports is at least the one asked for."""
    return _RANK[done] >= _RANK[required]


class PaymentModes:
    """The payers' modes, on their own connection to the ledger file (WAL)."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def _set(self, account: str, mode: PaymentMode) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO payment_modes VALUES (?, ?, ?)",
                             (account, mode.no_verification_up_to, mode.fingerprint_from))

    def _get(self, account: str) -> PaymentMode:
        with self._lock:
            row = self._db.execute("SELECT no_verification_up_to, fingerprint_from FROM "
                                   "payment_modes WHERE account=?", (account,)).fetchone()
        return PaymentMode(int(row[0]), None if row[1] is None else int(row[1])) if row \
            else PaymentMode()

    async def set(self, account: str, mode: PaymentMode) -> None:
        """The payer's choice (through the operator's command)."""
        if not 0 <= mode.no_verification_up_to <= MAX_AMOUNT:
            raise PaymentModeError("the no-verification limit is 0 or more")
        if mode.fingerprint_from is not None and not (
                mode.no_verification_up_to < mode.fingerprint_from <= MAX_AMOUNT):
            raise PaymentModeError("the fingerprint amount is above the no-verification limit")
        await asyncio.to_thread(self._set, account, mode)

    async def get(self, account: str) -> PaymentMode:
        return await asyncio.to_thread(self._get, account)

    async def required(self, account: str, amount_minor: int) -> UserVerification:
        return required_verification(await self.get(account), amount_minor)
