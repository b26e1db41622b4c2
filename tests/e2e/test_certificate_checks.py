"""Remembered certificate checks (``e2e.CertificateChecks``): the CA signature over the same
bytes is verified once; everything else about a certificate is checked on every call."""

from __future__ import annotations

import dataclasses
import time

import pytest

from e2e import (
    CertificateAuthority,
    CertificateChecks,
    CertificateInvalid,
    Suite,
    generate_private_key,
    verify_certificate,
)
from e2e.certificates import USAGE_REQUEST_SIGNING


class CountingKey:
    """The CA's public key, counting how often a signature is verified with it (a wrapper
    around the real key, so the count is of real verifications)."""

    def __init__(self, key: object) -> None:
        self.key = key
        self.verified = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.key, name)

    def verify(self, signature: bytes, data: bytes) -> bool:
        self.verified += 1
        return bool(self.key.verify(signature, data))  # type: ignore[attr-defined]


@pytest.mark.parametrize("suite", list(Suite))
def test_the_ca_signature_is_verified_once_and_the_rest_every_time(suite: Suite) -> None:
    ca = CertificateAuthority.generate(suite)
    now = int(time.time())
    cert = ca.issue(generate_private_key(suite).public_key, bytes(16), not_before=now - 60,
                    not_after=now + 60)
    counting = CountingKey(ca.public_key)
    checks = CertificateChecks()
    for _ in range(3):
        verify_certificate(cert, counting, now=now, checks=checks)  # type: ignore[arg-type]
    assert counting.verified == 1
    # remembered, yet expired: refused; and for another usage: refused
    with pytest.raises(CertificateInvalid, match="expired"):
        verify_certificate(cert, ca.public_key, now=now + 61, checks=checks)
    with pytest.raises(CertificateInvalid, match="usage"):
        verify_certificate(cert, ca.public_key, now=now, usage=USAGE_REQUEST_SIGNING,
                           checks=checks)


@pytest.mark.parametrize("suite", list(Suite))
def test_a_forged_certificate_is_never_taken_for_a_remembered_one(suite: Suite) -> None:
    """The same TBS under another signature, or the same bytes under another CA key, is
    checked afresh and refused."""
    ca, other = CertificateAuthority.generate(suite), CertificateAuthority.generate(suite)
    now = int(time.time())
    cert = ca.issue(generate_private_key(suite).public_key, bytes(16), not_before=now - 60,
                    not_after=now + 60)
    checks = CertificateChecks()
    verify_certificate(cert, ca.public_key, now=now, checks=checks)
    forged = dataclasses.replace(cert, signature=bytes(len(cert.signature)))
    with pytest.raises(CertificateInvalid, match="does not verify"):
        verify_certificate(forged, ca.public_key, now=now, checks=checks)
    with pytest.raises(CertificateInvalid):
        verify_certificate(cert, other.public_key, now=now, checks=checks)


def test_remembered_checks_stay_bounded() -> None:
    suite = Suite.P256_SHA256
    ca = CertificateAuthority.generate(suite)
    now = int(time.time())
    checks = CertificateChecks(size=4)
    certs = [ca.issue(generate_private_key(suite).public_key, i.to_bytes(16, "big"),
                      not_before=now - 60, not_after=now + 60) for i in range(6)]
    for cert in certs:
        verify_certificate(cert, ca.public_key, now=now, checks=checks)
    assert [checks.known(c, ca.public_key) for c in certs] == [False, False] + [True] * 4
