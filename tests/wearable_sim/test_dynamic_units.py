"""The module's F-E units behind their envelopes (``wearable_sim.dynamic_units``), without the
radio: every envelope they emit validates against docs/cddl/dynamic-code-radio.cddl in both
suites and both fingerprint modes; hostile envelopes get a typed answer and the unit keeps
serving; no operation's answer holds a key.

The over-the-radio tests with both gateways are in tests/blegw/test_dynamic_codes_radio.py.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import cbor2
import pycddl
import pytest

from dynamic_code import Finger, MalformedDynamicCode, Role, Verification
from dynamic_code.radio import (
    Accept,
    AcceptResult,
    Forward,
    Offer,
    Pay,
    UnitRequest,
    decode_answer,
    decode_request,
)
from e2e.suites import Suite
from wearable_sim.dynamic_units import DynamicUnits
from wearable_sim.policy import FixedPolicy

from ..dynamic_code.world import World

CDDL = (Path(__file__).resolve().parents[2] / "docs" / "cddl" / "dynamic-code-radio.cddl"
        ).read_text()
ROOTS = {name: pycddl.Schema(f"root = {name}\n{CDDL}") for name in (
    "offer-envelope", "accept-envelope", "forward-envelope", "pay-envelope",
    "code-answer-envelope", "accepted-answer-envelope", "refused-answer-envelope")}
"""One root per message shape: pycddl's validator panics, instead of answering, on a map that
fails a choice of maps, so each message is checked against the one rule it must match."""


def root_of(data: bytes) -> str:
    """The CDDL rule an emitted envelope must match, from what the test knows it is."""
    body = cbor2.loads(data)[3]
    if cbor2.loads(data)[2] == 0x60:
        return ["offer", "accept", "forward", "pay"][body[1] - 1] + "-envelope"
    if body[2] != "ok":
        return "refused-answer-envelope"
    return "accepted-answer-envelope" if 2 in body[3] else "code-answer-envelope"


def valid(root: str, data: bytes) -> bool:
    try:
        ROOTS[root].validate_cbor(data)
    except pycddl.ValidationError:
        return False
    return True


class Units:
    """A merchant module's and a payer module's units, provisioned from one test CA."""

    def __init__(self, suite: Suite, mode: Verification, approve: bool = True) -> None:
        self.world = World(suite)
        self.owner = Finger.new()
        self.merchant = DynamicUnits(FixedPolicy(True))
        self.payer = DynamicUnits(FixedPolicy(approve))
        public = self.merchant.new_key(Role.MERCHANT, suite)
        cert = self.world.issue(_Key(public), Role.MERCHANT, "till 1", "shop")
        self.merchant.install(Role.MERCHANT, cert, self.world.ca.public_key)
        self.payer.sensor.present(self.owner)
        public = self.payer.new_key(Role.MOBILE, suite)
        binding = None
        if mode is Verification.FEATURES:
            binding, _ = self.world.vault.seal(secrets.token_bytes(16),
                                               self.payer.sensor.enroll())
        cert = self.world.issue(_Key(public), Role.MOBILE, "phone", "alice", binding=binding)
        self.payer.install(Role.MOBILE, cert, self.world.ca.public_key,
                           enroll_finger=mode is Verification.DEVICE)


class _Key:
    """Only what ``World.issue`` reads of a key: its public half (the unit keeps the rest)."""

    def __init__(self, public: object) -> None:
        self.public_key = public


async def _ask(units: DynamicUnits, operation: object, emitted: list[bytes]
               ) -> tuple[str, object]:
    request = UnitRequest(secrets.token_bytes(16), operation)  # type: ignore[arg-type]
    data = request.encode()
    assert decode_request(data) == request
    answer_bytes = await units.answer(data)
    emitted += [data, answer_bytes]
    answer = decode_answer(answer_bytes, request)
    return answer.code, answer.result


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
@pytest.mark.parametrize("mode", list(Verification), ids=lambda v: v.name.lower())
async def test_every_unit_envelope_matches_the_cddl(suite: Suite, mode: Verification) -> None:
    units = Units(suite, mode)
    emitted: list[bytes] = []
    code, consumption = await _ask(units.merchant, Offer(1250, "EUR", 120), emitted)
    assert code == "ok" and isinstance(consumption, bytes)
    code, payment = await _ask(units.payer, Pay(consumption, mode, True), emitted)
    assert code == "ok" and isinstance(payment, bytes)
    code, accepted = await _ask(units.merchant, Accept(payment), emitted)
    assert code == "ok" and isinstance(accepted, AcceptResult)
    assert (accepted.payer_account, accepted.amount_minor) == ("alice", 1250)
    code, request = await _ask(units.merchant, Forward(accepted.handle,
                                                       units.world.server_cert, False), emitted)
    assert code == "ok" and isinstance(request, bytes)
    # a refusal is an envelope too: the same payment code again
    code, _ = await _ask(units.merchant, Accept(payment), emitted)
    assert code == "stale_perturbation"
    assert len({root_of(data) for data in emitted}) == len(ROOTS)  # every shape emitted
    for data in emitted:
        assert valid(root_of(data), data)
    # no answer carries a unit's key (the private scalar is nowhere in what left the module)
    for units_of in (units.merchant, units.payer):
        for key in units_of._keys.values():
            assert all(key.private_bytes() not in data for data in emitted)


@pytest.mark.parametrize("hostile", [
    b"", b"\xa3\x01\x01\x02\x18\x60", b"\xff" * 64,
    cbor2.dumps({1: 1, 2: 0x60, 3: {1: 4, 2: bytes(16), 3: {1: b"x", 2: 2, 3: True}}}),
    cbor2.dumps({1: 1, 2: 0x60, 3: {1: 9, 2: bytes(16), 3: {}}}),
    cbor2.dumps({1: 1, 2: 0x60, 3: {1: 1, 2: bytes(16), 3: {1: 0, 2: "EUR", 3: 120}}}),
    cbor2.dumps({1: 1, 2: 0x60, 3: {1: 1, 2: bytes(16), 3: {1: 5, 2: "eur", 3: 120}}}),
    cbor2.dumps({1: 1, 2: 0x60, 3: {1: 2, 2: bytes(15), 3: {1: b"x"}}}),
    cbor2.dumps({1: 1, 2: 0x61, 3: {1: 2, 2: bytes(16), 3: {1: b"x"}}}),
], ids=["empty", "truncated", "not-cbor", "cbor-bool", "unknown-op", "zero-amount",
        "lowercase-currency", "short-id", "answer-direction"])
async def test_hostile_unit_envelope_is_a_typed_refusal_and_the_unit_keeps_serving(
        hostile: bytes) -> None:
    with pytest.raises(MalformedDynamicCode):
        decode_request(hostile)
    units = Units(Suite.P256_SHA256, Verification.DEVICE)
    answer = cbor2.loads(await units.merchant.answer(hostile))
    assert answer[2] == 0x61 and answer[3][2] == "malformed_dynamic_code"
    emitted: list[bytes] = []
    code, _ = await _ask(units.merchant, Offer(100, "EUR", 60), emitted)
    assert code == "ok"


@pytest.mark.parametrize(("root", "wrong"), [
    ("offer-envelope", {1: 1, 2: 0x60, 3: {1: 1, 2: bytes(16), 3: {1: 0, 2: "EUR", 3: 120}}}),
    ("offer-envelope", {1: 1, 2: 0x60, 3: {1: 1, 2: bytes(16), 3: {1: 5, 2: "eur", 3: 120}}}),
    ("accept-envelope", {1: 1, 2: 0x60, 3: {1: 2, 2: bytes(15), 3: {1: b"x"}}}),
    ("forward-envelope", {1: 1, 2: 0x60, 3: {1: 3, 2: bytes(16), 3: {1: 1, 2: b"c", 3: 2}}}),
    ("refused-answer-envelope", {1: 1, 2: 0x61, 3: {1: bytes(16), 2: "nope", 3: ""}}),
    ("code-answer-envelope", {1: 1, 2: 0x60, 3: {1: bytes(16), 2: "ok", 3: {1: b"x"}}}),
], ids=["zero-amount", "lowercase-currency", "short-id", "flag-2", "unknown-error",
        "wrong-direction"])
def test_the_contract_refuses_wrong_envelopes(root: str, wrong: dict[int, object]) -> None:
    data = cbor2.dumps(wrong, canonical=True)
    assert not valid(root, data)
    with pytest.raises(MalformedDynamicCode):
        if root.endswith("answer-envelope"):
            decode_answer(data, UnitRequest(bytes(16), Offer(1, "EUR", 1)))
        else:
            decode_request(data)


async def test_declined_by_the_owner_and_no_unit_are_typed_answers() -> None:
    units = Units(Suite.SM2_SM3, Verification.DEVICE, approve=False)
    emitted: list[bytes] = []
    _, consumption = await _ask(units.merchant, Offer(500, "EUR", 60), emitted)
    assert isinstance(consumption, bytes)
    code, _ = await _ask(units.payer, Pay(consumption, Verification.DEVICE, True), emitted)
    assert code == "declined"
    code, _ = await _ask(units.payer, Offer(500, "EUR", 60), emitted)   # no merchant unit
    assert code == "no_unit"
    for data in emitted:
        assert valid(root_of(data), data)


async def test_altered_amount_in_a_forged_answer_is_refused_by_the_gateway() -> None:
    """A module's answer that names another request, or an op's wrong shape, is malformed
    for the gateway (``decode_answer``), never taken as a result."""
    units = Units(Suite.P256_SHA256, Verification.DEVICE)
    request = UnitRequest(secrets.token_bytes(16), Offer(100, "EUR", 60))
    answer = await units.merchant.answer(request.encode())
    other = UnitRequest(secrets.token_bytes(16), Offer(100, "EUR", 60))
    with pytest.raises(MalformedDynamicCode):
        decode_answer(answer, other)
    with pytest.raises(MalformedDynamicCode):
        decode_answer(answer, UnitRequest(request.request_id, Accept(b"x")))
