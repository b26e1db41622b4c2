"""Attacks on the card protocol, each refused with its typed error before anything could
settle (no outcome is recorded), and the honest payment still works afterwards.

The gateway in these tests is the attacker: it holds every message in transit and may drop,
alter, replay or redirect it. Both suites run every test (conftest).
"""

from __future__ import annotations

import secrets

import pytest

from symmetric_card import (
    Busy,
    CardError,
    CardVerifier,
    Expired,
    OutOfOrder,
    Replay,
    ReplayGuard,
    SealedMessage,
    StaleTimeFactor,
    Tampered,
    UnknownKeyVersion,
    UserTimeout,
    WrongCard,
    WrongChannel,
    WrongKey,
    WrongTransaction,
    decode,
    encode,
)
from symmetric_card.messages import Decision

from .world import NOW, World, honest_payment_still_works


def _with(data: bytes, **changes: object) -> bytes:
    """The sealed message ``data`` with header fields replaced (the gateway's edit)."""
    message = decode(data)
    assert isinstance(message, SealedMessage)
    fields = {name: getattr(message, name) for name in SealedMessage.__slots__}
    fields.update(changes)
    return encode(SealedMessage(**fields))  # type: ignore[arg-type]


def _flip(data: bytes, field: str, index: int = 0) -> bytes:
    message = decode(data)
    value = bytearray(getattr(message, field))
    value[index] ^= 0x01
    return _with(data, **{field: bytes(value)})


# -- wrong key ----------------------------------------------------------------------------------
def test_wrong_key_card_is_refused_by_its_verification_code(world: World) -> None:
    """A card whose key is not the issuer's (a clone made with a guessed key, or a card of
    another issuer) is refused by the verification code: WrongKey, not Tampered, so nothing
    was decrypted."""
    genuine = world.card()
    clone = world.card(master=secrets.token_bytes(16))
    clone.card_ref = genuine.card_ref
    with pytest.raises(WrongKey):
        world.verifier.open_hello(clone.session().hello(NOW), card=genuine.record(world.master),
                                  now=NOW)
    assert len(world.verifier.guard) == 0            # a refused hello is not remembered
    honest_payment_still_works(world, genuine)


def test_server_with_the_wrong_key_is_refused_by_the_card(world: World) -> None:
    """A transaction request made with another key (a server impersonated by the gateway)."""
    card = world.card()
    session = card.session()
    hello = session.hello(NOW)
    impostor = World(world.suite)
    impostor_card = impostor.card()
    impostor_card.card_ref = card.card_ref
    impostor_card.info = card.info
    impostor_server = impostor.verifier.open_hello(
        impostor_card.session().hello(NOW), card=impostor_card.record(impostor.master), now=NOW)
    forged = impostor_server.transaction_request(world.transaction(card), now=NOW)
    forged = _with(forged, channel_id=decode(hello).channel_id)  # type: ignore[union-attr]
    with pytest.raises(WrongKey):
        session.receive_transaction(forged)
    honest_payment_still_works(world, card)


def test_unknown_key_version_is_refused(world: World) -> None:
    card = world.card()
    old = _with(card.session().hello(NOW), key_version=2)
    with pytest.raises(UnknownKeyVersion):
        world.verifier.open_hello(old, card=card.record(world.master), now=NOW)
    honest_payment_still_works(world, card)


# -- time factors ---------------------------------------------------------------------------------
def test_stale_time_factor_is_refused(world: World) -> None:
    card = world.card()
    stale = card.session().hello(NOW - world.window.max_age - 1)
    with pytest.raises(StaleTimeFactor):
        world.verifier.open_hello(stale, card=card.record(world.master), now=NOW)
    honest_payment_still_works(world, card)


def test_time_factor_from_the_future_is_refused(world: World) -> None:
    card = world.card()
    ahead = card.session().hello(NOW + world.window.skew + 1)
    with pytest.raises(StaleTimeFactor):
        world.verifier.open_hello(ahead, card=card.record(world.master), now=NOW)
    # within the skew is accepted
    world.verifier.open_hello(card.session().hello(NOW + world.window.skew),
                              card=card.record(world.master), now=NOW)
    honest_payment_still_works(world, card)


def test_rewritten_time_factor_is_refused_by_the_code(world: World) -> None:
    """A gateway that freshens an old hello's time factor changes the process key."""
    card = world.card()
    old = card.session().hello(NOW - 3600)
    with pytest.raises(WrongKey):
        world.verifier.open_hello(_with(old, time_factor=NOW), card=card.record(world.master),
                                  now=NOW)
    honest_payment_still_works(world, card)


def test_stale_transaction_request_is_refused_by_the_card(world: World) -> None:
    """A request whose time factor b is far from the card's a (an old request held back)."""
    card = world.card()
    session = card.session()
    server = world.verifier.open_hello(session.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    late = server.transaction_request(world.transaction(card),
                                      now=NOW + world.window.max_age + 1)
    with pytest.raises(StaleTimeFactor):
        session.receive_transaction(late)
    honest_payment_still_works(world, card)


# -- replay -------------------------------------------------------------------------------------
def test_replayed_hello_within_the_window_is_refused(world: World) -> None:
    card = world.card()
    hello = card.session().hello(NOW)
    world.verifier.open_hello(hello, card=card.record(world.master), now=NOW)
    with pytest.raises(Replay):
        world.verifier.open_hello(hello, card=card.record(world.master), now=NOW + 5)
    honest_payment_still_works(world, card)


def test_replayed_hello_after_the_window_is_refused(world: World) -> None:
    card = world.card()
    hello = card.session().hello(NOW)
    world.verifier.open_hello(hello, card=card.record(world.master), now=NOW)
    later = NOW + world.window.max_age + 1
    with pytest.raises(StaleTimeFactor):
        world.verifier.open_hello(hello, card=card.record(world.master), now=later)
    honest_payment_still_works(world, card, now=later)


def test_replay_memory_is_bounded_and_refuses_when_full(world: World) -> None:
    card = world.card()
    verifier = CardVerifier(world.window, guard=ReplayGuard(world.window, capacity=2))
    record = card.record(world.master)
    for _ in range(2):
        verifier.open_hello(card.session().hello(NOW), card=record, now=NOW)
    with pytest.raises(Busy):
        verifier.open_hello(card.session().hello(NOW), card=record, now=NOW)
    # entries leave with the window: the honest path works again afterwards
    later = NOW + world.window.max_age + 1
    verifier.open_hello(card.session().hello(later), card=record, now=later)
    assert len(verifier.guard) == 1


def test_replayed_transaction_request_is_refused_by_the_card(world: World) -> None:
    card = world.card()
    session = card.session()
    server = world.verifier.open_hello(session.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    request = server.transaction_request(world.transaction(card), now=NOW)
    session.receive_transaction(request)
    with pytest.raises(OutOfOrder):
        session.receive_transaction(request)
    honest_payment_still_works(world, card)


def test_replayed_result_is_refused(world: World) -> None:
    card = world.card()
    session = card.session()
    server = world.verifier.open_hello(session.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    session.receive_transaction(server.transaction_request(world.transaction(card), now=NOW))
    result = session.answer(Decision.APPROVE)
    server.read_result(result, now=NOW)
    with pytest.raises(Replay):
        server.read_result(result, now=NOW)
    honest_payment_still_works(world, card)


# -- relays to another card or channel -------------------------------------------------------------
def test_request_relayed_to_another_card_is_refused(world: World) -> None:
    alice = world.card()
    bob = world.card("9900007654321014", "bob", address="C0:FF:EE:00:00:02")
    alice_session, bob_session = alice.session(), bob.session()
    server = world.verifier.open_hello(alice_session.hello(NOW),
                                       card=alice.record(world.master), now=NOW)
    bob_session.hello(NOW)
    request = server.transaction_request(world.transaction(alice), now=NOW)
    with pytest.raises(WrongCard):
        bob_session.receive_transaction(request)
    # with its card ref rewritten to bob's, the channel id still names alice's link
    with pytest.raises(WrongChannel):
        bob_session.receive_transaction(_with(request, card_ref=bob.card_ref))
    assert server.outcome is None
    honest_payment_still_works(world, alice)
    honest_payment_still_works(world, bob)


def test_request_relayed_to_another_channel_is_refused(world: World) -> None:
    """The same card on a new connection (a new connection random): the request made for
    the first link is refused, also when the gateway rewrites its channel id."""
    card = world.card()
    first, second = card.session(), card.session()
    server = world.verifier.open_hello(first.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    second.hello(NOW + 1)
    request = server.transaction_request(world.transaction(card), now=NOW + 1)
    with pytest.raises(WrongChannel):
        second.receive_transaction(request)
    with pytest.raises(WrongKey):
        second.receive_transaction(_with(request, channel_id=second.channel_id))
    honest_payment_still_works(world, card)


def test_hello_on_a_channel_the_gateway_did_not_report_is_refused(world: World) -> None:
    card = world.card()
    hello = card.session().hello(NOW)
    with pytest.raises(WrongChannel):
        world.verifier.open_hello(hello, card=card.record(world.master), now=NOW,
                                  expected_channel=secrets.token_bytes(16))
    honest_payment_still_works(world, card)


def test_hello_from_another_card_is_refused(world: World) -> None:
    alice = world.card()
    bob = world.card("9900007654321014", "bob")
    with pytest.raises(WrongCard):
        world.verifier.open_hello(bob.session().hello(NOW), card=alice.record(world.master),
                                  now=NOW)
    honest_payment_still_works(world, alice)


# -- altered messages -----------------------------------------------------------------------------
@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_altered_hello_is_refused_as_tampered(world: World, field: str) -> None:
    card = world.card()
    hello = card.session().hello(NOW)
    with pytest.raises(Tampered):
        world.verifier.open_hello(_flip(hello, field), card=card.record(world.master), now=NOW)
    honest_payment_still_works(world, card)


def test_altered_verification_code_is_refused_as_wrong_key(world: World) -> None:
    card = world.card()
    hello = card.session().hello(NOW)
    with pytest.raises(WrongKey):
        world.verifier.open_hello(_flip(hello, "code", 7), card=card.record(world.master),
                                  now=NOW)
    honest_payment_still_works(world, card)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "code"])
def test_altered_transaction_request_is_refused_by_the_card(world: World, field: str) -> None:
    card = world.card()
    session = card.session()
    server = world.verifier.open_hello(session.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    request = server.transaction_request(world.transaction(card, amount=2000), now=NOW)
    with pytest.raises(WrongKey if field == "code" else Tampered):
        session.receive_transaction(_flip(request, field, -1))
    honest_payment_still_works(world, card)


# -- results ---------------------------------------------------------------------------------
def test_result_for_one_transaction_presented_for_another_is_refused(world: World) -> None:
    card = world.card()
    s1, s2 = card.session(), card.session()
    server1 = world.verifier.open_hello(s1.hello(NOW), card=card.record(world.master), now=NOW)
    server2 = world.verifier.open_hello(s2.hello(NOW), card=card.record(world.master), now=NOW)
    s1.receive_transaction(server1.transaction_request(world.transaction(card, 5), now=NOW))
    s2.receive_transaction(server2.transaction_request(world.transaction(card, 99999),
                                                       now=NOW))
    small = s1.answer(Decision.APPROVE)
    with pytest.raises(WrongTransaction):
        server2.read_result(small, now=NOW)
    # renamed to the other transaction, it still names the link of the first
    with pytest.raises(WrongChannel):
        server2.read_result(_with(small, transaction_id=server2._sent.transaction_id),  # type: ignore[union-attr]
                            now=NOW)
    assert server2.outcome is None
    assert server1.read_result(small, now=NOW).approved
    honest_payment_still_works(world, card)


def test_result_for_the_same_id_but_other_transaction_info_is_refused(world: World) -> None:
    """Defence in depth: the server's record of what it sent differs from what the card saw
    (same id, same link, another amount; the server's state is edited directly, as no message
    can cause it): the result is bound to the digest of the info the card decrypted."""
    card = world.card()
    session = card.session()
    server = world.verifier.open_hello(session.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    shown = world.transaction(card, amount=5)
    session.receive_transaction(server.transaction_request(shown, now=NOW))
    result = session.answer(Decision.APPROVE)
    object.__setattr__(server, "_sent", world.transaction(
        card, amount=99999, transaction_id=shown.transaction_id))
    with pytest.raises(Tampered):
        server.read_result(result, now=NOW)
    assert server.outcome is None
    honest_payment_still_works(world, card)


def test_owner_never_presses_the_button(world: World) -> None:
    """The card's own timeout answers an authenticated refusal; the server that hears
    nothing raises UserTimeout at its deadline and refuses a late result."""
    card = world.card()
    session = card.session()
    server = world.verifier.open_hello(session.hello(NOW), card=card.record(world.master),
                                       now=NOW)
    session.receive_transaction(server.transaction_request(world.transaction(card), now=NOW))
    server.expire(now=server.deadline)               # not yet
    with pytest.raises(UserTimeout):
        server.expire(now=server.deadline + 1)
    with pytest.raises(Expired):
        server.read_result(session.timeout(), now=server.deadline + 1)
    assert server.outcome is None
    # the card's timeout inside the deadline is an authenticated non-approval
    card2 = card.session()
    server2 = world.verifier.open_hello(card2.hello(NOW + 1), card=card.record(world.master),
                                        now=NOW + 1)
    card2.receive_transaction(server2.transaction_request(world.transaction(card), now=NOW + 1))
    outcome = server2.read_result(card2.timeout(), now=NOW + 2)
    assert outcome.decision is Decision.TIMEOUT and not outcome.approved
    honest_payment_still_works(world, card)


def test_result_before_the_request_and_messages_of_the_wrong_kind_are_refused(
        world: World) -> None:
    card = world.card()
    session = card.session()
    hello = session.hello(NOW)
    server = world.verifier.open_hello(hello, card=card.record(world.master), now=NOW)
    with pytest.raises(OutOfOrder):
        server.read_result(hello, now=NOW)
    with pytest.raises(OutOfOrder):
        session.receive_transaction(hello)           # its own hello reflected back
    with pytest.raises(OutOfOrder):
        session.answer(Decision.APPROVE)
    honest_payment_still_works(world, card)


def test_every_refusal_has_its_own_wire_code() -> None:
    from symmetric_card import CardErrorCode

    codes = {cls.code for cls in CardError.__subclasses__()} | {CardError.code}
    assert codes <= set(CardErrorCode)
    assert len({cls.code for cls in CardError.__subclasses__()}) == len(
        CardError.__subclasses__())
    from symmetric_card import error_class

    for code in CardErrorCode:
        assert error_class(code).code is code
