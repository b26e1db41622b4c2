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
  ``settlement-sm2.key``, owner-only like the CA keys), its certificate re-issued by the CA on
  every start (a certificate lives :data:`SETTLEMENT_DAYS`), and the template key
  (``owner-template.key``).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from dynamic_code import (
    DeviceCertificate,
    Role,
    SettlementUnit,
    TemplateVault,
    Verification,
    issue_device_certificate,
)
from dynamic_code.certificates import MAX_DEVICE_INFO
from dynamic_code.fingerprint import FEATURE_SIZE
from e2e.certificates import CertificateAuthority
from e2e.suites import PrivateKey, PublicKey, Suite, generate_private_key, load_private_key
from private_files import read_private, write_atomic

from .device_registry import DEVICES_FILE, DeviceRegistry
from .ledger import Ledger, LedgerError, is_account_name

__all__ = ["SETTLEMENT_DAYS", "DeviceAuthority", "EnrollmentRefused"]

SETTLEMENT_DAYS = 30
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


class DeviceAuthority:
    def __init__(self, state_dir: Path, cas: dict[Suite, CertificateAuthority],
                 ledger: Ledger) -> None:
        self.cas = cas
        self.ledger = ledger
        self.registry = DeviceRegistry(state_dir / DEVICES_FILE)
        self._vault = _template_vault(state_dir)
        now = int(time.time())
        keys: dict[Suite, tuple[PrivateKey, bytes]] = {}
        for suite, ca in cas.items():
            key = _settlement_key(state_dir, suite)
            cert = issue_device_certificate(
                ca, key.public_key, Role.SETTLEMENT, device_id=ca.key_id + bytes(8),
                device_info="settlement server", account="", not_before=now - 300,
                not_after=now + SETTLEMENT_DAYS * 86400)
            keys[suite] = (key, cert.encode())
        self.unit = SettlementUnit(keys, {suite: ca.public_key for suite, ca in cas.items()},
                                   self._vault)

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
