"""Payment modes: which verification of its owner a module must do, per payer and amount.

A payer sets two amounts (minor units): up to ``no_verification_up_to`` a payment needs no
verification (the owner's approval alone), from ``fingerprint_from`` on it needs the enrolled
finger, and in between the PIN. A payer who set nothing pays with the PIN. The module does the
verification on its own side (the PIN never leaves it) and reports what it did inside its
signed approval; :func:`satisfies` is the platform's check of that report.

Strength, weakest first: none, presence (a button), PIN, fingerprint. The platform refuses an
approval whose verification ranks below what it asked for; a stronger one passes.

The table ``payment_modes`` lives on the ledger's store (schema version 3, SQLite or
PostgreSQL), beside the ledger's own tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from e2e import UserVerification

if TYPE_CHECKING:
    from .ledger import Ledger
    from .ledger_store import Store

__all__ = ["PaymentMode", "PaymentModeError", "PaymentModes", "required_verification",
           "satisfies"]


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
    """The payers' modes, on the ledger's store (each call one transaction of its connection)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def close(self) -> None:
        """Nothing of its own to close: the ledger owns the connection."""

    @staticmethod
    def _set(db: Store, account: str, mode: PaymentMode) -> None:
        db.execute("INSERT INTO payment_modes VALUES (?, ?, ?) ON CONFLICT (account) DO UPDATE "
                   "SET no_verification_up_to=excluded.no_verification_up_to, "
                   "fingerprint_from=excluded.fingerprint_from",
                   (account, mode.no_verification_up_to, mode.fingerprint_from))

    @staticmethod
    def _get(db: Store, account: str) -> PaymentMode:
        row = db.execute("SELECT no_verification_up_to, fingerprint_from FROM "
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
        await self._ledger.run_transact(self._set, account, mode)

    async def get(self, account: str) -> PaymentMode:
        return await self._ledger.run_read(self._get, account)

    async def required(self, account: str, amount_minor: int) -> UserVerification:
        return required_verification(await self.get(account), amount_minor)
