"""One issuer, cards and a server on this machine, for the card protocol's tests.

Nothing is mocked: real master keys, diversified card keys, both suites; the link is a channel
id computed from addresses and a connection random as the card computes it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from symmetric_card import (
    CardInfo,
    CardKey,
    CardOutcome,
    CardRecord,
    CardSession,
    CardSuite,
    CardVerifier,
    Decision,
    ServerSession,
    TimeWindow,
    TransactionInfo,
    channel_id,
    diversify,
)

NOW = 1_800_000_000
CARD_ADDRESS = "C0:FF:EE:00:00:01"
CENTRAL_ADDRESS = "00:1A:7D:DA:71:13"


@dataclass
class Card:
    """A provisioned card: its record (as the issuer holds it) and its key (as the card
    holds it)."""

    suite: CardSuite
    info: CardInfo
    card_ref: bytes
    key: CardKey
    version: int = 1
    address: str = CARD_ADDRESS

    def record(self, master: dict[int, bytes]) -> CardRecord:
        def key_for(suite: CardSuite, version: int) -> CardKey | None:
            if suite is not self.suite or version not in master:
                return None
            return diversify(suite, master[version], self.info.card_number)

        return CardRecord(self.card_ref, self.info.card_number, self.info.bound_user, key_for)

    def session(self, *, connection_random: bytes | None = None,
                central: str = CENTRAL_ADDRESS) -> CardSession:
        random = connection_random or secrets.token_bytes(16)
        return CardSession(suite=self.suite, card_key=self.key, key_version=self.version,
                           card_ref=self.card_ref, card_info=self.info,
                           channel_id=channel_id(self.suite, self.address, central, random))


@dataclass
class World:
    suite: CardSuite
    master: dict[int, bytes] = field(default_factory=lambda: {1: secrets.token_bytes(16)})
    window: TimeWindow = field(default_factory=TimeWindow)
    verifier: CardVerifier = field(init=False)

    def __post_init__(self) -> None:
        self.verifier = CardVerifier(self.window, approval_window=120)

    def card(self, number: str = "9900001234567899", user: str = "alice", *,
             version: int = 1, master: bytes | None = None,
             address: str = CARD_ADDRESS) -> Card:
        info = CardInfo(number, "C0FFEE0000000001", NOW - 86400, user)
        key = diversify(self.suite, master or self.master[version], number)
        return Card(self.suite, info, secrets.token_bytes(8), key, version, address)

    def transaction(self, card: Card, amount: int = 2000, payee: str = "breakfast-shop",
                    transaction_id: bytes | None = None) -> TransactionInfo:
        return TransactionInfo(transaction_id or secrets.token_bytes(16), amount, "CNY", payee,
                               NOW, "canteen", card.info.card_number, card.info.bound_user)

    def pay(self, card: Card, *, now: int = NOW, decision: Decision = Decision.APPROVE,
            record: Card | None = None) -> tuple[ServerSession, CardOutcome]:
        """The honest path end to end: s1-s7."""
        session = card.session()
        server = self.verifier.open_hello(session.hello(now), card=(record or card).record(
            self.master), now=now)
        txn = self.transaction(card)
        seen = session.receive_transaction(server.transaction_request(txn, now=now + 1))
        assert seen == txn
        outcome = server.read_result(session.answer(decision), now=now + 2)
        return server, outcome


def honest_payment_still_works(world: World, card: Card, now: int = NOW + 10) -> None:
    """After an attack: the same card pays normally, approved and bound to its transaction."""
    server, outcome = world.pay(card, now=now)
    assert outcome.approved and server.outcome is outcome
