"""Symmetric-key card messages (flow F-C): what a card reads from any central, and what the
platform reads from any gateway. The first byte picks the parser:

* 0 ``symmetric_card.decode`` (every message type); accepted bytes must re-encode to themselves;
* 1 the card's side: ``CardSession.receive_transaction`` on a session that sent its hello, then
  the owner's answer when the request is accepted;
* 2 the server's side of a hello: ``CardVerifier.open_hello`` with a link report (a fresh
  verifier each time, so a replay refusal never hides a parser);
* 3 the server's side of a result: ``ServerSession.read_result`` on a session that sent its
  transaction request;
* 4 the plaintexts and the card's own record: ``CardInfo``, ``TransactionInfo``, ``ResultBody``
  and ``CardProvision.decode`` (the second byte picks which); accepted ones re-encode.

Keys, card, link and clock are fixed, so the seeds (the genuine messages of one payment in each
suite) pass every check and the mutations start deep in the code. Only ``CardError`` may come
out; an accepted request or result must be the genuine one (nothing else can carry the tag).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorCode,
    CardErrorMessage,
    CardInfo,
    CardProvision,
    CardRecord,
    CardSession,
    CardSuite,
    CardVerifier,
    Decision,
    LinkAddresses,
    ServerSession,
    TransactionInfo,
    decode,
    diversify,
    encode,
)
from symmetric_card.messages import ResultBody, UserVerification

from ..engine import FuzzOracleError, Target

NOW = 1_800_000_000
MASTER = bytes(range(16))
NUMBER = "9900001234567899"
REF = bytes.fromhex("a0a1a2a3a4a5a6a7")
RANDOM = bytes(range(0x30, 0x40))
LINK = LinkAddresses("C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13")
INFO = CardInfo(NUMBER, "C0FFEE0000000001", NOW - 86400, "alice")
TXN = TransactionInfo(bytes(range(16)), 2000, "CNY", "breakfast-shop", NOW, "canteen", NUMBER,
                      "alice")


@dataclass(frozen=True)
class _Suite:
    suite: CardSuite
    hello: bytes
    request: bytes
    result: bytes


def _card(suite: CardSuite) -> CardSession:
    return CardSession(suite=suite, card_key=diversify(suite, MASTER, NUMBER), key_version=1,
                       card_ref=REF, card_info=INFO,
                       channel_id=LINK.channel_id(suite, RANDOM), connection_random=RANDOM)


def _record(suite: CardSuite) -> CardRecord:
    key = diversify(suite, MASTER, NUMBER)
    return CardRecord(REF, NUMBER, "alice",
                      lambda s, v: key if (s, v) == (suite, 1) else None)


def _server(suite: CardSuite, hello: bytes) -> ServerSession:
    return CardVerifier().open_hello(hello, card=_record(suite), now=NOW, link=LINK)


@cache
def _payment(suite: CardSuite) -> _Suite:
    """One genuine payment, made once: the hello, request and result every parser expects."""
    card = _card(suite)
    hello = card.hello(NOW, nonce=bytes(12))
    request = _server(suite, hello).transaction_request(TXN, now=NOW, nonce=bytes(12))
    card.receive_transaction(request)
    return _Suite(suite, hello, request, card.answer(Decision.APPROVE, nonce=bytes(12)))


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    kind, suite_byte, body = data[0] % 5, data[1], data[2:]
    suite = list(CardSuite)[suite_byte % len(CardSuite)]
    genuine = _payment(suite)
    if kind == 0:
        message = decode(data[1:])
        if encode(message) != data[1:]:
            raise FuzzOracleError("card message accepted in a form that does not re-encode")
    elif kind == 1:
        card = _card(suite)
        card.hello(NOW)
        info = card.receive_transaction(body)
        if body != genuine.request or info != TXN:
            raise FuzzOracleError("the card accepted a request the server did not make")
        card.answer(Decision.APPROVE)
    elif kind == 2:
        _server(suite, body)
        if body != genuine.hello:
            raise FuzzOracleError("the server accepted a hello the card did not make")
    elif kind == 3:
        server = _server(suite, genuine.hello)
        server.transaction_request(TXN, now=NOW)
        outcome = server.read_result(body, now=NOW + 1)
        if body != genuine.result or not outcome.approved:
            raise FuzzOracleError("the server accepted a result the card did not make")
    else:
        parser = (CardInfo, TransactionInfo, ResultBody, CardProvision)[suite_byte % 4]
        parsed = parser.decode(body)
        if parsed.encode() != body:
            raise FuzzOracleError(f"{parser.__name__} accepted in a form that does not "
                                  "re-encode")


def seeds() -> list[bytes]:
    out: list[bytes] = []
    for n, suite in enumerate(CardSuite):
        pay = _payment(suite)
        s = bytes([n])
        out += [b"\x00" + encode(CardChallenge(suite, NOW)), b"\x00" + pay.hello,
                b"\x00" + pay.request, b"\x00" + pay.result,
                b"\x00" + encode(CardErrorMessage(CardErrorCode.WRONG_CHANNEL, "detail")),
                b"\x01" + s + pay.request, b"\x02" + s + pay.hello, b"\x03" + s + pay.result]
    key = diversify(CardSuite.AES128_GCM_SHA256, MASTER, NUMBER)
    provision = CardProvision(INFO, REF, {CardSuite.AES128_GCM_SHA256: (1, key)})
    out += [b"\x04\x00" + INFO.encode(), b"\x04\x01" + TXN.encode(),
            b"\x04\x02" + ResultBody(Decision.APPROVE, UserVerification.BUTTON).encode(),
            b"\x04\x03" + provision.encode()]
    return out


TARGET = Target("card_message", one_input, (CardError,), seeds, max_len=1100)
