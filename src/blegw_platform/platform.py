"""The reference platform: transactions in, confirmation requests out over MQTT, verified
answers in, settlement in the ledger, outcomes to terminals.

Outcomes: ``settled``; ``declined`` (the owner said no, with a valid signature); ``rejected``
with a reason (``bad_signature``, ``replay``, ``expired``, ``unknown_module``, ``wrong_request``,
``certificate_invalid``, ``insufficient_funds``, ``gateway:<status>``, ``module:<code>``);
``timed_out``; ``cancelled`` (``cancelled_by_terminal``). Verification always uses the request
envelope the platform stored, never bytes coming back from the gateway.

While a transaction is pending its gateway forwards what the module says it is doing
(``progress``: ``awaiting_owner`` while it asks its owner); terminals see it and every other
change without polling (:meth:`Platform.watch`). A terminal can cancel a pending transaction
(:meth:`Platform.cancel`): the ledger decides, in one database transaction, whether the cancel
or an approval counts, and the gateway is told to stop asking the module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import socket
import sqlite3
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from e2e import (
    Certificate,
    CertificateAuthority,
    CertificateChecks,
    ConfirmationRequest,
    ConfirmationResponse,
    Decision,
    E2EError,
    ErrorResponse,
    MalformedMessage,
    RequestSigner,
    Suite,
    TrustAnchors,
    VerificationError,
    decode_envelope,
    encode_envelope,
    load_private_key,
    verify_certificate,
    verify_confirmation,
)
from e2e.messages import (
    MAX_AMOUNT_MINOR,
    MAX_ORDER_DESCRIPTION,
    MAX_ORDER_REFERENCE,
    is_currency,
)
from e2e.suites import generate_private_key
from mqtt_uplink import MqttEndpoint
from private_files import write_atomic
from relay_contract import (
    GATEWAY_ID_RULE,
    MalformedRelayMessage,
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    decode_from_gateway,
    gateway_of,
    is_gateway_id,
    topic,
)

from .ledger import (
    ACCOUNT_RULE,
    FINAL_STATES,
    AccountRefused,
    EnrollmentCodeRefused,
    Ledger,
    LedgerBusy,
    LedgerError,
    LedgerUnavailable,
    ModuleRecord,
    PaymentRefused,
    RevocationRefused,
    TerminalRecord,
    TransactionRecord,
    is_account_name,
    ledger_location,
)
from .request_signer import RENEW_BEFORE, load_platform_id, load_request_signer
from .workers import response_subscription

# Small QoS 1 packets must not wait for Nagle's algorithm and the peer's delayed ACK (about
# 40 ms per hop on Linux): send them at once.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

__all__ = ["Platform", "PlatformError", "TransactionInput"]

log = logging.getLogger("blegw.platform")

MAX_TIMINGS = 4096
"""Per-transaction timings kept for the demo and the benchmark; the oldest go first."""

MAX_QUEUED_INCOMING = 4096
"""Responses held before the reader takes them (at most 16 KiB each on the shipped broker, so
at most 64 MiB). A flood beyond it is dropped by the MQTT client with a warning; the
transactions concerned end ``timed_out`` at their expiry, never settled twice or lost silently."""

SETTLE_BATCH = 64
"""Outcomes committed in one SQLite transaction when they arrive together (one fsync)."""

REASONS = {
    "BadSignature": "bad_signature", "Replay": "replay", "Expired": "expired",
    "WrongRequest": "wrong_request", "CertificateInvalid": "certificate_invalid",
}


ENROLLMENT_CODE_TTL = 900
"""Seconds an enrollment code stays usable: long enough to walk to the gateway and pair."""


_LOOKALIKES = str.maketrans("018", "OIB")


def _code_hash(code: str) -> bytes:
    """Codes are compared as people type them: any case, dashes or spaces, and the digits 0, 1
    and 8 read as the letters O, I and B they look like (base32 has no 0, 1 or 8)."""
    normal = code.replace("-", "").replace(" ", "").upper().translate(_LOOKALIKES)
    return hashlib.sha256(b"blegw-enrollment-code:" + normal.encode()).digest()


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(b"blegw-revocation-token:" + token.encode()).digest()


def _terminal_key_hash(secret: str) -> bytes:
    return hashlib.sha256(b"blegw-terminal-key:" + secret.encode()).digest()


MAX_API_KEY = 200
"""Longest ``Authorization`` value read: a key is a terminal name, a dot and 43 characters."""

_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
"""Unicode categories refused in text a person will read: controls (ANSI escapes start with
one), format characters (bidi overrides, zero-width joiners), lone surrogates, private-use,
unassigned, and line/paragraph separators."""

TEXT_LIMITS = {"order_reference": MAX_ORDER_REFERENCE, "order_description": MAX_ORDER_DESCRIPTION}
"""The limits the module's message format has (``e2e.ConfirmationRequest``)."""

IDEMPOTENCY_KEY_RULE = "8..128 printable ASCII characters"


def printable(value: str, limit: int) -> bool:
    """Whether ``value`` is 1..``limit`` characters a person can read and nothing else."""
    return 0 < len(value) <= limit and not any(
        unicodedata.category(ch) in _UNPRINTABLE for ch in value)


def is_idempotency_key(value: str) -> bool:
    return 8 <= len(value) <= 128 and all("!" <= ch <= "~" for ch in value)


class PlatformError(Exception):
    """A terminal's request cannot be accepted.

    ``status`` is the HTTP status to answer with and ``code`` the machine-readable error
    (``{"error": code}`` in the answer), so a terminal can tell ``unknown_payee`` from
    ``currency_mismatch`` without parsing text.
    """

    def __init__(self, message: str, status: int = 400, code: str = "invalid_request") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


LEDGER_FAULTS: tuple[type[Exception], ...] = (LedgerUnavailable, LedgerBusy, sqlite3.Error)
"""What a ledger call raises when the database cannot answer now (gone, closing, too many
conflicts): a passing condition, answered 503 ``ledger_unavailable`` so a terminal retries,
never 500 nor a permanent refusal."""


def ledger_fault(what: str, exc: Exception) -> PlatformError:
    """The one answer to a :data:`LEDGER_FAULTS` error, logged once with its cause."""
    log.error("cannot %s: %s", what, exc)
    return PlatformError(f"cannot {what} now: the ledger is unavailable; try again", 503,
                         "ledger_unavailable")


@dataclass(frozen=True, slots=True)
class TransactionInput:
    payer: str
    payee: str
    order_reference: str
    order_description: str
    amount_minor: int
    currency: str
    suite: Suite = Suite.P256_SHA256

    @classmethod
    def from_json(cls, data: Any) -> TransactionInput:
        """Check a terminal's JSON body field by field; every refusal is a 400 that says why.

        Account names follow :data:`~blegw_platform.ledger.ACCOUNT_RULE`, texts are bounded
        and printable (they reach the owner's prompt), the amount is an integer (never a
        float or a boolean) of 1..``MAX_AMOUNT_MINOR`` minor units.
        """
        if not isinstance(data, dict):
            raise PlatformError("the body must be a JSON object")
        unknown = set(data) - {"payer", "payee", "order_reference", "order_description",
                               "amount_minor", "currency", "suite"}
        if unknown:
            names = sorted(ascii(name)[:40] for name in unknown)
            raise PlatformError(f"unknown fields: {', '.join(names[:5])}"
                                f"{' ...' if len(names) > 5 else ''}")
        for key in ("payer", "payee"):
            if not is_account_name(data.get(key)):
                raise PlatformError(f"{key}: required, {ACCOUNT_RULE}", code="invalid_account")
        for key, limit in TEXT_LIMITS.items():
            value = data.get(key)
            if not isinstance(value, str) or not printable(value, limit):
                raise PlatformError(f"{key}: required, 1..{limit} printable characters "
                                    "(no control, escape or bidi characters)",
                                    code="invalid_text")
        amount = data.get("amount_minor")
        if not isinstance(amount, int) or isinstance(amount, bool) \
                or not 0 < amount <= MAX_AMOUNT_MINOR:
            raise PlatformError(f"amount_minor: required, an integer 1..{MAX_AMOUNT_MINOR}",
                                code="invalid_amount")
        if not is_currency(data.get("currency")):
            raise PlatformError("currency: required, an ISO 4217 code (three capital letters)",
                                code="invalid_currency")
        suite = {"p256": Suite.P256_SHA256, "sm2": Suite.SM2_SM3}.get(
            data.get("suite", "p256") if isinstance(data.get("suite", "p256"), str) else "")
        if suite is None:
            raise PlatformError("suite: p256 or sm2")
        return cls(data["payer"], data["payee"], data["order_reference"],
                   data["order_description"], amount, data["currency"], suite)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(
            [self.payer, self.payee, self.order_reference, self.order_description,
             self.amount_minor, self.currency, int(self.suite)]).encode()).hexdigest()


class Platform:
    def __init__(self, state_dir: Path, *, mqtt: MqttEndpoint | None = None,
                 approval_window: int = 60) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state_dir = state_dir
        self.ledger = Ledger(ledger_location(state_dir))
        self.cas = {suite: self._load_ca(suite) for suite in Suite}
        self.platform_id = load_platform_id(state_dir)
        self._request_signers = {suite: load_request_signer(state_dir, ca, self.platform_id)
                                 for suite, ca in self.cas.items()}
        self.mqtt = mqtt if mqtt is not None else MqttEndpoint()
        self.approval_window = approval_window
        self._client: aiomqtt.Client | None = None
        self._waiters: dict[bytes, list[asyncio.Future[TransactionRecord]]] = {}
        self._watchers: dict[bytes, list[asyncio.Future[None]]] = {}
        """Long-polls waiting for any change of a transaction (progress or outcome)."""
        self._outbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.certificate_checks = CertificateChecks()
        """Enrolled certificates whose CA signature verified: once per certificate, not per
        payment (validity and usage are still checked on every answer)."""
        self.timings: OrderedDict[bytes, dict[str, float]] = OrderedDict()
        """Timing points of recent transactions (at most MAX_TIMINGS: memory stays bounded)."""
        self.counters: dict[str, int] = dict.fromkeys(
            ("malformed_responses", "foreign_responses", "unknown_responses",
             "foreign_progress", "unknown_progress", "reader_errors", "sweeper_errors"), 0)
        """Hostile or broken input met by the MQTT side: each was logged and ignored."""
        self._settle_queue: asyncio.Queue[tuple[tuple[bytes, str, str, int | None],
                                                asyncio.Future[TransactionRecord]]] = \
            asyncio.Queue()
        self._settler: asyncio.Task[None] | None = None
        from .card_payments import CardPayments  # it imports this module's types

        self.cards = CardPayments(self)
        """Payments from symmetric-key cards (flow F-C): a payer may hold either kind."""
        from .channel_payments import ChannelPayments

        self.channels = ChannelPayments(self)
        """Module payments inside the secure channel (flow F-B), once channel keys exist."""
        from .code_confirmation import CodeConfirmation

        self.code_confirmation = CodeConfirmation()
        """When a transaction code waits for its payer's approval (flow F-D with F-A); the
        operator's ``serve --code-confirm-*`` options set it."""
        self.final_hooks: list[Callable[[TransactionRecord], None]] = []
        """Called with every transaction that became final here (transaction codes tell each
        side's gateway); a hook must not block and must not raise."""
        self.shutdown_hooks: list[Callable[[], Awaitable[None]]] = []
        """Awaited by :meth:`aclose` first: the owners of tasks started by final hooks."""
        from .workers import WorkerSettings

        self.workers = WorkerSettings()
        """How this process shares the work with other workers (``serve`` sets it)."""
        self.change_hooks: list[Callable[[bytes], None]] = []
        """Called with the id of every transaction this worker changed (the change feed tells
        the other workers); a hook must not block and must not raise."""

    def _load_ca(self, suite: Suite) -> CertificateAuthority:
        path = self.state_dir / f"ca-{suite.label}.key"
        if path.exists():
            return CertificateAuthority(load_private_key(suite, path.read_bytes()))
        key = generate_private_key(suite)
        write_atomic(path, key.private_bytes())
        return CertificateAuthority(key)

    # -- set-up --------------------------------------------------------------------------------
    async def enrollment_code(self, account: str, ttl: int = ENROLLMENT_CODE_TTL) -> str:
        """A one-time code the account holder gives ``blegw pair`` to bind a module to them.

        Without it, anyone who reaches the API with a genuine module could enroll that module
        for someone else's account and approve payments from it. Only a hash is stored.
        """
        if not 60 <= ttl <= 7 * 86400:
            raise PlatformError("the code's lifetime must be 60 s to 7 days")
        if not is_account_name(account):
            raise PlatformError(f"account: {ACCOUNT_RULE}", code="invalid_account")
        text = base64.b32encode(secrets.token_bytes(10)).decode()  # 80 bits, 16 characters
        code = "-".join(text[i:i + 4] for i in range(0, 16, 4))
        try:
            await self.ledger.run(self.ledger.add_enrollment_code, _code_hash(code), account,
                                  int(time.time()) + ttl)
        except LedgerError as exc:
            raise PlatformError(str(exc)) from exc
        return code

    async def enroll(self, certificate: bytes, account: str, gateway_id: str,
                     code: str | None = None, revocation_token: str | None = None
                     ) -> Certificate:
        """Enroll a certified module for an account.

        Over the API ``code`` and ``revocation_token`` are required (see
        :meth:`enrollment_code` and :meth:`revoke`); ``None`` is for the operator's own tools,
        which hold the platform's state directory anyway. The gateway id becomes a topic level
        of every request for this module, so it is checked here, on both paths: ``#`` or
        ``a/b`` would otherwise name other gateways' topics or stop the publisher.
        """
        if not is_gateway_id(gateway_id):
            raise PlatformError(f"gateway_id: {GATEWAY_ID_RULE}", code="invalid_gateway_id")
        if not is_account_name(account):
            raise PlatformError(f"account: {ACCOUNT_RULE}", code="invalid_account")
        revoke_hash = None if revocation_token is None else _token_hash(revocation_token)
        try:
            cert = Certificate.decode(certificate)
            verify_certificate(cert, self.cas[cert.suite].public_key, now=int(time.time()))
        except E2EError as exc:
            raise PlatformError(f"certificate refused: {exc}", 422, "enrollment_refused"
                                ) from exc
        try:
            if code is None:
                await self.ledger.run(self.ledger.enroll, cert.module_id, account, gateway_id,
                                      int(cert.suite), certificate)
            else:
                await self.ledger.run(self.ledger.enroll_with_code, _code_hash(code),
                                      int(time.time()), cert.module_id, account, gateway_id,
                                      int(cert.suite), certificate, revoke_hash)
        except EnrollmentCodeRefused as exc:
            raise PlatformError(str(exc), 403, "enrollment_not_authorized") from exc
        except LedgerError as exc:
            raise PlatformError(str(exc), 422, "enrollment_refused") from exc
        return cert

    async def revoke(self, module_id: bytes, revocation_token: str | None = None) -> int:
        """End a module's enrollments; how many were active.

        Over the API the caller shows the token the module was enrolled with (the gateway that
        paired it keeps it), so no one else can cut an account off its module; ``None`` is the
        operator. A token that does not match raises PlatformError (403).
        """
        token_hash = None if revocation_token is None else _token_hash(revocation_token)
        try:
            count: int = await self.ledger.run(self.ledger.revoke, module_id, token_hash)
        except RevocationRefused as exc:
            raise PlatformError(str(exc), 403, "revocation_not_authorized") from exc
        return count

    def trust_anchors(self) -> TrustAnchors:
        """What provisioning installs in a module so it prompts only for this platform's
        requests: the CA root of each suite and the platform id."""
        return TrustAnchors(self.platform_id,
                            {suite: ca.public_key for suite, ca in self.cas.items()})

    def request_signer(self, suite: Suite) -> RequestSigner:
        """The suite's request signer, its certificate renewed by the CA before it expires."""
        signer = self._request_signers[suite]
        if signer.certificate.not_after - time.time() < RENEW_BEFORE:
            signer = load_request_signer(self.state_dir, self.cas[suite], self.platform_id)
            self._request_signers[suite] = signer
        return signer

    def ca_keys(self) -> dict[str, str]:
        """The CA public keys gateways check module certificates against (SEC1, hex)."""
        return {suite.label: ca.public_key.encode().hex() for suite, ca in self.cas.items()}

    # -- terminals -----------------------------------------------------------------------------
    async def add_terminal(self, name: str, payees: list[str]) -> str:
        """Register a terminal that may collect for ``payees``; return its API key, once.

        Only a hash of the key's secret is stored: a copy of the ledger does not let anyone
        create payments. The key is ``<name>.<secret>`` so the terminal is found by name and
        its secret compared in constant time.
        """
        secret = secrets.token_urlsafe(32)                          # 256 bits, no "."
        try:
            await self.ledger.run(self.ledger.add_terminal, name, _terminal_key_hash(secret),
                                  payees)
        except AccountRefused as exc:
            raise PlatformError(str(exc), 422, "terminal_refused") from exc
        return f"{name}.{secret}"

    async def revoke_terminal(self, name: str) -> bool:
        revoked: bool = await self.ledger.run(self.ledger.revoke_terminal, name)
        return revoked

    async def authenticate(self, authorization: str) -> TerminalRecord:
        """The terminal an ``Authorization: Bearer <key>`` header names, or PlatformError 401.

        Unknown, malformed and revoked keys get the same answer, and a hash is compared even
        for an unknown name, so the answer's timing does not tell which terminals exist.
        """
        refused = PlatformError("Authorization: Bearer <the terminal's API key> required "
                                "(blegw-platform terminal add)", 401, "unauthorized")
        if not authorization.startswith("Bearer ") or len(authorization) > MAX_API_KEY:
            raise refused
        name, _, secret = authorization[len("Bearer "):].rpartition(".")
        if not is_account_name(name) or not secret.isascii():
            raise refused
        found: tuple[TerminalRecord, bytes] | None = await self.ledger.run(
            self.ledger.terminal, name)
        stored = found[1] if found is not None else bytes(32)
        matches = hmac.compare_digest(stored, _terminal_key_hash(secret))
        if found is None or not matches or found[0].revoked is not None:
            raise refused
        return found[0]

    # -- terminal side -------------------------------------------------------------------------
    async def create(self, data: TransactionInput, idempotency_key: str,
                     terminal: TerminalRecord | None = None) -> tuple[TransactionRecord, bool]:
        """Record a payment and send its confirmation request to the payer's gateway.

        ``terminal`` is the authenticated caller (the API always passes one; ``None`` is the
        operator's own tools): it may only collect for its payees (403 otherwise), and its
        idempotency keys are its own, so one terminal cannot read or block another's by
        guessing keys. Payments that could never settle (unknown accounts, another currency)
        are refused here with a code; settlement checks again.
        """
        if not is_idempotency_key(idempotency_key):
            raise PlatformError(f"Idempotency-Key header: {IDEMPOTENCY_KEY_RULE} required",
                                code="invalid_idempotency_key")
        if terminal is not None and data.payee not in terminal.payees:
            raise PlatformError(f"terminal {terminal.name} does not collect for {data.payee}",
                                403, "payee_not_allowed")
        scoped_key = idempotency_key if terminal is None \
            else f"{terminal.name}:{idempotency_key}"
        module = await self.ledger.run(self.ledger.module_for, data.payer, int(data.suite))
        card = None if module else await self.cards.card_for(data.payer)
        if card is not None:
            return await self.cards.create(data, scoped_key, terminal, card)
        now = time.time()
        tx_id, nonce = secrets.token_bytes(16), secrets.token_bytes(16)
        expires = int(now) + self.approval_window
        try:
            request = ConfirmationRequest(tx_id, data.payer, data.payee, data.order_reference,
                                          data.order_description, data.amount_minor,
                                          data.currency, nonce, expires, data.suite)
        except MalformedMessage as exc:
            raise PlatformError(str(exc)) from exc
        # Modules prompt only for signed requests; an SM2 signature takes ~4 ms: off the loop.
        request = await asyncio.to_thread(self.request_signer(data.suite).sign, request)
        envelope = encode_envelope(request)
        state, reason = ("pending", "") if module else ("rejected", "unknown_module")
        record = TransactionRecord(
            tx_id, scoped_key, data.digest(), data.payer, data.payee, data.amount_minor,
            data.currency, data.order_reference, data.order_description, int(data.suite),
            module.module_id if module else None, nonce, expires, envelope, state, reason, None,
            now, now, None if terminal is None else terminal.name)
        try:
            record, created = await self.ledger.run(self.ledger.create, record)
        except PaymentRefused as exc:
            raise PlatformError(str(exc), 422, exc.code) from exc
        except LEDGER_FAULTS as exc:
            raise ledger_fault(f"record transaction {tx_id.hex()}", exc) from exc
        except LedgerError as exc:
            raise PlatformError(str(exc), 409, "idempotency_conflict") from exc
        if created and module is not None:
            self._start_timing(tx_id)
            if self.channels.enabled:
                await self.channels.submit(record, module)
                return record, created
            relay = RelayRequest(tx_id, module.module_id, envelope, float(expires))
            await self._outbox.put((topic(module.gateway_id, "req"), relay.encode()))
        return record, created

    def _start_timing(self, tx_id: bytes) -> None:
        """Remember when a transaction started; the oldest entries go beyond MAX_TIMINGS, so a
        long-running platform does not grow without bound."""
        self.timings[tx_id] = {"created": time.perf_counter()}
        while len(self.timings) > MAX_TIMINGS:
            self.timings.popitem(last=False)

    async def get(self, tx_id: bytes, terminal: TerminalRecord | None = None
                  ) -> TransactionRecord | None:
        """A transaction; with ``terminal``, only if that terminal created it (None otherwise,
        whether or not it exists, so terminals cannot probe each other's ids)."""
        result: TransactionRecord | None = await self.ledger.run(self.ledger.get, tx_id)
        if result is not None and terminal is not None and result.terminal != terminal.name:
            return None
        return result

    async def wait(self, tx_id: bytes, timeout: float,
                   terminal: TerminalRecord | None = None) -> TransactionRecord | None:
        record = await self.get(tx_id, terminal)
        if record is None or record.state in FINAL_STATES:
            return record
        future: asyncio.Future[TransactionRecord] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return await self.get(tx_id, terminal)
        finally:
            with contextlib.suppress(ValueError, KeyError):
                self._waiters[tx_id].remove(future)
            if not self._waiters.get(tx_id, True):
                del self._waiters[tx_id]

    async def watch(self, tx_id: bytes, after: float, timeout: float,
                    terminal: TerminalRecord | None = None) -> TransactionRecord | None:
        """The transaction as soon as it changed after ``after`` (its ``updated`` time as the
        caller last saw it) or is final, else after ``timeout`` seconds as it is: a terminal
        follows progress and outcome without polling."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            # Registered before reading, so a change between the read and the wait is not missed.
            future: asyncio.Future[None] = loop.create_future()
            self._watchers.setdefault(tx_id, []).append(future)
            try:
                record = await self.get(tx_id, terminal)
                remaining = end - loop.time()
                if record is None or record.state in FINAL_STATES or record.updated > after \
                        or remaining <= 0:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, remaining)
            finally:
                with contextlib.suppress(ValueError, KeyError):
                    self._watchers[tx_id].remove(future)
                if not self._watchers.get(tx_id, True):
                    del self._watchers[tx_id]

    def change_signal(self, tx_id: bytes) -> asyncio.Future[None]:
        """A future set at the next change of ``tx_id`` (recorded here or, with a change feed,
        by another worker). Take it before reading the transaction, so no change between the
        read and the wait is missed; :meth:`drop_signal` when done waiting."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(tx_id, []).append(future)
        return future

    def drop_signal(self, tx_id: bytes, future: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError, KeyError):
            self._watchers[tx_id].remove(future)
        if not self._watchers.get(tx_id, True):
            del self._watchers[tx_id]

    def _changed(self, tx_id: bytes) -> None:
        for future in self._watchers.pop(tx_id, []):
            if not future.done():
                future.set_result(None)
        for change_hook in self.change_hooks:
            change_hook(tx_id)

    def watched_transactions(self) -> set[bytes]:
        """Transactions a long-poll or an event stream of this worker waits on."""
        return set(self._waiters) | set(self._watchers)

    def wake(self, record: TransactionRecord) -> None:
        """Another worker changed ``record``: answer this worker's waits on it (no hooks run:
        the worker that recorded the change ran them)."""
        if record.state in FINAL_STATES:
            for future in self._waiters.pop(record.id, []):
                if not future.done():
                    future.set_result(record)
        for watcher in self._watchers.pop(record.id, []):
            if not watcher.done():
                watcher.set_result(None)

    def _notify(self, record: TransactionRecord) -> None:
        for future in self._waiters.pop(record.id, []):
            if not future.done():
                future.set_result(record)
        self._changed(record.id)
        if record.state in FINAL_STATES:
            for hook in self.final_hooks:
                hook(record)

    async def cancel(self, tx_id: bytes, terminal: TerminalRecord | None = None
                     ) -> TransactionRecord:
        """Cancel a pending transaction for the terminal that created it (idempotent).

        The ledger decides in one database transaction: a transaction that is still pending
        ends ``cancelled`` (``cancelled_by_terminal``) and no money moves; one that an approval
        (or anything else) ended first stays as it is and the cancel is refused with
        ``already_final`` (409). A cancelled transaction's gateway is told to drop the request
        or send CANCEL to the module, so its owner is no longer asked. Cancelling again
        returns the cancelled transaction. Unknown (or another terminal's): ``not_found``.
        """
        record = await self.get(tx_id, terminal)
        if record is None:
            raise PlatformError("no such transaction", 404, "not_found")
        cancelled_now = False
        if record.state == "pending":
            try:
                record = await self.ledger.run(self.ledger.cancel, tx_id)
            except (sqlite3.Error, LedgerUnavailable) as exc:
                log.error("cannot cancel transaction %s: %s", tx_id.hex(), exc)
                raise PlatformError("cannot record the cancel", 503, "ledger_unavailable"
                                    ) from exc
            cancelled_now = record.reason == "cancelled_by_terminal"
        if record.state != "cancelled" or record.reason != "cancelled_by_terminal":
            raise PlatformError(f"the transaction is already {record.state}"
                                f"{' (' + record.reason + ')' if record.reason else ''}",
                                409, "already_final")
        if cancelled_now:
            log.info("transaction %s cancelled by terminal %s", tx_id.hex(),
                     terminal.name if terminal else "(operator)")
            self._notify(record)
            context = await self.ledger.run(self.ledger.context, tx_id)
            module: ModuleRecord | None = context[1]
            if module is not None:
                if not await self.channels.cancelled(record):
                    await self._outbox.put((topic(module.gateway_id, "req"),
                                            RelayCancel(tx_id, module.module_id).encode()))
            else:
                await self.cards.cancelled(record)
        return record

    # -- gateway side --------------------------------------------------------------------------
    async def handle_response(self, payload: bytes, gateway_id: str | None = None
                              ) -> TransactionRecord | None:
        """Verify one relay response and settle or reject; safe against any input. A relay
        progress on the same topic goes to :meth:`handle_progress`.

        ``gateway_id`` is the gateway whose ``resp`` topic carried the payload: a response is
        taken only from the gateway the request was sent to (the enrolled module's gateway), so
        a gateway that may publish only on its own topics cannot fail another's payments.
        ``None`` is for callers that are not the MQTT reader (tests, tools) and skips the check.
        Malformed, foreign and unknown responses are logged, counted in :attr:`counters` and
        ignored: the transaction stays pending for the right answer.
        """
        try:
            message = decode_from_gateway(payload)      # refuses oversize payloads unread
        except MalformedRelayMessage as exc:
            self.counters["malformed_responses"] += 1
            rid = exc.request_id.hex() if exc.request_id else "unreadable"
            log.warning("malformed relay response (request %s, gateway %s) dropped: %s",
                        rid, gateway_id, exc)
            return None
        except MalformedMessage as exc:
            self.counters["malformed_responses"] += 1
            log.warning("malformed relay response from %s dropped: %s", gateway_id, exc)
            return None
        if isinstance(message, RelayProgress):
            if self.channels.owns(message.request_id):
                return await self.channels.progress(message, gateway_id)
            if await self.cards.owns(message.request_id):
                return await self.cards.progress(message, gateway_id)
            return await self.handle_progress(message, gateway_id)
        relay = message
        if self.channels.owns(relay.request_id):
            return await self.channels.handle(relay, gateway_id)
        context: tuple[TransactionRecord | None, ModuleRecord | None, int] = \
            await self.ledger.run(self.ledger.context, relay.request_id)
        tx, module, last = context
        if module is None and await self.cards.owns(relay.request_id):
            # a card's relay ids are its own, never a module transaction's: one read fewer
            return await self.cards.handle(relay, gateway_id)
        if tx is None:
            self.counters["unknown_responses"] += 1
            log.warning("response for unknown transaction %s", relay.request_id.hex())
            return None
        if gateway_id is not None and (module is None or module.gateway_id != gateway_id):
            self.counters["foreign_responses"] += 1
            log.warning("response for %s from gateway %s, not the module's gateway: ignored",
                        tx.id.hex(), gateway_id)
            return None
        if tx.state in FINAL_STATES:
            return tx  # duplicates and late answers change nothing
        t = self.timings.get(tx.id)
        if t is not None:
            t["answered"] = time.perf_counter()
            t.update({f"gw_{k}": v for k, v in relay.timings.items()})
        outcome = self._decide(tx, relay, module, last)
        record = await self._settle(tx.id, outcome[0], outcome[1], outcome[2])
        if t is not None:
            t["settled"] = time.perf_counter()
        self._notify(record)
        return record

    async def handle_progress(self, progress: RelayProgress, gateway_id: str | None
                              ) -> TransactionRecord | None:
        """Record what a pending transaction's module is doing, as its gateway reports it.

        Taken only from the gateway the request went to (as responses are); progress for an
        unknown transaction or from another gateway is counted and ignored, and progress for
        a final transaction changes nothing. Returns the record when it changed.
        """
        context: tuple[TransactionRecord | None, ModuleRecord | None, int] = \
            await self.ledger.run(self.ledger.context, progress.request_id)
        tx, module, _ = context
        if tx is None:
            self.counters["unknown_progress"] += 1
            log.warning("progress for unknown transaction %s", progress.request_id.hex())
            return None
        if gateway_id is not None and (module is None or module.gateway_id != gateway_id):
            self.counters["foreign_progress"] += 1
            log.warning("progress for %s from gateway %s, not the module's gateway: ignored",
                        tx.id.hex(), gateway_id)
            return None
        if tx.state in FINAL_STATES:
            return None
        state = ("awaiting_owner" if progress.status is OwnerStatus.AWAITING_OWNER
                 else "processing")
        record: TransactionRecord | None = await self.ledger.run(
            self.ledger.set_progress, tx.id, state)
        if record is not None:
            self._changed(tx.id)
        return record

    def _decide(self, tx: TransactionRecord, relay: RelayResponse, module: ModuleRecord | None,
                last: int) -> tuple[str, str, int | None]:
        if relay.status is not RelayStatus.OK:
            if relay.status is RelayStatus.CANCELLED:
                # Only the platform cancels, and it ends the transaction first; a pending one
                # answered CANCELLED was withdrawn by an earlier run of the platform.
                return "cancelled", "gateway:cancelled", None
            if relay.status in (RelayStatus.QUEUE_FULL, RelayStatus.MODULE_UNREACHABLE,
                                RelayStatus.UNKNOWN_MODULE, RelayStatus.SHUTTING_DOWN,
                                RelayStatus.LINK_ERROR, RelayStatus.MALFORMED_REQUEST,
                                RelayStatus.NEEDS_RE_PAIRING):
                return "rejected", f"gateway:{relay.status.name.lower()}", None
            return "timed_out", f"gateway:{relay.status.name.lower()}", None
        try:
            answer = decode_envelope(relay.envelope)
        except E2EError as exc:
            return "rejected", f"malformed_answer:{exc.code.name.lower()}", None
        if isinstance(answer, ErrorResponse):
            if answer.transaction_id not in (b"", tx.id):
                return "rejected", "wrong_request", None
            return ("timed_out" if answer.code.name in ("CANCELLED", "USER_TIMEOUT")
                    else "rejected"), f"module:{answer.code.name.lower()}", None
        if not isinstance(answer, ConfirmationResponse):
            return "rejected", "wrong_request", None
        if module is None:
            return "rejected", "unknown_module", None
        try:
            cert = Certificate.decode(module.certificate)
            verify_confirmation(tx.envelope, answer, cert, self.cas[cert.suite].public_key,
                                now=int(time.time()), last_counter=last,
                                checks=self.certificate_checks)
        except VerificationError as exc:
            return "rejected", REASONS.get(type(exc).__name__, "bad_signature"), None
        except E2EError as exc:
            return "rejected", f"invalid:{exc.code.name.lower()}", None
        if answer.decision is Decision.DECLINE:
            return "declined", "declined_by_user", answer.counter
        return "settled", "", answer.counter

    async def _settle(self, tx_id: bytes, state: str, reason: str, counter: int | None
                      ) -> TransactionRecord:
        """Queue an outcome for the settler, which commits queued outcomes together."""
        if self._settler is None or self._settler.done():
            self._settler = asyncio.get_running_loop().create_task(self._settle_loop(),
                                                                    name="settler")
        future: asyncio.Future[TransactionRecord] = asyncio.get_running_loop().create_future()
        await self._settle_queue.put(((tx_id, state, reason, counter), future))
        return await future

    async def _settle_loop(self) -> None:
        while True:
            batch = [await self._settle_queue.get()]
            while len(batch) < SETTLE_BATCH and not self._settle_queue.empty():
                batch.append(self._settle_queue.get_nowait())
            try:
                records = await self.ledger.run(self.ledger.finish_many, [i for i, _ in batch])
            except Exception as exc:  # every waiter must learn of the failure
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), record in zip(batch, records, strict=True):
                if not future.done():
                    future.set_result(record)

    async def aclose(self) -> None:
        for shutdown in self.shutdown_hooks:
            await shutdown()
        if self._settler is not None:
            self._settler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settler
            self._settler = None
        self.close()

    async def expire(self) -> None:
        """End every pending transaction past its expiry ``timed_out``, in one commit."""
        await self.channels.sweep()
        expired = await self.ledger.run(self.ledger.pending_expired, time.time() - 2)
        if not expired:
            return
        records: list[TransactionRecord] = await self.ledger.run(
            self.ledger.finish_many,
            [(tx_id, "timed_out", "no_answer_before_expiry", None) for tx_id in expired])
        for record in records:
            self._notify(record)

    # -- MQTT ----------------------------------------------------------------------------------
    def _mqtt_client(self) -> aiomqtt.Client:
        """The platform's broker session: its own account (``blegw.platform`` on the shipped
        broker, which binds the session to that name) and TLS when the URL is ``mqtts://``."""
        mqtt = self.mqtt
        # N workers: MQTT 5 (``$share``) and a session that ends with its connection, so a
        # killed worker's session does not keep a share of the responses nobody reads.
        session: dict[str, Any] = {"clean_session": False} \
            if self.workers.share_group is None \
            else {"clean_start": True, "protocol": aiomqtt.ProtocolVersion.V5}
        return aiomqtt.Client(mqtt.host, mqtt.port, identifier=self.workers.client_id(),
                              **session, username=mqtt.username,
                              password=mqtt.password, tls_params=mqtt.tls_params(),
                              keepalive=15, timeout=10, socket_options=NO_DELAY,
                              max_queued_incoming_messages=MAX_QUEUED_INCOMING)

    async def run_uplink(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                async with self._mqtt_client() as client:
                    attempt = 0
                    await client.subscribe(response_subscription(self.workers.share_group),
                                           qos=1)
                    self.connected.set()
                    await self._session(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = min(10.0, 0.25 * 2 ** attempt)
                attempt += 1
                log.warning("platform MQTT: %s; retry in %.2f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def _session(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        async def reader() -> None:
            # Supervised: no payload on any topic ends this task (it would stop the platform).
            async for message in client.messages:
                gateway_id = gateway_of(message.topic.value, "resp")
                if gateway_id is None or not isinstance(message.payload, bytes | bytearray):
                    self.counters["malformed_responses"] += 1
                    log.warning("message on an unexpected topic or of an unexpected type")
                    continue
                try:
                    await self.handle_response(bytes(message.payload), gateway_id)
                except Exception:
                    self.counters["reader_errors"] += 1
                    log.exception("relay response from gateway %s (mid %s) failed",
                                  gateway_id, message.mid)

        async def sweeper() -> None:
            while True:
                await asyncio.sleep(1.0)
                try:
                    await self.expire()
                except Exception:  # a failing sweep is retried next second, not fatal
                    self.counters["sweeper_errors"] += 1
                    log.exception("expiring pending transactions failed")

        tasks = [asyncio.create_task(reader()), asyncio.create_task(self._write(client)),
                 asyncio.create_task(sweeper())]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (*tasks, stopper):
            task.cancel()
        for task in tasks:
            if task in done and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _write(self, client: aiomqtt.Client) -> None:
        """Publish queued requests; one is ours until the broker acknowledged it.

        A failed publish, or one cancelled while it waits for the PUBACK (the session ends
        when the reader sees the connection drop), goes back to the outbox for the next
        connection: the gateway recognises a second delivery by request id.
        """
        while True:
            item = await self._outbox.get()
            try:
                await client.publish(item[0], item[1], qos=1)
            except BaseException:
                self._outbox.put_nowait(item)
                raise

    def close(self) -> None:
        self.channels.close()
        self.cards.close()
        self.ledger.close()
