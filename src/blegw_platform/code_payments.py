"""Paying module-signed transaction codes (flow F-D): verify, bind, settle once.

A scanning terminal submits either

* a **countersigned request** (its own module signed the scanned code together with its
  account and the amount): the scanner's signature is checked first against the certificate
  enrolled for the scanner's account, then the embedded code's against the one enrolled for the
  code's account, then expiry, the amount and the parties (``transaction_code.checks``); or
* a **presented payment code** (the scanner has no module; its API key is its credential): the
  payer's signature, expiry and amount are checked, and the terminal must collect for the
  account it names, as for any payment it starts.

An unsigned collection code (a payee without a module) is paid only on the payer's
countersignature and only into a registered merchant's account (one an active terminal collects
for): anyone can print such a code, so the payer's module shows the payee and the platform
pays no private account through one.

A payment code (shown by a payer) pays only an account the submitting terminal collects for, so
a screenshot of someone's payment code cannot be cashed into an account of the thief's choosing
without a merchant terminal registered for it. The code is then paid exactly once: its
single-use id and the transfer are written in one database transaction
(:meth:`Ledger.settle_code`); a retry of the same submission returns the same transaction.

When the operator's policy asks for it (``code_confirmation``: above an amount, or every
collection code), a verified code is not settled at once: it is spent on a *pending*
transaction (:meth:`Ledger.reserve_code`, one database transaction) and the payer's module is
asked to approve exactly that transaction through flow F-A; the platform's usual answer path
settles it on an approval and on nothing else. A crash between that commit and the request
leaving leaves a pending transaction the sweeper ends ``timed_out``: nothing moves, the code
stays spent. Every final code transaction is announced to both sides (``code_notices``).

Every refusal is a :class:`~blegw_platform.platform.PlatformError` with the code of the typed
error that caused it (docs/transaction-codes.md lists them); nothing is recorded for a refused
code, so the honest holder can still use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Iterable
from typing import Any

from e2e import (
    Certificate,
    ConfirmationRequest,
    E2EError,
    MalformedMessage,
    Suite,
    encode_envelope,
    verify_certificate,
)
from e2e.suites import PublicKey
from relay_contract import RelayRequest, topic
from transaction_code import (
    CodeError,
    CodeExpired,
    CodeKind,
    CodePayment,
    CountersignedCode,
    ScannerNotEnrolled,
    TransactionCode,
    UnknownSigner,
    UnsignedCodeRefused,
    check_countersigned,
    check_presented,
    signer_reference,
)

from .code_notices import CodeNotifier
from .ledger import ModuleRecord, PaymentRefused, TerminalRecord, TransactionRecord
from .platform import LEDGER_FAULTS, Platform, PlatformError, ledger_fault

__all__ = ["CodePayments", "code_status"]

log = logging.getLogger("blegw.platform.codes")

_STATUS = {"malformed_code": 400, "unsupported_code": 400, "image_unreadable": 400}
"""HTTP status of each code error; every other refusal of a well-formed code is 422."""


def code_status(error: CodeError) -> int:
    return _STATUS.get(error.code, 422)



def code_idempotency_key(code_id: bytes) -> str:
    """The ledger's idempotency key for paying a code.

    It shares the column with terminals' keys (``<terminal>:<key>``) and the operator's (a
    bare key), neither of which can hold a space; a terminal named ``code`` that sent the
    code's id as its key would otherwise have taken the key first and made the code unpayable.
    """
    return f"code {code_id.hex()}"


class CodePayments:
    """The platform's side of flow F-D; one per platform, stateless apart from the ledger."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.ledger = platform.ledger
        self.notifier = CodeNotifier(platform)

    async def _keys(self, wanted: Iterable[tuple[str, Suite, bytes | None]]
                    ) -> dict[tuple[str, Suite, bytes], PublicKey]:
        """The verifying keys of the active, CA-certified enrolments named by (account, suite,
        signer reference). Only the certificates a submission names are decoded and checked
        against the CA, off the event loop (an SM2 verification takes milliseconds); an
        account's other modules cost nothing and log nothing."""
        found: list[tuple[str, Suite, bytes]] = []
        for account, suite, ref in set(wanted):
            if ref is None:  # an unsigned code names no signer
                continue
            certificates: list[bytes] = await self.ledger.run(
                self.ledger.certificates_for, account, int(suite))
            found += [(account, suite, raw) for raw in certificates
                      if signer_reference(raw) == ref]
        return await asyncio.to_thread(self._verified, found)

    def _verified(self, found: list[tuple[str, Suite, bytes]]
                  ) -> dict[tuple[str, Suite, bytes], PublicKey]:
        keys: dict[tuple[str, Suite, bytes], PublicKey] = {}
        now = int(time.time())
        for account, suite, raw in found:
            try:
                cert = Certificate.decode(raw)
                key = verify_certificate(cert, self.platform.cas[suite].public_key, now=now)
            except E2EError as exc:
                log.warning("enrolled certificate of %s refused: %s", account, exc)
                continue
            keys[(account, suite, signer_reference(raw))] = key
        return keys

    async def submit_countersigned(self, data: bytes, terminal: TerminalRecord
                                   ) -> tuple[TransactionRecord, bool]:
        """Verify and pay a countersigned request; (transaction, created)."""
        try:
            request = CountersignedCode.decode(data)
            code = request.scanned
        except CodeError as exc:
            raise PlatformError(str(exc), code_status(exc), exc.code) from exc
        keys = await self._keys([(request.account, request.suite, request.signer),
                                 (code.account, code.suite, code.signer)])

        def resolve(account: str, suite: Suite, ref: bytes) -> PublicKey:
            key = keys.get((account, suite, ref))
            if key is None:
                scanner = (account, suite, ref) == (request.account, request.suite,
                                                    request.signer)
                raise (ScannerNotEnrolled if scanner else UnknownSigner)(
                    f"no module enrolled for {account} in {suite.name} signed this")
            return key

        now = int(time.time())
        try:  # SM2 verification takes milliseconds: off the event loop
            payment = await asyncio.to_thread(check_countersigned, request, resolve, now=now)
        except CodeExpired as exc:
            return await self._retried(code, data, terminal, exc)
        except CodeError as exc:
            raise PlatformError(str(exc), code_status(exc), exc.code) from exc
        if code.kind is CodeKind.PAYMENT and payment.payee not in terminal.payees:
            raise PlatformError(f"terminal {terminal.name} does not collect for "
                                f"{payment.payee}", 403, "payee_not_allowed")
        if not payment.code_signed and not await self.ledger.run(self.ledger.is_merchant,
                                                                 code.account):
            refused = UnsignedCodeRefused(f"{code.account} is not a registered merchant: its "
                                          "collection codes must be signed by its module")
            raise PlatformError(str(refused), code_status(refused), refused.code)
        if self._asks_payer(payment):
            # The payer's module: the code's signer for a payment code, the scanner for a
            # collection code (the payer scanned it).
            signer = (code.suite, code.signer) if code.kind is CodeKind.PAYMENT \
                else (request.suite, request.signer)
            return await self._confirm(payment, data, terminal, *signer)
        return await self._settle(payment, data, terminal)

    async def submit_presented(self, code_bytes: bytes, account: str, amount_minor: int,
                               currency: str, terminal: TerminalRecord
                               ) -> tuple[TransactionRecord, bool]:
        """Verify and pay a payment code presented by a terminal without a module."""
        if account not in terminal.payees:
            raise PlatformError(f"terminal {terminal.name} does not collect for {account}",
                                403, "payee_not_allowed")
        try:
            code = TransactionCode.decode(code_bytes)
        except CodeError as exc:
            raise PlatformError(str(exc), code_status(exc), exc.code) from exc
        keys = await self._keys([(code.account, code.suite, code.signer)])

        def resolve(who: str, suite: Suite, ref: bytes) -> PublicKey:
            key = keys.get((who, suite, ref))
            if key is None:
                raise UnknownSigner(f"no module enrolled for {who} in {suite.name} signed this")
            return key

        submission = b"presented\x00" + code_bytes + b"\x00" + f"{account}\x00{amount_minor}" \
            f"\x00{currency}".encode()
        try:
            payment = await asyncio.to_thread(check_presented, code_bytes, account,
                                              amount_minor, currency, resolve,
                                              now=int(time.time()))
        except CodeExpired as exc:
            return await self._retried(code, submission, terminal, exc)
        except CodeError as exc:
            raise PlatformError(str(exc), code_status(exc), exc.code) from exc
        if self._asks_payer(payment):
            return await self._confirm(payment, submission, terminal, code.suite, code.signer)
        return await self._settle(payment, submission, terminal)

    async def _retried(self, code: TransactionCode, submission: bytes,
                       terminal: TerminalRecord, expired: CodeExpired
                       ) -> tuple[TransactionRecord, bool]:
        """A retry that arrives after the code expired still gets the transaction its first
        try paid (same terminal, same bytes: nothing moves again); anything else is
        ``code_expired``."""
        earlier = await self.status(code.code_id())
        if earlier is not None and earlier.terminal == terminal.name \
                and earlier.request_hash == hashlib.sha256(submission).hexdigest():
            return earlier, False
        raise PlatformError(str(expired), code_status(expired), expired.code) from expired

    def _asks_payer(self, payment: CodePayment) -> bool:
        return self.platform.code_confirmation.needs(
            collection=payment.code.kind is CodeKind.COLLECTION,
            amount_minor=payment.amount_minor)

    def _record(self, payment: CodePayment, submission: bytes, terminal: TerminalRecord
                ) -> TransactionRecord:
        """The code's transaction as the ledger keeps it (pending until written)."""
        code = payment.code
        now = time.time()
        kind = "payment" if code.kind is CodeKind.PAYMENT else "collection"
        return TransactionRecord(
            secrets.token_bytes(16), code_idempotency_key(payment.code_id),
            hashlib.sha256(submission).hexdigest(),
            payment.payer, payment.payee, payment.amount_minor, payment.currency,
            f"{kind} code {payment.code_id[:6].hex()}",
            "countersigned transaction code" if payment.scanner_signed
            else "presented transaction code", int(code.suite), None, payment.code_id[:16],
            code.expires_at, submission, "pending", "", None, now, now, terminal.name)

    async def _write(self, fn: Any, payment: CodePayment, record: TransactionRecord
                     ) -> tuple[TransactionRecord, bool]:
        """Spend the code in the ledger with ``fn`` (settle at once, or reserve for the payer's
        confirmation); ledger refusals become typed platform errors."""
        code = payment.code
        scanner = payment.payee if code.kind is CodeKind.PAYMENT else payment.payer
        try:
            written: tuple[TransactionRecord, bool] = await self.ledger.run(
                fn, record, payment.code_id, int(code.kind), code.account, scanner)
        except PaymentRefused as exc:
            status = 409 if exc.code == "code_used" else 422
            raise PlatformError(str(exc), status, exc.code) from exc
        except LEDGER_FAULTS as exc:
            raise ledger_fault(f"record code payment {payment.code_id.hex()}", exc) from exc
        return written

    async def _settle(self, payment: CodePayment, submission: bytes, terminal: TerminalRecord
                      ) -> tuple[TransactionRecord, bool]:
        settled, created = await self._write(self.ledger.settle_code, payment,
                                             self._record(payment, submission, terminal))
        if created:
            log.info("code %s paid: %d %s from %s to %s (transaction %s)",
                     payment.code_id[:6].hex(), payment.amount_minor, payment.currency,
                     payment.payer, payment.payee, settled.id.hex())
            self.notifier.ended(settled)
        return settled, created

    async def _confirm(self, payment: CodePayment, submission: bytes,
                       terminal: TerminalRecord, suite: Suite, signer: bytes | None
                       ) -> tuple[TransactionRecord, bool]:
        """Spend the code on a pending transaction and ask the payer's module to approve it
        through flow F-A; the approval settles it (``Platform.handle_response``), anything else
        ends it without moving money. The code stays spent either way (docs/transaction-codes.md:
        one code, one question to its payer)."""
        module = await self._payer_module(payment.payer, suite, signer)
        if module is None:
            raise PlatformError(f"no module of {payment.payer} can confirm this code", 422,
                                "confirmation_unavailable")
        record = self._record(payment, submission, terminal)
        expires = int(time.time()) + self.platform.approval_window
        code = payment.code
        kind = "payment" if code.kind is CodeKind.PAYMENT else "collection"
        try:
            request = ConfirmationRequest(
                record.id, payment.payer, payment.payee, f"code {payment.code_id[:6].hex()}",
                f"{kind} code shown by {code.account}", payment.amount_minor, payment.currency,
                secrets.token_bytes(16), expires, suite)
        except MalformedMessage as exc:
            raise PlatformError(str(exc)) from exc
        request = await asyncio.to_thread(self.platform.request_signer(suite).sign, request)
        envelope = encode_envelope(request)
        record = dataclasses.replace(record, module_id=module.module_id, nonce=request.nonce,
                                     expires_at=expires, envelope=envelope)
        written, created = await self._write(self.ledger.reserve_code, payment, record)
        if created:
            log.info("code %s: %d %s from %s to %s waits for %s's confirmation (transaction %s)",
                     payment.code_id[:6].hex(), payment.amount_minor, payment.currency,
                     payment.payer, payment.payee, payment.payer, written.id.hex())
            self.platform._start_timing(written.id)
            if self.platform.channels.enabled:
                # As every module payment with channel keys provisioned: inside the channel,
                # where the payer's payment mode is asked for and checked on the answer
                # (docs/secure-channel.md); never in the clear beside it.
                await self.platform.channels.submit(written, module)
                return written, created
            relay = RelayRequest(written.id, module.module_id, envelope, float(expires))
            await self.platform._outbox.put((topic(module.gateway_id, "req"), relay.encode()))
        return written, created

    async def _payer_module(self, payer: str, suite: Suite, signer: bytes | None
                            ) -> ModuleRecord | None:
        """The payer's module that signed this code or request (the one its owner holds now),
        else any active module of the payer in the suite (an unsigned code names none)."""
        if signer is not None:
            for raw in await self.ledger.run(self.ledger.certificates_for, payer, int(suite)):
                if signer_reference(raw) == signer:
                    try:
                        module_id = Certificate.decode(raw).module_id
                    except E2EError:
                        break
                    found: ModuleRecord | None = await self.ledger.run(self.ledger.module,
                                                                       module_id, int(suite))
                    return found
        fallback: ModuleRecord | None = await self.ledger.run(self.ledger.module_for, payer,
                                                              int(suite))
        return fallback

    async def status(self, code_id: bytes, wait: float = 0.0) -> TransactionRecord | None:
        """The transaction that paid a code (what the generating side polls for); with
        ``wait``, as soon as it is final or after ``wait`` seconds as it is then."""
        if wait > 0:
            return await self.notifier.wait(code_id, wait)
        record: TransactionRecord | None = await self.ledger.run(self.ledger.code_transaction,
                                                                 code_id)
        return record
