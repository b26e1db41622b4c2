"""The platform's request-signing keys and identity, kept in its state directory.

Each suite has its own key (``request-<suite>.key``, 0600, never exported) certified by the
platform's CA of that suite with usage 2 (request signing) and the platform id as subject
(``platform_id``, 16 random bytes made once). Provisioning installs the CA roots and this id in
each module, which then prompts only for requests these keys signed (see e2e.request_auth).

The certificate is short-lived and re-issued by the CA on start when it is missing, expires
within a day, or no longer matches the key or the CA; the key itself stays.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from e2e import (
    PLATFORM_ID_SIZE,
    USAGE_REQUEST_SIGNING,
    Certificate,
    CertificateAuthority,
    E2EError,
    RequestSigner,
    Suite,
    generate_private_key,
    load_private_key,
    verify_certificate,
)
from private_files import NotPrivateError, read_private, write_atomic

__all__ = ["CERTIFICATE_DAYS", "RENEW_BEFORE", "RequestSignerError", "load_platform_id",
           "load_request_signer"]

CERTIFICATE_DAYS = 30
RENEW_BEFORE = 86400


class RequestSignerError(ValueError):
    """A request-signing file is unsafe (readable by others) or corrupt."""


def _read_private(path: Path) -> bytes | None:
    try:
        return read_private(path)
    except NotPrivateError as exc:
        raise RequestSignerError(f"{exc}; refusing it") from None


def load_platform_id(state_dir: Path) -> bytes:
    """The subject id of the platform's request-signing certificates, made once."""
    path = state_dir / "platform_id"
    raw = _read_private(path)
    if raw is None:
        raw = secrets.token_bytes(PLATFORM_ID_SIZE)
        write_atomic(path, raw)
    if len(raw) != PLATFORM_ID_SIZE:
        raise RequestSignerError(f"{path} is corrupt")
    return raw


def load_request_signer(state_dir: Path, ca: CertificateAuthority, platform_id: bytes, *,
                        now: float | None = None) -> RequestSigner:
    """The signer of ``ca``'s suite: its key (made on first use) and a current certificate."""
    suite: Suite = ca.key.suite
    key_path = state_dir / f"request-{suite.label}.key"
    raw = _read_private(key_path)
    if raw is None:
        key = generate_private_key(suite)
        write_atomic(key_path, key.private_bytes())
    else:
        try:
            key = load_private_key(suite, raw)
        except E2EError as exc:
            raise RequestSignerError(f"{key_path} does not hold a {suite.name} key") from exc
    at = int(time.time() if now is None else now)
    cert_path = state_dir / f"request-{suite.label}.cbor"
    cert = _current(cert_path, ca, platform_id, key.public_key.encode(), at)
    if cert is None:
        cert = ca.issue(key.public_key, platform_id, not_before=at - 300,
                        not_after=at + CERTIFICATE_DAYS * 86400, usage=USAGE_REQUEST_SIGNING)
        write_atomic(cert_path, cert.encode())
    return RequestSigner(key, cert)


def _current(path: Path, ca: CertificateAuthority, platform_id: bytes, public: bytes,
             now: int) -> Certificate | None:
    """The stored certificate if it still fits the key, the CA and the id for a day more."""
    try:
        cert = Certificate.decode(path.read_bytes())
        verify_certificate(cert, ca.public_key, now=now, usage=USAGE_REQUEST_SIGNING)
    except (FileNotFoundError, E2EError):          # CertificateInvalid is an E2EError
        return None
    fits = (cert.module_id == platform_id and cert.public_key == public
            and now + RENEW_BEFORE < cert.not_after)
    return cert if fits else None
