"""Dynamic-code unit envelopes (flow F-E on the radio): what a hostile gateway writes to a
module's unit, and what a hostile module answers a gateway's daemon. The first byte picks: 0
a unit request to the module's units (``DynamicUnits.answer``, which must answer every input
with exactly one well-formed answer envelope and never raise), anything else a module's answer
to a fixed offer request (``decode_answer``: only ``MalformedDynamicCode`` escapes, and what it
accepts re-encodes to itself)."""

from __future__ import annotations

import asyncio
import time

from dynamic_code import DynamicCodeError, Role, issue_device_certificate
from dynamic_code.messages import Verification
from dynamic_code.radio import (
    ANSWER_ERRORS,
    TO_GATEWAY,
    AcceptResult,
    Offer,
    Pay,
    UnitAnswer,
    UnitRequest,
    decode_answer,
)
from e2e import CertificateAuthority, Suite
from e2e.cbor import loads
from wearable_sim.dynamic_units import DynamicUnits
from wearable_sim.policy import FixedPolicy

from ..engine import FuzzOracleError, Target

NOW = int(time.time())
_REQUEST = UnitRequest(bytes(16), Offer(100, "EUR", 60))


def _units() -> tuple[DynamicUnits, list[bytes]]:
    """One module hosting both units (P-256), and real requests for seeds."""
    ca = CertificateAuthority.generate(Suite.P256_SHA256)
    units = DynamicUnits(FixedPolicy(True))
    for role, account in ((Role.MERCHANT, "shop"), (Role.MOBILE, "alice")):
        public = units.new_key(role, Suite.P256_SHA256)
        cert = issue_device_certificate(ca, public, role, device_id=bytes([role]) * 16,
                                        device_info="fuzz", account=account,
                                        not_before=NOW - 60, not_after=NOW + 86400)
        units.install(role, cert.encode(), ca.public_key)
    offer = UnitRequest(bytes(16), Offer(100, "EUR", 600))
    shown = decode_answer(asyncio.run(units.answer(offer.encode())), offer).result
    assert isinstance(shown, bytes)
    pay = UnitRequest(bytes(16), Pay(shown, Verification.FEATURES, False))
    return units, [offer.encode(), pay.encode()]


_UNITS, _SEEDS = _units()


def one_input(data: bytes) -> None:
    if not data:
        return
    body = data[1:]
    if data[0] == 0:
        try:
            answer = asyncio.run(_UNITS.answer(body))
        except DynamicCodeError as exc:
            raise FuzzOracleError(f"the module's units raised instead of answering: {exc}"
                                  ) from None
        m = loads(answer)
        if m[2] != TO_GATEWAY or (m[3][2] != "ok" and m[3][2] not in ANSWER_ERRORS):
            raise FuzzOracleError("the module answered something else than a unit answer")
        return
    read = decode_answer(body, _REQUEST)
    if read.encode() != body:
        raise FuzzOracleError("an answer accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    ok = UnitAnswer(bytes(16), "ok", b"\x01" * 40).encode()
    refused = UnitAnswer(bytes(16), "declined", None, "no").encode()
    accepted = UnitAnswer(bytes(16), "ok", AcceptResult(1, "alice", 100, "EUR",
                                                        Verification.DEVICE, False)).encode()
    return [b"\x00" + s for s in _SEEDS] + [b"\x01" + ok, b"\x01" + refused,
                                             b"\x01" + accepted]


TARGET = Target("dynamic_unit", one_input, (DynamicCodeError,), seeds, max_len=4096)
