"""The till exchange through the three units, in both suites and both fingerprint modes, and
every attack of issue 17 at the core level: each a typed refusal, then the honest path.

The fingerprint sensors are simulated (no hardware); everything else is the project's code.
"""

from __future__ import annotations

import dataclasses

import pytest

from dynamic_code import (
    AmountMismatch,
    BadDynamicSignature,
    DecryptFailed,
    DeviceCertificateRefused,
    DeviceRevoked,
    Finger,
    FingerprintMismatch,
    OwnerBindingMismatch,
    PerturbationMismatch,
    Role,
    StalePerturbation,
    Verification,
    VerificationRefused,
    VerifiedPayment,
    WrongMerchant,
)
from dynamic_code.certificates import DeviceCertificate, certificate_ref
from dynamic_code.encryption import PAYMENT_PURPOSE, SETTLEMENT_PURPOSE, open_sealed, seal
from dynamic_code.messages import (
    ConsumptionCode,
    Forward,
    PaymentCode,
    PaymentContent,
    SettlementRequest,
)
from dynamic_code.units import MerchantUnit
from e2e.certificates import CertificateAuthority
from e2e.suites import PublicKey, Suite, generate_private_key

from .world import Payer, World, device_id

MODES = [Verification.FEATURES, Verification.DEVICE]


@pytest.fixture(scope="module", params=list(Suite), ids=lambda s: s.label)
def world(request: pytest.FixtureRequest) -> World:
    return World(request.param)


def till(world: World, payer: Payer, amount: int = 1250, *, mobile_sensor: bool = True,
         merchant: MerchantUnit | None = None) -> VerifiedPayment:
    """The honest exchange of seed steps 2-14."""
    merchant = merchant or world.merchant
    now = world.now
    shown = merchant.consumption_code(amount, "EUR", now=now)
    offer = payer.unit.read(shown, now=now)
    assert (offer.merchant_account, offer.amount_minor) == ("shop", amount)
    mode = world.directory.policies[device_id(payer.certificate)]
    features = payer.sensor.capture() if mobile_sensor or mode is Verification.DEVICE else None
    code = payer.unit.pay(shown, now=now, verification=mode, features=features)
    accepted = merchant.accept(code, now=now)
    extra = None
    if accepted.needs_features:
        world.merchant_sensor.present(payer.finger)
        extra = world.merchant_sensor.capture()
    request = merchant.forward(accepted.handle, world.server_cert, now=now, features=extra)
    return world.server.open(request, now=now, directory=world.directory)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name.lower())
@pytest.mark.parametrize("mobile_sensor", [True, False], ids=["mobile-sensor", "till-sensor"])
def test_till_exchange_settles_in_both_modes(world: World, mode: Verification,
                                             mobile_sensor: bool) -> None:
    payer = world.payer("alice", mode)
    paid = till(world, payer, 1250, mobile_sensor=mobile_sensor)
    assert (paid.payer, paid.payee, paid.amount_minor, paid.currency) == ("alice", "shop",
                                                                          1250, "EUR")
    assert paid.verification is mode
    assert paid.payer_device == device_id(payer.certificate)


def test_consumption_code_replayed_is_a_stale_perturbation(world: World) -> None:
    payer = world.payer("alice", Verification.DEVICE)
    shown = world.merchant.consumption_code(500, "EUR", now=world.now)
    first = payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                           features=payer.sensor.capture())
    world.merchant.accept(first, now=world.now)
    again = payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                           features=payer.sensor.capture())
    with pytest.raises(StalePerturbation):
        world.merchant.accept(again, now=world.now)
    with pytest.raises(StalePerturbation):  # the very same payment code shown twice
        world.merchant.accept(first, now=world.now)
    assert till(world, payer).amount_minor == 1250


def test_expired_consumption_code_is_stale(world: World) -> None:
    payer = world.payer("alice", Verification.DEVICE)
    shown = world.merchant.consumption_code(500, "EUR", now=world.now - 200, lifetime=120)
    code = payer.unit.pay(shown, now=world.now - 150, verification=Verification.DEVICE,
                          features=payer.sensor.capture())
    with pytest.raises(StalePerturbation):
        world.merchant.accept(code, now=world.now)
    assert till(world, payer).amount_minor == 1250


def test_perturbation_code_that_does_not_match_is_refused(world: World) -> None:
    """A payer's device (or a forger holding the merchant's certificate) makes the consumption
    code itself, with a perturbation code of its choosing: the merchant's unit never issued
    it."""
    payer = world.payer("alice", Verification.DEVICE)
    shown = ConsumptionCode.decode(world.merchant.consumption_code(700, "EUR", now=world.now))
    forged = dataclasses.replace(shown, perturbation=bytes(16)).sign(world.merchant_key)
    code = payer.unit.pay(forged.encode(), now=world.now, verification=Verification.DEVICE,
                          features=payer.sensor.capture())
    with pytest.raises(PerturbationMismatch):
        world.merchant.accept(code, now=world.now)
    assert till(world, payer).amount_minor == 1250


def test_merchant_certificate_not_from_the_ca_is_refused_by_the_payer(world: World) -> None:
    rogue_ca = CertificateAuthority.generate(world.suite)
    key = generate_private_key(world.suite)
    cert = world.issue(key, Role.MERCHANT, "till 1", "shop", ca=rogue_ca)
    rogue = MerchantUnit(key, cert, rogue_ca.public_key)
    payer = world.payer("alice", Verification.DEVICE)
    shown = rogue.consumption_code(900, "EUR", now=world.now)
    with pytest.raises(DeviceCertificateRefused):
        payer.unit.read(shown, now=world.now)
    with pytest.raises(DeviceCertificateRefused):
        payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                       features=payer.sensor.capture())
    assert till(world, payer).amount_minor == 1250


def test_mobile_certificate_as_merchant_is_refused(world: World) -> None:
    """A genuine CA certificate of the wrong role: a payer's phone posing as a till."""
    payer = world.payer("mallory", Verification.DEVICE)
    with pytest.raises(DeviceCertificateRefused):
        MerchantUnit(payer.key, payer.certificate, world.ca.public_key)
    shown = ConsumptionCode(payer.certificate, 100, "EUR", bytes(16), world.now,
                            world.now + 60).sign(payer.key).encode()
    victim = world.payer("alice", Verification.DEVICE)
    with pytest.raises(DeviceCertificateRefused):
        victim.unit.read(shown, now=world.now)


def test_revoked_merchant_is_refused_at_settlement(world: World) -> None:
    key = generate_private_key(world.suite)
    cert = world.issue(key, Role.MERCHANT, "till 9", "shop")
    merchant = MerchantUnit(key, cert, world.ca.public_key)
    payer = world.payer("alice", Verification.DEVICE)
    world.directory.active.pop(device_id(cert))
    with pytest.raises(DeviceRevoked):
        till(world, payer, merchant=merchant)
    assert till(world, payer).amount_minor == 1250


def test_revoked_payer_is_refused_at_settlement(world: World) -> None:
    payer = world.payer("alice", Verification.FEATURES)
    world.directory.active.pop(device_id(payer.certificate))
    with pytest.raises(DeviceRevoked):
        till(world, payer)
    assert till(world, world.payer("alice", Verification.FEATURES)).amount_minor == 1250


def test_payment_code_made_for_another_merchant_is_refused(world: World) -> None:
    """A payment code shown at till A is photographed and presented at till B (whose unit can
    decrypt nothing made for A), and A re-encrypting A's payment to B is refused too."""
    key = generate_private_key(world.suite)
    other = MerchantUnit(key, world.issue(key, Role.MERCHANT, "till 2", "shop"),
                         world.ca.public_key)
    payer = world.payer("alice", Verification.DEVICE)
    shown = world.merchant.consumption_code(400, "EUR", now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                          features=payer.sensor.capture())
    other.consumption_code(400, "EUR", now=world.now)
    with pytest.raises(DecryptFailed):
        other.accept(code, now=world.now)
    # A's content re-sealed to B's key (the test opens it with A's key): B sees it names A
    plain = open_sealed(world.suite, world.merchant_key.private_bytes(),
                        world.merchant_key.public_key.encode(), PAYMENT_PURPOSE,
                        PaymentCode.decode(code).ciphertext)
    resealed = PaymentCode(world.suite, seal(key.public_key, PAYMENT_PURPOSE, plain)).encode()
    with pytest.raises(WrongMerchant):
        other.accept(resealed, now=world.now)
    assert till(world, payer).amount_minor == 1250


def test_forward_by_another_merchant_is_refused_at_settlement(world: World) -> None:
    """Merchant B forwards a payment made for merchant A under B's own certificate."""
    key = generate_private_key(world.suite)
    other_cert = world.issue(key, Role.MERCHANT, "till 3", "shop")
    payer = world.payer("alice", Verification.DEVICE)
    shown = world.merchant.consumption_code(300, "EUR", now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                          features=payer.sensor.capture())
    accepted = world.merchant.accept(code, now=world.now)
    request = SettlementRequest.decode(world.merchant.forward(accepted.handle,
                                                              world.server_cert, now=world.now))
    swapped = dataclasses.replace(request, merchant_certificate=other_cert).encode()
    with pytest.raises(BadDynamicSignature):  # A's signature under B's key
        world.server.open(swapped, now=world.now, directory=world.directory)
    assert till(world, payer).amount_minor == 1250


def test_non_matching_fingerprint_is_refused(world: World) -> None:
    mallory = Finger.new()
    for mode in MODES:
        payer = world.payer("alice", mode)
        shown = world.merchant.consumption_code(800, "EUR", now=world.now)
        payer.sensor.present(mallory)
        if mode is Verification.DEVICE:  # refused inside the payer's unit: no code at all
            with pytest.raises(FingerprintMismatch):
                payer.unit.pay(shown, now=world.now, verification=mode,
                               features=payer.sensor.capture())
        else:  # the seed's way: refused at the server
            code = payer.unit.pay(shown, now=world.now, verification=mode,
                                  features=payer.sensor.capture())
            accepted = world.merchant.accept(code, now=world.now)
            request = world.merchant.forward(accepted.handle, world.server_cert, now=world.now)
            with pytest.raises(FingerprintMismatch):
                world.server.open(request, now=world.now, directory=world.directory)
        payer.sensor.present(payer.finger)
        assert till(world, payer).amount_minor == 1250


def test_finger_at_the_till_that_is_not_the_owners_is_refused(world: World) -> None:
    payer = world.payer("alice", Verification.FEATURES)
    shown = world.merchant.consumption_code(800, "EUR", now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=Verification.FEATURES)
    accepted = world.merchant.accept(code, now=world.now)
    assert accepted.needs_features
    world.merchant_sensor.present(Finger.new())
    request = world.merchant.forward(accepted.handle, world.server_cert, now=world.now,
                                     features=world.merchant_sensor.capture())
    with pytest.raises(FingerprintMismatch):
        world.server.open(request, now=world.now, directory=world.directory)
    assert till(world, payer, mobile_sensor=False).amount_minor == 1250


def test_mobile_certificate_whose_owner_binding_does_not_match_the_finger(world: World
                                                                          ) -> None:
    """Mallory holds Alice's phone and presents her own finger, which is enrolled (for her own
    phone): the server matches against the template Alice's certificate binds, not any. And a
    template swapped in the store (Mallory's record under Alice's device) no longer opens the
    binding in Alice's certificate."""
    alice = world.payer("alice", Verification.FEATURES)
    mallory = world.payer("mallory", Verification.FEATURES)
    alice.sensor.present(mallory.finger)
    with pytest.raises(FingerprintMismatch):
        till(world, alice)
    alice_id, mallory_id = device_id(alice.certificate), device_id(mallory.certificate)
    saved = world.directory.templates[alice_id]
    _, swapped = world.vault.seal(alice_id, mallory.sensor.enroll())
    world.directory.templates[alice_id] = swapped
    with pytest.raises(OwnerBindingMismatch):
        till(world, alice)
    world.directory.templates[alice_id] = world.directory.templates[mallory_id]
    with pytest.raises(OwnerBindingMismatch):  # a record sealed for another device
        till(world, alice)
    world.directory.templates[alice_id] = saved
    alice.sensor.present(alice.finger)
    assert till(world, alice).payer == "alice"


def test_policy_picks_the_mode_per_payer(world: World) -> None:
    """A payer the policy puts on server-side matching cannot skip it by claiming its unit
    verified the finger (and the other way round)."""
    payer = world.payer("alice", Verification.FEATURES)
    shown = world.merchant.consumption_code(600, "EUR", now=world.now)
    content = PaymentContent(certificate_ref(world.merchant_cert), "shop", 600, "EUR",
                             ConsumptionCode.decode(shown).perturbation, "alice",
                             payer.certificate, Verification.DEVICE, None, world.now,
                             world.now + 60).sign(payer.key)  # a match never made
    code = PaymentCode(world.suite, seal(world.merchant_key.public_key, PAYMENT_PURPOSE,
                                         content.encode())).encode()
    accepted = world.merchant.accept(code, now=world.now)
    request = world.merchant.forward(accepted.handle, world.server_cert, now=world.now)
    with pytest.raises(VerificationRefused):
        world.server.open(request, now=world.now, directory=world.directory)
    assert till(world, payer).amount_minor == 1250


@pytest.mark.parametrize("where", ["consumption", "payment", "forward", "ciphertext"])
def test_altered_amount_anywhere_on_the_way_is_refused(world: World, where: str) -> None:
    payer = world.payer("alice", Verification.DEVICE)
    shown = world.merchant.consumption_code(1000, "EUR", now=world.now)
    features = payer.sensor.capture()
    if where == "consumption":  # the screen shows (or the QR carries) another amount
        altered = dataclasses.replace(ConsumptionCode.decode(shown), amount_minor=10)
        with pytest.raises(BadDynamicSignature):
            payer.unit.pay(altered.encode(), now=world.now, verification=Verification.DEVICE,
                           features=features)
    elif where == "payment":  # the payer's device signs a smaller amount than asked
        content = PaymentContent(certificate_ref(world.merchant_cert), "shop", 10, "EUR",
                                 ConsumptionCode.decode(shown).perturbation, "alice",
                                 payer.certificate, Verification.DEVICE, None, world.now,
                                 world.now + 60).sign(payer.key)
        code = PaymentCode(world.suite, seal(world.merchant_key.public_key, PAYMENT_PURPOSE,
                                             content.encode())).encode()
        with pytest.raises(AmountMismatch):
            world.merchant.accept(code, now=world.now)
    elif where == "forward":  # the merchant's side re-signs the payer's content with more
        code = payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                              features=features)
        world.merchant.accept(code, now=world.now)
        content = PaymentContent(certificate_ref(world.merchant_cert), "shop", 1000, "EUR",
                                 ConsumptionCode.decode(shown).perturbation, "alice",
                                 payer.certificate, Verification.DEVICE, None, world.now,
                                 world.now + 60).sign(payer.key)
        inflated = dataclasses.replace(content, amount_minor=99_000)
        forward = Forward(inflated.encode(), None, certificate_ref(world.server_cert)
                          ).sign(world.merchant_key)
        request = SettlementRequest(world.suite, world.merchant_cert,
                                    seal(server_public(world), SETTLEMENT_PURPOSE,
                                         forward.encode())).encode()
        with pytest.raises(BadDynamicSignature):
            world.server.open(request, now=world.now, directory=world.directory)
    else:  # bytes of the sealed payment code flipped on the screen
        code = PaymentCode.decode(payer.unit.pay(shown, now=world.now,
                                                 verification=Verification.DEVICE,
                                                 features=features))
        flipped = bytearray(code.ciphertext)
        flipped[-20] ^= 1
        with pytest.raises(DecryptFailed):
            world.merchant.accept(PaymentCode(world.suite, bytes(flipped)).encode(),
                                  now=world.now)
    assert till(world, payer).amount_minor == 1250


def server_public(world: World) -> PublicKey:
    return DeviceCertificate.decode(world.server_cert).verifying_key()


def test_units_offer_operations_only(world: World) -> None:
    """Keys, perturbation codes and decrypted payments stay inside: a unit's public surface is
    its operations (and its own certificate), nothing that returns a secret."""
    payer = world.payer("alice", Verification.DEVICE)
    surfaces = {
        "merchant": (world.merchant, {"accept", "certificate", "consumption_code", "forward"}),
        "payer": (payer.unit, {"pay", "read"}),
        "server": (world.server, {"certificate", "open", "renew"}),
    }
    for name, (unit, operations) in surfaces.items():
        public = {attr for attr in dir(unit) if not attr.startswith("_")}
        assert public == operations, name


def test_forged_payment_code_does_not_spend_the_perturbation_code(world: World) -> None:
    """Someone who sees the till's screen seals a payment code to the till's public key with a
    certificate it copied and a signature it cannot make: the till's unit refuses it and the
    honest payer still pays with the same consumption code."""
    payer = world.payer("alice", Verification.DEVICE)
    shown = world.merchant.consumption_code(250, "EUR", now=world.now)
    forger = generate_private_key(world.suite)
    content = PaymentContent(certificate_ref(world.merchant_cert), "shop", 250, "EUR",
                             ConsumptionCode.decode(shown).perturbation, "alice",
                             payer.certificate, Verification.DEVICE, None, world.now,
                             world.now + 60).sign(forger)
    forged = PaymentCode(world.suite, seal(world.merchant_key.public_key, PAYMENT_PURPOSE,
                                           content.encode())).encode()
    with pytest.raises(BadDynamicSignature):
        world.merchant.accept(forged, now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=Verification.DEVICE,
                          features=payer.sensor.capture())
    assert world.merchant.accept(code, now=world.now).amount_minor == 250
