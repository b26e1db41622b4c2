"""Provisioning the F-E units into simulated modules, as a deployment's enrollment station does.

Each module makes its unit's key pair inside itself and gives out the public key; the
platform's device authority certifies it for its role and account (for the payer, with the
platform's fingerprint policy and, in the seed's mode, the owner's template captured on the
phone's sensor and sealed at the settlement server); the certificate goes back into the
module. Keys never leave the modules. Used by the radio tests and the till demo.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from blegw_platform.device_authority import DeviceAuthority
from blegw_platform.platform import Platform
from dynamic_code import Finger, Role, Verification
from e2e.suites import Suite
from wearable_sim.module import SimulatedModule

__all__ = ["Provisioned", "provision_units"]


@dataclass(frozen=True, slots=True)
class Provisioned:
    merchant_device: bytes
    payer_device: bytes


async def provision_units(platform: Platform, merchant: SimulatedModule,
                          payer: SimulatedModule, suite: Suite, verification: Verification,
                          owner: Finger, *, merchant_account: str, payer_account: str
                          ) -> Provisioned:
    """Enroll a merchant unit in ``merchant`` and a payer unit in ``payer`` (replacing any
    earlier ones), the payer's owner enrolling ``owner``'s finger the ``verification`` way."""
    authority = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    try:
        ca_public = platform.cas[suite].public_key
        run = platform.ledger.run
        public = merchant.dynamic.new_key(Role.MERCHANT, suite)
        till = await run(functools.partial(authority.enroll, Role.MERCHANT, public,
                                           merchant_account, "till 1"))
        merchant.dynamic.install(Role.MERCHANT, till.encode(), ca_public)
        payer.dynamic.sensor.present(owner)
        template = (payer.dynamic.sensor.enroll() if verification is Verification.FEATURES
                    else None)
        public = payer.dynamic.new_key(Role.MOBILE, suite)
        phone = await run(functools.partial(authority.enroll, Role.MOBILE, public,
                                            payer_account, "phone",
                                            verification=verification, template=template))
        payer.dynamic.install(Role.MOBILE, phone.encode(), ca_public,
                              enroll_finger=verification is Verification.DEVICE)
        return Provisioned(till.device_id, phone.device_id)
    finally:
        authority.close()
