"""The symmetric-key card's secure element (flow F-C): the key injected at issue, used only
inside, never exported.

State, in the card's directory (0700): ``card.cbor`` (0600), written once by ``blegw-platform
provision-card`` (card number, certificate number, issue time, bound user, card ref, one key per
suite and its version), and ``card-clock`` (0600), the last time factor the server confirmed.

The simulated card has no real-time clock: it takes its time factor from the server's card
challenge through :class:`symmetric_card.ServerTimeClock`, and persists it only once the
server's authenticated transaction request confirmed it. Each connection gets a fresh random,
the card's share of the channel id (``symmetric_card.channel``).

The only operations: public facts (:meth:`CardElement.facts`), a hello for a challenge, opening
a transaction request, and the owner's answer or the timeout; :meth:`CardElement.respond` puts
them behind one "message in, message out" call for the GATT adapter. No method returns the key; the
``repr`` of the element and of its session show none of it.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from pathlib import Path

from private_files import NotPrivateError, read_private, write_atomic
from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorMessage,
    CardProvision,
    CardSession,
    CardSuite,
    Decision,
    MessageType,
    OutOfOrder,
    SealedMessage,
    ServerTimeClock,
    TimeWindow,
    TransactionInfo,
    UnsupportedSuite,
    channel_id,
    decode,
    encode,
)
from symmetric_card.channel import CONNECTION_RANDOM_SIZE
from symmetric_card.messages import MAX_ERROR_DETAIL

from .policy import Prompt, UserPolicy
from .state import StateError

__all__ = ["CARD_FILE", "CLOCK_FILE", "CardElement", "CardFacts"]

CARD_FILE = "card.cbor"
CLOCK_FILE = "card-clock"


@dataclass(frozen=True, slots=True)
class CardFacts:
    """What the card may tell anyone: no key."""

    card_number: str
    certificate_number: str
    bound_user: str
    card_ref: bytes
    suites: tuple[CardSuite, ...]


class CardElement:
    def __init__(self, directory: Path, window: TimeWindow | None = None) -> None:
        self.directory = directory
        self.window = window or TimeWindow()
        try:
            raw = read_private(directory / CARD_FILE)
        except NotPrivateError as exc:
            raise StateError(f"{exc}; refusing it") from None
        if raw is None:
            raise StateError(f"{directory / CARD_FILE} is missing: provision the card first "
                             "(blegw-platform provision-card)")
        try:
            self._card = CardProvision.decode(raw)
        except CardError:
            raise StateError(f"{directory / CARD_FILE} is corrupt") from None
        self._clock = ServerTimeClock(self._read_clock())
        self._link: tuple[str, str, bytes] | None = None
        self._session: CardSession | None = None

    def __repr__(self) -> str:
        return f"CardElement({self._card.info.card_number[-4:].rjust(16, '*')})"

    def facts(self) -> CardFacts:
        card = self._card
        return CardFacts(card.info.card_number, card.info.certificate_number,
                         card.info.bound_user, card.card_ref, tuple(card.keys))

    def _read_clock(self) -> int:
        try:
            raw = read_private(self.directory / CLOCK_FILE)
        except NotPrivateError as exc:
            raise StateError(f"{exc}; refusing it") from None
        if raw is None:
            return 0
        text = raw.decode("ascii", "replace").strip()
        if not text.isdigit():
            raise StateError(f"{self.directory / CLOCK_FILE} is corrupt")
        return int(text)

    def connected(self, card_address: str, central_address: str) -> None:
        """A central connected: the card's share of the new channel id, and a fresh clock
        that starts from the last confirmed time factor."""
        self._link = (card_address, central_address,
                      secrets.token_bytes(CONNECTION_RANDOM_SIZE))
        self._clock = ServerTimeClock(self._read_clock())
        self._session = None

    def channel_id(self, suite: CardSuite) -> bytes:
        if self._link is None:
            raise OutOfOrder("no central is connected")
        card_address, central_address, random = self._link
        return channel_id(suite, card_address, central_address, random)

    def hello(self, challenge: bytes) -> bytes:
        """Answer the server's card challenge with a card hello (s1-s2)."""
        message = decode(challenge)
        if not isinstance(message, CardChallenge):
            raise OutOfOrder("expected a card challenge")
        entry = self._card.keys.get(message.suite)
        if entry is None:
            raise UnsupportedSuite("this card has no key in that suite")
        version, key = entry
        self._session = CardSession(suite=message.suite, card_key=key, key_version=version,
                                    card_ref=self._card.card_ref, card_info=self._card.info,
                                    channel_id=self.channel_id(message.suite),
                                    window=self.window, connection_random=self._link[2]
                                    if self._link is not None else None)
        return self._session.hello(self._clock.time_factor(message.server_time))

    def receive(self, request: bytes) -> TransactionInfo:
        """Open the server's transaction request (s5); confirms the server's time."""
        if self._session is None:
            raise OutOfOrder("no hello was sent on this connection")
        info = self._session.receive_transaction(request)
        self._clock.confirm(self._session.time_factor_b)
        write_atomic(self.directory / CLOCK_FILE, str(self._clock.last_confirmed).encode())
        return info

    def answer(self, approved: bool) -> bytes:
        """The owner pressed approve or decline (s6)."""
        return self._current().answer(Decision.APPROVE if approved else Decision.DECLINE)

    def timeout(self) -> bytes:
        """Nobody pressed the button in time: the card's authenticated refusal."""
        return self._current().timeout()

    def _current(self) -> CardSession:
        if self._session is None:
            raise OutOfOrder("no transaction is waiting")
        session, self._session = self._session, None
        return session

    async def respond(self, data: bytes, policy: UserPolicy, owner_timeout: float) -> bytes:
        """One server message in, the card's one answer out, as the MSG characteristic needs:
        a challenge gets a hello, a transaction request the owner's result (or the timeout);
        every refusal is answered with a card error message carrying its code, never silence."""
        try:
            message = decode(data)
            if isinstance(message, CardChallenge):
                return self.hello(data)
            if isinstance(message, SealedMessage) and \
                    message.message_type is MessageType.TRANSACTION:
                return await self.ask_owner(self.receive(data), policy, owner_timeout)
            raise OutOfOrder("a card answers only a challenge or a transaction request")
        except CardError as exc:
            return encode(CardErrorMessage(exc.code, str(exc)[:MAX_ERROR_DETAIL]))

    async def ask_owner(self, info: TransactionInfo, policy: UserPolicy,
                        timeout: float) -> bytes:
        """Ask through the module's policy interface (a button, the terminal); the wait is
        bounded by ``timeout`` and ends in :meth:`timeout` if nobody answers."""
        prompt = Prompt(info.amount_minor, info.currency, info.payee,
                        info.transaction_id.hex()[:16], info.place or "card payment")
        try:
            approved = await asyncio.wait_for(policy.decide(prompt), timeout)
        except TimeoutError:
            return self.timeout()
        return self.answer(approved)
