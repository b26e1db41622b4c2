"""Real encoded messages, made with the project's own encoders, that seed the corpora.

Seeds that pass every check let the fuzzer start deep inside each decoder instead of
rediscovering the envelope's shape byte by byte.
"""

from __future__ import annotations

import functools
import time

from ble_profile import Command, KeepaliveStatus, fragment, keepalive_frame
from e2e import (
    CertificateAuthority,
    CertificateRequest,
    CertificateResponse,
    ConfirmationRequest,
    Decision,
    ErrorCode,
    ErrorResponse,
    Suite,
    UserVerification,
    encode_envelope,
    generate_private_key,
    load_private_key,
    sign_confirmation,
)
from e2e.certificates import USAGE_REQUEST_SIGNING
from e2e.request_auth import RequestSigner, TrustAnchors

__all__ = ["FAR_FUTURE", "PLATFORM_ID", "certificates", "envelopes", "join_fragments",
           "platform_signer", "split_fragments"]

FAR_FUTURE = 2**39
"""An expiry no run reaches, so mutated requests stay in time."""


def split_fragments(data: bytes) -> list[bytes]:
    """Read ``len | bytes`` records: how a target takes a sequence of fragments from one input."""
    frames, i = [], 0
    while i < len(data):
        n = data[i]
        frames.append(data[i + 1:i + 1 + n])
        i += 1 + n
    return frames


def join_fragments(frames: list[bytes]) -> bytes:
    """The inverse of :func:`split_fragments`, for seeds (fragments of up to 255 bytes)."""
    return b"".join(bytes([len(f)]) + f for f in frames)


PLATFORM_ID = b"\x50" * 16


@functools.cache
def platform_signer() -> tuple[RequestSigner, TrustAnchors]:
    """A platform request signer and the anchors a module trusts it by, from fixed keys.

    Fixed, so a regression input signed once stays valid: the module only prompts for requests
    the platform signed, and the prompt is what some inputs are about.
    """
    ca = CertificateAuthority(load_private_key(Suite.P256_SHA256, b"\x11" * 32))
    key = load_private_key(Suite.P256_SHA256, b"\x22" * 32)
    cert = ca.issue(key.public_key, PLATFORM_ID, not_before=1_700_000_000, not_after=FAR_FUTURE,
                    usage=USAGE_REQUEST_SIGNING)
    return RequestSigner(key, cert), TrustAnchors(PLATFORM_ID, {Suite.P256_SHA256: ca.public_key})


def request(suite: Suite = Suite.P256_SHA256, tx: bytes = b"\x11" * 16) -> ConfirmationRequest:
    return ConfirmationRequest(tx, "alice", "shop", "order-1", "two coffees", 450, "EUR",
                               b"\x22" * 16, FAR_FUTURE, suite)


@functools.cache
def certificates() -> dict[Suite, tuple[bytes, bytes]]:
    """Per suite: (CA-issued module certificate, one signed ConfirmationResponse envelope)."""
    out = {}
    now = int(time.time())
    for suite in Suite:
        ca = CertificateAuthority.generate(suite)
        key = generate_private_key(suite)
        cert = ca.issue(key.public_key, b"\x33" * 16, not_before=now - 60,
                        not_after=now + 86400)
        req = request(suite)
        env = encode_envelope(req)
        resp = sign_confirmation(env, req, decision=Decision.APPROVE, counter=7,
                                 user_verification=UserVerification.PRESENCE, key=key,
                                 module_id=b"\x33" * 16)
        out[suite] = (cert.encode(), encode_envelope(resp))
    return out


@functools.cache
def envelopes() -> list[bytes]:
    """One envelope of every message type, both suites where a suite is carried."""
    out = []
    for suite in Suite:
        out.append(encode_envelope(request(suite)))
        out.append(certificates()[suite][1])
        out.append(encode_envelope(CertificateRequest(suite)))
        out.append(encode_envelope(CertificateResponse(certificates()[suite][0])))
    out.append(encode_envelope(ErrorResponse(ErrorCode.CANCELLED, b"\x11" * 16, "cancelled")))
    out.append(encode_envelope(ErrorResponse(ErrorCode.MALFORMED, b"", "")))
    return out


def link_messages() -> list[list[bytes]]:
    """Fragment sequences as they cross the link (20-byte and 185-byte fragments)."""
    out = [[keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED)]]
    for env in envelopes()[:4]:
        out.append(fragment(Command.MSG, env, 20))
        out.append([keepalive_frame(KeepaliveStatus.PROCESSING),
                    *fragment(Command.MSG, env, 185)])
    out.append(fragment(Command.PING, b"12345678", 20))
    out.append(fragment(Command.CANCEL, b"", 20))
    out.append([bytes([Command.ERROR, 0, 1, 4])])
    return out
