"""The platform's own check of the channel id: the card's hello carries its connection random,
the gateway reports the link's addresses, and the server recomputes the id and refuses a hello
whose link is not the one reported, before any key is derived. Both suites."""

from __future__ import annotations

import secrets

import pytest

from symmetric_card import (
    CardSession,
    LinkAddresses,
    SealedMessage,
    Tampered,
    WrongChannel,
    WrongKey,
    decode,
    encode,
)
from tests.test_cddl_contracts import assert_valid

from .world import CARD_ADDRESS, CENTRAL_ADDRESS, NOW, Card, World, honest_payment_still_works

RELAY_CENTRAL = "00:1A:7D:DA:71:99"
"""A relay's central: the adapter that really talks to the card, not the honest gateway's."""


def _session(card: Card, random: bytes, central: str = CENTRAL_ADDRESS) -> CardSession:
    """The card's session on one connection, sending its random as the simulated card does."""
    session = card.session(connection_random=random, central=central)
    session.connection_random = random
    return session


def _edit(data: bytes, **changes: object) -> bytes:
    message = decode(data)
    assert isinstance(message, SealedMessage)
    fields = {name: getattr(message, name) for name in SealedMessage.__slots__}
    fields.update(changes)
    return encode(SealedMessage(**fields))  # type: ignore[arg-type]


def test_hello_on_the_reported_link_is_checked_and_pays(world: World) -> None:
    card = world.card()
    random = secrets.token_bytes(16)
    session = _session(card, random)
    hello = session.hello(NOW)
    assert decode(hello).connection_random == random  # type: ignore[union-attr]
    assert_valid("card-message", hello)
    server = world.verifier.open_hello(hello, card=card.record(world.master), now=NOW,
                                       link=LinkAddresses(CARD_ADDRESS, CENTRAL_ADDRESS))
    assert server.channel_checked
    txn = world.transaction(card)
    assert session.receive_transaction(server.transaction_request(txn, now=NOW + 1)) == txn


def test_hostile_gateway_reporting_other_addresses_is_refused_wrong_channel(
        world: World) -> None:
    """The gateway (or a relay in front of an honest one) reports a link other than the one
    the card computed its channel id on: refused before any key is derived, nothing is
    remembered (the honest hello still passes afterwards)."""
    card = world.card()
    random = secrets.token_bytes(16)
    hello = _session(card, random).hello(NOW)
    for link in (LinkAddresses(CARD_ADDRESS, RELAY_CENTRAL),
                 LinkAddresses("C0:FF:EE:00:00:02", CENTRAL_ADDRESS)):
        with pytest.raises(WrongChannel):
            world.verifier.open_hello(hello, card=card.record(world.master), now=NOW, link=link)
    assert world.verifier.guard.entries() == []
    server = world.verifier.open_hello(hello, card=card.record(world.master), now=NOW,
                                       link=LinkAddresses(CARD_ADDRESS, CENTRAL_ADDRESS))
    assert server.channel_checked
    honest_payment_still_works(world, card)


def test_relayed_card_hello_through_an_honest_gateway_is_refused(world: World) -> None:
    """A relay: the card talks to the attacker's central, the attacker's peripheral to the
    honest gateway. The card's channel id names the relay's central; the honest gateway
    reports its own: refused."""
    card = world.card()
    hello = _session(card, secrets.token_bytes(16), central=RELAY_CENTRAL).hello(NOW)
    with pytest.raises(WrongChannel):
        world.verifier.open_hello(hello, card=card.record(world.master), now=NOW,
                                  link=LinkAddresses(CARD_ADDRESS, CENTRAL_ADDRESS))
    honest_payment_still_works(world, card)


def test_gateway_rewriting_the_random_or_stripping_it_is_caught(world: World) -> None:
    """The random is authenticated (AEAD associated data) and bound into the channel id: a
    gateway that makes its lie consistent by rewriting the random is refused (wrong channel,
    or, with the channel id rewritten too, the verification code); one that strips the random
    to avoid the check breaks the tag."""
    card = world.card()
    random = secrets.token_bytes(16)
    hello = _session(card, random).hello(NOW)
    record = card.record(world.master)
    relay_link = LinkAddresses(CARD_ADDRESS, RELAY_CENTRAL)
    other = secrets.token_bytes(16)
    with pytest.raises(WrongChannel):
        world.verifier.open_hello(_edit(hello, connection_random=other), card=record, now=NOW,
                                  link=relay_link)
    forged = _edit(hello, connection_random=other,
                   channel_id=relay_link.channel_id(world.suite, other))
    with pytest.raises(WrongKey):
        world.verifier.open_hello(forged, card=record, now=NOW, link=relay_link)
    with pytest.raises(Tampered):
        world.verifier.open_hello(_edit(hello, connection_random=None), card=record, now=NOW,
                                  link=LinkAddresses(CARD_ADDRESS, CENTRAL_ADDRESS))
    honest_payment_still_works(world, card)


def test_without_a_report_or_a_random_the_hello_is_accepted_unchecked(world: World) -> None:
    """An older gateway reports no link, an older card sends no random: the card's own channel
    check is then the only one, and the session says so."""
    card = world.card()
    with_random = _session(card, secrets.token_bytes(16)).hello(NOW)
    server = world.verifier.open_hello(with_random, card=card.record(world.master), now=NOW)
    assert not server.channel_checked
    without = card.session().hello(NOW + 1)
    server = world.verifier.open_hello(without, card=card.record(world.master), now=NOW + 1,
                                       link=LinkAddresses(CARD_ADDRESS, CENTRAL_ADDRESS))
    assert not server.channel_checked


def test_link_addresses_from_hostile_bytes() -> None:
    assert LinkAddresses.from_bytes(bytes.fromhex("c0ffee000001"), bytes(6)) == LinkAddresses(
        CARD_ADDRESS, "00:00:00:00:00:00")
    for bad in (b"", bytes(5), bytes(7)):
        with pytest.raises(ValueError):
            LinkAddresses.from_bytes(bad, bytes(6))
    with pytest.raises(ValueError):
        LinkAddresses("C0:FF:EE:00:00", CENTRAL_ADDRESS)
