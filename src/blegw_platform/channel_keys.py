"""The platform's channel keys: one per signature suite, certified by the platform's CA with
usage 3 (channel), in the state directory as ``channel-<suite>.key`` (0600) and
``channel-<suite>.cbor``.

Provisioned by ``blegw-platform channel-keys`` (a deployment decides to carry payments over the
secure channel by provisioning them); until then the platform sends confirmation requests in
the clear as before. A module trusts the certificate through the CA roots its provisioning
installed (the same roots that vouch for request signing), so no new trust anchor is needed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from e2e import Certificate, CertificateAuthority, E2EError, Suite, load_private_key
from e2e.certificates import verify_certificate
from e2e.suites import generate_private_key
from private_files import NotPrivateError, read_private, write_atomic
from secure_channel import USAGE_CHANNEL, PlatformCredentials

__all__ = ["CHANNEL_DAYS", "ChannelKeyError", "load_channel_credentials",
           "provision_channel_keys"]

CHANNEL_DAYS = 365


class ChannelKeyError(ValueError):
    """A channel key file is unsafe (readable by others) or corrupt."""


def _paths(state_dir: Path, suite: Suite) -> tuple[Path, Path]:
    return state_dir / f"channel-{suite.label}.key", state_dir / f"channel-{suite.label}.cbor"


def _pending(path: Path) -> Path:
    """Where a new key or certificate waits until both of a pair are on disk."""
    return path.with_name(path.name + ".new")


def _finish_replacement(key_path: Path, cert_path: Path) -> None:
    """Complete a replacement a crash interrupted between its two renames: the new key is in
    place and its certificate still waits beside the old one (roll forward). Anything else
    pending is an unfinished provisioning whose old pair is still whole: it is left for the
    next provisioning to overwrite."""
    if _pending(cert_path).exists() and not _pending(key_path).exists():
        os.replace(_pending(cert_path), cert_path)


def provision_channel_keys(state_dir: Path, cas: dict[Suite, CertificateAuthority],
                           platform_id: bytes, *, days: int = CHANNEL_DAYS) -> list[Certificate]:
    """Make a fresh channel key per suite and have the CA certify it (replacing older ones)."""
    now = int(time.time())
    issued = []
    for suite, ca in cas.items():
        key_path, cert_path = _paths(state_dir, suite)
        key = generate_private_key(suite)
        cert = ca.issue(key.public_key, platform_id, not_before=now - 300,
                        not_after=now + days * 86400, usage=USAGE_CHANNEL)
        # Both files first under pending names, then renamed key first: a crash at any point
        # leaves the old pair whole, or the new key with its certificate pending, which the
        # next load rolls forward (never a key beside another key's certificate).
        write_atomic(_pending(key_path), key.private_bytes())
        write_atomic(_pending(cert_path), cert.encode())
        os.replace(_pending(key_path), key_path)
        os.replace(_pending(cert_path), cert_path)
        issued.append(cert)
    return issued


def load_channel_credentials(state_dir: Path, cas: dict[Suite, CertificateAuthority]
                             ) -> PlatformCredentials | None:
    """The channel keys and the module CAs, or None when none is provisioned."""
    keys = {}
    for suite, ca in cas.items():
        key_path, cert_path = _paths(state_dir, suite)
        try:
            _finish_replacement(key_path, cert_path)
        except OSError as exc:
            raise ChannelKeyError(f"{cert_path}: cannot finish an interrupted replacement: "
                                  f"{exc}") from None
        try:
            raw = read_private(key_path)
        except NotPrivateError as exc:
            raise ChannelKeyError(f"{exc}; refusing it") from None
        if raw is None:
            continue
        try:
            key = load_private_key(suite, raw)
            cert = Certificate.decode(cert_path.read_bytes())
            verify_certificate(cert, ca.public_key, now=int(time.time()), usage=USAGE_CHANNEL)
        except (E2EError, OSError) as exc:
            raise ChannelKeyError(f"{cert_path}: {exc}") from None
        if cert.public_key != key.public_key.encode():
            raise ChannelKeyError(f"{cert_path} certifies another key than {key_path}")
        keys[suite] = (key, cert)
    if not keys:
        return None
    return PlatformCredentials(keys, {suite: ca.public_key for suite, ca in cas.items()})
