"""Symmetric-key card beside the public-key module: card-side time and bytes on air.

    .venv/bin/python bench/card_bench.py [--payments 300]

1. Card-side time per payment, in this run: the symmetric card's hello + opening the
   transaction request + its authenticated result (AES-128-GCM/SHA-256 and SM4-GCM/SM3), next
   to the public-key module's work for one payment (checking the platform's request signature,
   then signing its approval) and to a bare P-256 and SM2 signature.
2. Frames and bytes on air per payment at ATT MTU 23 and 247, framed by the link profile
   (ble_profile.fragment; each fragment is one ATT PDU plus 3 bytes of ATT and 4 of L2CAP
   header): the card's four messages (challenge, hello, transaction request, result) next to
   the module's request and response.

Figures only; nothing is asserted. Python figures: a card's secure element runs the same
primitives in hardware, so the ratio matters more than the microseconds.
"""

from __future__ import annotations

import argparse
import secrets
import time

from ble_profile import Command, fragment, fragment_size
from e2e import (
    USAGE_REQUEST_SIGNING,
    CertificateAuthority,
    ConfirmationRequest,
    Decision,
    RequestSigner,
    Suite,
    TrustAnchors,
    UserVerification,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
    verify_request,
)
from symmetric_card import (
    CardChallenge,
    CardInfo,
    CardRecord,
    CardSession,
    CardSuite,
    CardVerifier,
    LinkAddresses,
    TransactionInfo,
    diversify,
    encode,
)
from symmetric_card import Decision as CardDecision

CONTROL_POINT_LENGTH = 512
NUMBER = "9900001234567899"
LINK = LinkAddresses("C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13")


def card_payment(suite: CardSuite, n: int) -> tuple[float, list[bytes]]:
    """Mean card-side seconds per payment, and one payment's four messages."""
    card_key = diversify(suite, secrets.token_bytes(16), NUMBER)
    info = CardInfo(NUMBER, "C0FFEE0000000001", int(time.time()) - 86400, "alice-001")
    ref = secrets.token_bytes(8)
    record = CardRecord(ref, NUMBER, info.bound_user, lambda _s, _v: card_key)
    verifier = CardVerifier()
    card_time = 0.0
    messages: list[bytes] = []
    for i in range(n):
        now = int(time.time()) + i                    # each payment its own time factor
        challenge = encode(CardChallenge(suite, now))
        t0 = time.perf_counter()
        random = secrets.token_bytes(16)     # the card sends it: the platform checks the link
        session = CardSession(suite=suite, card_key=card_key, key_version=1, card_ref=ref,
                              card_info=info, channel_id=LINK.channel_id(suite, random),
                              connection_random=random)
        hello = session.hello(now)
        card_time += time.perf_counter() - t0
        server = verifier.open_hello(hello, card=record, now=now, link=LINK)
        request = server.transaction_request(TransactionInfo(
            secrets.token_bytes(16), 4590, "EUR", "coffee-shop-4711", now, "Main St 1",
            NUMBER, info.bound_user), now=now)
        t0 = time.perf_counter()
        session.receive_transaction(request)
        result = session.answer(CardDecision.APPROVE)
        card_time += time.perf_counter() - t0
        assert server.read_result(result, now=now).approved
        messages = [challenge, hello, request, result]
    return card_time / n, messages


def card_crypto(suite: CardSuite, n: int) -> float:
    """Mean seconds of a payment's card-side cryptography alone: three process keys, two
    AEAD operations over ~150 bytes and one over a few, and the transaction digest."""
    from symmetric_card import process_key
    from symmetric_card.suites import aead_open, aead_seal, digest

    key = diversify(suite, secrets.token_bytes(16), NUMBER)
    channel, ref, nonce = secrets.token_bytes(16), secrets.token_bytes(8), bytes(12)
    body, ad = bytes(150), bytes(60)
    t0 = time.perf_counter()
    for i in range(n):
        for kind in (0x41, 0x42, 0x43):
            pk = process_key(suite, key, message_type=kind, key_version=1, card_ref=ref,
                             channel_id=channel, time_factor=1_800_000_000 + i)
            if kind == 0x42:
                sealed = aead_seal(suite, pk.key, nonce, body, ad)
                aead_open(suite, pk.key, nonce, sealed, ad)
                digest(suite, body)
            else:
                aead_seal(suite, pk.key, nonce, body if kind == 0x41 else bytes(4), ad)
    return (time.perf_counter() - t0) / n


def module_payment(suite: Suite, n: int) -> tuple[float, float, list[bytes]]:
    """Mean module-side seconds per payment (check the request, sign), a bare signature's
    seconds, and one payment's request and response."""
    now = int(time.time())
    ca = CertificateAuthority.generate(suite)
    platform_key = generate_private_key(suite)
    platform_id = secrets.token_bytes(16)
    signer = RequestSigner(platform_key, ca.issue(
        platform_key.public_key, platform_id, not_before=now - 10, not_after=now + 86400,
        usage=USAGE_REQUEST_SIGNING))
    anchors = TrustAnchors(platform_id, {suite: ca.public_key})
    module_key = generate_private_key(suite)
    request = signer.sign(ConfirmationRequest(
        bytes(16), "alice-001-checking", "coffee-shop-4711", "ORD-2026-11-23-0042",
        "2 x espresso beans 1 kg", 4590, "EUR", bytes(32), now + 120, suite))
    envelope = encode_envelope(request)
    total = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        verify_request(request, anchors, now=now)
        response = sign_confirmation(envelope, request, decision=Decision.APPROVE,
                                     counter=i + 1, user_verification=UserVerification.PRESENCE,
                                     key=module_key, module_id=bytes(16))
        total += time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n):
        module_key.sign(envelope)
    bare = (time.perf_counter() - t0) / n
    return total / n, bare, [envelope, encode_envelope(response)]


def on_air(messages: list[bytes], mtu: int) -> tuple[int, int]:
    size = fragment_size(mtu, CONTROL_POINT_LENGTH)
    frames = [f for m in messages for f in fragment(Command.MSG, m, size)]
    return len(frames), sum(len(f) + 7 for f in frames)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--payments", type=int, default=300)
    n = parser.parse_args().payments
    rows: list[tuple[str, float, str, list[bytes]]] = []
    for card_suite in CardSuite:
        mean, messages = card_payment(card_suite, n)
        rows.append((f"card {card_suite.label}", mean, "hello + open request + result",
                     messages))
        rows.append((f"  {card_suite.label} crypto only", card_crypto(card_suite, n),
                     "3 process keys, 3 AEAD operations, 1 digest (no CBOR)", []))
    for suite in Suite:
        mean, bare, messages = module_payment(suite, max(20, n // 10))
        rows.append((f"module {suite.label}", mean, "check request + sign approval",
                     messages))
        rows.append((f"  bare {suite.label} sign", bare, "one signature", []))
    print(f"{'who':<18}{'µs/payment':>12}  what")
    for name, mean, what, _m in rows:
        print(f"{name:<18}{mean * 1e6:>12.0f}  {what}")
    print()
    print(f"{'who':<18}{'messages':>9}{'bytes':>7}{'MTU 23 frames':>15}{'on air':>8}"
          f"{'MTU 247 frames':>16}{'on air':>8}")
    for name, _mean, _what, messages in rows:
        if not messages:
            continue
        f23, b23 = on_air(messages, 23)
        f247, b247 = on_air(messages, 247)
        sizes = "+".join(str(len(m)) for m in messages)
        print(f"{name:<18}{len(messages):>9}{sum(map(len, messages)):>7}{f23:>15}{b23:>8}"
              f"{f247:>16}{b247:>8}   ({sizes})")


if __name__ == "__main__":
    main()
