"""The simulated module's factory step: certify its keys and install its trust anchors.

It joins the platform (its CA, its platform id) and the simulator (its state directory), so it
lives in the harness: the platform's own CLI does not import the simulator.
"""

from __future__ import annotations

import time
from pathlib import Path

from blegw_platform.platform import Platform
from e2e import Certificate
from wearable_sim.element import SecureElement
from wearable_sim.state import ModuleState

__all__ = ["certify_module", "provision_module"]


def certify_module(platform: Platform, element: SecureElement, *, days: int,
                   backdate: int = 300) -> list[Certificate]:
    """What a module's factory does: certify each of its public keys with the platform's CA
    (valid from ``backdate`` seconds ago for ``days`` days), and install the trust anchors (CA
    roots, platform id) it checks every request against. Returns the certificates installed.
    """
    now = int(time.time())
    certificates = []
    for suite in element.suites:
        cert = platform.cas[suite].issue(element.public_key(suite), element.module_id,
                                         not_before=now - backdate, not_after=now + days * 86400)
        element.install_certificate(cert.encode())
        certificates.append(cert)
    element.install_trust_anchors(platform.trust_anchors())
    return certificates


def provision_module(platform: Platform, module_state: Path, days: int) -> None:
    """``provision-module``: :func:`certify_module`, saying what it installed.

    Only for the simulated module, whose state directory is on this machine: the keys are made
    there (on first use) and only the public halves are read here.
    """
    element = SecureElement(ModuleState(module_state))
    for cert in certify_module(platform, element, days=days):
        print(f"module {element.module_id.hex()}: {cert.suite.name} certificate serial "
              f"{cert.serial} installed")
    print(f"module {element.module_id.hex()}: trusts requests from platform "
          f"{platform.platform_id.hex()}")
