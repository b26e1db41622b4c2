"""The three secure units of flow F-E as plain objects: keys go in, never come out.

Each unit holds its private key and offers only the operations the seed gives it; there is no
getter for a key, a perturbation code or a decrypted payment. The simulated module can host
a :class:`PayerUnit` or a :class:`MerchantUnit` as it hosts its soft secure element, and the
platform hosts the :class:`SettlementUnit`.

* :class:`MerchantUnit` makes the consumption code and keeps its one-time perturbation code,
  decrypts the payer's payment code, checks the perturbation code, the amount and that the
  code was made for it, then re-encrypts to the settlement server (after checking the server's
  certificate against the CA) with the owner's features if its own sensor captured them.
* :class:`PayerUnit` checks the merchant's certificate against the CA and the consumption
  code's signature, then signs and encrypts the payment to the merchant's key; in FIDO's mode
  it matches the owner's finger against the template it holds and attests the match.
* :class:`SettlementUnit` decrypts, checks both certificates (CA, role, revocation through the
  platform's :class:`DeviceDirectory`), both signatures, the binding to the merchant, expiry,
  and the owner's finger the way the platform's policy asks for this payer.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from e2e.suites import PrivateKey, PublicKey, Suite

from .certificates import (
    DeviceCertificate,
    Role,
    certificate_ref,
    verify_device_certificate,
)
from .encryption import PAYMENT_PURPOSE, SETTLEMENT_PURPOSE, open_sealed, seal
from .errors import (
    AmountMismatch,
    CodeExpired,
    DecryptFailed,
    DeviceCertificateRefused,
    DeviceRevoked,
    FingerprintMismatch,
    MalformedDynamicCode,
    OwnerBindingMismatch,
    PerturbationMismatch,
    StalePerturbation,
    UnsupportedDynamicCode,
    VerificationRefused,
    WrongMerchant,
)
from .fingerprint import TemplateVault, matches
from .messages import (
    PERTURBATION_SIZE,
    ConsumptionCode,
    Forward,
    PaymentCode,
    PaymentContent,
    SettlementRequest,
    Verification,
)

__all__ = ["CLOCK_SKEW", "Accepted", "DeviceDirectory", "MerchantUnit", "Offer", "PayerUnit",
           "SettlementUnit", "VerifiedPayment"]

CLOCK_SKEW = 60
"""Seconds a code may claim to be issued in the future (device clocks differ)."""
MAX_PENDING = 64
"""Consumption codes a merchant's unit keeps open at once, and accepted payments it keeps
until forwarded; the oldest is dropped first."""
MAX_SPENT = 4096
"""Spent perturbation codes the unit remembers, to tell a replay from a forgery. A replay of
one forgotten (older than thousands of sales, far past its expiry) is still refused: it is no
longer pending."""


def _own_certificate(key: PrivateKey, certificate: bytes, role: Role) -> DeviceCertificate:
    cert = DeviceCertificate.decode(certificate)
    if cert.role is not role or cert.public_key != key.public_key.encode():
        raise DeviceCertificateRefused("the unit's certificate is not for its key and role")
    return cert


def _check_times(issued: int, expires: int, now: int, what: str) -> None:
    if now + CLOCK_SKEW < issued or now > expires:
        raise CodeExpired(f"the {what} is not valid now")


@dataclass(frozen=True, slots=True)
class Offer:
    """What the payer's device shows its owner before paying (from a verified consumption
    code): who is paid, by which device, how much."""

    merchant_account: str
    merchant_device: str
    amount_minor: int
    currency: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """A payment code the merchant's unit accepted; ``handle`` names it for :meth:`forward`."""

    handle: int
    payer_account: str
    amount_minor: int
    currency: str
    verification: Verification
    needs_features: bool
    """The merchant's sensor must capture the owner's finger (seed mode, and the payer's
    device captured none)."""


class MerchantUnit:
    """The merchant payment device's secure unit."""

    def __init__(self, key: PrivateKey, certificate: bytes, ca_public: PublicKey, *,
                 rng: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self._key = key
        self._cert_bytes = bytes(certificate)
        self._cert = _own_certificate(key, certificate, Role.MERCHANT)
        self._ref = certificate_ref(certificate)
        self._ca = ca_public
        self._rng = rng
        self._pending: OrderedDict[bytes, tuple[int, str, int]] = OrderedDict()
        self._spent: OrderedDict[bytes, None] = OrderedDict()
        self._accepted: dict[int, PaymentContent] = {}
        self._handles = 0

    @property
    def certificate(self) -> bytes:
        return self._cert_bytes

    def consumption_code(self, amount_minor: int, currency: str, *, now: int,
                         lifetime: int = 120) -> bytes:
        """A signed consumption code; its perturbation code stays pending in the unit."""
        perturbation = self._rng(PERTURBATION_SIZE)
        code = ConsumptionCode(self._cert_bytes, amount_minor, currency, perturbation, now,
                               now + lifetime).sign(self._key)
        data = code.encode()
        ConsumptionCode.decode(data)  # amount, currency, lifetime in range, as a reader checks
        self._pending[perturbation] = (amount_minor, currency, now + lifetime)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return data

    def accept(self, payment_code: bytes, *, now: int) -> Accepted:
        """Decrypt a payer's payment code, check it against the pending consumption code and
        check the payer's certificate (CA, role) and signature; the perturbation code is spent
        only when every check passes. Revocation is the server's to check."""
        code = PaymentCode.decode(payment_code)
        if code.suite is not self._key.suite:
            raise UnsupportedDynamicCode("a payment code in another suite than this unit's")
        plaintext = open_sealed(self._key.suite, self._key.private_bytes(),
                                self._key.public_key.encode(), PAYMENT_PURPOSE, code.ciphertext)
        content = PaymentContent.decode(plaintext)
        if content.merchant_ref != self._ref or content.merchant_account != self._cert.account:
            raise WrongMerchant("the payment code was made for another merchant device")
        pending = self._pending.get(content.perturbation)
        if pending is None:
            if content.perturbation in self._spent:
                raise StalePerturbation("this consumption code was already paid")
            raise PerturbationMismatch("no consumption code of this unit has this "
                                       "perturbation code")
        amount, currency, expires = pending
        if now > expires:
            del self._pending[content.perturbation]
            raise StalePerturbation("the consumption code expired")
        _check_times(content.issued_at, content.expires_at, now, "payment code")
        if (content.amount_minor, content.currency) != (amount, currency):
            raise AmountMismatch("the payment code is for another amount")
        # Not in the seed, which leaves this to the server: without it anyone who sees the
        # till's screen could spend its perturbation code with a forged payment code.
        payer = verify_device_certificate(content.payer_certificate, self._ca, Role.MOBILE,
                                          now=now)
        content.verify(payer.verifying_key())
        if content.payer_account != payer.account:
            raise DeviceCertificateRefused("the payer's certificate is for another account")
        del self._pending[content.perturbation]
        self._spent[content.perturbation] = None
        while len(self._spent) > MAX_SPENT:
            self._spent.popitem(last=False)
        self._handles += 1
        self._accepted[self._handles] = content
        while len(self._accepted) > MAX_PENDING:  # accepted but never forwarded: oldest out
            del self._accepted[next(iter(self._accepted))]
        return Accepted(self._handles, content.payer_account, content.amount_minor,
                        content.currency, content.verification,
                        content.verification is Verification.FEATURES
                        and content.features is None)

    def forward(self, handle: int, server_certificate: bytes, *, now: int,
                features: bytes | None = None) -> bytes:
        """The settlement request for an accepted payment: checks the server's certificate
        against the CA, signs, encrypts to the server. ``features`` from the merchant's
        sensor, when :attr:`Accepted.needs_features`."""
        content = self._accepted.get(handle)
        if content is None:
            raise MalformedDynamicCode("no accepted payment with this handle")
        server = verify_device_certificate(server_certificate, self._ca, Role.SETTLEMENT,
                                           now=now)
        if server.suite is not self._key.suite:
            raise UnsupportedDynamicCode("the settlement certificate is of another suite")
        if content.verification is Verification.FEATURES:
            if (content.features is None) == (features is None):
                raise VerificationRefused("the owner's features: from exactly one sensor")
        elif features is not None:
            raise VerificationRefused("the payer's unit verified the owner: no features")
        forward = Forward(content.encode(), features, certificate_ref(server_certificate)
                          ).sign(self._key)
        ciphertext = seal(server.verifying_key(), SETTLEMENT_PURPOSE, forward.encode())
        del self._accepted[handle]
        return SettlementRequest(self._key.suite, self._cert_bytes, ciphertext).encode()


class PayerUnit:
    """The mobile device's secure unit. ``template``: the owner's finger enrolled in the unit,
    for FIDO's mode (it never leaves the unit). Like the merchant's, it trusts the CA key of
    one suite: payer and merchant devices pay each other in that suite."""

    def __init__(self, key: PrivateKey, certificate: bytes, ca_public: PublicKey, *,
                 template: bytes | None = None) -> None:
        self._key = key
        self._cert_bytes = bytes(certificate)
        self._cert = _own_certificate(key, certificate, Role.MOBILE)
        self._ca = ca_public
        self._template = template

    def read(self, consumption_code: bytes, *, now: int) -> Offer:
        """Check a scanned consumption code: the merchant's certificate against the CA (role,
        validity), its signature, expiry. What to show the owner."""
        code, merchant = self._verified(consumption_code, now)
        return Offer(merchant.account, merchant.device_info, code.amount_minor, code.currency,
                     code.expires_at)

    def _verified(self, data: bytes, now: int) -> tuple[ConsumptionCode, DeviceCertificate]:
        code = ConsumptionCode.decode(data)
        merchant = verify_device_certificate(code.merchant_certificate, self._ca,
                                             Role.MERCHANT, now=now)
        code.verify(merchant.verifying_key())
        _check_times(code.issued_at, code.expires_at, now, "consumption code")
        return code, merchant

    def pay(self, consumption_code: bytes, *, now: int, verification: Verification,
            features: bytes | None = None, lifetime: int = 120) -> bytes:
        """The payment code for a consumption code, encrypted to the merchant's key.

        ``features`` are the owner's, from this device's sensor: in the seed's mode they travel
        in the code (None: the merchant's sensor captures them); in FIDO's mode they are matched
        here against the unit's template and only the attestation travels."""
        code, merchant = self._verified(consumption_code, now)
        carried = features
        if verification is Verification.DEVICE:
            if self._template is None:
                raise VerificationRefused("no finger is enrolled in this unit")
            if features is None or not matches(self._template, features):
                raise FingerprintMismatch("the finger does not match the owner's")
            carried = None
        content = PaymentContent(certificate_ref(code.merchant_certificate), merchant.account,
                                 code.amount_minor, code.currency, code.perturbation,
                                 self._cert.account, self._cert_bytes, verification, carried,
                                 now, now + lifetime).sign(self._key)
        ciphertext = seal(merchant.verifying_key(), PAYMENT_PURPOSE, content.encode())
        return PaymentCode(merchant.suite, ciphertext).encode()


@dataclass(frozen=True, slots=True)
class VerifiedPayment:
    """A settlement request that passed every check: what the ledger settles once."""

    payment_id: bytes
    payer: str
    payee: str
    amount_minor: int
    currency: str
    merchant_device: bytes
    payer_device: bytes
    perturbation: bytes
    expires_at: int
    verification: Verification
    suite: Suite


class DeviceDirectory(Protocol):
    """What the settlement server asks the platform's device registry."""

    def is_active(self, device_id: bytes, role: Role) -> bool: ...

    def policy(self, device_id: bytes) -> Verification | None:
        """How this payer's owner must be verified; None if the device is not enrolled."""
        ...

    def template_record(self, device_id: bytes) -> bytes | None: ...


class SettlementUnit:
    """The settlement server's secure unit: one key and certificate per suite, the CA keys it
    trusts, and the template vault."""

    def __init__(self, keys: dict[Suite, tuple[PrivateKey, bytes]],
                 ca_publics: dict[Suite, PublicKey], vault: TemplateVault) -> None:
        self._keys = {suite: (key, bytes(cert), certificate_ref(cert))
                      for suite, (key, cert) in keys.items()}
        self._accepted: dict[Suite, dict[bytes, int]] = {}
        for suite, (key, cert, ref) in self._keys.items():
            own = _own_certificate(key, cert, Role.SETTLEMENT)
            if own.suite is not suite:
                raise DeviceCertificateRefused("a settlement certificate of another suite")
            self._accepted[suite] = {ref: own.not_after}
        self._cas = dict(ca_publics)
        self._vault = vault

    def certificate(self, suite: Suite) -> bytes:
        return self._keys[suite][1]

    def renew(self, suite: Suite, certificate: bytes) -> None:
        """Serve a new certificate for the same key. Merchants may hold an earlier one (fetched
        before the renewal): a request sealed to any certificate of this key is opened while
        that certificate is valid, so a renewal never fails a sale in flight."""
        key, _, _ = self._keys[suite]
        own = _own_certificate(key, certificate, Role.SETTLEMENT)
        if own.suite is not suite:
            raise DeviceCertificateRefused("a settlement certificate of another suite")
        ref = certificate_ref(certificate)
        self._keys[suite] = (key, bytes(certificate), ref)
        self._accepted[suite][ref] = own.not_after

    def _device(self, data: bytes, role: Role, directory: DeviceDirectory, now: int
                ) -> DeviceCertificate:
        cert = DeviceCertificate.decode(data)
        ca = self._cas.get(cert.suite)
        if ca is None:
            raise UnsupportedDynamicCode("no CA for this certificate's suite")
        cert = verify_device_certificate(data, ca, role, now=now)
        if not directory.is_active(cert.device_id, role):
            raise DeviceRevoked(f"the {role.name.lower()} device is revoked or not enrolled")
        return cert

    def open(self, request: bytes, *, now: int, directory: DeviceDirectory
             ) -> VerifiedPayment:
        """Every check of seed steps 13 and 14, in the order that costs least for a forgery."""
        req = SettlementRequest.decode(request)
        own = self._keys.get(req.suite)
        if own is None:
            raise UnsupportedDynamicCode("no settlement key in this suite")
        key = own[0]
        merchant = self._device(req.merchant_certificate, Role.MERCHANT, directory, now)
        plaintext = open_sealed(key.suite, key.private_bytes(), key.public_key.encode(),
                                SETTLEMENT_PURPOSE, req.ciphertext)
        forward = Forward.decode(plaintext)
        accepted = self._accepted[req.suite]
        if forward.server_ref not in accepted:
            raise DecryptFailed("sealed for another settlement certificate")
        if now > accepted[forward.server_ref]:
            raise DecryptFailed("sealed for a settlement certificate that has expired")
        forward.verify(merchant.verifying_key())
        content = PaymentContent.decode(forward.payment)
        if content.merchant_ref != certificate_ref(req.merchant_certificate) \
                or content.merchant_account != merchant.account:
            raise WrongMerchant("the payment was made for another merchant device")
        payer = self._device(content.payer_certificate, Role.MOBILE, directory, now)
        content.verify(payer.verifying_key())
        if content.payer_account != payer.account:
            raise DeviceCertificateRefused("the payer's certificate is for another account")
        _check_times(content.issued_at, content.expires_at, now, "payment code")
        policy = directory.policy(payer.device_id)
        if policy is None or content.verification is not policy:
            raise VerificationRefused("the platform's policy asks another verification of "
                                      "this payer's owner")
        if policy is Verification.FEATURES:
            if (content.features is None) == (forward.features is None):
                raise VerificationRefused("the owner's features: from exactly one sensor")
            if payer.binding is None:
                raise OwnerBindingMismatch("the payer's certificate binds no owner")
            features = content.features or forward.features or b""
            self._vault.match(payer.device_id, directory.template_record(payer.device_id),
                              payer.binding, features)
        elif forward.features is not None:
            raise VerificationRefused("features where the payer's unit verified the owner")
        return VerifiedPayment(content.payment_id(), content.payer_account, merchant.account,
                               content.amount_minor, content.currency, merchant.device_id,
                               payer.device_id, content.perturbation, content.expires_at,
                               content.verification, req.suite)

