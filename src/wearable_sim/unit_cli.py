"""``wearable-sim unit-key | unit-template | unit-cert``: provisioning the module's F-E unit,
and what its sensor presents in ``run``.

The enrollment station's steps for a merchant device or a phone whose unit is this module:

    wearable-sim unit-key --state DIR --role merchant|mobile --suite p256|sm2   (public key, hex)
    wearable-sim unit-template --state DIR --out FILE    (the seed's mode: the owner's template
                                                          for blegw-platform device enroll)
    wearable-sim unit-cert --state DIR --role merchant|mobile FILE [--enroll-finger]

``unit-cert`` checks the certificate against the CA the module already trusts (its trust
anchors from ``blegw-harness provision-module``); ``--enroll-finger`` (FIDO's mode) enrolls the
owner's finger inside the unit. The owner's finger is the one ``enroll-finger`` enrolled on the
module's sensor; ``run --finger match|other`` says which finger the sensor presents, for the
units as for the secure channel.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dynamic_code import Finger, Role
from dynamic_code.certificates import DeviceCertificate
from e2e import Suite

from .dynamic_units import DynamicUnits
from .element import SecureElement
from .state import StateError
from .verification import FingerprintSensor, NotEnrolled

__all__ = ["add_parsers", "present_finger", "run"]

COMMANDS = ("unit-key", "unit-template", "unit-cert")
_ROLES = {"merchant": Role.MERCHANT, "mobile": Role.MOBILE}
_SUITES = {"p256": Suite.P256_SHA256, "sm2": Suite.SM2_SM3}


def add_parsers(sub: Any) -> None:
    key = sub.add_parser("unit-key", help="F-E: make the unit's key pair; prints the public key")
    key.add_argument("--state", required=True)
    key.add_argument("--role", choices=sorted(_ROLES), required=True)
    key.add_argument("--suite", choices=sorted(_SUITES), required=True)
    template = sub.add_parser("unit-template", help="F-E: the owner's enrolled finger as a "
                                                    "template file (the seed's mode)")
    template.add_argument("--state", required=True)
    template.add_argument("--out", required=True)
    cert = sub.add_parser("unit-cert", help="F-E: install the unit's device certificate")
    cert.add_argument("--state", required=True)
    cert.add_argument("--role", choices=sorted(_ROLES), required=True)
    cert.add_argument("--enroll-finger", action="store_true",
                      help="FIDO's mode: enroll the owner's finger inside the unit")
    cert.add_argument("file")


def owner_finger(element: SecureElement) -> Finger:
    """The owner's finger as the module's sensor enrolled it (``enroll-finger``)."""
    return Finger(FingerprintSensor(element.state).capture("match"))


def present_finger(units: DynamicUnits, element: SecureElement, finger: str) -> None:
    """``run --finger``: the finger on the sensor when a unit asks (none before enrollment)."""
    if finger == "other":
        units.sensor.present(Finger.new())
        return
    try:
        units.sensor.present(owner_finger(element))
    except (NotEnrolled, StateError):  # no finger enrolled: empty (the unit says no_finger)
        units.sensor.present(None)


def run(args: argparse.Namespace, element: SecureElement) -> None:
    units = DynamicUnits(_NoOwner(), element.state)
    if args.cmd == "unit-key":
        print(units.new_key(_ROLES[args.role], _SUITES[args.suite]).encode().hex())
    elif args.cmd == "unit-template":
        Path(args.out).write_bytes(owner_finger(element).ideal)
        print(f"owner's template -> {args.out}")
    else:
        anchors = element.trust_anchors
        data = Path(args.file).read_bytes()
        suite = DeviceCertificate.decode(data).suite
        if anchors is None or suite not in anchors.ca_keys:
            raise ValueError("no CA key for this suite installed (blegw-harness "
                             "provision-module)")
        if args.enroll_finger:
            units.sensor.present(owner_finger(element))
        units.install(_ROLES[args.role], data, anchors.ca_keys[suite],
                      enroll_finger=args.enroll_finger)
        print(f"installed the {args.role} unit's certificate")


class _NoOwner:
    """Provisioning asks nobody."""

    name = "none"
    verification = "none"

    async def decide(self, prompt: object) -> bool:
        return False

    async def close(self) -> None:
        return None
