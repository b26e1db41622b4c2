"""Dynamic codes (flow F-E): everything a camera, a network or a merchant device's terminal
hands the units. The first byte picks: 0 a device certificate, 1 a consumption code (the
payer's unit reads it), 2 a payment code (the merchant's unit accepts it), 3 a settlement
request (the settlement unit opens it), 4 payment content, 5 a forward, anything else the text
form (the rest as Latin-1 text). The first byte's top bit picks the units' suite: P-256 or
SM2."""

from __future__ import annotations

import time

from dynamic_code import (
    DynamicCodeError,
    MerchantUnit,
    PayerUnit,
    Role,
    SettlementUnit,
    TemplateVault,
    Verification,
    from_text,
    issue_device_certificate,
    to_text,
)
from dynamic_code.certificates import DeviceCertificate
from dynamic_code.messages import Forward, PaymentContent
from e2e import CertificateAuthority, Suite, generate_private_key

from ..engine import FuzzOracleError, Target

NOW = int(time.time())


class _Directory:
    def is_active(self, device_id: bytes, role: Role) -> bool:
        return True

    def policy(self, device_id: bytes) -> Verification | None:
        return Verification.DEVICE

    def template_record(self, device_id: bytes) -> bytes | None:
        return None


def _world(suite: Suite) -> tuple[PayerUnit, MerchantUnit, SettlementUnit, list[bytes]]:
    ca = CertificateAuthority.generate(suite)
    keys = {role: generate_private_key(suite) for role in Role}
    certs = {role: issue_device_certificate(
        ca, keys[role].public_key, role, device_id=bytes([role]) * 16, device_info="fuzz",
        account="" if role is Role.SETTLEMENT else "acct", not_before=NOW - 60,
        not_after=NOW + 86400).encode() for role in Role}
    payer = PayerUnit(keys[Role.MOBILE], certs[Role.MOBILE], ca.public_key,
                      template=bytes(32))
    merchant = MerchantUnit(keys[Role.MERCHANT], certs[Role.MERCHANT], ca.public_key)
    server = SettlementUnit({suite: (keys[Role.SETTLEMENT], certs[Role.SETTLEMENT])},
                            {suite: ca.public_key}, TemplateVault.generate()[0])
    shown = merchant.consumption_code(100, "EUR", now=NOW)
    code = payer.pay(shown, now=NOW, verification=Verification.DEVICE, features=bytes(32))
    accepted = merchant.accept(code, now=NOW)
    request = merchant.forward(accepted.handle, certs[Role.SETTLEMENT], now=NOW)
    return payer, merchant, server, [certs[Role.MOBILE], shown, code, request]


_WORLDS = [_world(Suite.P256_SHA256), _world(Suite.SM2_SM3)]


def one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0] & 0x7F, data[1:]
    payer, merchant, server, samples = _WORLDS[data[0] >> 7]
    if kind == 0:
        if DeviceCertificate.decode(body).encode() != body:
            raise FuzzOracleError("certificate accepted in a form that does not re-encode")
    elif kind == 1:
        payer.read(body, now=NOW)
        if body != samples[1]:
            raise FuzzOracleError("a consumption code the merchant's unit never made was read")
    elif kind == 2:
        merchant.accept(body, now=NOW)
        raise FuzzOracleError("a payment code accepted for no pending perturbation code")
    elif kind == 3:
        server.open(body, now=NOW, directory=_Directory())
        if body != samples[3]:
            raise FuzzOracleError("a settlement request nobody sealed was opened")
    elif kind == 4:
        if PaymentContent.decode(body).encode() != body:
            raise FuzzOracleError("payment content accepted in a form that does not re-encode")
    elif kind == 5:
        if Forward.decode(body).encode() != body:
            raise FuzzOracleError("forward accepted in a form that does not re-encode")
    else:
        text = body.decode("latin-1")
        if to_text(from_text(text)) != text:
            raise FuzzOracleError("text accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    out: list[bytes] = []
    for top, (_, _, _, (cert, shown, code, request)) in zip((0, 0x80), _WORLDS, strict=True):
        out += [bytes([top]) + cert, bytes([top | 1]) + shown, bytes([top | 2]) + code,
                bytes([top | 3]) + request, b"\x06" + to_text(shown).encode()]
    return out


TARGET = Target("dynamic_code", one_input, (DynamicCodeError,), seeds, max_len=4096)
