"""The card messages' codecs: round trips, and hostile bytes (random, mutated, structurally
wrong) that only ever raise the typed error, both at the decoder and through the whole check of
a server or a card."""

from __future__ import annotations

import contextlib
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorCode,
    CardErrorMessage,
    CardInfo,
    CardProvision,
    CardSuite,
    Decision,
    Malformed,
    MessageType,
    SealedMessage,
    TransactionInfo,
    UnsupportedSuite,
    UserVerification,
    decode,
    encode,
    luhn_digit,
)
from symmetric_card.keys import CardKey
from symmetric_card.messages import ResultBody

from .world import NOW, World

suites = st.sampled_from(list(CardSuite))
times = st.integers(1, 2**40 - 1)
texts = st.text(min_size=1, max_size=64)
card_numbers = st.text("0123456789", min_size=15, max_size=15).map(lambda p: p + luhn_digit(p))


@st.composite
def sealed(draw: st.DrawFn) -> SealedMessage:
    kind = draw(st.sampled_from([MessageType.HELLO, MessageType.TRANSACTION,
                                 MessageType.RESULT]))
    return SealedMessage(kind, draw(suites), draw(st.integers(1, 255)),
                         draw(st.binary(min_size=8, max_size=8)),
                         draw(st.binary(min_size=16, max_size=16)), draw(times),
                         draw(st.binary(min_size=8, max_size=8)),
                         draw(st.binary(min_size=12, max_size=12)),
                         draw(st.binary(min_size=17, max_size=528)),
                         draw(st.binary(min_size=16, max_size=16))
                         if kind is MessageType.RESULT else None)


@given(sealed())
def test_sealed_messages_round_trip(message: SealedMessage) -> None:
    assert decode(encode(message)) == message


@given(suites, times)
def test_card_challenge_round_trips(suite: CardSuite, server_time: int) -> None:
    challenge = CardChallenge(suite, server_time)
    assert decode(encode(challenge)) == challenge


@given(card_numbers, st.text(min_size=1, max_size=32), times, texts)
def test_card_info_round_trips(number: str, certificate: str, issued: int, user: str) -> None:
    info = CardInfo(number, certificate, issued, user)
    assert CardInfo.decode(info.encode()) == info


@given(st.binary(min_size=16, max_size=16), st.integers(0, 10**15),
       st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=3), texts, times,
       st.text(max_size=64), card_numbers, texts)
def test_transaction_info_round_trips(tx: bytes, amount: int, currency: str, payee: str,
                                      at: int, place: str, number: str, user: str) -> None:
    info = TransactionInfo(tx, amount, currency, payee, at, place, number, user)
    assert TransactionInfo.decode(info.encode()) == info


@given(st.sampled_from(list(Decision)), st.sampled_from(list(UserVerification)))
def test_result_body_round_trips(decision: Decision, verification: UserVerification) -> None:
    body = ResultBody(decision, verification)
    assert ResultBody.decode(body.encode()) == body


@given(card_numbers, st.binary(min_size=8, max_size=8), st.binary(min_size=16, max_size=16))
def test_card_provision_round_trips(number: str, ref: bytes, key: bytes) -> None:
    card = CardProvision(CardInfo(number, "C1", NOW, "alice"), ref,
                         {CardSuite.SM4_GCM_SM3: (3, CardKey(key))})
    again = CardProvision.decode(card.encode())
    assert (again.info, again.card_ref) == (card.info, card.card_ref)
    assert again.keys[CardSuite.SM4_GCM_SM3][1].material() == key
    assert key.hex() not in repr(card) and key.hex() not in repr(again.keys)


@given(st.sampled_from(list(CardErrorCode)), st.text(max_size=200))
def test_card_error_messages_round_trip(code: CardErrorCode, detail: str) -> None:
    message = CardErrorMessage(code, detail)
    assert decode(encode(message)) == message


def test_card_error_with_an_unknown_code_is_malformed() -> None:
    for code in (0, 7, 11, 38, 127, 65535):
        with pytest.raises(Malformed):
            decode(cbor2.dumps({1: 1, 2: 0x44, 3: {1: code, 2: ""}}, canonical=True))
    with pytest.raises(Malformed):
        decode(cbor2.dumps({1: 1, 2: 0x44, 3: {1: 1, 2: "x" * 201}}, canonical=True))


@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_the_typed_error(data: bytes) -> None:
    with contextlib.suppress(CardError):
        decode(data)


_cbor_values = st.recursive(
    st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20)
    | st.booleans() | st.none() | st.floats(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.integers(0, 12) | st.text(max_size=3), inner, max_size=10),
    max_leaves=20)


@given(st.integers(0, 3), st.integers(0, 0x50), _cbor_values)
def test_structurally_hostile_envelopes_raise_only_the_typed_error(
        version: int, kind: int, body: Any) -> None:
    data = cbor2.dumps({1: version, 2: kind, 3: body}, canonical=True)
    with contextlib.suppress(CardError):
        decode(data)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100)
@given(data=st.data())
def test_mutated_hellos_and_requests_raise_only_typed_errors(world: World,
                                                             data: st.DataObject) -> None:
    """Bit flips, truncations and insertions in real messages, through the server's and the
    card's whole checks: always a typed error (any change the decoder lets through changes the
    process key's inputs, the code, the AD or the ciphertext; an unchanged hello is a
    replay)."""
    card = world.card()
    session = card.session()
    hello = session.hello(NOW)
    server = world.verifier.open_hello(hello, card=card.record(world.master), now=NOW)
    request = server.transaction_request(world.transaction(card), now=NOW)
    for original, feed in ((hello, lambda b: world.verifier.open_hello(
            b, card=card.record(world.master), now=NOW)), (request, session.receive_transaction)):
        mutated = bytearray(original)
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(mutated) - 1))
        if op == "flip":
            mutated[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            del mutated[at:]
        else:
            mutated.insert(at, data.draw(st.integers(0, 255)))
        with pytest.raises(CardError):
            feed(bytes(mutated))


def test_unknown_suite_and_version_are_typed() -> None:
    with pytest.raises(UnsupportedSuite):
        decode(cbor2.dumps({1: 1, 2: 0x40, 3: {1: 9, 2: NOW}}, canonical=True))
    with pytest.raises(Malformed):
        decode(cbor2.dumps({1: 2, 2: 0x40, 3: {1: 1, 2: NOW}}, canonical=True))
    with pytest.raises(Malformed):                  # a boolean where the suite is
        decode(cbor2.dumps({1: 1, 2: 0x40, 3: {1: True, 2: NOW}}, canonical=True))
    with pytest.raises(Malformed):                  # 1.0 is not the key 1
        decode(cbor2.dumps({1: 1, 2: 0x40, 3: {1.0: 1, 2: NOW}}, canonical=True))
    with pytest.raises(Malformed):                  # non-canonical
        decode(bytes.fromhex("a301010218400" "3a2010102" "1b000000006b49d200"))
    assert decode(bytes.fromhex("a3010102184003a20101021a6b49d200")) == CardChallenge(
        CardSuite.AES128_GCM_SHA256, NOW)
