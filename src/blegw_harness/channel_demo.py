"""The demo's secure-channel part (flow F-B): the platform's channel keys are provisioned, the
module gets a PIN and a finger, the payer a payment mode, and then payments travel inside the
channel in every channel suite, each payment mode in each signature family; a link loss shows
the channel resumed without a full handshake."""

from __future__ import annotations

import time
from collections.abc import Callable

from blegw_platform.channel_keys import load_channel_credentials, provision_channel_keys
from blegw_platform.payment_modes import PaymentMode
from e2e import Suite
from secure_channel import ChannelSuite
from wearable_sim.policy import Prompt
from wearable_sim.verification import ScriptedInput

from .chain import PAYER, Chain

__all__ = ["CHANNEL_PAYMENTS", "channel_payments"]

PIN = "4711"
NO_VERIFICATION_UP_TO = 500
FINGERPRINT_FROM = 10_000
CHANNEL_PAYMENTS = [
    (ChannelSuite.DHE_SM2_SM4GCM_SM3, 320, "none"),
    (ChannelSuite.DHE_SM2_SM4GCM_SM3, 15000, "fingerprint"),
    (ChannelSuite.KT_SM2_SM4GCM_SM3, 2500, "PIN"),
    (ChannelSuite.DHE_P256_AES128GCM_SHA256, 12000, "fingerprint"),
    (ChannelSuite.KT_P256_AES128GCM_SHA256, 450, "none"),
    (ChannelSuite.DHE_P256_AES256GCM_SHA256, 3900, "PIN"),
    (ChannelSuite.KT_P256_AES256GCM_SHA256, 180, "none"),
]
"""Every channel suite, and each payment mode in each signature family (the platform's suite
list, its policy, is narrowed to one suite per payment here to show them all)."""


class DemoKeypad(ScriptedInput):
    """The owner types the PIN and lays the finger on the module's own keypad and sensor."""

    async def pin(self, prompt: Prompt) -> str:
        print("        owner types the PIN on the module's keypad (it never leaves the module)")
        return await super().pin(prompt)

    async def finger(self, prompt: Prompt) -> str:
        print("        owner lays the enrolled finger on the module's sensor")
        return await super().finger(prompt)


async def channel_payments(chain: Chain, step: Callable[[str], None]) -> bool:
    """Run the channel payments; True when each settled."""
    platform = chain.platform
    channel = chain.module.channel
    assert channel is not None
    provision_channel_keys(platform.state_dir, platform.cas, platform.platform_id)
    platform.channels.credentials = load_channel_credentials(platform.state_dir, platform.cas)
    channel.pin.set(PIN)
    channel.sensor.enroll()
    channel.owner = DemoKeypad(next_pin=PIN)
    await platform.channels.modes.set(PAYER, PaymentMode(NO_VERIFICATION_UP_TO,
                                                         FINGERPRINT_FROM))
    step(f"secure channel: platform channel keys certified (usage 3); module PIN and finger "
         f"enrolled; {PAYER} pays without verification up to "
         f"{NO_VERIFICATION_UP_TO / 100:.2f}, with the finger from "
         f"{FINGERPRINT_FROM / 100:.2f}, with the PIN between")
    ok: bool = True
    suites = platform.channels.suites
    for i, (suite, amount, mode) in enumerate(CHANNEL_PAYMENTS):
        platform.channels.suites = [suite]
        family = suite.params.signature
        step(f"terminal: {PAYER} pays {amount / 100:.2f} EUR over the channel ({suite.name}, "
             f"mode {mode})")
        ch = platform.channels.channel(chain.module.element.module_id)
        handshakes = ch.handshakes if ch is not None else 0
        started = time.perf_counter()
        outcome = await chain.pay(amount, f"channel {mode}", family,
                                  f"channel-{i}-{time.time_ns()}")
        reason = f" ({outcome['reason']})" if outcome["reason"] else ""
        ch = platform.channels.channel(chain.module.element.module_id)
        opened = ch is not None and ch.handshakes > handshakes
        step(f"outcome: {outcome['state']}{reason} in "
             f"{(time.perf_counter() - started) * 1000:.1f} ms; module reports "
             f"{channel.handled[-1]}; "
             + ("full handshake first (3 relay exchanges of opaque units)" if opened
                else "on the live channel (1 relay exchange)"))
        ok = ok and outcome["state"] == "settled"
    platform.channels.suites = suites
    await chain.radio.control.link_loss("hci0", chain.radio.adapters[1].address)
    step("the module's link drops and comes back")
    started = time.perf_counter()
    outcome = await chain.pay(1500, "after a reconnect", Suite.P256_SHA256,
                              f"channel-resume-{time.time_ns()}")
    ok = ok and outcome["state"] == "settled"
    ch = platform.channels.channel(chain.module.element.module_id)
    resumed = ch.resumptions if ch is not None else 0
    step(f"outcome: {outcome['state']} in {(time.perf_counter() - started) * 1000:.1f} ms; "
         f"the channel resumed ({resumed} resumption, no certificate, no public-key "
         f"operation)")
    return ok
