"""Dynamic-code payments through the platform's real HTTP API, real SQLite ledger and device
registry, with codes rendered to PNG and read back as a camera would.

The three units are the project's own; the payer's and merchant's devices are enrolled the way
``blegw-platform device enroll`` does (one test runs that command). Fingerprint sensors are
simulated; no radio is involved (the gateways come in a later step). Each attack asserts the
typed refusal, that balances did not move, that the books balance, and that an honest payment
settles afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from blegw_platform.api import make_app
from blegw_platform.device_authority import DeviceAuthority
from blegw_platform.device_registry import DEVICES_FILE
from blegw_platform.dynamic_code_api import DYNAMIC_KEY
from blegw_platform.platform import Platform
from dynamic_code import (
    DeviceCertificateRefused,
    Finger,
    MerchantUnit,
    PayerUnit,
    Role,
    SimulatedSensor,
    Verification,
    issue_device_certificate,
    to_text,
)
from dynamic_code.certificates import DeviceCertificate, certificate_ref
from dynamic_code.encryption import SETTLEMENT_PURPOSE, seal
from dynamic_code.messages import (
    ConsumptionCode,
    Forward,
    PaymentContent,
    SettlementRequest,
)
from dynamic_code_image import png, read_png
from e2e.certificates import CertificateAuthority
from e2e.suites import PrivateKey, Suite, generate_private_key

pytestmark = pytest.mark.asyncio(loop_scope="module")

ACCOUNTS = {"alice": 1_000_000, "mallory": 1_000_000, "shop": 0, "bakery": 0, "poor": 10}


@dataclass
class Payer:
    key: PrivateKey
    certificate: bytes
    unit: PayerUnit
    finger: Finger
    sensor: SimulatedSensor
    mode: Verification

    @property
    def device_id(self) -> bytes:
        return DeviceCertificate.decode(self.certificate).device_id


@dataclass
class Rig:
    platform: Platform
    authority: DeviceAuthority
    http: ClientSession
    url: str
    keys: dict[str, str]
    merchants: dict[Suite, tuple[PrivateKey, MerchantUnit]]
    till_sensor: SimulatedSensor

    def payer(self, suite: Suite, mode: Verification, account: str = "alice") -> Payer:
        """A phone enrolled as ``device enroll --role mobile`` does."""
        finger, sensor = Finger.new(), SimulatedSensor()
        sensor.present(finger)
        key = generate_private_key(suite)
        template = sensor.enroll()
        cert = self.authority.enroll(
            Role.MOBILE, key.public_key, account, "phone", verification=mode,
            template=template if mode is Verification.FEATURES else None).encode()
        unit = PayerUnit(key, cert, self.platform.cas[suite].public_key,
                         template=template if mode is Verification.DEVICE else None)
        return Payer(key, cert, unit, finger, sensor, mode)

    def merchant(self, suite: Suite, account: str = "shop") -> tuple[PrivateKey, MerchantUnit]:
        key = generate_private_key(suite)
        cert = self.authority.enroll(Role.MERCHANT, key.public_key, account, "till").encode()
        return key, MerchantUnit(key, cert, self.platform.cas[suite].public_key)

    async def server_certificate(self, suite: Suite) -> bytes:
        async with self.http.get(f"{self.url}/v1/dynamic-codes/settlement-certificate/"
                                 f"{suite.label}") as resp:
            assert resp.status == 200
            return bytes.fromhex((await resp.json())["certificate"])

    async def settlement_request(self, suite: Suite, payer: Payer, amount: int, *,
                                 images: bool = False, till_sensor: bool = False,
                                 merchant: MerchantUnit | None = None) -> bytes:
        """The till exchange up to the merchant's unit's sealed request (seed steps 2-12)."""
        unit = merchant or self.merchants[suite][1]
        now = int(time.time())
        shown = unit.consumption_code(amount, "EUR", now=now)
        if images:  # the phone's camera reads the till's screen
            shown = read_png(png(shown))
        features = None if till_sensor and payer.mode is Verification.FEATURES \
            else payer.sensor.capture()
        code = payer.unit.pay(shown, now=now, verification=payer.mode, features=features)
        if images:  # the till's camera reads the phone's screen
            code = read_png(png(code))
        accepted = unit.accept(code, now=now)
        extra = None
        if accepted.needs_features:
            self.till_sensor.present(payer.finger)
            extra = self.till_sensor.capture()
        return unit.forward(accepted.handle, await self.server_certificate(suite), now=now,
                            features=extra)

    async def submit(self, request: bytes | str, terminal: str = "till"
                     ) -> tuple[int, dict[str, Any]]:
        text = request if isinstance(request, str) else to_text(request)
        async with self.http.post(f"{self.url}/v1/dynamic-codes", json={"request": text},
                                  headers={"Authorization": f"Bearer {self.keys[terminal]}"}
                                  ) as resp:
            return resp.status, await resp.json()

    async def balances(self) -> dict[str, int]:
        ledger = self.platform.ledger
        return {a: await ledger.run(ledger.balance, a) for a in ACCOUNTS}

    async def honest_payment_settles(self, suite: Suite = Suite.P256_SHA256,
                                     payer: Payer | None = None) -> None:
        payer = payer or self.payer(suite, Verification.FEATURES)
        before = await self.balances()
        status, body = await self.submit(await self.settlement_request(suite, payer, 77))
        assert (status, body.get("state")) == (201, "settled"), body
        after = await self.balances()
        assert after[body["payer"]] == before[body["payer"]] - 77
        assert after["shop"] == before["shop"] + 77
        assert await self.platform.ledger.run(self.platform.ledger.audit) == []

    async def refused(self, expected: tuple[int, str], status: int, body: dict[str, Any],
                      before: dict[str, int]) -> None:
        assert (status, body.get("error")) == expected, body
        assert await self.balances() == before
        assert await self.platform.ledger.run(self.platform.ledger.audit) == []
        await self.honest_payment_settles()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    platform = Platform(tmp_path_factory.mktemp("dynamic") / "platform")
    ledger = platform.ledger
    for account, balance in ACCOUNTS.items():
        await ledger.run(ledger.add_account, account, "EUR", balance)
    keys = {"till": await platform.add_terminal("till", ["shop"]),
            "bakery-till": await platform.add_terminal("bakery-till", ["bakery"])}
    app = make_app(platform)
    server = TestServer(app)
    await server.start_server()
    authority = app[DYNAMIC_KEY].authority
    try:
        async with ClientSession() as http:
            rig = Rig(platform, authority, http, str(server.make_url("")).rstrip("/"), keys,
                      {}, SimulatedSensor())
            rig.merchants = {suite: rig.merchant(suite) for suite in Suite}
            yield rig
    finally:
        await server.close()
        await platform.aclose()


# -- the honest exchange --------------------------------------------------------------------------
@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.label)
@pytest.mark.parametrize("mode", list(Verification), ids=lambda m: m.name.lower())
async def test_till_exchange_settles_once_through_png_codes(rig: Rig, suite: Suite,
                                                            mode: Verification) -> None:
    payer = rig.payer(suite, mode)
    before = await rig.balances()
    request = await rig.settlement_request(suite, payer, 1250, images=True)
    status, body = await rig.submit(request)
    assert (status, body["state"], body["payer"], body["payee"], body["amount_minor"]) == \
        (201, "settled", "alice", "shop", 1250), body
    # a retry of the same bytes (the answer was lost) returns the same transaction
    again_status, again = await rig.submit(request)
    assert (again_status, again["id"]) == (200, body["id"])
    after = await rig.balances()
    assert (after["alice"], after["shop"]) == (before["alice"] - 1250, before["shop"] + 1250)
    assert await rig.platform.ledger.run(rig.platform.ledger.audit) == []


async def test_finger_captured_at_the_till_settles(rig: Rig) -> None:
    payer = rig.payer(Suite.SM2_SM3, Verification.FEATURES)
    status, body = await rig.submit(await rig.settlement_request(Suite.SM2_SM3, payer, 300,
                                                                 till_sensor=True))
    assert (status, body["state"]) == (201, "settled"), body


async def test_concurrent_submissions_of_one_request_settle_once(rig: Rig) -> None:
    payer = rig.payer(Suite.P256_SHA256, Verification.DEVICE)
    request = await rig.settlement_request(Suite.P256_SHA256, payer, 500)
    before = await rig.balances()
    results = await asyncio.gather(*(rig.submit(request) for _ in range(4)))
    assert sorted(status for status, _ in results) == [200, 200, 200, 201]
    assert len({body["id"] for _, body in results}) == 1
    assert (await rig.balances())["alice"] == before["alice"] - 500


# -- attacks --------------------------------------------------------------------------------------
async def test_settlement_request_replayed_by_another_terminal_is_refused(rig: Rig) -> None:
    payer = rig.payer(Suite.P256_SHA256, Verification.FEATURES)
    request = await rig.settlement_request(Suite.P256_SHA256, payer, 900)
    assert (await rig.submit(request))[0] == 201
    before = await rig.balances()
    status, body = await rig.submit(request, "bakery-till")
    await rig.refused((403, "payee_not_allowed"), status, body, before)


async def test_consumption_code_replayed_through_a_cloned_merchant_unit(rig: Rig) -> None:
    """A merchant unit restored from a backup (or cloned) issues a perturbation code again
    and accepts a second payment for it: the platform pays each perturbation code of a merchant
    device once."""
    suite = Suite.P256_SHA256
    key, unit = rig.merchants[suite]
    fixed = secrets.token_bytes(16)
    clone_a = MerchantUnit(key, unit.certificate, rig.platform.cas[suite].public_key,
                           rng=lambda n: fixed)
    clone_b = MerchantUnit(key, unit.certificate, rig.platform.cas[suite].public_key,
                           rng=lambda n: fixed)
    payer = rig.payer(suite, Verification.DEVICE)
    first = await rig.settlement_request(suite, payer, 120, merchant=clone_a)
    assert (await rig.submit(first))[0] == 201
    before = await rig.balances()
    second = await rig.settlement_request(suite, payer, 121, merchant=clone_b)
    status, body = await rig.submit(second)
    await rig.refused((409, "stale_perturbation"), status, body, before)


async def test_merchant_certificate_not_from_the_ca_is_refused(rig: Rig) -> None:
    suite = Suite.SM2_SM3
    rogue_ca = CertificateAuthority.generate(suite)
    key = generate_private_key(suite)
    now = int(time.time())
    cert = issue_device_certificate(rogue_ca, key.public_key, Role.MERCHANT,
                                    device_id=secrets.token_bytes(16), device_info="till",
                                    account="shop", not_before=now - 60,
                                    not_after=now + 600).encode()
    rogue = MerchantUnit(key, cert, rogue_ca.public_key)
    payer = rig.payer(suite, Verification.FEATURES)
    shown = rogue.consumption_code(700, "EUR", now=now)
    with pytest.raises(DeviceCertificateRefused, match="another CA"):  # the phone refuses
        payer.unit.read(shown, now=now)
    # a rogue till that forwards a real payment under its own certificate
    honest = await rig.settlement_request(suite, payer, 700)
    request = SettlementRequest.decode(honest)
    before = await rig.balances()
    status, body = await rig.submit(dataclasses.replace(request,
                                                        merchant_certificate=cert).encode())
    await rig.refused((403, "device_certificate_refused"), status, body, before)


async def test_revoked_merchant_device_is_refused(rig: Rig) -> None:
    suite = Suite.P256_SHA256
    _key, unit = rig.merchant(suite)
    payer = rig.payer(suite, Verification.DEVICE)
    request = await rig.settlement_request(suite, payer, 400, merchant=unit)
    assert rig.authority.revoke(DeviceCertificate.decode(unit.certificate).device_id)
    before = await rig.balances()
    status, body = await rig.submit(request)
    await rig.refused((403, "device_revoked"), status, body, before)


async def test_revoked_mobile_device_is_refused(rig: Rig) -> None:
    payer = rig.payer(Suite.SM2_SM3, Verification.FEATURES)
    request = await rig.settlement_request(Suite.SM2_SM3, payer, 400)
    assert rig.authority.revoke(payer.device_id)
    before = await rig.balances()
    status, body = await rig.submit(request)
    await rig.refused((403, "device_revoked"), status, body, before)


async def test_payment_made_for_another_merchant_is_refused(rig: Rig) -> None:
    """The bakery's till forwards, under its own certificate and key, a payment the payer made
    for the shop's till (the bakery got the decrypted content from a colluding shop unit)."""
    suite = Suite.P256_SHA256
    bakery_key, bakery = rig.merchant(suite, "bakery")
    _shop_key, shop = rig.merchants[suite]
    payer = rig.payer(suite, Verification.DEVICE)
    now = int(time.time())
    shown = ConsumptionCode.decode(shop.consumption_code(650, "EUR", now=now))
    content = PaymentContent(certificate_ref(shop.certificate), "shop", 650, "EUR",
                             shown.perturbation, "alice", payer.certificate,
                             Verification.DEVICE, None, now, now + 60).sign(payer.key)
    server = await rig.server_certificate(suite)
    forward = Forward(content.encode(), None, certificate_ref(server)).sign(bakery_key)
    sealed = seal(DeviceCertificate.decode(server).verifying_key(), SETTLEMENT_PURPOSE,
                  forward.encode())
    before = await rig.balances()
    status, body = await rig.submit(SettlementRequest(suite, bakery.certificate,
                                                      sealed).encode(), "bakery-till")
    await rig.refused((422, "wrong_merchant"), status, body, before)


async def test_non_matching_fingerprint_is_refused(rig: Rig) -> None:
    payer = rig.payer(Suite.SM2_SM3, Verification.FEATURES)
    payer.sensor.present(Finger.new())
    request = await rig.settlement_request(Suite.SM2_SM3, payer, 800)
    before = await rig.balances()
    status, body = await rig.submit(request)
    await rig.refused((422, "fingerprint_mismatch"), status, body, before)
    payer.sensor.present(payer.finger)
    await rig.honest_payment_settles(Suite.SM2_SM3, payer)


async def test_mobile_certificate_whose_owner_binding_does_not_match_the_finger(rig: Rig
                                                                                ) -> None:
    """Mallory enrolls her own phone, then copies her sealed template over Alice's in the
    device register (an insider with the database): her finger on Alice's phone now matches
    the stored template, but the template no longer opens the binding in Alice's
    certificate."""
    suite = Suite.P256_SHA256
    alice = rig.payer(suite, Verification.FEATURES)
    mallory = rig.payer(suite, Verification.FEATURES, "mallory")
    db = sqlite3.connect(rig.platform.state_dir / DEVICES_FILE, isolation_level=None)
    try:
        saved = db.execute("SELECT sealed FROM owner_templates WHERE device_id=?",
                           (alice.device_id,)).fetchone()[0]
        db.execute("UPDATE owner_templates SET sealed=(SELECT sealed FROM owner_templates "
                   "WHERE device_id=?) WHERE device_id=?", (mallory.device_id, alice.device_id))
        alice.sensor.present(mallory.finger)
        before = await rig.balances()
        status, body = await rig.submit(await rig.settlement_request(suite, alice, 500))
        await rig.refused((422, "owner_binding_mismatch"), status, body, before)
        db.execute("UPDATE owner_templates SET sealed=? WHERE device_id=?",
                   (saved, alice.device_id))
    finally:
        db.close()
    before = await rig.balances()  # and Mallory's finger against Alice's real template
    status, body = await rig.submit(await rig.settlement_request(suite, alice, 500))
    await rig.refused((422, "fingerprint_mismatch"), status, body, before)
    alice.sensor.present(alice.finger)
    await rig.honest_payment_settles(suite, alice)


async def test_policy_refuses_a_self_attested_finger(rig: Rig) -> None:
    """A payer the policy puts on the platform's matching sends its unit's attestation."""
    suite = Suite.SM2_SM3
    payer = rig.payer(suite, Verification.FEATURES)
    payer.unit = PayerUnit(payer.key, payer.certificate, rig.platform.cas[suite].public_key,
                           template=payer.sensor.enroll())
    payer.mode = Verification.DEVICE
    request = await rig.settlement_request(suite, payer, 500)
    before = await rig.balances()
    status, body = await rig.submit(request)
    await rig.refused((422, "verification_refused"), status, body, before)


@pytest.mark.parametrize("where", ["forward", "ciphertext"])
async def test_altered_amount_on_the_way_to_the_platform_is_refused(rig: Rig, where: str
                                                                    ) -> None:
    suite = Suite.P256_SHA256
    shop_key, shop = rig.merchants[suite]
    payer = rig.payer(suite, Verification.DEVICE)
    if where == "forward":  # the merchant's side raises the amount the payer signed
        now = int(time.time())
        shown = ConsumptionCode.decode(shop.consumption_code(100, "EUR", now=now))
        content = PaymentContent(certificate_ref(shop.certificate), "shop", 100, "EUR",
                                 shown.perturbation, "alice", payer.certificate,
                                 Verification.DEVICE, None, now, now + 60).sign(payer.key)
        inflated = dataclasses.replace(content, amount_minor=100_000)
        server = await rig.server_certificate(suite)
        forward = Forward(inflated.encode(), None, certificate_ref(server)).sign(shop_key)
        request = SettlementRequest(suite, shop.certificate, seal(
            DeviceCertificate.decode(server).verifying_key(), SETTLEMENT_PURPOSE,
            forward.encode())).encode()
        expected = (422, "bad_signature")
    else:  # bytes of the sealed request flipped on the network
        raw = SettlementRequest.decode(await rig.settlement_request(suite, payer, 100))
        flipped = bytearray(raw.ciphertext)
        flipped[-3] ^= 0x40
        request = dataclasses.replace(raw, ciphertext=bytes(flipped)).encode()
        expected = (422, "decrypt_failed")
    before = await rig.balances()
    status, body = await rig.submit(request)
    await rig.refused(expected, status, body, before)


async def test_payment_the_payer_cannot_afford_records_nothing(rig: Rig) -> None:
    payer = rig.payer(Suite.P256_SHA256, Verification.DEVICE, "poor")
    request = await rig.settlement_request(Suite.P256_SHA256, payer, 1000)
    before = await rig.balances()
    status, body = await rig.submit(request)
    await rig.refused((422, "insufficient_funds"), status, body, before)


@pytest.mark.parametrize("text", ["", "BDC1:", "BDC1:A", "BGC1:AAAA", "BDC1:" + "Z" * 5000,
                                  "BDC1:" + to_text(b"\xa0")[5:]])
async def test_hostile_requests_get_typed_errors(rig: Rig, text: str) -> None:
    before = await rig.balances()
    status, body = await rig.submit(text)
    assert status == 400 and body["error"] in ("malformed_dynamic_code",
                                               "unsupported_dynamic_code"), body
    assert await rig.balances() == before


async def test_enrollment_that_does_not_fit_the_role_is_refused(rig: Rig) -> None:
    key = generate_private_key(Suite.P256_SHA256)
    with pytest.raises(ValueError, match="no owner finger"):
        rig.authority.enroll(Role.MERCHANT, key.public_key, "shop", "till",
                             verification=Verification.FEATURES, template=bytes(32))
    with pytest.raises(ValueError, match="unknown account"):
        rig.authority.enroll(Role.MOBILE, key.public_key, "nobody", "phone",
                             verification=Verification.DEVICE)
