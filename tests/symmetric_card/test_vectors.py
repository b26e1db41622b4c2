"""Known answers for the primitives, and the protocol's test vectors in
docs/vectors/symmetric-card.json, recomputed here from their inputs.

``BLEGW_WRITE_VECTORS=1 pytest tests/symmetric_card/test_vectors.py`` rewrites the file;
otherwise a difference fails the test, and the file's messages are also fed to the real card
and server code, so a vector that no longer verifies cannot stay in the docs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from symmetric_card import (
    CardInfo,
    CardKey,
    CardRecord,
    CardSession,
    CardSuite,
    CardVerifier,
    Decision,
    LinkAddresses,
    TransactionInfo,
    channel_id,
    diversify,
    process_key,
)
from symmetric_card.keys import diversification_block
from symmetric_card.suites import aead_seal, ecb_encrypt_block, hkdf

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors" / "symmetric-card.json"


def test_sm4_gcm_matches_rfc_8998() -> None:
    """RFC 8998 appendix A.1 (SM4-GCM), through the same function the protocol uses."""
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    nonce = bytes.fromhex("00001234567800000000ABCD")
    ad = bytes.fromhex("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    plaintext = bytes.fromhex("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
                              "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
    expected = bytes.fromhex("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
                             "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D"
                             "83DE3541E4C2B58177E065A9BF7B62EC")
    assert aead_seal(CardSuite.SM4_GCM_SM3, key, nonce, plaintext, ad) == expected


def test_block_ciphers_match_their_standards() -> None:
    """GB/T 32907 (SM4) appendix A example 1 and FIPS 197 appendix C.1 (AES-128)."""
    sm4_key = bytes.fromhex("0123456789abcdeffedcba9876543210")
    assert ecb_encrypt_block(CardSuite.SM4_GCM_SM3, sm4_key, sm4_key).hex() == \
        "681edf34d206965e86b3e94f536e4246"
    assert ecb_encrypt_block(CardSuite.AES128_GCM_SHA256, bytes(range(16)),
                             bytes.fromhex("00112233445566778899aabbccddeeff")).hex() == \
        "69c4e0d86a7b0430d8cdb78070b4c55a"


def test_hkdf_matches_rfc_5869() -> None:
    """RFC 5869 test case 1 (SHA-256)."""
    okm = hkdf(CardSuite.AES128_GCM_SHA256, bytes([0x0B] * 22),
               salt=bytes.fromhex("000102030405060708090a0b0c"),
               info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"), length=42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")


def test_diversification_block_is_the_number_and_its_complement() -> None:
    assert diversification_block("9900001234567899").hex() == \
        "9900001234567899" + "66ffffedcba98766"
    with pytest.raises(ValueError):
        diversification_block("9900001234567890")       # Luhn check digit wrong


INPUTS: dict[str, Any] = {
    "issuer_master_key": "000102030405060708090a0b0c0d0e0f",
    "key_version": 1,
    "card_number": "9900001234567899",
    "certificate_number": "C0FFEE0000000001",
    "issue_time": 1799913600,
    "bound_user": "alice",
    "card_ref": "a0a1a2a3a4a5a6a7",
    "card_address": "C0:FF:EE:00:00:01",
    "central_address": "00:1A:7D:DA:71:13",
    "connection_random": "101112131415161718191a1b1c1d1e1f",
    "time_factor_a": 1800000000,
    "time_factor_b": 1800000001,
    "nonces": {"hello": "b0b1b2b3b4b5b6b7b8b9babb", "transaction": "c0c1c2c3c4c5c6c7c8c9cacb",
               "result": "d0d1d2d3d4d5d6d7d8d9dadb"},
    "transaction": {"transaction_id": "e0e1e2e3e4e5e6e7e8e9eaebecedeeef", "amount_minor": 2000,
                    "currency": "CNY", "payee": "breakfast-shop",
                    "transaction_time": 1800000001, "place": "canteen"},
    "decision": "approve",
}


def compute(suite: CardSuite) -> dict[str, Any]:
    i = INPUTS
    master = bytes.fromhex(i["issuer_master_key"])
    card_key = diversify(suite, master, i["card_number"])
    ref = bytes.fromhex(i["card_ref"])
    channel = channel_id(suite, i["card_address"], i["central_address"],
                         bytes.fromhex(i["connection_random"]))
    info = CardInfo(i["card_number"], i["certificate_number"], i["issue_time"], i["bound_user"])
    t = i["transaction"]
    txn = TransactionInfo(bytes.fromhex(t["transaction_id"]), t["amount_minor"], t["currency"],
                          t["payee"], t["transaction_time"], t["place"], i["card_number"],
                          i["bound_user"])
    session = CardSession(suite=suite, card_key=card_key, key_version=i["key_version"],
                          card_ref=ref, card_info=info, channel_id=channel)
    nonces = {k: bytes.fromhex(v) for k, v in i["nonces"].items()}
    hello = session.hello(i["time_factor_a"], nonce=nonces["hello"])
    verifier = CardVerifier()
    record = CardRecord(ref, i["card_number"], i["bound_user"],
                        lambda s, v: card_key if (s, v) == (suite, 1) else None)
    server = verifier.open_hello(hello, card=record, now=i["time_factor_a"])
    request = server.transaction_request(txn, now=i["time_factor_b"], nonce=nonces["transaction"])
    assert session.receive_transaction(request) == txn
    result = session.answer(Decision.APPROVE, nonce=nonces["result"])
    assert server.read_result(result, now=i["time_factor_b"]).approved
    # the hello as the simulated card sends it: with its connection random (key 10), which
    # lets the platform recompute the channel id from the link the gateway reports
    random = bytes.fromhex(i["connection_random"])
    hello_with_random = CardSession(
        suite=suite, card_key=card_key, key_version=i["key_version"], card_ref=ref,
        card_info=info, channel_id=channel, connection_random=random,
    ).hello(i["time_factor_a"], nonce=nonces["hello"])

    def keys(message_type: int, time_factor: int) -> dict[str, str]:
        pk = process_key(suite, card_key, message_type=message_type,
                         key_version=i["key_version"], card_ref=ref, channel_id=channel,
                         time_factor=time_factor)
        return {"key": pk.key.hex(), "verification_code": pk.code.hex()}

    return {
        "card_key": card_key.material().hex(),
        "channel_id": channel.hex(),
        "process_keys": {"hello": keys(0x41, i["time_factor_a"]),
                         "transaction": keys(0x42, i["time_factor_b"]),
                         "result": keys(0x43, i["time_factor_b"])},
        "card_info_plaintext": info.encode().hex(),
        "transaction_info_plaintext": txn.encode().hex(),
        "messages": {"hello": hello.hex(), "transaction": request.hex(),
                     "result": result.hex(), "hello_with_random": hello_with_random.hex()},
    }


def build() -> dict[str, Any]:
    return {
        "description": "Test vectors for the symmetric-key card protocol "
                       "(docs/symmetric-card.md); test keys only. Regenerated by "
                       "tests/symmetric_card/test_vectors.py.",
        "inputs": INPUTS,
        "suites": {suite.label: {"suite": int(suite), **compute(suite)} for suite in CardSuite},
    }


def test_vectors_file_is_current() -> None:
    vectors = build()
    text = json.dumps(vectors, indent=2) + "\n"
    if os.environ.get("BLEGW_WRITE_VECTORS") == "1":
        VECTORS.write_text(text)
    assert VECTORS.read_text() == text, "docs/vectors/symmetric-card.json is out of date"


@pytest.mark.parametrize("suite", list(CardSuite), ids=lambda s: s.label)
def test_vector_messages_verify_with_the_real_code(suite: CardSuite) -> None:
    """The file's bytes (not recomputed ones) go through the server's and the card's checks."""
    file = json.loads(VECTORS.read_text())
    i, v = file["inputs"], file["suites"][suite.label]
    card_key = CardKey(bytes.fromhex(v["card_key"]))
    assert diversify(suite, bytes.fromhex(i["issuer_master_key"]),
                     i["card_number"]).material() == card_key.material()
    ref = bytes.fromhex(i["card_ref"])
    record = CardRecord(ref, i["card_number"], i["bound_user"], lambda s, _v: card_key)
    server = CardVerifier().open_hello(bytes.fromhex(v["messages"]["hello"]), card=record,
                                       now=i["time_factor_a"])
    assert server.card_info.encode().hex() == v["card_info_plaintext"]
    t = i["transaction"]
    txn = TransactionInfo(bytes.fromhex(t["transaction_id"]), t["amount_minor"], t["currency"],
                          t["payee"], t["transaction_time"], t["place"], i["card_number"],
                          i["bound_user"])
    server.transaction_request(txn, now=i["time_factor_b"])
    outcome = server.read_result(bytes.fromhex(v["messages"]["result"]), now=i["time_factor_b"])
    assert outcome.approved and outcome.transaction_id == txn.transaction_id
    # the hello with the card's random, checked against the link as the gateway reports it
    link = LinkAddresses(i["card_address"], i["central_address"])
    checked = CardVerifier().open_hello(bytes.fromhex(v["messages"]["hello_with_random"]),
                                        card=record, now=i["time_factor_a"], link=link)
    assert checked.channel_checked and checked.channel_id.hex() == v["channel_id"]


def test_process_key_is_hkdf_over_the_documented_bytes() -> None:
    """The derivation as docs/symmetric-card.md writes it, byte by byte, with the standard
    library's HMAC (an implementation independent of the one under test)."""
    import hashlib
    import hmac
    import struct

    i = INPUTS
    card_key = diversify(CardSuite.AES128_GCM_SHA256, bytes.fromhex(i["issuer_master_key"]),
                         i["card_number"])
    channel = channel_id(CardSuite.AES128_GCM_SHA256, i["card_address"], i["central_address"],
                         bytes.fromhex(i["connection_random"]))
    assert channel == hashlib.sha256(
        b"blegw/card-channel/v1" + bytes.fromhex("C0FFEE000001") + bytes.fromhex("001A7DDA7113")
        + bytes.fromhex(i["connection_random"])).digest()[:16]
    info = (b"blegw/card-process-key/v1" + bytes([1, 0x41, 1]) + bytes.fromhex(i["card_ref"])
            + struct.pack(">Q", i["time_factor_a"]))
    prk = hmac.new(channel, card_key.material(), hashlib.sha256).digest()
    okm = hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:24]
    pk = process_key(CardSuite.AES128_GCM_SHA256, card_key, message_type=0x41, key_version=1,
                     card_ref=bytes.fromhex(i["card_ref"]), channel_id=channel,
                     time_factor=i["time_factor_a"])
    assert (pk.key, pk.code) == (okm[:16], okm[16:])
