"""Three devices and a CA of one suite, made with the project's own code (no mocks; the
fingerprint sensors are simulated, the radio is not involved)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from dynamic_code import (
    MerchantUnit,
    PayerUnit,
    Role,
    SettlementUnit,
    SimulatedSensor,
    TemplateVault,
    Verification,
    issue_device_certificate,
)
from dynamic_code.certificates import DeviceCertificate
from dynamic_code.fingerprint import Finger
from e2e.certificates import CertificateAuthority
from e2e.suites import PrivateKey, Suite, generate_private_key


@dataclass
class Directory:
    """The platform's device registry, in memory: what the settlement unit asks."""

    active: dict[bytes, Role] = field(default_factory=dict)
    policies: dict[bytes, Verification] = field(default_factory=dict)
    templates: dict[bytes, bytes] = field(default_factory=dict)

    def is_active(self, device_id: bytes, role: Role) -> bool:
        return self.active.get(device_id) is role

    def policy(self, device_id: bytes) -> Verification | None:
        return self.policies.get(device_id)

    def template_record(self, device_id: bytes) -> bytes | None:
        return self.templates.get(device_id)


@dataclass
class Payer:
    key: PrivateKey
    certificate: bytes
    unit: PayerUnit
    finger: Finger
    sensor: SimulatedSensor


class World:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.ca = CertificateAuthority.generate(suite)
        self.now = int(time.time())
        self.directory = Directory()
        self.vault, _ = TemplateVault.generate()
        self.server_key = generate_private_key(suite)  # kept for tests that open its mail
        self.server_cert = self.issue(self.server_key, Role.SETTLEMENT, "settlement", "")
        self.server = SettlementUnit({suite: (self.server_key, self.server_cert)},
                                     {suite: self.ca.public_key}, self.vault)
        self.merchant_key = generate_private_key(suite)
        self.merchant_cert = self.issue(self.merchant_key, Role.MERCHANT, "till 1", "shop")
        self.merchant = MerchantUnit(self.merchant_key, self.merchant_cert, self.ca.public_key)
        self.merchant_sensor = SimulatedSensor()

    def issue(self, key: PrivateKey, role: Role, info: str, account: str, *,
              binding: bytes | None = None, ca: CertificateAuthority | None = None,
              device_id: bytes | None = None) -> bytes:
        device_id = device_id or secrets.token_bytes(16)
        cert = issue_device_certificate(ca or self.ca, key.public_key, role,
                                        device_id=device_id, device_info=info, account=account,
                                        not_before=self.now - 300, not_after=self.now + 86400,
                                        binding=binding)
        if ca is None:
            self.directory.active[device_id] = role
        return cert.encode()

    def payer(self, account: str, mode: Verification, finger: Finger | None = None) -> Payer:
        """A mobile device enrolled the way ``blegw-platform device enroll`` does."""
        finger = finger or Finger.new()
        sensor = SimulatedSensor()
        sensor.present(finger)
        key = generate_private_key(self.suite)
        device_id = secrets.token_bytes(16)
        template = sensor.enroll()
        binding = None
        if mode is Verification.FEATURES:
            binding, record = self.vault.seal(device_id, template)
            self.directory.templates[device_id] = record
        cert = self.issue(key, Role.MOBILE, "phone", account, binding=binding,
                          device_id=device_id)
        self.directory.policies[device_id] = mode
        unit = PayerUnit(key, cert, self.ca.public_key,
                         template=template if mode is Verification.DEVICE else None)
        return Payer(key, cert, unit, finger, sensor)


def device_id(certificate: bytes) -> bytes:
    return DeviceCertificate.decode(certificate).device_id
