"""Payment modes (on both ledger databases) and the platform's channel keys (real files)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from blegw_platform.channel_keys import (
    ChannelKeyError,
    load_channel_credentials,
    provision_channel_keys,
)
from blegw_platform.ledger import Ledger
from blegw_platform.payment_modes import (
    PaymentMode,
    PaymentModeError,
    PaymentModes,
    required_verification,
    satisfies,
)
from blegw_platform.platform import Platform
from e2e import Suite, UserVerification
from e2e.suites import generate_private_key
from private_files import write_atomic
from secure_channel import USAGE_CHANNEL

UV = UserVerification


def test_required_verification_by_amount() -> None:
    mode = PaymentMode(no_verification_up_to=500, fingerprint_from=10_000)
    assert [required_verification(mode, a) for a in (1, 500, 501, 9_999, 10_000, 10**12)] == \
        [UV.NONE, UV.NONE, UV.PIN, UV.PIN, UV.FINGERPRINT, UV.FINGERPRINT]
    assert required_verification(PaymentMode(), 1) is UV.PIN      # nothing set: the PIN


def test_weaker_verification_never_satisfies() -> None:
    order = [UV.NONE, UV.PRESENCE, UV.PIN, UV.FINGERPRINT]
    for i, required in enumerate(order):
        for j, done in enumerate(order):
            assert satisfies(done, required) == (j >= i), (done, required)


async def test_modes_are_stored_and_checked(ledger_at: Path | str) -> None:
    ledger = Ledger(ledger_at)
    modes = PaymentModes(ledger)
    try:
        await modes.set("alice", PaymentMode(100, 5000))
        assert await modes.get("alice") == PaymentMode(100, 5000)
        assert await modes.required("alice", 100) is UV.NONE
        assert await modes.required("bob", 100) is UV.PIN
        for bad in (PaymentMode(-1), PaymentMode(100, 100), PaymentMode(100, 0)):
            with pytest.raises(PaymentModeError):
                await modes.set("alice", bad)
        assert await modes.get("alice") == PaymentMode(100, 5000)
        await modes.set("alice", PaymentMode(200))                 # changed, not duplicated
        assert await modes.get("alice") == PaymentMode(200)
    finally:
        ledger.close()


async def test_channel_keys_are_private_and_checked(tmp_path: Path) -> None:
    state = tmp_path / "platform"
    platform = Platform(state)
    try:
        assert not platform.channels.enabled          # nothing provisioned: in the clear
        certs = provision_channel_keys(state, platform.cas, platform.platform_id)
        assert {c.suite for c in certs} == set(Suite)
        for suite in Suite:
            assert (state / f"channel-{suite.label}.key").stat().st_mode & 0o777 == 0o600
        creds = load_channel_credentials(state, platform.cas)
        assert creds is not None
        assert set(creds.channel_keys) == set(Suite)
        # a key others can read is refused, not used
        key = state / f"channel-{Suite.SM2_SM3.label}.key"
        os.chmod(key, 0o644)
        with pytest.raises(ChannelKeyError):
            load_channel_credentials(state, platform.cas)
        os.chmod(key, 0o600)
        # a certificate for another key is refused
        p256 = state / f"channel-{Suite.P256_SHA256.label}.cbor"
        (state / "saved").write_bytes(p256.read_bytes())
        provision_channel_keys(state, platform.cas, platform.platform_id)
        p256.write_bytes((state / "saved").read_bytes())
        with pytest.raises(ChannelKeyError, match="another key"):
            load_channel_credentials(state, platform.cas)
    finally:
        await platform.aclose()


@pytest.mark.parametrize("crash_after", ["both_written", "key_renamed"])
async def test_a_crash_while_replacing_channel_keys_leaves_a_platform_that_starts(
        tmp_path: Path, crash_after: str) -> None:
    """Replacing the keys wrote each suite's key, then its certificate: a crash in between
    left a new key beside the old key's certificate, and the platform refused to start until
    someone provisioned again by hand. The on-disk state each crash point leaves is made here
    with the same writes the provisioning does, stopped at that point."""
    state = tmp_path / "platform"
    platform = Platform(state)
    try:
        old = {c.suite: c for c in provision_channel_keys(state, platform.cas,
                                                          platform.platform_id)}
        suite = Suite.P256_SHA256
        key_path, cert_path = (state / f"channel-{suite.label}.key",
                               state / f"channel-{suite.label}.cbor")
        new_key = generate_private_key(suite)
        now = int(time.time())
        new_cert = platform.cas[suite].issue(new_key.public_key, platform.platform_id,
                                             not_before=now - 300, not_after=now + 86400,
                                             usage=USAGE_CHANNEL)
        write_atomic(key_path.with_name(key_path.name + ".new"), new_key.private_bytes())
        write_atomic(cert_path.with_name(cert_path.name + ".new"), new_cert.encode())
        if crash_after == "key_renamed":
            os.replace(key_path.with_name(key_path.name + ".new"), key_path)
        creds = load_channel_credentials(state, platform.cas)
        assert creds is not None
        _, loaded = creds.channel_keys[suite]
        expected = new_cert if crash_after == "key_renamed" else old[suite]
        assert loaded.encode() == expected.encode()
        # and provisioning again afterwards leaves one whole pair, nothing pending
        provision_channel_keys(state, platform.cas, platform.platform_id)
        assert not list(state.glob("channel-*.new"))
        assert load_channel_credentials(state, platform.cas) is not None
    finally:
        platform.close()
    restarted = Platform(state)                       # the platform starts on what is there
    try:
        assert restarted.channels.enabled
    finally:
        restarted.close()
