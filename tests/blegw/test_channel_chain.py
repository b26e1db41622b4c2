"""Payments inside the secure channel through the whole chain with real parts: the virtual
radio (only the radio is simulated), mosquitto, the platform on real SQLite with its channel
keys on disk, the gateway, and the module's GATT server (bless) with its PIN and finger.

The gateway relays the channel's envelopes as it relays any other; these tests check that a
payment settles in each suite and payment mode, that a BLE reconnect resumes the channel
without a full handshake, and that a wrong PIN over the air moves nothing.
"""

from __future__ import annotations

import asyncio

import pytest

from blegw_harness.chain import PAYEE, PAYER, Chain, running_chain
from blegw_platform.channel_keys import load_channel_credentials, provision_channel_keys
from blegw_platform.payment_modes import PaymentMode
from e2e import Suite
from secure_channel import ChannelSuite
from wearable_sim.policy import FixedPolicy
from wearable_sim.verification import ScriptedInput

from .conftest import Mosquitto

PIN = "80417"


def with_channel(chain: Chain) -> ScriptedInput:
    """Provision the platform's channel keys (what ``blegw-platform channel-keys`` does) and
    the module's PIN and finger (what provisioning does); the owner's keypad and sensor."""
    platform = chain.platform
    provision_channel_keys(platform.state_dir, platform.cas, platform.platform_id)
    platform.channels.credentials = load_channel_credentials(platform.state_dir, platform.cas)
    channel = chain.module.channel
    assert channel is not None
    channel.pin.set(PIN)
    channel.sensor.enroll()
    owner = ScriptedInput(next_pin=PIN)
    channel.owner = owner
    return owner


async def balances(chain: Chain) -> tuple[int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))


@pytest.mark.needs_vbluez_control("link_loss")
async def test_channel_payments_in_each_suite_and_mode_and_a_resumed_reconnect(
        mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        owner = with_channel(chain)
        await chain.platform.channels.modes.set(PAYER, PaymentMode(500, 10_000))
        channel = chain.module.channel
        assert channel is not None
        n = 0
        for suite in (Suite.SM2_SM3, Suite.P256_SHA256):
            for amount, done in ((300, "none"), (1500, "pin"), (20_000, "fingerprint")):
                n += 1
                before = await balances(chain)
                outcome = await asyncio.wait_for(
                    chain.pay(amount, "over the channel", suite, f"channel-{n:04d}"), 90)
                assert (outcome["state"], outcome["reason"]) == ("settled", ""), outcome
                assert await balances(chain) == (before[0] - amount, before[1] + amount)
                assert channel.handled[-1] == f"approved:{done}"
        ch = chain.platform.channels.channel(chain.module.element.module_id)
        assert ch is not None
        assert ch.suite is ChannelSuite.DHE_P256_AES128GCM_SHA256
        assert (ch.handshakes, ch.resumptions) == (2, 0)   # one per family, then records

        # The module walks out of range and back: the channel resumes, no full handshake.
        await chain.radio.control.link_loss("hci0", chain.radio.adapters[1].address)
        outcome = await asyncio.wait_for(
            chain.pay(1500, "after a reconnect", Suite.P256_SHA256, "channel-resume-1"), 90)
        assert outcome["state"] == "settled", outcome
        assert (ch.handshakes, ch.resumptions) == (2, 1)
        assert "channel-resume" in channel.handled

        # A wrong PIN over the air: refused by the module, nothing moves; then the right one.
        before = await balances(chain)
        owner.next_pin = "11111"
        outcome = await asyncio.wait_for(
            chain.pay(1500, "wrong pin", Suite.SM2_SM3, "channel-wrong-pin"), 90)
        assert (outcome["state"], outcome["reason"]) == ("rejected", "module:pin_wrong")
        assert await balances(chain) == before
        owner.next_pin = PIN
        outcome = await asyncio.wait_for(
            chain.pay(1500, "right pin", Suite.SM2_SM3, "channel-right-pin"), 90)
        assert outcome["state"] == "settled", outcome
        ledger = chain.platform.ledger
        assert await ledger.run(ledger.audit) == []
