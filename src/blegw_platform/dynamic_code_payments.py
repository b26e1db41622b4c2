"""Settling dynamic-code payments (flow F-E): the settlement unit's checks, then the ledger.

A merchant device's terminal submits the settlement request its secure unit sealed to the
settlement server. The settlement unit (``dynamic_code.SettlementUnit``, in a worker thread:
SM2 decryption and verification take milliseconds) checks both device certificates against
the CA and the device registry, both signatures, the binding to the merchant device, expiry
and the owner's finger as the platform's policy asks for this payer. The terminal must collect
for the merchant device's account. The ledger then pays once (:meth:`Ledger.settle_dynamic_code`):
each payment code and each perturbation code of a merchant device once, the transfer with it.

Every refusal is a :class:`PlatformError` with the typed error's code; nothing is recorded for
a refused request, so the honest payer can pay with a new consumption code.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time

from dynamic_code import DynamicCodeError, Verification, VerifiedPayment

from .device_authority import DeviceAuthority
from .ledger import PaymentRefused, TerminalRecord, TransactionRecord
from .platform import LEDGER_FAULTS, Platform, PlatformError, ledger_fault

__all__ = ["DynamicCodePayments", "dynamic_status"]

log = logging.getLogger("blegw.platform.dynamic_codes")

_STATUS = {"malformed_dynamic_code": 400, "unsupported_dynamic_code": 400,
           "device_revoked": 403, "device_certificate_refused": 403}


def dynamic_status(error: DynamicCodeError) -> int:
    """HTTP status of a refusal: 400 for bytes that are no request, 403 for a device the CA
    or the registry does not vouch for, 422 for every other check that failed."""
    return _STATUS.get(error.code, 422)


class DynamicCodePayments:
    """One per platform; owns the device authority (registry, settlement unit)."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.ledger = platform.ledger
        self.authority = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)

    def close(self) -> None:
        self.authority.close()

    async def submit(self, data: bytes, terminal: TerminalRecord
                     ) -> tuple[TransactionRecord, bool]:
        """Verify and settle a settlement request; (transaction, created)."""
        request_hash = hashlib.sha256(data).hexdigest()
        try:
            earlier: TransactionRecord | None = await self.ledger.run(
                self.ledger.dynamic_retry, request_hash, terminal.name)
        except LEDGER_FAULTS as exc:
            raise ledger_fault("look up an earlier submission", exc) from exc
        if earlier is not None:
            return earlier, False
        try:
            verified = await asyncio.to_thread(self.authority.open, data, int(time.time()))
        except DynamicCodeError as exc:
            raise PlatformError(str(exc), dynamic_status(exc), exc.code) from exc
        if verified.payee not in terminal.payees:
            raise PlatformError(f"terminal {terminal.name} does not collect for "
                                f"{verified.payee}", 403, "payee_not_allowed")
        return await self._settle(verified, data, request_hash, terminal)

    async def _settle(self, paid: VerifiedPayment, data: bytes, request_hash: str,
                      terminal: TerminalRecord) -> tuple[TransactionRecord, bool]:
        now = time.time()
        how = "finger matched by the platform" if paid.verification is Verification.FEATURES \
            else "finger matched by the payer's unit"
        record = TransactionRecord(
            secrets.token_bytes(16), f"dynamic {paid.payment_id.hex()}", request_hash,
            paid.payer, paid.payee, paid.amount_minor, paid.currency,
            f"dynamic code {paid.payment_id[:6].hex()}", f"dynamic code ({how})",
            int(paid.suite), paid.payer_device, paid.payment_id[:16],
            paid.expires_at, data, "pending", "", None, now, now, terminal.name)
        try:
            settled, created = await self.ledger.run(
                self.ledger.settle_dynamic_code, record, paid.payment_id, paid.merchant_device,
                paid.perturbation)
        except PaymentRefused as exc:
            status = 409 if exc.code in ("payment_code_used", "stale_perturbation") else 422
            raise PlatformError(str(exc), status, exc.code) from exc
        except LEDGER_FAULTS as exc:
            raise ledger_fault(f"record dynamic-code payment {paid.payment_id.hex()}",
                               exc) from exc
        if created:
            log.info("dynamic code %s paid: %d %s from %s to %s (transaction %s)",
                     paid.payment_id[:6].hex(), paid.amount_minor, paid.currency, paid.payer,
                     paid.payee, settled.id.hex())
        return settled, created
