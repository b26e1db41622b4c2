"""Payments from symmetric-key cards (flow F-C) through the untrusted gateway.

A card payment is a row in the same ``transactions`` table as a module payment (same terminal
API, same settlement, same expiry sweep); what differs is the conversation with the payer's
device. A module needs one relay exchange (request, signed response); a card needs two, each
its own relay request with its own id, so the gateway relays them like any other:

1. the card challenge (the server's time; the card has no clock) -> the card's hello;
2. after :meth:`CardVerifier.open_hello`, the sealed transaction request -> the card's result,
   read by :meth:`ServerSession.read_result` and settled exactly once.

The gateway never reads a card message; the card checks that the request names its own channel
(a new connection random per link), so a request relayed to another card or another link is
refused by the card with a typed error that comes back as the payment's reason. Every step ends
in an outcome in the ledger: ``settled``, ``declined``, ``rejected`` with ``card:<code>`` or
``gateway:<status>``, or ``timed_out``; duplicates of a relay response change nothing.

State: ``card_enrollments`` (card ref -> account, gateway), ``card_relays`` (relay request id ->
transaction and step, answered once) and ``card_replay`` (the verifier's replay memory: a
restart does not reopen a hello it accepted), on the ledger's store (schema version 3, SQLite
or PostgreSQL) beside its tables. The server session of a payment in flight lives in memory:
after a restart its result cannot be read, and the payment ends ``rejected``
(``card:session_lost``), never settled on an unverified answer.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from relay_contract import (
    GATEWAY_ID_RULE,
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    is_gateway_id,
    topic,
)
from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorCode,
    CardRecord,
    CardSuite,
    CardVerifier,
    Decision,
    LinkAddresses,
    ReplayGuard,
    ServerSession,
    TimeWindow,
    TransactionInfo,
    WrongCard,
    WrongChannel,
    encode,
)

from .issuer_keys import FileIssuerKeys, IssuedCard, IssuedCards, IssuerKeyError
from .ledger import FINAL_STATES, LedgerError, PaymentRefused, TransactionRecord

if TYPE_CHECKING:
    from .ledger import Ledger, TerminalRecord
    from .ledger_store import Store
    from .platform import Platform, TransactionInput

__all__ = ["CardEnrollment", "CardPaymentError", "CardPayments", "CardStore",
           "EnrollmentRefused", "RevocationRefused"]

log = logging.getLogger("blegw.platform.cards")
T = TypeVar("T")


RELAY_STATUS_REJECTS = (RelayStatus.QUEUE_FULL, RelayStatus.MODULE_UNREACHABLE,
                        RelayStatus.UNKNOWN_MODULE, RelayStatus.SHUTTING_DOWN,
                        RelayStatus.LINK_ERROR, RelayStatus.MALFORMED_REQUEST,
                        RelayStatus.NEEDS_RE_PAIRING)
"""Relay statuses that end a card payment ``rejected`` (the others: ``timed_out``), as for a
module payment."""


class CardPaymentError(Exception):
    """A card cannot be enrolled (unknown to the issuer, no such account, bad gateway id).

    ``status`` and ``code`` are what the HTTP API answers (``card_api``)."""

    def __init__(self, message: str, status: int = 422, code: str = "enrollment_refused"
                 ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class EnrollmentRefused(CardPaymentError):
    """The account holder's enrollment code does not allow this card (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403, "enrollment_not_authorized")


class RevocationRefused(CardPaymentError):
    """The caller's revocation token is not the one the card was enrolled with (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403, "revocation_not_authorized")


@dataclass(frozen=True, slots=True)
class CardEnrollment:
    card_ref: bytes
    account: str
    gateway_id: str


class CardStore:
    """The card tables, on the ledger's store (schema version 3, either database): each call
    is one transaction of the ledger's connection (:meth:`Ledger.transact`), rerun on a
    conflict, so an enrollment's claim of the ledger's code and its card row commit together.
    The SQL is what both databases speak (``ON CONFLICT``, no ``INSERT OR ...``)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def close(self) -> None:
        """Nothing of its own to close: the ledger owns the connection."""

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """Run one store call off the event loop, in one transaction of the ledger's store."""
        return await self._ledger.run_transact(fn, *args)

    async def read(self, fn: Callable[..., T], *args: object) -> T:
        """A one-statement read, off the event loop, outside a transaction (cheaper)."""
        return await self._ledger.run_read(fn, *args)

    def call(self, fn: Callable[..., T], *args: object) -> T:
        """:meth:`run`, on the calling thread (start-up)."""
        return self._ledger.transact(fn, *args)

    @staticmethod
    def _upsert(db: Store, card_ref: bytes, account: str, gateway_id: str,
                revoke_hash: bytes | None) -> None:
        db.execute("INSERT INTO card_enrollments (card_ref, account, gateway_id, enrolled, "
                   "active, revoke_hash) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (card_ref) DO "
                   "UPDATE SET account=excluded.account, gateway_id=excluded.gateway_id, "
                   "enrolled=excluded.enrolled, active=1, revoke_hash=excluded.revoke_hash",
                   (card_ref, account, gateway_id, time.time(), revoke_hash))

    @staticmethod
    def enroll(db: Store, card_ref: bytes, account: str, gateway_id: str) -> None:
        CardStore._upsert(db, card_ref, account, gateway_id, None)

    @staticmethod
    def enroll_with_code(db: Store, code_hash: bytes, now: int, card_ref: bytes, account: str,
                         gateway_id: str, revoke_hash: bytes) -> None:
        """Claim the account holder's enrollment code for this card and enroll it, in one
        database transaction. The codes are the ledger's (``enrollment_codes``, made by
        ``Platform.enrollment_code``) and follow its rules: one account, unexpired, one device.
        A used code only repeats its enrollment (a pairing's retry: same card, gateway and
        revocation token, still active, nothing changes): the same hello and code posted
        again cannot move the card to another gateway or token, nor bring back a revoked
        card."""
        row = db.execute("SELECT account, expires_at, module_id FROM enrollment_codes "
                         "WHERE code_hash=?", (code_hash,)).fetchone()
        if row is None or row[0] != account:
            raise EnrollmentRefused(f"the enrollment code is not valid for account "
                                    f"{account}")
        if row[1] < now:
            raise EnrollmentRefused("the enrollment code has expired; ask for a new one")
        if row[2] is not None:
            done = db.execute("SELECT gateway_id, revoke_hash FROM card_enrollments WHERE "
                              "card_ref=? AND active=1", (card_ref,)).fetchone()
            if bytes(row[2]) == card_ref and done is not None and done[0] == gateway_id \
                    and done[1] is not None and bytes(done[1]) == revoke_hash:
                return                                   # the same pairing, retried
            raise EnrollmentRefused("the enrollment code was already used; ask for a new one")
        db.execute("UPDATE enrollment_codes SET module_id=? WHERE code_hash=?",
                   (card_ref, code_hash))
        CardStore._upsert(db, card_ref, account, gateway_id, revoke_hash)

    @staticmethod
    def revoke(db: Store, card_ref: bytes, revoke_hash: bytes | None) -> int:
        """End the card's enrollment: 1 if it was active, 0 if not. With ``revoke_hash`` (an
        API caller) only the enrollment that token was given for; without it, the operator."""
        row = db.execute("SELECT revoke_hash FROM card_enrollments "
                         "WHERE card_ref=? AND active=1", (card_ref,)).fetchone()
        if row is None:
            return 0
        if revoke_hash is not None and (row[0] is None or bytes(row[0]) != revoke_hash):
            raise RevocationRefused("this token does not revoke that card's enrollment")
        db.execute("UPDATE card_enrollments SET active=0 WHERE card_ref=?", (card_ref,))
        return 1

    @staticmethod
    def card_of(db: Store, account: str) -> CardEnrollment | None:
        row = db.execute("SELECT card_ref, account, gateway_id FROM card_enrollments "
                         "WHERE account=? AND active=1 ORDER BY enrolled DESC LIMIT 1",
                         (account,)).fetchone()
        return CardEnrollment(bytes(row[0]), row[1], row[2]) if row else None

    @staticmethod
    def enrollment(db: Store, card_ref: bytes) -> CardEnrollment | None:
        row = db.execute("SELECT card_ref, account, gateway_id FROM card_enrollments "
                         "WHERE card_ref=? AND active=1", (card_ref,)).fetchone()
        return CardEnrollment(bytes(row[0]), row[1], row[2]) if row else None

    @staticmethod
    def add_relay(db: Store, relay_id: bytes, tx_id: bytes, step: str) -> None:
        db.execute("INSERT INTO card_relays (relay_id, tx_id, step) VALUES (?, ?, ?)",
                   (relay_id, tx_id, step))

    @staticmethod
    def relay(db: Store, relay_id: bytes) -> tuple[bytes, str, bool] | None:
        row = db.execute("SELECT tx_id, step, answered FROM card_relays "
                         "WHERE relay_id=?", (relay_id,)).fetchone()
        return (bytes(row[0]), row[1], bool(row[2])) if row else None

    @staticmethod
    def open_relays(db: Store, tx_id: bytes) -> list[bytes]:
        """The relay requests of a transaction still waiting for their answer."""
        return [bytes(row[0]) for row in db.execute(
            "SELECT relay_id FROM card_relays WHERE tx_id=? AND answered=0", (tx_id,))]

    @staticmethod
    def take_answer(db: Store, relay_id: bytes) -> bool:
        """Mark the relay request answered; False if it was already (a duplicate delivery)."""
        cursor = db.execute("UPDATE card_relays SET answered=1 "
                            "WHERE relay_id=? AND answered=0", (relay_id,))
        return cursor.rowcount == 1

    @staticmethod
    def replay_entries(db: Store, now: int) -> list[tuple[bytes, int]]:
        return [(bytes(row[0]), int(row[1])) for row in db.execute(
            "SELECT entry, last_valid FROM card_replay WHERE last_valid >= ?", (now,))]

    @staticmethod
    def save_replay(db: Store, entries: list[tuple[bytes, int]], now: int) -> None:
        """Persist the verifier's memory (what it holds now) and forget expired entries."""
        if entries:
            db.executemany("INSERT INTO card_replay (entry, last_valid) VALUES (?, ?) "
                           "ON CONFLICT (entry) DO NOTHING", entries)
        db.execute("DELETE FROM card_replay WHERE last_valid < ?", (now,))


class CardPayments:
    """The platform's card side: enrollment, the two exchanges of a payment, settlement."""

    def __init__(self, platform: Platform, window: TimeWindow | None = None) -> None:
        self.platform = platform
        self.store = CardStore(platform.ledger)
        self.keys = FileIssuerKeys(platform.state_dir)
        self.register = IssuedCards(platform.state_dir)
        window = window or TimeWindow()
        guard = ReplayGuard(window, entries=self.store.call(self.store.replay_entries,
                                                               int(time.time())))
        self.verifier = CardVerifier(window, guard=guard,
                                     approval_window=platform.approval_window)
        self._sessions: dict[bytes, ServerSession] = {}
        platform.counters.setdefault("card_channel_unchecked", 0)
        """Card hellos accepted without the link check (no link report, or no random)."""
        self.require_link = False
        """Refuse a hello whose channel cannot be checked (``serve --require-card-link``):
        for a deployment whose gateways all report the link and whose cards send their
        random."""

    def close(self) -> None:
        self.store.close()

    # -- enrollment ----------------------------------------------------------------------------
    async def enroll(self, card_ref: bytes, gateway_id: str) -> CardEnrollment:
        """Bind an issued card to the account its issuer record names (``bound_user``), served
        by ``gateway_id``. The operator's step (the issuer knows the card; the gateway must
        already serve it)."""
        if not is_gateway_id(gateway_id):
            raise CardPaymentError(f"gateway_id: {GATEWAY_ID_RULE}")
        card = await self._issued(card_ref)
        account = card.info.bound_user
        ledger = self.platform.ledger
        try:
            await ledger.run(ledger.balance, account)
        except LedgerError as exc:
            raise CardPaymentError(f"no account {account} for the card's bound user") from exc
        await self.store.run(self.store.enroll, card_ref, account, gateway_id)
        return CardEnrollment(card_ref, account, gateway_id)

    async def _issued(self, card_ref: bytes) -> IssuedCard:
        """The issuer's record of ``card_ref`` (read off the loop), or CardPaymentError."""
        try:
            card = await asyncio.to_thread(self.register.get, card_ref)
        except IssuerKeyError as exc:
            raise CardPaymentError(str(exc)) from exc
        if card is None:
            raise CardPaymentError("no card with this ref was issued here")
        return card

    async def enroll_paired(self, card_ref: bytes, hello: bytes, link: LinkAddresses | None,
                            gateway_id: str, code_hash: bytes, revoke_hash: bytes
                            ) -> tuple[CardEnrollment, tuple[CardSuite, ...]]:
        """Enroll a card a gateway just paired (``blegw pair``, ``POST /v1/cards``).

        The gateway shows the card's hello to a challenge it made: the platform opens it
        against the issuer's register, so the card holds the key issued for that card ref (as
        a module's certificate shows a genuine module), on the link the gateway reports. The
        account is the one the card was issued to, and the account holder's enrollment code
        must be for it. The hello is checked with a verifier of its own (the payments' replay
        memory is not touched: a payment right after pairing may reuse the time factor); it
        can open no payment, which needs the card's answer to a transaction request.
        """
        if not is_gateway_id(gateway_id):
            raise CardPaymentError(f"gateway_id: {GATEWAY_ID_RULE}", 400, "invalid_gateway_id")
        card = await self._issued(card_ref)
        verifier = CardVerifier(self.verifier.window)
        if link is None and self.require_link:
            raise CardPaymentError("the gateway did not report the link, and this platform "
                                   "requires it", code="card:wrong_channel")
        try:
            session = verifier.open_hello(hello, card=card.record(self.keys),
                                          now=int(time.time()), link=link)
        except CardError as exc:
            raise CardPaymentError(f"the card's hello is refused: {exc}",
                                   code=f"card:{exc.code.name.lower()}") from exc
        if not session.channel_checked:
            if self.require_link:
                raise CardPaymentError("the card's hello carries no connection random, and "
                                       "this platform requires the link check",
                                       code="card:wrong_channel")
            self.platform.counters["card_channel_unchecked"] += 1
        account = card.info.bound_user
        await self.store.run(self.store.enroll_with_code, code_hash, int(time.time()),
                             card_ref, account, gateway_id, revoke_hash)
        return CardEnrollment(card_ref, account, gateway_id), tuple(card.versions)

    async def revoke(self, card_ref: bytes, revoke_hash: bytes | None = None) -> int:
        """End a card's enrollment (``DELETE /v1/cards/{ref}``, ``blegw forget``)."""
        count: int = await self.store.run(self.store.revoke, card_ref, revoke_hash)
        return count

    async def card_for(self, account: str) -> CardEnrollment | None:
        """The account's active card, if it holds one."""
        return await self.store.read(self.store.card_of, account)

    # -- a payment -----------------------------------------------------------------------------
    async def create(self, data: TransactionInput, scoped_key: str,
                     terminal: TerminalRecord | None, card: CardEnrollment
                     ) -> tuple[TransactionRecord, bool]:
        """Record a card payment and send the card challenge to the card's gateway."""
        from .platform import PlatformError

        now = time.time()
        tx_id = secrets.token_bytes(16)
        expires = int(now) + self.platform.approval_window
        challenge = encode(CardChallenge(CardSuite(int(data.suite)), int(now)))
        record = TransactionRecord(
            tx_id, scoped_key, data.digest(), data.payer, data.payee, data.amount_minor,
            data.currency, data.order_reference, data.order_description, int(data.suite),
            card.card_ref, secrets.token_bytes(16), expires, challenge, "pending", "", None,
            now, now, None if terminal is None else terminal.name)
        ledger = self.platform.ledger
        try:
            record, created = await ledger.run(ledger.create, record)
        except PaymentRefused as exc:
            raise PlatformError(str(exc), 422, exc.code) from exc
        if created:
            await self._send(record, card, challenge, "challenge")
        return record, created

    async def _send(self, tx: TransactionRecord, card: CardEnrollment, message: bytes,
                    step: str) -> None:
        relay_id = secrets.token_bytes(16)
        await self.store.run(self.store.add_relay, relay_id, tx.id, step)
        request = RelayRequest(relay_id, card.card_ref, message, float(tx.expires_at))
        await self.platform._outbox.put((topic(card.gateway_id, "req"), request.encode()))

    async def owns(self, relay_id: bytes) -> bool:
        return await self.store.read(self.store.relay, relay_id) is not None

    async def handle(self, relay: RelayResponse, gateway_id: str | None
                     ) -> TransactionRecord | None:
        """One relay response to a card exchange: the next step, or the payment's outcome."""
        found = await self.store.read(self.store.relay, relay.request_id)
        if found is None:
            return None
        tx_id, step, _ = found
        ledger = self.platform.ledger
        tx: TransactionRecord | None = await ledger.run(ledger.get, tx_id)
        if tx is None or tx.module_id is None:
            return None
        card = await self.store.read(self.store.enrollment, tx.module_id)
        if gateway_id is not None and (card is None or card.gateway_id != gateway_id):
            self.platform.counters["foreign_responses"] += 1
            log.warning("card response for %s from gateway %s, not the card's: ignored",
                        tx.id.hex(), gateway_id)
            return None
        if tx.state in FINAL_STATES:
            return tx
        if not await self.store.run(self.store.take_answer, relay.request_id):
            return tx                    # a duplicate delivery: the first one counted
        outcome = await self._step(tx, card, step, relay)
        if outcome is None:
            return tx                    # the next exchange is on its way
        self._sessions.pop(tx.id, None)
        record = await self.platform._settle(tx.id, outcome[0], outcome[1], None)
        self.platform._notify(record)
        return record

    async def progress(self, progress: RelayProgress, gateway_id: str | None
                       ) -> TransactionRecord | None:
        """What the card is doing (KEEPALIVE: its owner is asked), shown on the transaction as
        for a module; only from the card's gateway, never an outcome."""
        found = await self.store.read(self.store.relay, progress.request_id)
        if found is None:
            return None
        ledger = self.platform.ledger
        tx: TransactionRecord | None = await ledger.run(ledger.get, found[0])
        if tx is None or tx.module_id is None or tx.state in FINAL_STATES:
            return None
        card = await self.store.read(self.store.enrollment, tx.module_id)
        if gateway_id is not None and (card is None or card.gateway_id != gateway_id):
            self.platform.counters["foreign_progress"] += 1
            return None
        state = ("awaiting_owner" if progress.status is OwnerStatus.AWAITING_OWNER
                 else "processing")
        record: TransactionRecord | None = await ledger.run(ledger.set_progress, tx.id, state)
        if record is not None:
            self.platform._changed(tx.id)
        return record

    async def cancelled(self, tx: TransactionRecord) -> None:
        """The terminal cancelled the payment (the ledger already ended it): withdraw the
        card's open exchange at its gateway, so its owner is no longer asked."""
        if tx.module_id is None:
            return
        card = await self.store.read(self.store.enrollment, tx.module_id)
        if card is None:
            return
        self._sessions.pop(tx.id, None)
        for relay_id in await self.store.read(self.store.open_relays, tx.id):
            await self.platform._outbox.put((topic(card.gateway_id, "req"),
                                             RelayCancel(relay_id, card.card_ref).encode()))

    async def _step(self, tx: TransactionRecord, card: CardEnrollment | None, step: str,
                    relay: RelayResponse) -> tuple[str, str] | None:
        if relay.status is RelayStatus.CANCELLED:
            return "cancelled", "gateway:cancelled"
        if relay.status is not RelayStatus.OK:
            state = "rejected" if relay.status in RELAY_STATUS_REJECTS else "timed_out"
            return state, f"gateway:{relay.status.name.lower()}"
        now = int(time.time())
        try:
            if step == "challenge":
                if card is None:                 # revoked between challenge and hello
                    return "rejected", "card:not_enrolled"
                await self._hello(tx, card, relay, now)
                return None
            session = self._sessions.get(tx.id)
            if session is None:
                return "rejected", "card:session_lost"
            outcome = session.read_result(relay.envelope, now=now)
        except CardError as exc:
            state = "timed_out" if exc.code is CardErrorCode.USER_TIMEOUT else "rejected"
            log.info("card payment %s: %s", tx.id.hex(), exc)
            return state, f"card:{exc.code.name.lower()}"
        if outcome.decision is Decision.APPROVE:
            return "settled", ""
        if outcome.decision is Decision.DECLINE:
            return "declined", "declined_by_user"
        return "timed_out", "card:user_timeout"

    async def _hello(self, tx: TransactionRecord, card: CardEnrollment, relay: RelayResponse,
                     now: int) -> None:
        """s3-s4: accept the card's hello (its channel id recomputed from the link the gateway
        reports, its replay memory persisted before anything is sent), then send the sealed
        transaction request."""
        issued = await asyncio.to_thread(self.register.get, card.card_ref)
        if issued is None:
            raise WrongCard("the card is no longer in the issuer's register")
        record: CardRecord = issued.record(self.keys)
        link = None if relay.link is None else LinkAddresses.from_bytes(relay.link.peer,
                                                                        relay.link.central)
        if link is None and self.require_link:
            raise WrongChannel("the gateway did not report the link, and this platform "
                               "requires it")
        session = self.verifier.open_hello(relay.envelope, card=record, now=now, link=link)
        if not session.channel_checked and self.require_link:
            raise WrongChannel("the card's hello carries no connection random, and this "
                               "platform requires the link check")
        if not session.channel_checked:
            # an older gateway (no link report) or a card that sends no connection random:
            # the card's own channel check is then the only one
            self.platform.counters["card_channel_unchecked"] += 1
        await self.store.run(self.store.save_replay, self.verifier.guard.entries(), now)
        info = TransactionInfo(tx.id, tx.amount_minor, tx.currency, tx.payee, now,
                               tx.order_description[:64], record.card_number,
                               record.bound_user)
        request = session.transaction_request(info, now=now)
        # sessions of payments that ended without a result (expired) are forgotten here
        self._sessions = {k: v for k, v in self._sessions.items() if v.deadline >= now}
        self._sessions[tx.id] = session
        await self._send(tx, card, request, "request")

