"""Both ends of one payment with a symmetric-key card, sans-IO: bytes in, bytes and typed
results out, the caller's clock passed in.

Card side, :class:`CardSession` (seed s1-s2, s5-s6)::

    hello = session.hello(time_factor_a)           # sealed card info, channel id, a, code 1
    info = session.receive_transaction(request)    # checks, then the owner is asked
    result = session.answer(Decision.APPROVE)      # or session.timeout(): nobody pressed

Server side, :class:`CardVerifier` (one per platform, holds the replay memory) and
:class:`ServerSession` (one per payment, seed s3-s4, s7)::

    server = verifier.open_hello(hello, card=record, now=now)
    request = server.transaction_request(transaction_info, now=now)   # time factor b, code 2
    outcome = server.read_result(result, now=now)

Every sealed message is checked in the same order, cheapest and most specific first: the
header fields against what the receiver expects (suite, card, key version, channel id,
transaction), the time factor against the window, then the verification code against the
receiver's own (constant time) and only then the AEAD tag and the plaintext.

What the seed's verification code adds to the AEAD tag: the code depends on the process key
alone (the last 8 bytes of the KDF output), the tag on the key *and* the message. A code
mismatch therefore says "wrong key, key version, time factor or channel" before any byte is
decrypted, and keeps that refusal (:class:`WrongKey`) apart from an altered message
(:class:`Tampered`, the tag). It reveals nothing about the AEAD key (HKDF's outputs are
independent), and it is not what protects integrity: the 16-byte tag is.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from e2e.cbor import dumps

from .channel import LinkAddresses
from .errors import (
    Expired,
    OutOfOrder,
    Replay,
    StaleTimeFactor,
    UnknownKeyVersion,
    UnsupportedSuite,
    UserTimeout,
    WrongCard,
    WrongChannel,
    WrongKey,
    WrongTransaction,
    error_class,
)
from .freshness import ReplayGuard, TimeWindow
from .keys import CardKey, process_key
from .messages import (
    CardErrorMessage,
    CardInfo,
    Decision,
    MessageType,
    ResultBody,
    SealedMessage,
    TransactionInfo,
    UserVerification,
    decode,
    encode,
)
from .suites import NONCE_SIZE, CardSuite, aead_open, aead_seal, digest

__all__ = ["AD_DOMAIN", "TRANSACTION_DOMAIN", "CardOutcome", "CardRecord", "CardSession",
           "CardVerifier", "ServerSession", "associated_data", "transaction_digest"]

AD_DOMAIN = b"blegw/card-message/v1"
TRANSACTION_DOMAIN = b"blegw/card-transaction/v1"


def transaction_digest(suite: CardSuite, info: TransactionInfo) -> bytes:
    """What a card result is bound to: H("blegw/card-transaction/v1" || CBOR(transaction
    info)), the exact fields the card decrypted (id, amount, currency, payee, ...)."""
    return digest(suite, TRANSACTION_DOMAIN + info.encode())


def associated_data(message: SealedMessage, bound: bytes = b"") -> bytes:
    """AD = "blegw/card-message/v1" || u8 message type || CBOR(header) || bound, where bound is
    the transaction digest for a card result and empty otherwise."""
    return AD_DOMAIN + bytes([message.message_type]) + dumps(message.header()) + bound


def _seal(message_type: MessageType, suite: CardSuite, card_key: CardKey, *, key_version: int,
          card_ref: bytes, channel_id: bytes, time_factor: int, plaintext: bytes,
          nonce: bytes | None, transaction_id: bytes | None = None,
          bound: bytes = b"", connection_random: bytes | None = None) -> bytes:
    keys = process_key(suite, card_key, message_type=message_type, key_version=key_version,
                       card_ref=card_ref, channel_id=channel_id, time_factor=time_factor)
    nonce = secrets.token_bytes(NONCE_SIZE) if nonce is None else nonce
    # header() leaves the ciphertext out: a placeholder fills the field until it exists
    draft = SealedMessage(message_type, suite, key_version, card_ref, channel_id, time_factor,
                          keys.code, nonce, bytes(17), transaction_id, connection_random)
    sealed = aead_seal(suite, keys.key, nonce, plaintext, associated_data(draft, bound))
    return encode(SealedMessage(message_type, suite, key_version, card_ref, channel_id,
                                time_factor, keys.code, nonce, sealed, transaction_id,
                                connection_random))


def _open(message: SealedMessage, card_key: CardKey, bound: bytes = b"") -> bytes:
    keys = process_key(message.suite, card_key, message_type=message.message_type,
                       key_version=message.key_version, card_ref=message.card_ref,
                       channel_id=message.channel_id, time_factor=message.time_factor)
    if not keys.code_matches(message.code):
        raise WrongKey("the verification code does not match: wrong key, time factor or "
                       "channel")
    return aead_open(message.suite, keys.key, message.nonce, message.ciphertext,
                     associated_data(message, bound))


def _sealed(data: bytes, expected: MessageType) -> SealedMessage:
    message = decode(data)
    if isinstance(message, CardErrorMessage):
        # the other end's refusal, by its wire code (unauthenticated: it ends the payment
        # unpaid, which is all a forged one can do)
        raise error_class(message.code)(f"the card refused: {message.code.name.lower()}")
    if not isinstance(message, SealedMessage) or message.message_type is not expected:
        raise OutOfOrder(f"expected a {expected.name.lower()} message")
    return message


class _CardState(Enum):
    NEW = "new"
    HELLO_SENT = "hello sent"
    AWAITING_OWNER = "awaiting the owner"
    DONE = "done"


class CardSession:
    """The card's side of one payment on one channel."""

    def __init__(self, *, suite: CardSuite, card_key: CardKey, key_version: int,
                 card_ref: bytes, card_info: CardInfo, channel_id: bytes,
                 window: TimeWindow | None = None,
                 connection_random: bytes | None = None) -> None:
        """``connection_random``, when given, is the random ``channel_id`` was made from; the
        hello then carries it, so the server can check the channel against the link's
        addresses (``CardVerifier.open_hello(link=...)``)."""
        self.suite = suite
        self._key = card_key
        self.key_version = key_version
        self.card_ref = card_ref
        self.card_info = card_info
        self.channel_id = channel_id
        self.connection_random = connection_random
        self.window = window or TimeWindow()
        self._state = _CardState.NEW
        self._time_a = 0
        self._transaction: TransactionInfo | None = None
        self._time_b = 0

    @property
    def time_factor_b(self) -> int:
        """The server's time factor once its request was accepted (the card confirms it)."""
        return self._time_b

    def hello(self, time_factor: int, *, nonce: bytes | None = None) -> bytes:
        """s11-s12, s2: the card info sealed under the first process key."""
        if self._state is not _CardState.NEW:
            raise OutOfOrder("this session already sent its hello")
        self._state = _CardState.HELLO_SENT
        self._time_a = time_factor
        return _seal(MessageType.HELLO, self.suite, self._key, key_version=self.key_version,
                     card_ref=self.card_ref, channel_id=self.channel_id,
                     time_factor=time_factor, plaintext=self.card_info.encode(), nonce=nonce,
                     connection_random=self.connection_random)

    def receive_transaction(self, data: bytes) -> TransactionInfo:
        """s51-s52: check and open the server's transaction request; the caller then asks the
        owner and calls :meth:`answer` or :meth:`timeout`."""
        if self._state is not _CardState.HELLO_SENT:
            raise OutOfOrder("no transaction request is expected now")
        message = _sealed(data, MessageType.TRANSACTION)
        if message.suite is not self.suite:
            raise UnsupportedSuite("a request in another suite than the hello's")
        if message.card_ref != self.card_ref or message.key_version != self.key_version:
            raise WrongCard("a request for another card or key version")
        if message.channel_id != self.channel_id:
            raise WrongChannel("a request made for another channel")
        # b is the server's clock when it answered a: not before a (less the skew), and
        # within the window after it
        if not (self._time_a - self.window.skew <= message.time_factor
                <= self._time_a + self.window.max_age):
            raise StaleTimeFactor("the request's time factor is outside the window around "
                                  "the hello's")
        info = TransactionInfo.decode(_open(message, self._key))
        if info.card_number != self.card_info.card_number \
                or info.bound_user != self.card_info.bound_user:
            raise WrongCard("a transaction for another card")
        self._transaction = info
        self._time_b = message.time_factor
        self._state = _CardState.AWAITING_OWNER
        return info

    def answer(self, decision: Decision, *, nonce: bytes | None = None) -> bytes:
        """s6: the owner pressed approve or decline."""
        if decision is Decision.TIMEOUT:
            return self.timeout(nonce=nonce)
        return self._result(decision, UserVerification.BUTTON, nonce)

    def timeout(self, *, nonce: bytes | None = None) -> bytes:
        """The owner never pressed the button: the card's own authenticated refusal."""
        return self._result(Decision.TIMEOUT, UserVerification.NONE, nonce)

    def _result(self, decision: Decision, verification: UserVerification,
                nonce: bytes | None) -> bytes:
        if self._state is not _CardState.AWAITING_OWNER or self._transaction is None:
            raise OutOfOrder("no transaction is waiting for an answer")
        self._state = _CardState.DONE
        info = self._transaction
        return _seal(MessageType.RESULT, self.suite, self._key, key_version=self.key_version,
                     card_ref=self.card_ref, channel_id=self.channel_id,
                     time_factor=self._time_b,
                     plaintext=ResultBody(decision, verification).encode(), nonce=nonce,
                     transaction_id=info.transaction_id,
                     bound=transaction_digest(self.suite, info))


@dataclass(frozen=True, slots=True)
class CardRecord:
    """What the server knows of the card it expects: its reference, number and user, and how
    to get its key for a suite and key version (an issuer key store, an HSM)."""

    card_ref: bytes
    card_number: str
    bound_user: str
    key_for: Callable[[CardSuite, int], CardKey | None]


@dataclass(frozen=True, slots=True)
class CardOutcome:
    """The card's authenticated answer to one transaction (s7)."""

    transaction_id: bytes
    decision: Decision
    user_verification: UserVerification

    @property
    def approved(self) -> bool:
        return self.decision is Decision.APPROVE


class CardVerifier:
    """The server's side: freshness and replay memory shared by every payment."""

    def __init__(self, window: TimeWindow | None = None, *, guard: ReplayGuard | None = None,
                 approval_window: int = 120) -> None:
        self.window = window or TimeWindow()
        self.guard = guard if guard is not None else ReplayGuard(self.window)
        self.approval_window = approval_window

    def open_hello(self, data: bytes, *, card: CardRecord, now: int,
                   expected_channel: bytes | None = None,
                   link: LinkAddresses | None = None) -> ServerSession:
        """s31-s32: check and open a card hello from the card the server expects.

        ``link``: the link's addresses as the gateway reports them. With a hello that carries
        its connection random, the channel id is recomputed from them and a mismatch refused
        (:class:`WrongChannel`) before any key is derived; a hello without the random cannot
        be checked this way (``ServerSession.channel_checked`` says whether it was)."""
        message = _sealed(data, MessageType.HELLO)
        if message.card_ref != card.card_ref:
            raise WrongCard("a hello from another card")
        if expected_channel is not None and message.channel_id != expected_channel:
            raise WrongChannel("the hello names another channel than the link's")
        if link is not None and message.connection_random is not None and not \
                hmac.compare_digest(link.channel_id(message.suite, message.connection_random),
                                    message.channel_id):
            raise WrongChannel("the hello's channel is not the link the gateway reports")
        self.guard.check(message.card_ref, message.key_version, message.message_type,
                         message.channel_id, message.time_factor, now=now)
        card_key = card.key_for(message.suite, message.key_version)
        if card_key is None:
            raise UnknownKeyVersion("the issuer holds no such key version")
        info = CardInfo.decode(_open(message, card_key))
        if info.card_number != card.card_number or info.bound_user != card.bound_user:
            raise WrongCard("the card info is not the expected card's")
        self.guard.admit(message.card_ref, message.key_version, message.message_type,
                         message.channel_id, message.time_factor, now=now)
        session = ServerSession(message, card_key, info, self.approval_window)
        session.channel_checked = link is not None and message.connection_random is not None
        return session


class ServerSession:
    """One payment after the card's hello was accepted."""

    def __init__(self, hello: SealedMessage, card_key: CardKey, info: CardInfo,
                 approval_window: int) -> None:
        self.suite = hello.suite
        self.card_info = info
        self.channel_id = hello.channel_id
        self.time_factor_a = hello.time_factor
        self._hello = hello
        self._key = card_key
        self._approval_window = approval_window
        self._sent: TransactionInfo | None = None
        self._time_b = 0
        self.deadline = 0
        self.outcome: CardOutcome | None = None
        self.channel_checked = False
        """Whether the hello's channel id was recomputed from the link's reported addresses."""

    def transaction_request(self, info: TransactionInfo, *, now: int,
                            nonce: bytes | None = None) -> bytes:
        """s41-s42: the transaction info sealed under the second process key, time factor
        b = the server's clock (never before a)."""
        if self._sent is not None:
            raise OutOfOrder("this session already sent its transaction request")
        if info.card_number != self.card_info.card_number \
                or info.bound_user != self.card_info.bound_user:
            raise WrongCard("the transaction is for another card")
        self._sent = info
        self._time_b = max(now, self.time_factor_a)
        self.deadline = now + self._approval_window
        hello = self._hello
        return _seal(MessageType.TRANSACTION, self.suite, self._key,
                     key_version=hello.key_version, card_ref=hello.card_ref,
                     channel_id=self.channel_id, time_factor=self._time_b,
                     plaintext=info.encode(), nonce=nonce)

    def read_result(self, data: bytes, *, now: int) -> CardOutcome:
        """s7: the card's authenticated answer to exactly the transaction this session sent."""
        if self._sent is None:
            raise OutOfOrder("no transaction request was sent")
        message = _sealed(data, MessageType.RESULT)
        if self.outcome is not None:
            raise Replay("this session already has the card's result")
        if message.transaction_id != self._sent.transaction_id:
            raise WrongTransaction("a result for another transaction")
        hello = self._hello
        if (message.suite, message.card_ref, message.key_version) != (
                hello.suite, hello.card_ref, hello.key_version):
            raise WrongCard("a result from another card or key")
        if message.channel_id != self.channel_id:
            raise WrongChannel("a result from another channel")
        if message.time_factor != self._time_b:
            raise WrongTransaction("a result to another request of this transaction")
        if now > self.deadline:
            raise Expired("the result came after the session's deadline")
        body = ResultBody.decode(_open(message, self._key,
                                       transaction_digest(self.suite, self._sent)))
        self.outcome = CardOutcome(self._sent.transaction_id, body.decision,
                                   body.user_verification)
        return self.outcome

    def expire(self, *, now: int) -> None:
        """Raise :class:`UserTimeout` once the deadline passed without a result: the owner
        never pressed the button (or the card never answered); nothing may settle."""
        if self._sent is not None and self.outcome is None and now > self.deadline:
            raise UserTimeout("no result from the card before the deadline")
