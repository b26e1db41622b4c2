"""The simulated module's factory step: certify its keys and install its trust anchors.

It joins the platform (its CA, its platform id) and the simulator (its state directory), so it
lives in the harness: the platform's own CLI does not import the simulator.
"""

from __future__ import annotations

import time
from pathlib import Path

from blegw_platform.platform import Platform
from wearable_sim.element import SecureElement
from wearable_sim.state import ModuleState

__all__ = ["provision_module"]


def provision_module(platform: Platform, module_state: Path, days: int) -> None:
    """What a module's factory does: certify each of its public keys with the platform's CA,
    and install the trust anchors (CA roots, platform id) it checks every request against.

    Only for the simulated module, whose state directory is on this machine: the keys are made
    there (on first use) and only the public halves are read here.
    """
    element = SecureElement(ModuleState(module_state))
    now = int(time.time())
    for suite in element.suites:
        cert = platform.cas[suite].issue(element.public_key(suite), element.module_id,
                                         not_before=now - 300, not_after=now + days * 86400)
        element.install_certificate(cert.encode())
        print(f"module {element.module_id.hex()}: {suite.name} certificate serial "
              f"{cert.serial} installed")
    element.install_trust_anchors(platform.trust_anchors())
    print(f"module {element.module_id.hex()}: trusts requests from platform "
          f"{platform.platform_id.hex()}")
