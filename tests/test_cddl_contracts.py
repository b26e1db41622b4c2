"""The CDDL in docs/cddl/ is the wire contract: every message the code emits validates against
it, hand-made wrong messages do not, and the CBOR examples in the docs decode.

Messages are built with the project's own encoders and keys of both suites (P-256 and SM2);
nothing is mocked. Each wrong message is also refused by the project's decoder, so the CDDL and
the code cannot drift apart in the direction that matters: what one refuses, the other refuses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest

from ble_profile.module_info import ModuleInfo
from e2e.approval import sign_confirmation, signed_bytes
from e2e.cbor import dumps
from e2e.certificates import USAGE_REQUEST_SIGNING, Certificate, CertificateAuthority
from e2e.errors import ErrorCode, MalformedMessage, UnsupportedSuite
from e2e.messages import (
    CertificateRequest,
    CertificateResponse,
    ConfirmationRequest,
    Decision,
    ErrorResponse,
    UserVerification,
    decode_envelope,
    encode_envelope,
)
from e2e.request_auth import REQUEST_DOMAIN, RequestSigner, TrustAnchors, request_signed_bytes
from e2e.suites import Suite, generate_private_key
from relay_contract.messages import (
    CancelReason,
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    decode_from_gateway,
    decode_from_platform,
)
from relay_contract.notices import CodeNotice, MalformedNotice, NoticeRole, NoticeState

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOW = 1_800_000_000


def _schema(family: str, root: str) -> pycddl.Schema:
    """A schema whose first rule (the one pycddl validates against) is ``root``."""
    return pycddl.Schema(f"root = {root}\n" + (DOCS / "cddl" / f"{family}.cddl").read_text())


SCHEMAS: dict[str, pycddl.Schema] = {
    root: _schema(family, root)
    for family, roots in {
        "e2e": ("envelope", "certificate", "certificate-tbs", "trust-anchors"),
        "relay": ("relay-request", "relay-response", "timing-name", "seconds", "relay-cancel",
                  "relay-progress", "code-notice"),
        "ble": ("module-info",),
        "symmetric-card": ("card-message", "card-info", "transaction-info",
                           "card-result-body", "card-provision", "issued-cards"),
        "secure-channel": ("handshake", "error-body", "channel-envelope", "order", "approval",
                           "refusal", "ping", "pong"),
        "transaction-code": ("signed-code", "unsigned-code", "countersigned-code"),
    }.items()
    for root in roots
}


def valid(root: str, data: bytes) -> bool:
    try:
        SCHEMAS[root].validate_cbor(data)
    except pycddl.ValidationError:
        return False
    return True


def assert_valid(root: str, data: bytes) -> None:
    SCHEMAS[root].validate_cbor(data)  # raises ValidationError with the path on a mismatch


class Parties:
    """One suite's CA, a module key with its certificate, and the platform's request signer."""

    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.ca = CertificateAuthority.generate(suite)
        self.module_key = generate_private_key(suite)
        self.module_id = b"module-0001"
        self.module_cert = self.ca.issue(self.module_key.public_key, self.module_id,
                                         not_before=NOW - 10, not_after=NOW + 86400)
        self.platform_id = bytes(range(16))
        request_key = generate_private_key(suite)
        request_cert = self.ca.issue(request_key.public_key, self.platform_id,
                                     not_before=NOW - 10, not_after=NOW + 86400,
                                     usage=USAGE_REQUEST_SIGNING)
        self.signer = RequestSigner(request_key, request_cert)

    def request(self, **changes: Any) -> ConfirmationRequest:
        fields: dict[str, Any] = dict(
            transaction_id=bytes(range(16, 32)), payer_account="alice@bank.example",
            payee_account="Café Ünïcode \u2013 東京 shop", order_reference="ORD-1",
            order_description="two coffees\nand a croissant", amount_minor=1234,
            currency="EUR", nonce=b"n" * 32, expires_at=NOW + 120, suite=self.suite)
        fields.update(changes)
        return ConfirmationRequest(**fields)


@pytest.fixture(scope="module", params=[Suite.P256_SHA256, Suite.SM2_SM3], ids=["p256", "sm2"])
def parties(request: pytest.FixtureRequest) -> Parties:
    return Parties(request.param)


def test_signed_and_unsigned_requests_and_their_signed_answers_match_the_contract(
        parties: Parties) -> None:
    unsigned = parties.request()
    signed = parties.signer.sign(parties.request(amount_minor=10**15, expires_at=2**40 - 1))
    for request in (unsigned, signed):
        envelope = encode_envelope(request)
        assert_valid("envelope", envelope)
        for decision in Decision:
            for uv in UserVerification:
                response = sign_confirmation(envelope, request, decision=decision,
                                             counter=2**63 - 1, user_verification=uv,
                                             key=parties.module_key, module_id=parties.module_id)
                assert_valid("envelope", encode_envelope(response))
                # The documented signed bytes are the ones the module key signed.
                assert parties.module_key.public_key.verify(
                    response.signature, signed_bytes(envelope, response))
    # The platform's signature is over the domain string and the body without key 12.
    body = dumps({k: v for k, v in signed.body().items() if k != 12})
    assert request_signed_bytes(signed) == b"blegw/confirmation-request/v1" + body
    assert len(REQUEST_DOMAIN) == 29
    assert parties.signer.certificate.verifying_key().verify(signed.platform_signature,
                                                             REQUEST_DOMAIN + body)


def test_error_and_certificate_messages_match_the_contract(parties: Parties) -> None:
    for code in ErrorCode:
        for tx in (b"", bytes(16)):
            assert_valid("envelope", encode_envelope(ErrorResponse(code, tx, "d" * 300)))
            assert_valid("envelope", encode_envelope(ErrorResponse(code, tx, "")))
    assert_valid("envelope", encode_envelope(CertificateRequest(parties.suite)))
    for cert in (parties.module_cert, parties.signer.certificate):
        encoded = cert.encode()
        assert_valid("certificate", encoded)
        assert_valid("envelope", encode_envelope(CertificateResponse(encoded)))
        # The CA signs exactly the bytes under key 1, as received.
        tbs = cbor2.loads(encoded)[1]
        assert tbs == cert.tbs()
        assert_valid("certificate-tbs", tbs)
        assert parties.ca.public_key.verify(cert.signature, tbs)


def test_trust_anchors_file_matches_the_contract(parties: Parties) -> None:
    other = Parties(Suite.SM2_SM3 if parties.suite is Suite.P256_SHA256 else Suite.P256_SHA256)
    for keys in ({parties.suite: parties.ca.public_key},
                 {parties.suite: parties.ca.public_key, other.suite: other.ca.public_key}):
        assert_valid("trust-anchors", TrustAnchors(parties.platform_id, keys).encode())


def test_relay_messages_match_the_contract() -> None:
    envelope = encode_envelope(CertificateRequest(Suite.P256_SHA256))
    for deadline in (1e-300, 1.5, float(NOW) + 0.25, float(2**40) - 1024):
        assert_valid("relay-request",
                     RelayRequest(bytes(16), b"mod1", envelope, deadline).encode())
    assert_valid("relay-request", RelayRequest(bytes(16), b"m" * 32, b"e" * 8192, 1.0).encode())
    timings = {f"step-{i}": i * 0.125 for i in range(16)}
    for status in RelayStatus:
        for answer in (b"", envelope):
            data = RelayResponse(bytes(16), status, answer, "x" * 500, timings).encode()
            assert_valid("relay-response", data)
            for name, seconds in cbor2.loads(data)[5].items():
                assert_valid("timing-name", cbor2.dumps(name))
                assert_valid("seconds", cbor2.dumps(seconds))


def test_cancel_and_progress_match_the_contract_and_are_told_apart_on_their_topic() -> None:
    """The req topic carries requests and cancels, the resp topic answers and progress: each
    validates against its own rule only, and the topic's decoder returns the right kind."""
    envelope = encode_envelope(CertificateRequest(Suite.P256_SHA256))
    request = RelayRequest(bytes(16), b"mod1", envelope, 1.5).encode()
    for module_id in (b"mod1", b"m" * 32):
        for reason in CancelReason:
            cancel = RelayCancel(bytes(range(16)), module_id, reason).encode()
            assert_valid("relay-cancel", cancel)
            assert not valid("relay-request", cancel)
            assert decode_from_platform(cancel) == RelayCancel(bytes(range(16)), module_id,
                                                               reason)
    assert not valid("relay-cancel", request)
    assert isinstance(decode_from_platform(request), RelayRequest)
    response = RelayResponse(bytes(16), RelayStatus.CANCELLED, b"", "cancelled").encode()
    for status in OwnerStatus:
        progress = RelayProgress(bytes(range(16)), status).encode()
        assert_valid("relay-progress", progress)
        assert not valid("relay-response", progress)
        assert decode_from_gateway(progress) == RelayProgress(bytes(range(16)), status)
    assert not valid("relay-progress", response)
    assert isinstance(decode_from_gateway(response), RelayResponse)


def test_module_info_matches_the_contract() -> None:
    for info in (ModuleInfo("m", "f", (1,), (1,), b"abcd", 64),
                 ModuleInfo("é" * 32, "1" * 32, tuple(range(16)), (65535,) * 16, b"i" * 32,
                            65535)):
        assert_valid("module-info", info.encode())


# ---- hand-made wrong messages: the CDDL refuses them, and so does the code --------------------

def _request_body() -> dict[int, Any]:
    return {1: bytes(16), 2: "payer", 3: "payee", 4: "ord", 5: "desc", 6: 100, 7: "EUR",
            8: b"n" * 16, 9: NOW, 10: 1}


def _env(kind: int, body: dict[int, Any], version: int = 1) -> bytes:
    return dumps({1: version, 2: kind, 3: body})


_RESPONSE = {1: bytes(16), 2: 1, 3: 1, 4: 0, 5: 1, 6: b"abcd", 7: b"s" * 70}

WRONG_ENVELOPES = {
    "version 2": _env(4, {1: 1}, version=2),
    "unknown message type": _env(6, {1: 1}),
    "body of another type": _env(2, _request_body()),
    "unknown suite": _env(4, {1: 3}),
    "transaction id of 15 bytes": _env(1, _request_body() | {1: bytes(15)}),
    "transaction id as text": _env(1, _request_body() | {1: "0" * 16}),
    "missing payee": _env(1, {k: v for k, v in _request_body().items() if k != 3}),
    "empty payer": _env(1, _request_body() | {2: ""}),
    "payee of 65 characters": _env(1, _request_body() | {3: "é" * 65}),
    "description of 141 characters": _env(1, _request_body() | {5: "d" * 141}),
    "negative amount": _env(1, _request_body() | {6: -1}),
    "amount over 10^15": _env(1, _request_body() | {6: 10**15 + 1}),
    "lower-case currency": _env(1, _request_body() | {7: "eur"}),
    "currency with a trailing newline": _env(1, _request_body() | {7: "USD\n"}),
    "nonce of 15 bytes": _env(1, _request_body() | {8: b"n" * 15}),
    "nonce of 33 bytes": _env(1, _request_body() | {8: b"n" * 33}),
    "expiry 0": _env(1, _request_body() | {9: 0}),
    "expiry 2^40": _env(1, _request_body() | {9: 2**40}),
    "platform certificate without signature": _env(1, _request_body() | {11: b"c"}),
    "platform signature without certificate": _env(1, _request_body() | {12: b"s"}),
    "empty platform certificate": _env(1, _request_body() | {11: b"", 12: b"s"}),
    "platform signature of 81 bytes": _env(1, _request_body() | {11: b"c", 12: b"s" * 81}),
    "unknown key 13": _env(1, _request_body() | {13: 1}),
    "decision 3": _env(2, _RESPONSE | {2: 3}),
    "counter 0": _env(2, _RESPONSE | {3: 0}),
    "counter 2^63": _env(2, _RESPONSE | {3: 2**63}),
    "user verification 4": _env(2, _RESPONSE | {4: 4}),
    "module id of 3 bytes": _env(2, _RESPONSE | {6: b"abc"}),
    "empty signature": _env(2, _RESPONSE | {7: b""}),
    "error code 13": _env(3, {1: 13, 2: b"", 3: ""}),
    "error transaction id of 5 bytes": _env(3, {1: 1, 2: b"12345", 3: ""}),
    "error detail of 201 characters": _env(3, {1: 1, 2: b"", 3: "x" * 201}),
    "error detail missing": _env(3, {1: 1, 2: b""}),
    "certificate of 1025 bytes": _env(5, {1: b"c" * 1025}),
}


@pytest.mark.parametrize("data", WRONG_ENVELOPES.values(), ids=WRONG_ENVELOPES.keys())
def test_wrong_envelope_is_refused_by_the_contract_and_the_decoder(data: bytes) -> None:
    assert not valid("envelope", data)
    with pytest.raises((MalformedMessage, UnsupportedSuite)):
        decode_envelope(data)


_RELAY_REQUEST = {1: bytes(16), 2: b"mod1", 3: b"e", 4: 1.5}
_RELAY_RESPONSE = {1: bytes(16), 2: 0, 3: b"", 4: "", 5: {}}
_RELAY_CANCEL = {1: bytes(16), 2: b"mod1", 5: 1}
_RELAY_PROGRESS = {1: bytes(16), 6: 2}

WRONG_RELAY: dict[str, tuple[str, Callable[[bytes], object], bytes]] = {
    name: (root, decoder, cbor2.dumps(value, canonical=True))
    for name, root, decoder, value in [
        ("request deadline as integer", "relay-request", RelayRequest.decode,
         _RELAY_REQUEST | {4: 5}),
        ("request deadline 0", "relay-request", RelayRequest.decode, _RELAY_REQUEST | {4: 0.0}),
        ("request deadline 2^40", "relay-request", RelayRequest.decode,
         _RELAY_REQUEST | {4: float(2**40)}),
        ("request id of 17 bytes", "relay-request", RelayRequest.decode,
         _RELAY_REQUEST | {1: bytes(17)}),
        ("request module id of 33 bytes", "relay-request", RelayRequest.decode,
         _RELAY_REQUEST | {2: b"m" * 33}),
        ("request empty envelope", "relay-request", RelayRequest.decode,
         _RELAY_REQUEST | {3: b""}),
        ("request missing deadline", "relay-request", RelayRequest.decode,
         {k: v for k, v in _RELAY_REQUEST.items() if k != 4}),
        ("response status past the last", "relay-response", RelayResponse.decode,
         _RELAY_RESPONSE | {2: max(RelayStatus) + 1}),
        ("response status past the last on the resp topic", "relay-response",
         decode_from_gateway, _RELAY_RESPONSE | {2: max(RelayStatus) + 1}),
        ("cancel reason 0", "relay-cancel", decode_from_platform, _RELAY_CANCEL | {5: 0}),
        ("cancel reason 2", "relay-cancel", RelayCancel.decode, _RELAY_CANCEL | {5: 2}),
        ("cancel without module id", "relay-cancel", decode_from_platform,
         {1: bytes(16), 5: 1}),
        ("cancel with an envelope", "relay-cancel", decode_from_platform,
         _RELAY_CANCEL | {3: b"e"}),
        ("cancel id of 15 bytes", "relay-cancel", decode_from_platform,
         _RELAY_CANCEL | {1: bytes(15)}),
        ("cancel reason as text", "relay-cancel", decode_from_platform,
         _RELAY_CANCEL | {5: "terminal"}),
        ("progress status 0", "relay-progress", decode_from_gateway, _RELAY_PROGRESS | {6: 0}),
        ("progress status 3", "relay-progress", RelayProgress.decode,
         _RELAY_PROGRESS | {6: 3}),
        ("progress status as float", "relay-progress", decode_from_gateway,
         _RELAY_PROGRESS | {6: 2.0}),
        ("progress with a status key", "relay-progress", decode_from_gateway,
         _RELAY_PROGRESS | {2: 0}),
        ("progress id as text", "relay-progress", decode_from_gateway,
         _RELAY_PROGRESS | {1: "0" * 16}),
        ("response envelope of 8193 bytes", "relay-response", RelayResponse.decode,
         _RELAY_RESPONSE | {3: b"e" * 8193}),
        ("response detail of 201 characters", "relay-response", RelayResponse.decode,
         _RELAY_RESPONSE | {4: "x" * 201}),
        ("response 17 timings", "relay-response", RelayResponse.decode,
         _RELAY_RESPONSE | {5: {f"t{i}": 1.0 for i in range(17)}}),
        ("response timing as integer", "relay-response", RelayResponse.decode,
         _RELAY_RESPONSE | {5: {"t": 1}}),
        ("response extra key", "relay-response", RelayResponse.decode,
         _RELAY_RESPONSE | {6: 0}),
    ]
}


@pytest.mark.parametrize("case", WRONG_RELAY.values(), ids=WRONG_RELAY.keys())
def test_wrong_relay_payload_is_refused_by_the_contract_and_the_decoder(
        case: tuple[str, Callable[[bytes], object], bytes]) -> None:
    root, decoder, data = case
    assert not valid(root, data)
    with pytest.raises(MalformedMessage):
        decoder(data)


@pytest.mark.parametrize(("name", "value"), [("empty", ""), ("33 characters", "t" * 33)])
def test_wrong_timing_name_is_refused_by_the_contract_and_the_decoder(name: str,
                                                                      value: str) -> None:
    assert not valid("timing-name", cbor2.dumps(value))
    with pytest.raises(MalformedMessage):
        RelayResponse.decode(dumps(_RELAY_RESPONSE | {5: {value: 1.0}}))


def test_negative_timing_is_refused_by_the_contract_and_the_decoder() -> None:
    assert not valid("seconds", cbor2.dumps(-0.5))
    with pytest.raises(MalformedMessage):
        RelayResponse.decode(dumps(_RELAY_RESPONSE | {5: {"queue": -0.5}}))


def test_forged_certificate_shapes_are_refused_by_the_contract() -> None:
    parties = Parties(Suite.P256_SHA256)
    good = cbor2.loads(parties.module_cert.tbs())
    wrong = {
        "usage 4": good | {8: 4},
        "suite 3": good | {4: 3},
        "issuer of 9 bytes": good | {2: b"i" * 9},
        "compressed key": good | {5: b"\x02" + b"k" * 32},
        "negative serial": good | {1: -1},
        "missing not after": {k: v for k, v in good.items() if k != 7},
    }
    for tbs in wrong.values():
        assert not valid("certificate", dumps({1: dumps(tbs), 2: b"s" * 70}))
    assert not valid("certificate", dumps({1: b"not cbor \xff", 2: b"s" * 70}))
    assert not valid("certificate", dumps({1: parties.module_cert.tbs()}))
    # Shapes the decoder itself refuses at decode time.
    with pytest.raises(MalformedMessage):
        Certificate.decode(dumps({1: dumps({k: v for k, v in good.items() if k != 7}),
                                  2: b"s"}))


def test_wrong_trust_anchors_and_module_info_are_refused_by_the_contract() -> None:
    point = Parties(Suite.P256_SHA256).ca.public_key.encode()
    for raw in ({1: bytes(16), 2: {}}, {1: bytes(16), 2: {3: point}},
                {1: bytes(15), 2: {1: point}}, {1: bytes(16), 2: {1: point[:64]}}):
        assert not valid("trust-anchors", dumps(raw))
        with pytest.raises((MalformedMessage, UnsupportedSuite)):
            TrustAnchors.decode(dumps(raw))
    info = {1: "m", 2: "f", 3: [1], 4: [1], 5: b"abcd", 6: 64}
    for raw in (info | {3: []}, info | {6: 63}, info | {1: "é" * 33}, info | {5: "abcd"},
                info | {4: [65536]}):
        assert not valid("module-info", dumps(raw))


# ---- CBOR examples in the docs ----------------------------------------------------------------

_EXAMPLE = re.compile(r"```cbor-hex ([a-z-]+)\n(.*?)```", re.S)
_DECODERS: dict[str, Callable[[bytes], object]] = {
    "envelope": decode_envelope, "relay-request": RelayRequest.decode,
    "relay-response": RelayResponse.decode,
}


def _examples() -> list[tuple[str, str, bytes]]:
    found = []
    for doc in sorted((DOCS).glob("*.md")):
        for root, text in _EXAMPLE.findall(doc.read_text()):
            hexdigits = "".join(line.split("#")[0] for line in text.splitlines())
            found.append((doc.name, root, bytes.fromhex(hexdigits)))
    return found


def test_docs_hold_cbor_examples() -> None:
    assert {root for _doc, root, _data in _examples()} >= {"envelope", "relay-response"}


@pytest.mark.parametrize(("doc", "root", "data"), _examples())
def test_cbor_example_in_the_docs_decodes_and_matches_the_contract(doc: str, root: str,
                                                                   data: bytes) -> None:
    assert_valid(root, data)
    _DECODERS[root](data)


def test_secure_channel_units_match_the_contract() -> None:
    """Every handshake unit of a full handshake and a resumption in every channel suite, from
    the published vectors (made by the code, tests/secure_channel/test_vectors.py)."""
    import json

    from secure_channel.errors import ChannelError, ChannelErrorCode
    from secure_channel.wire import decode_handshake, encode_error

    vectors = json.loads((DOCS / "vectors" / "secure-channel.json").read_text())["vectors"]
    for v in vectors:
        for unit in [*v["units"], *v["resumption"]["units"]]:
            data = bytes.fromhex(unit)
            assert data[0] == 0x16
            assert_valid("handshake", data[1:])
        assert_valid("certificate", bytes.fromhex(v["certificates"]["channel"]))
    assert_valid("error-body", encode_error(ChannelErrorCode.BAD_FINISHED)[1:])
    hello = cbor2.loads(bytes.fromhex(vectors[0]["units"][0])[1:])
    dhe = next(v for v in vectors if v["suite"].startswith("DHE"))
    server_hello = cbor2.loads(bytes.fromhex(dhe["units"][1])[1:])
    wrong = [hello | {4: hello[4][:-1]}, hello | {2: []}, hello | {6: b"x"},
             {k: v for k, v in server_hello.items() if k != 9}, server_hello | {7: -1}]
    for message in wrong:
        assert not valid("handshake", dumps(message))
        with pytest.raises(ChannelError):
            decode_handshake(b"\x16" + dumps(message))
    # An unknown chosen suite decodes; the module refuses it (test_handshake_attacks.py).
    assert not valid("handshake", dumps(server_hello | {3: 0x13}))


def test_channel_envelopes_and_record_messages_match_the_contract() -> None:
    """What the gateway carries for the channel and what a record carries (docs/secure-channel.md,
    "Through the gateway"): the encoders' output is valid, broken variants are refused by both
    the contract and the decoders."""
    from secure_channel.application import Approval, Order, Ping, Pong, Refusal, decode_app
    from secure_channel.carriage import ChannelOpen, ChannelUnits, decode_carried
    from secure_channel.errors import ChannelError

    good = [ChannelOpen((0x22, 0x32)).encode(), ChannelUnits((b"\x16ab", b"\x17cd"), True).encode(),
            ChannelUnits((b"\x15x",), False).encode()]
    for data in good:
        assert_valid("channel-envelope", data)
    # One rule per kind: pycddl 0.6 accepts a map with an extra key under a choice of maps
    # that each refuse it, so each message is checked against its own kind's rule.
    kinds = {1: "order", 2: "approval", 3: "refusal", 4: "ping", 5: "pong"}
    for message in (Order(b"r" * 400, 2), Approval(b"a" * 200), Refusal(b"t" * 16, "pin_wrong"),
                    Ping(b"p" * 16), Pong(b"p" * 16)):
        assert_valid(kinds[cbor2.loads(message.encode())[1]], message.encode())
    wrong_envelopes = [{1: 1, 2: 32, 3: {1: []}}, {1: 1, 2: 34, 3: {1: [b"x"]}},
                       {1: 1, 2: 32, 3: {1: [b"x"], 2: [1]}}, {1: 2, 2: 33, 3: {1: [b"x"]}},
                       {1: 1, 2: 32, 3: {1: [b"x"] * 5}}]
    for raw in wrong_envelopes:
        assert not valid("channel-envelope", dumps(raw))
        with pytest.raises(ChannelError):
            decode_carried(dumps(raw), to_module=raw[2] == 32)
    wrong_messages = [{1: 1, 2: b"r", 3: 4}, {1: 3, 2: b"t" * 16, 3: "PIN"}, {1: 4, 2: b"p"},
                      {1: 6, 2: b"p" * 16}, {1: 2, 2: b"a", 3: 0}]
    for raw in wrong_messages:
        assert not any(valid(rule, dumps(raw)) for rule in kinds.values())
        with pytest.raises(ChannelError):
            decode_app(dumps(raw))


def test_code_notices_match_the_contract_and_hostile_ones_are_refused() -> None:
    """The platform's notice to a gateway of how a code ended (``relay_contract.notices``):
    every role and state validates; what the contract refuses the decoder refuses too."""
    for role in NoticeRole:
        for state in NoticeState:
            notice = CodeNotice(bytes(range(32)), bytes(16), role, "shop-42", state,
                                "module:user_timeout", 10**15, "EUR", NOW)
            assert_valid("code-notice", notice.encode())
            assert CodeNotice.decode(notice.encode()) == notice
    good = CodeNotice(bytes(32), bytes(16), NoticeRole.PAYER, "a", NoticeState.SETTLED, "",
                      1, "EUR", NOW)
    raw = cbor2.loads(good.encode())
    for key, value in ((1, bytes(31)), (2, bytes(17)), (3, 3), (4, "a/b"), (5, 0),
                       (6, "Hi\x1b[2J"), (7, 0), (7, 10**15 + 1), (8, "eur"), (9, -1),
                       (3, True), (10, 1)):
        data = cbor2.dumps({**raw, key: value}, canonical=True)
        assert not valid("code-notice", data)
        with pytest.raises(MalformedNotice):
            CodeNotice.decode(data)
    for data in (b"", b"\xa0", good.encode()[:-1], good.encode() + b"\x00",
                 cbor2.dumps([1, 2]), b"\x00" * 600):
        with pytest.raises(MalformedNotice):
            CodeNotice.decode(data)
