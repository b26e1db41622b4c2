"""docs/cddl/dynamic-code.cddl is the wire contract: every message the units emit, in both
suites and both fingerprint modes, validates against it; hand-made wrong messages validate
against no alternative and the decoders refuse them too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest

from dynamic_code import DynamicCodeError, Verification
from dynamic_code.certificates import DeviceCertificate
from dynamic_code.encryption import PAYMENT_PURPOSE, SETTLEMENT_PURPOSE, open_sealed
from dynamic_code.messages import (
    ConsumptionCode,
    Forward,
    PaymentCode,
    PaymentContent,
    SettlementRequest,
)
from e2e.suites import Suite

from .world import World

CDDL = (Path(__file__).resolve().parents[2] / "docs" / "cddl" / "dynamic-code.cddl").read_text()


def schema(root: str) -> pycddl.Schema:
    return pycddl.Schema(f"root = {root}\n{CDDL}")


ROOTS = {name: schema(name) for name in (
    "device-certificate", "device-tbs-plain", "device-tbs-bound", "consumption-code",
    "payment-content-device", "payment-content-features", "payment-code", "forward-plain",
    "forward-features", "settlement-request")}


def valid(root: str, data: bytes) -> bool:
    try:
        ROOTS[root].validate_cbor(data)
    except pycddl.ValidationError:
        return False
    return True


def messages(world: World, mode: Verification, till_sensor: bool) -> dict[str, bytes]:
    """Every message of one till exchange, by the CDDL rule it must match."""
    payer = world.payer("alice", mode)
    key, now = world.merchant_key, world.now
    shown = world.merchant.consumption_code(990, "EUR", now=now)
    features = None if till_sensor else payer.sensor.capture()
    code = payer.unit.pay(shown, now=now, verification=mode, features=features)
    content = open_sealed(world.suite, key.private_bytes(), key.public_key.encode(),
                          PAYMENT_PURPOSE, PaymentCode.decode(code).ciphertext)
    accepted = world.merchant.accept(code, now=now)
    extra = None
    if accepted.needs_features:
        world.merchant_sensor.present(payer.finger)
        extra = world.merchant_sensor.capture()
    request = world.merchant.forward(accepted.handle, world.server_cert, now=now,
                                     features=extra)
    server_key = world.server_key
    forward = open_sealed(world.suite, server_key.private_bytes(),
                          server_key.public_key.encode(), SETTLEMENT_PURPOSE,
                          SettlementRequest.decode(request).ciphertext)
    with_features = mode is Verification.FEATURES and not till_sensor
    return {
        "device-certificate": payer.certificate,
        "device-tbs-bound" if mode is Verification.FEATURES else "device-tbs-plain":
            cbor2.loads(payer.certificate)[1],
        "consumption-code": shown,
        "payment-content-features" if with_features else "payment-content-device": content,
        "payment-code": code,
        "forward-features" if till_sensor and mode is Verification.FEATURES
        else "forward-plain": forward,
        "settlement-request": request,
    }


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
@pytest.mark.parametrize(("mode", "till"), [(Verification.FEATURES, False),
                                            (Verification.FEATURES, True),
                                            (Verification.DEVICE, False)],
                         ids=["features-mobile", "features-till", "device"])
def test_every_emitted_message_validates(suite: Suite, mode: Verification, till: bool) -> None:
    world = World(suite)
    for root, data in messages(world, mode, till).items():
        assert valid(root, data), root
    assert valid("device-tbs-plain", cbor2.loads(world.merchant_cert)[1])


DECODE = {"consumption-code": ConsumptionCode.decode, "payment-code": PaymentCode.decode,
          "settlement-request": SettlementRequest.decode, "device-certificate":
          DeviceCertificate.decode}


def _wrong(message: dict[Any, Any]) -> list[dict[Any, Any]]:
    out = []
    for key in message:
        dropped = dict(message)
        del dropped[key]
        out.append(dropped)
        out.append({**message, key: True})
    out.append({**message, 99: 0})
    return out


def test_wrong_messages_match_no_alternative_and_are_refused() -> None:
    world = World(Suite.P256_SHA256)
    built = messages(world, Verification.FEATURES, False)
    for root, decode in DECODE.items():
        for wrong in _wrong(cbor2.loads(built[root])):
            data = cbor2.dumps(wrong, canonical=True)
            assert not valid(root, data), (root, wrong)
            with pytest.raises(DynamicCodeError):
                decode(data)
    content = cbor2.loads(built["payment-content-features"])
    content[9] = 2  # features under device verification
    data = cbor2.dumps(content, canonical=True)
    assert not valid("payment-content-features", data)
    assert not valid("payment-content-device", data)
    with pytest.raises(DynamicCodeError):
        PaymentContent.decode(data)
    forward = cbor2.loads(built["forward-plain"])
    forward[3] = b"short"
    data = cbor2.dumps(forward, canonical=True)
    assert not valid("forward-features", data) and not valid("forward-plain", data)
    with pytest.raises(DynamicCodeError):
        Forward.decode(data)
