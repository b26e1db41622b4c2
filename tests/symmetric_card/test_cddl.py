"""docs/cddl/symmetric-card.cddl is the card protocol's contract: every message and file the
code writes validates against it, and wrong ones that the decoders refuse, the CDDL refuses
too (schemas registered in tests/test_cddl_contracts.py)."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from blegw_platform.issuer_keys import FileIssuerKeys, IssuedCards, issue_card
from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorCode,
    CardErrorMessage,
    CardInfo,
    Decision,
    TransactionInfo,
    decode,
    encode,
)
from symmetric_card.messages import ResultBody, UserVerification
from tests.test_cddl_contracts import assert_valid, valid

from .world import NOW, World


def test_every_card_message_matches_the_contract(world: World) -> None:
    card = world.card()
    session = card.session()
    assert_valid("card-message", encode(CardChallenge(world.suite, NOW)))
    hello = session.hello(NOW)
    server = world.verifier.open_hello(hello, card=card.record(world.master), now=NOW)
    request = server.transaction_request(world.transaction(card), now=NOW)
    session.receive_transaction(request)
    result = session.answer(Decision.APPROVE)
    for message in (hello, request, result):
        assert_valid("card-message", message)
    for code in CardErrorCode:
        assert_valid("card-message", encode(CardErrorMessage(code, "d" * 200)))
    assert not valid("card-message", cbor2.dumps({1: 1, 2: 0x44, 3: {1: 7, 2: ""}},
                                                 canonical=True))
    assert_valid("card-info", card.info.encode())
    assert_valid("transaction-info", world.transaction(card).encode())
    for decision in Decision:
        assert_valid("card-result-body", ResultBody(decision, UserVerification.BUTTON).encode())


def test_the_card_files_match_the_contract(tmp_path: Path) -> None:
    keys, register = FileIssuerKeys(tmp_path), IssuedCards(tmp_path)
    card = issue_card(keys, register, bound_user="alice")
    issue_card(keys, register, bound_user="bob")
    assert_valid("card-provision", card.encode())
    assert_valid("issued-cards", register.path.read_bytes())


def _hello_body(world: World) -> dict[int, object]:
    card = world.card()
    body = cbor2.loads(card.session().hello(NOW))[3]
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("change", [
    {1: 3}, {2: 0}, {3: b"short"}, {4: bytes(15)}, {5: 0}, {6: bytes(9)}, {7: bytes(11)},
    {8: bytes(16)}, {9: bytes(16)}, {10: 1},
])
def test_wrong_sealed_messages_are_refused_by_both(world: World,
                                                   change: dict[int, object]) -> None:
    body = {**_hello_body(world), **change}
    data = cbor2.dumps({1: 1, 2: 0x41, 3: body}, canonical=True)
    assert not valid("card-message", data)
    with pytest.raises(CardError):
        decode(data)


def test_wrong_plaintexts_are_refused_by_both() -> None:
    good = CardInfo("9900001234567899", "C1", NOW, "alice").body()
    for change in ({1: "9900001234567890"[:15]}, {2: ""}, {3: 0}, {4: "x" * 65}, {5: 1}):
        data = cbor2.dumps({**good, **change}, canonical=True)
        assert not valid("card-info", data)
        with pytest.raises(CardError):
            CardInfo.decode(data)
    tx = TransactionInfo(bytes(16), 1, "CNY", "shop", NOW, "", "9900001234567899", "a").body()
    for change in ({2: -1}, {3: "cny"}, {6: "p" * 65}, {1: bytes(15)}):
        data = cbor2.dumps({**tx, **change}, canonical=True)
        assert not valid("transaction-info", data)
        with pytest.raises(CardError):
            TransactionInfo.decode(data)
