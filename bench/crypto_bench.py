"""Sign and verify rates for each suite and implementation, side by side in one run.

    .venv/bin/python bench/crypto_bench.py [--seconds 1.0]

Prints ops/s and µs/op for ECDSA P-256 (cryptography), SM2 via GmSSL in C (gmssl-pyx) and SM2
via pure-Python gmssl, the C-versus-pure ratio, and the full sign_confirmation /
verify_confirmation rates per suite. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from e2e import (
    CertificateAuthority,
    ConfirmationRequest,
    Decision,
    PublicKey,
    Suite,
    UserVerification,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
    sm2_backends,
    verify_confirmation,
)
from e2e.suites import PrivateKey

MESSAGE = b"x" * 300


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += 1
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=1.0)
    s = parser.parse_args().seconds
    rows: list[tuple[str, float, float]] = []
    p256 = generate_private_key(Suite.P256_SHA256)
    sig = p256.sign(MESSAGE)
    rows.append(("P-256 / cryptography", rate(lambda: p256.sign(MESSAGE), s),
                 rate(lambda: p256.public_key.verify(sig, MESSAGE), s)))
    scalar = generate_private_key(Suite.SM2_SM3).private_bytes()
    sm2_rates = {}
    for backend in sm2_backends():
        key = PrivateKey(Suite.SM2_SM3, scalar, backend)
        pub = PublicKey(Suite.SM2_SM3, key.public_key.encode(), backend)
        sm2sig = key.sign(MESSAGE)
        sm2_rates[backend.name] = (rate(lambda key=key: key.sign(MESSAGE), s),
                                   rate(lambda pub=pub, sm2sig=sm2sig: pub.verify(
                                       sm2sig, MESSAGE), s))
        rows.append((f"SM2 / {backend.name}", *sm2_rates[backend.name]))
    for suite in Suite:
        ca = CertificateAuthority.generate(suite)
        key = generate_private_key(suite)
        cert = ca.issue(key.public_key, bytes(16), not_before=0, not_after=2**40)
        request = ConfirmationRequest(bytes(16), "alice-001", "shop-42", "A-17",
                                      "coffee beans", 1250, "EUR", bytes(16), 2**39, suite)
        envelope = encode_envelope(request)

        def sign(key: PrivateKey = key, request: ConfirmationRequest = request,
                 envelope: bytes = envelope) -> object:
            return sign_confirmation(envelope, request, decision=Decision.APPROVE, counter=1,
                                     user_verification=UserVerification.PRESENCE, key=key,
                                     module_id=bytes(16))
        response = sign()
        rows.append((f"confirmation {suite.name}", rate(sign, s), rate(
            lambda envelope=envelope, response=response, cert=cert, ca=ca: verify_confirmation(
                envelope, response, cert, ca.public_key, now=1, last_counter=0), s)))
    print(f"{'implementation':<34}{'sign/s':>10}{'µs/sign':>10}{'verify/s':>10}{'µs/verify':>11}")
    for name, sign_rate, verify_rate in rows:
        print(f"{name:<34}{sign_rate:>10.0f}{1e6 / sign_rate:>10.1f}{verify_rate:>10.0f}"
              f"{1e6 / verify_rate:>11.1f}")
    if "gmssl-pyx" in sm2_rates and "gmssl" in sm2_rates:
        c, pure = sm2_rates["gmssl-pyx"], sm2_rates["gmssl"]
        print(f"SM2 C / pure ratio: sign {c[0] / pure[0]:.1f}x, verify {c[1] / pure[1]:.1f}x")


if __name__ == "__main__":
    main()
