"""The published test vectors (docs/vectors/secure-channel.json), made by the real core with
fixed keys, fixed randomness and deterministic signatures.

``python -m tests.secure_channel.vectors > docs/vectors/secure-channel.json`` writes them;
test_vectors.py regenerates them and compares byte for byte.

Determinism: each side draws its randomness from ``SHA-256(seed || counter32)`` blocks; P-256
signatures are RFC 6979; SM2 signatures take ``k = SHA-256("vector k" || key || message) mod
(n-1) + 1``. None of this is how the protocol runs in use (there, ``secrets`` and the C
backends draw every random): it only makes the vectors reproducible.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from e2e.certificates import USAGE_CONFIRMATION, Certificate, key_id
from e2e.suites import PrivateKey
from e2e.suites import Suite as SignatureSuite
from secure_channel import (
    USAGE_CHANNEL,
    ChannelInitiator,
    ChannelResponder,
    ChannelSuite,
    ModuleCredentials,
    PlatformCredentials,
    ResponderPolicy,
    SessionCache,
)
from secure_channel.primitives import P256_N, SM2_N, ecdh, ecies_decrypt, sm2_decrypt
from secure_channel.suites import Exchange

NOW = 1_800_000_000
LIFETIME = 3600


class Drbg:
    """Deterministic bytes: SHA-256(seed || counter32) blocks, counter from 0."""

    def __init__(self, seed: bytes) -> None:
        self._seed, self._counter, self._buffer = seed, 0, b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._buffer += hashlib.sha256(self._seed + self._counter.to_bytes(4, "big")).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def deterministic_signer(key: PrivateKey) -> Callable[[bytes], bytes]:
    scalar = key.private_bytes()
    if key.suite is SignatureSuite.P256_SHA256:
        ec_key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
        return lambda m: ec_key.sign(m, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))

    def sign(message: bytes) -> bytes:
        from gmssl import sm2

        digest = hashlib.sha256(b"vector k" + scalar + message).digest()
        k = int.from_bytes(digest, "big") % (SM2_N - 1) + 1
        crypt = sm2.CryptSM2(private_key=scalar.hex(), public_key="")
        crypt.public_key = key.public_key.encode()[1:].hex()  # not through lstrip("04")
        rs = crypt.sign_with_sm3(message, f"{k:064x}")
        return encode_dss_signature(int(rs[:64], 16), int(rs[64:], 16))
    return sign


def fixed_key(suite: SignatureSuite, name: str) -> PrivateKey:
    order = SM2_N if suite is SignatureSuite.SM2_SM3 else P256_N
    d = int.from_bytes(hashlib.sha256(f"{suite.label} {name}".encode()).digest(), "big")
    return PrivateKey(suite, (d % (order - 1) + 1).to_bytes(32, "big"))


def fixed_certificate(ca: PrivateKey, subject: PrivateKey, subject_id: bytes, serial: int,
                      usage: int) -> Certificate:
    unsigned = Certificate(serial, key_id(ca.public_key), subject_id, subject.suite,
                           subject.public_key.encode(), NOW - 86400, NOW + 365 * 86400, usage)
    return dataclasses.replace(unsigned, signature=deterministic_signer(ca)(unsigned.tbs()))


def vector(suite: ChannelSuite) -> dict[str, Any]:
    sig = suite.params.signature
    ca = fixed_key(sig, "ca")
    channel = fixed_key(sig, "channel")
    module = fixed_key(sig, "module")
    channel_cert = fixed_certificate(ca, channel, b"platform-1", 1, USAGE_CHANNEL)
    module_cert = fixed_certificate(ca, module, b"module-0001", 2, USAGE_CONFIRMATION)
    m_creds = ModuleCredentials(module, module_cert, {sig: ca.public_key},
                                sign=deterministic_signer(module))
    p_creds = PlatformCredentials({sig: (channel, channel_cert)}, {sig: ca.public_key},
                                  sign={sig: deterministic_signer(channel)})
    cache = SessionCache()
    policy = ResponderPolicy([suite], lambda cert: False, LIFETIME, cache)
    tag = suite.name.encode()
    init = ChannelInitiator(m_creds, suites=[suite], rng=Drbg(b"module " + tag))
    resp = ChannelResponder(p_creds, policy, rng=Drbg(b"platform " + tag))
    units = exchange(init, resp)
    assert init.session is not None
    assert resp.session is not None
    record = init.session.seal(b"pay 12.50 EUR to shop-7", NOW)[0]
    answer = resp.session.seal(b"settled", NOW)[0]
    out: dict[str, Any] = {
        "suite": suite.name,
        "suite_id": int(suite),
        "now": NOW,
        "keys": {
            "ca_public": ca.public_key.encode().hex(),
            "channel_private": channel.private_bytes().hex(),
            "module_private": module.private_bytes().hex(),
        },
        "certificates": {"channel": channel_cert.encode().hex(),
                         "module": module_cert.encode().hex()},
        "units": [u.hex() for u in units],
        **exchange_inputs(suite, resp, units[2], channel.private_bytes(), channel_cert),
        "secrets": secrets_of(init),
        "records": {"module_to_platform": {"plaintext": b"pay 12.50 EUR to shop-7".hex(),
                                           "unit": record.hex()},
                    "platform_to_module": {"plaintext": b"settled".hex(),
                                           "unit": answer.hex()}},
    }
    again = ChannelInitiator(m_creds, suites=[suite], resume=init.resumption,
                             rng=Drbg(b"module resume " + tag))
    resp2 = ChannelResponder(p_creds, policy, rng=Drbg(b"platform resume " + tag))
    resumed_units = exchange(again, resp2)
    assert again.resumed
    out["resumption"] = {"units": [u.hex() for u in resumed_units],
                         "secrets": secrets_of(again)}
    return out


def exchange_inputs(suite: ChannelSuite, resp: ChannelResponder, key_exchange: bytes,
                    channel: bytes, channel_cert: Certificate) -> dict[str, str]:
    """The key exchange's input keying material, and what it came from."""
    sm2 = suite.params.signature is SignatureSuite.SM2_SM3
    sent = cbor2.loads(key_exchange[1:])[3]
    if suite.params.exchange is Exchange.EPHEMERAL:
        return {"platform_ephemeral_private": resp._ephemeral.hex(),
                "ikm": ecdh(sm2, resp._ephemeral, sent).hex()}
    secret = (sm2_decrypt(channel, sent) if sm2 else
              ecies_decrypt(channel, channel_cert.public_key, sent))
    return {"ikm": secret.hex()}


def exchange(init: ChannelInitiator, resp: ChannelResponder) -> list[bytes]:
    units = [init.start(NOW)]
    pending = list(units)
    to_module = True
    while pending:
        replies: list[bytes] = []
        for unit in pending:
            replies += resp.receive(unit, NOW) if to_module else init.receive(unit, NOW)
        units += replies
        pending, to_module = replies, not to_module
    return units


def secrets_of(side: ChannelInitiator) -> dict[str, str]:
    """The key schedule's values on the module's side (the platform's are the same)."""
    assert side.session is not None
    assert side.resumption is not None
    send, receive = side.session._send, side.session._receive
    return {
        "handshake_secret": side._handshake_secret.hex(),
        "certificates_digest": side._certificates_digest.hex(),
        "m2p_traffic": send.secret.hex(), "m2p_key": send.key.hex(), "m2p_iv": send.iv.hex(),
        "p2m_traffic": receive.secret.hex(), "p2m_key": receive.key.hex(),
        "p2m_iv": receive.iv.hex(),
        "resumption": side.resumption.secret.hex(),
    }


def all_vectors() -> dict[str, Any]:
    return {"description": "docs/secure-channel.md, section Test vectors",
            "vectors": [vector(s) for s in ChannelSuite]}


def render() -> str:
    return json.dumps(all_vectors(), indent=1) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
