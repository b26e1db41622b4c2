"""The platform's request-signing keys: owner-only, stable, certified with their own usage."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from blegw_platform.platform import Platform
from blegw_platform.request_signer import (
    CERTIFICATE_DAYS,
    RENEW_BEFORE,
    RequestSignerError,
    load_platform_id,
    load_request_signer,
)
from e2e import (
    USAGE_REQUEST_SIGNING,
    CertificateInvalid,
    ConfirmationRequest,
    Suite,
    verify_certificate,
    verify_request,
)


def test_keys_are_owner_only_and_survive_a_restart(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "p")
    try:
        first = {s: platform.request_signer(s).certificate for s in Suite}
        anchors = platform.trust_anchors()
    finally:
        platform.close()
    for name in ("platform_id", "request-p256.key", "request-sm2.key"):
        assert stat.S_IMODE((tmp_path / "p" / name).stat().st_mode) == 0o600
    again = Platform(tmp_path / "p")
    try:
        assert again.platform_id == anchors.platform_id
        assert again.trust_anchors() == anchors
        for suite in Suite:
            cert = again.request_signer(suite).certificate
            assert cert == first[suite]  # the same key and certificate, not a new identity
            assert cert.module_id == again.platform_id
            assert verify_certificate(cert, again.cas[suite].public_key, now=int(time.time()),
                                      usage=USAGE_REQUEST_SIGNING)
            # The platform's certificate never passes as a module's (enrollment checks usage 1).
            with pytest.raises(CertificateInvalid, match="usage"):
                verify_certificate(cert, again.cas[suite].public_key, now=int(time.time()))
    finally:
        again.close()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    Platform(tmp_path / "p").close()
    os.chmod(tmp_path / "p" / "request-sm2.key", 0o644)
    with pytest.raises(RequestSignerError, match="readable by others"):
        Platform(tmp_path / "p")


def test_certificate_is_renewed_before_it_expires(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "p")
    try:
        ca = platform.cas[Suite.P256_SHA256]
        now = time.time()
        old = load_request_signer(tmp_path / "p", ca, platform.platform_id, now=now)
        later = now + CERTIFICATE_DAYS * 86400 - RENEW_BEFORE + 10
        new = load_request_signer(tmp_path / "p", ca, platform.platform_id, now=later)
        assert new.certificate.serial != old.certificate.serial
        assert new.certificate.public_key == old.certificate.public_key
        assert new.certificate.not_after > old.certificate.not_after
        assert load_platform_id(tmp_path / "p") == platform.platform_id
    finally:
        platform.close()


async def test_every_request_the_platform_sends_is_signed(tmp_path: Path) -> None:
    """Platform.create signs what it stores and publishes (the module verifies these bytes)."""
    from blegw_platform.platform import TransactionInput
    from e2e import decode_envelope

    platform = Platform(tmp_path / "p")
    try:
        await platform.ledger.run(platform.ledger.add_account, "alice", "EUR", 10_000)
        await platform.ledger.run(platform.ledger.add_account, "shop", "EUR", 0)
        for suite in Suite:
            data = TransactionInput("alice", "shop", "o-1", "coffee", 100, "EUR", suite)
            record, created = await platform.create(data, f"key-{suite.label}-001")
            assert created
            request = decode_envelope(record.envelope)
            assert isinstance(request, ConfirmationRequest)
            cert = verify_request(request, platform.trust_anchors(), now=int(time.time()))
            assert cert.suite is suite
    finally:
        await platform.aclose()
