"""The settlement server's certificate is the one merchants hold: kept across restarts,
renewed ahead of its end, and a request sealed to the earlier one still opens while it is valid.

Real parts: the platform's state directory with its CA and settlement keys on disk, a real
SQLite ledger and device register; the merchant's and payer's units are the project's own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from blegw_platform.device_authority import RENEW_DAYS, DeviceAuthority
from blegw_platform.platform import Platform
from dynamic_code import DecryptFailed, MerchantUnit, PayerUnit, Role, Verification
from dynamic_code.certificates import DeviceCertificate, issue_device_certificate
from e2e.suites import Suite, generate_private_key

SUITE = Suite.P256_SHA256


def _sealed_for(authority: DeviceAuthority, platform: Platform, server_cert: bytes,
                amount: int, now: int) -> bytes:
    """A merchant unit's settlement request, sealed to ``server_cert`` (the copy it holds)."""
    ca = platform.cas[SUITE].public_key
    mk, pk = generate_private_key(SUITE), generate_private_key(SUITE)
    merchant = MerchantUnit(mk, authority.enroll(Role.MERCHANT, mk.public_key, "shop",
                                                 "till").encode(), ca)
    payer = PayerUnit(pk, authority.enroll(Role.MOBILE, pk.public_key, "payer", "phone",
                                           verification=Verification.DEVICE).encode(), ca,
                      template=bytes(32))
    offer = merchant.consumption_code(amount, "EUR", now=now)
    accepted = merchant.accept(payer.pay(offer, now=now, verification=Verification.DEVICE,
                                         features=bytes(32)), now=now)
    return merchant.forward(accepted.handle, server_cert, now=now)


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    p = Platform(tmp_path / "platform")
    p.ledger.add_account("payer", "EUR", 10_000)
    p.ledger.add_account("shop", "EUR", 0)
    return p


def test_the_exported_certificate_is_the_one_a_restarted_server_opens(
        platform: Platform) -> None:
    """Every start once issued a new certificate: the copy exported with `device
    settlement-cert` (or fetched before a restart) was refused, 'sealed for another settlement
    certificate', and every merchant's sale failed until it fetched again."""
    now = int(time.time())
    cli = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    exported = cli.unit.certificate(SUITE)
    request = _sealed_for(cli, platform, exported, 500, now)
    cli.close()
    server = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    try:
        assert server.certificate(SUITE, now) == exported
        paid = server.open(request, now)
        assert (paid.amount_minor, paid.payer, paid.payee) == (500, "payer", "shop")
    finally:
        server.close()
        platform.close()


def test_an_ending_certificate_is_renewed_and_the_earlier_one_opens_until_it_ends(
        platform: Platform) -> None:
    first = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    held = first.unit.certificate(SUITE)
    ends = DeviceCertificate.decode(held).not_after
    # a server that kept running until RENEW_DAYS before the end renews on the next call; a
    # merchant made a sale just before with the copy it held
    later = ends - RENEW_DAYS * 86400
    request = _sealed_for(first, platform, held, 700, later - 5)
    served = first.certificate(SUITE, later)
    assert served != held and DeviceCertificate.decode(served).not_after > ends
    assert first.open(request, later).amount_minor == 700      # the merchant's copy still opens
    with pytest.raises(DecryptFailed, match="expired"):
        first.unit.open(request, now=ends + 1, directory=first.registry)
    assert (platform.state_dir / f"settlement-{SUITE.label}.cbor").read_bytes() == served
    first.close()
    platform.close()


def test_a_kept_certificate_for_another_key_or_ca_is_replaced_not_served(
        platform: Platform) -> None:
    """A settlement-*.cbor planted in the state directory (another key, another CA) is never
    served: merchants would seal to a key the server does not hold, or trust a forgery."""
    now = int(time.time())
    stranger = generate_private_key(SUITE)
    planted = issue_device_certificate(
        platform.cas[SUITE], stranger.public_key, Role.SETTLEMENT, device_id=bytes(16),
        device_info="settlement server", account="", not_before=now - 300,
        not_after=now + 30 * 86400).encode()
    path = platform.state_dir / f"settlement-{SUITE.label}.cbor"
    path.write_bytes(planted)
    authority = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    try:
        served = authority.certificate(SUITE, now)
        assert served != planted and path.read_bytes() == served
        assert DeviceCertificate.decode(served).public_key != stranger.public_key.encode()
        assert authority.open(_sealed_for(authority, platform, served, 300, now),
                              now).amount_minor == 300
    finally:
        authority.close()
        platform.close()
