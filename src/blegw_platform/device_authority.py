"""The CA's and the settlement server's side of flow F-E's devices: enrollment per role,
revocation, and the settlement unit with its keys.

* **Enrollment** (seed claims 2 and 3): a device's secure unit made its key pair and gives its
  public key; the operator (``blegw-platform device enroll``) names the role, the account it
  pays from or collects for, its device information, and for a mobile device how its owner's
  finger is verified: ``features`` (the seed's way: the enrollment template is sealed for the
  settlement server and a salted commitment goes into the certificate) or ``device`` (FIDO's
  way: the template stays in the phone's unit and nothing biometric reaches the platform).
* **Revocation**: the registry marks the device inactive; the settlement unit refuses its
  certificate from then on, whichever side (payer or merchant) it is on.
* **The settlement unit**: one key per suite in the state directory (``settlement-p256.key``,
  ``settlement-sm2.key``, owner-only like the CA keys), its certificate kept beside it
  (``settlement-p256.cbor``...) and served unchanged across restarts, so the copy a merchant
  fetched (``GET /v1/dynamic-codes/settlement-certificate``, ``device settlement-cert``) stays
  good. A certificate lives :data:`SETTLEMENT_DAYS`; it is renewed :data:`RENEW_DAYS` before it
  ends (at start and while serving), and a request sealed to the earlier one of the same key is
  still opened while that one is valid. The template key is ``owner-template.key``.
"""

from __future__ import annotations

import secrets
import threading
import time
from pathlib import Path

from dynamic_code import (
    DeviceCertificate,
    Role,
    SettlementUnit,
    TemplateVault,
    Verification,
    VerifiedPayment,
    issue_device_certificate,
)
from dynamic_code.certificates import MAX_DEVICE_INFO, verify_device_certificate
from dynamic_code.errors import DynamicCodeError
from dynamic_code.fingerprint import FEATURE_SIZE
from e2e.certificates import CertificateAuthority
from e2e.suites import PrivateKey, PublicKey, Suite, generate_private_key, load_private_key
from private_files import read_private, write_atomic

from .device_registry import DEVICES_FILE, DeviceRegistry
from .ledger import Ledger, LedgerError, is_account_name

__all__ = ["SETTLEMENT_DAYS", "DeviceAuthority", "EnrollmentRefused"]

SETTLEMENT_DAYS = 30
RENEW_DAYS = 7
"""A settlement certificate with fewer days than this left is replaced by a new one."""
TEMPLATE_KEY_FILE = "owner-template.key"


class EnrollmentRefused(ValueError):
    """A device enrollment that does not fit its role (template for a merchant device, a mobile
    device without a verification mode, an unknown account...)."""


def _settlement_key(state_dir: Path, suite: Suite) -> PrivateKey:
    path = state_dir / f"settlement-{suite.label}.key"
    scalar = read_private(path)
    if scalar is not None:
        return load_private_key(suite, scalar)
    key = generate_private_key(suite)
    write_atomic(path, key.private_bytes())
    return key


def _template_vault(state_dir: Path) -> TemplateVault:
    path = state_dir / TEMPLATE_KEY_FILE
    key = read_private(path)
    if key is not None:
        return TemplateVault(key)
    vault, key = TemplateVault.generate()
    write_atomic(path, key)
    return vault


def _kept_certificate(path: Path, key: PrivateKey, ca: CertificateAuthority, now: int
                      ) -> DeviceCertificate | None:
    """The settlement certificate kept at ``path`` if it is this CA's, for this key, and has
    more than :data:`RENEW_DAYS` to live; None otherwise (missing, damaged, foreign, ending)."""
    try:
        data = path.read_bytes()
        cert = verify_device_certificate(data, ca.public_key, Role.SETTLEMENT, now=now)
    except (OSError, DynamicCodeError):
        return None
    if cert.public_key != key.public_key.encode() \
            or cert.not_after - now <= RENEW_DAYS * 86400:
        return None
    return cert


class DeviceAuthority:
    def __init__(self, state_dir: Path, cas: dict[Suite, CertificateAuthority],
                 ledger: Ledger) -> None:
        self.cas = cas
        self.ledger = ledger
        self.state_dir = state_dir
        self.registry = DeviceRegistry(state_dir / DEVICES_FILE)
        self._vault = _template_vault(state_dir)
        now = int(time.time())
        keys: dict[Suite, tuple[PrivateKey, bytes]] = {}
        renewed: dict[Suite, DeviceCertificate] = {}
        self._ends: dict[Suite, int] = {}
        for suite, ca in cas.items():
            key = _settlement_key(state_dir, suite)
            path = self._certificate_path(suite)
            kept = _kept_certificate(path, key, ca, now)
            if kept is not None:
                keys[suite] = (key, kept.encode())
                self._ends[suite] = kept.not_after
                continue
            previous = self._previous(path, key, ca, now)
            new = self._issue(suite, key, now)
            self._ends[suite] = new.not_after
            if previous is None:
                keys[suite] = (key, new.encode())
            else:               # ending soon: renewed, the earlier one opened while valid
                keys[suite] = (key, previous)
                renewed[suite] = new
        self._settlement_keys = {suite: key for suite, (key, _) in keys.items()}
        self._renewing = threading.Lock()
        self.unit = SettlementUnit(keys, {suite: ca.public_key for suite, ca in cas.items()},
                                   self._vault)
        for suite, cert in renewed.items():
            self.unit.renew(suite, cert.encode())

    def _certificate_path(self, suite: Suite) -> Path:
        return self.state_dir / f"settlement-{suite.label}.cbor"

    def _previous(self, path: Path, key: PrivateKey, ca: CertificateAuthority, now: int
                  ) -> bytes | None:
        """The kept certificate being replaced, if still valid: merchants may hold it."""
        try:
            data = path.read_bytes()
            cert = verify_device_certificate(data, ca.public_key, Role.SETTLEMENT, now=now)
        except (OSError, DynamicCodeError):
            return None
        return data if cert.public_key == key.public_key.encode() else None

    def _issue(self, suite: Suite, key: PrivateKey, now: int) -> DeviceCertificate:
        ca = self.cas[suite]
        cert = issue_device_certificate(
            ca, key.public_key, Role.SETTLEMENT, device_id=ca.key_id + bytes(8),
            device_info="settlement server", account="", not_before=now - 300,
            not_after=now + SETTLEMENT_DAYS * 86400)
        write_atomic(self._certificate_path(suite), cert.encode(), mode=0o644)
        return cert

    def refresh(self, now: int) -> None:
        """Renew a certificate that is about to end (a platform serving for weeks); cheap when
        nothing is due, so the server calls it before each settlement."""
        if all(ends - now > RENEW_DAYS * 86400 for ends in self._ends.values()):
            return
        with self._renewing:          # worker threads: one renewal per certificate
            for suite, ends in self._ends.items():
                if ends - now <= RENEW_DAYS * 86400:
                    cert = self._issue(suite, self._settlement_keys[suite], now)
                    self.unit.renew(suite, cert.encode())
                    self._ends[suite] = cert.not_after

    def open(self, data: bytes, now: int) -> VerifiedPayment:
        """The settlement unit's checks of one request, its certificate renewed first if due
        (blocking: the server runs it in a worker thread)."""
        self.refresh(now)
        return self.unit.open(data, now=now, directory=self.registry)

    def certificate(self, suite: Suite, now: int) -> bytes:
        """The settlement certificate merchants should seal to now (renewed first if due)."""
        self.refresh(now)
        return self.unit.certificate(suite)

    def close(self) -> None:
        self.registry.close()

    def enroll(self, role: Role, public: PublicKey, account: str, device_info: str, *,
               verification: Verification | None = None, template: bytes | None = None,
               days: int = 365) -> DeviceCertificate:
        """Certify and register one mobile or merchant device. Synchronous (an SM2 signature,
        two SQLite writes): the CLI calls it directly; a server would call it in a worker
        thread."""
        if role is Role.SETTLEMENT:
            raise EnrollmentRefused("the settlement server's certificate is the platform's own")
        if not is_account_name(account):
            raise EnrollmentRefused("account: not an account name")
        try:
            self.ledger.balance(account)
        except LedgerError as exc:
            raise EnrollmentRefused(str(exc)) from None
        if not device_info.isascii() or not device_info.isprintable() \
                or len(device_info) > MAX_DEVICE_INFO:
            raise EnrollmentRefused(f"device information: up to {MAX_DEVICE_INFO} printable "
                                    "ASCII characters")
        if not 1 <= days <= 3650:
            raise EnrollmentRefused("validity: 1..3650 days")
        if role is Role.MERCHANT and (verification is not None or template is not None):
            raise EnrollmentRefused("a merchant device has no owner finger")
        if role is Role.MOBILE:
            if verification is None:
                raise EnrollmentRefused("a mobile device needs its fingerprint mode")
            if (verification is Verification.FEATURES) != (template is not None):
                raise EnrollmentRefused("a template with the features mode, and only then "
                                        "(in the device mode it stays in the phone's unit)")
        if template is not None and len(template) != FEATURE_SIZE:
            raise EnrollmentRefused(f"a template is {FEATURE_SIZE} bytes")
        device_id = secrets.token_bytes(16)
        binding = sealed = None
        if template is not None:
            binding, sealed = self._vault.seal(device_id, template)
        now = int(time.time())
        cert = issue_device_certificate(self.cas[public.suite], public, role,
                                        device_id=device_id, device_info=device_info,
                                        account=account, not_before=now - 300,
                                        not_after=now + days * 86400, binding=binding)
        self.registry.add(device_id, role, int(public.suite), account, device_info,
                          cert.encode(), verification, sealed)
        return cert

    def revoke(self, device_id: bytes) -> bool:
        return self.registry.revoke(device_id)
