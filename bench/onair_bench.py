"""Frames and bytes on air for a typical confirmation at ATT MTU 23, 185 and 247.

    .venv/bin/python bench/onair_bench.py

A typical request (real field lengths, signed by the platform with its certificate attached)
and its signed response, for both suites, fragmented by the link profile; each fragment is one
ATT PDU (write or notification) plus 3 bytes of ATT header and 4 of L2CAP header on air.
"""

from __future__ import annotations

import time

from ble_profile import Command, fragment, fragment_size
from e2e import (
    USAGE_REQUEST_SIGNING,
    CertificateAuthority,
    ConfirmationRequest,
    Decision,
    RequestSigner,
    Suite,
    UserVerification,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
)

CONTROL_POINT_LENGTH = 512


def main() -> None:
    print(f"{'suite':<12}{'MTU':>5}{'req B':>7}{'writes':>8}{'resp B':>8}{'notifs':>8}"
          f"{'bytes on air':>14}")
    for suite in Suite:
        request = ConfirmationRequest(
            bytes(16), "alice-001-checking", "coffee-shop-4711", "ORD-2026-11-23-0042",
            "2 x espresso beans 1 kg", 4590, "EUR", bytes(32), int(time.time()) + 120, suite)
        platform_key, now = generate_private_key(suite), int(time.time())
        platform_cert = CertificateAuthority.generate(suite).issue(
            platform_key.public_key, bytes(16), not_before=now, not_after=now + 86400,
            usage=USAGE_REQUEST_SIGNING)
        request = RequestSigner(platform_key, platform_cert).sign(request)
        envelope = encode_envelope(request)
        response = sign_confirmation(envelope, request, decision=Decision.APPROVE, counter=17,
                                     user_verification=UserVerification.PRESENCE,
                                     key=generate_private_key(suite), module_id=bytes(16))
        answer = encode_envelope(response)
        for mtu in (23, 185, 247):
            size = fragment_size(mtu, CONTROL_POINT_LENGTH)
            writes = fragment(Command.MSG, envelope, size)
            notifs = fragment(Command.MSG, answer, size)
            on_air = sum(len(f) + 7 for f in writes + notifs)
            print(f"{suite.name:<12}{mtu:>5}{len(envelope):>7}{len(writes):>8}{len(answer):>8}"
                  f"{len(notifs):>8}{on_air:>14}")


if __name__ == "__main__":
    main()
