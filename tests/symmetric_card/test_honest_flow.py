"""The seed's flow s0-s7 in both suites, as the card and the server run it."""

from __future__ import annotations

from symmetric_card import Decision, MessageType, SealedMessage, UserVerification, decode

from .world import NOW, World


def test_a_payment_is_approved_and_bound_to_its_transaction(world: World) -> None:
    card = world.card()
    server, outcome = world.pay(card)
    assert outcome.approved
    assert outcome.user_verification is UserVerification.BUTTON
    assert server.card_info == card.info


def test_a_decline_is_authenticated_and_not_approved(world: World) -> None:
    card = world.card()
    _server, outcome = world.pay(card, decision=Decision.DECLINE)
    assert outcome.decision is Decision.DECLINE and not outcome.approved


def test_the_card_info_never_travels_in_clear(world: World) -> None:
    card = world.card()
    hello = card.session().hello(NOW)
    assert card.info.card_number.encode() not in hello
    assert card.info.bound_user.encode() not in hello
    message = decode(hello)
    assert isinstance(message, SealedMessage) and message.message_type is MessageType.HELLO
    assert message.suite is world.suite


def test_one_card_pays_twice_on_one_link_with_increasing_time_factors(world: World) -> None:
    card = world.card()
    world.pay(card, now=NOW)
    world.pay(card, now=NOW + 1)
