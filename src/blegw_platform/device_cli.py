"""``blegw-platform device``: certify and register the devices of flow F-E, revoke them, and
export the settlement server's certificate (docs/dynamic-codes.md).

* ``device enroll --role mobile|merchant --suite p256|sm2 --public-key HEX --account A
  --info TEXT --out FILE`` and, for a mobile device, ``--fingerprint features --template-file
  F`` (the seed's way: the template, 32 bytes, is sealed for the settlement server) or
  ``--fingerprint device`` (FIDO's way: no template reaches the platform);
* ``device revoke --device-id HEX``; ``device list``;
* ``device policy --device-id HEX --fingerprint features|device``: where a payer's finger is
  matched from now on (features only for a device enrolled with a template);
* ``device settlement-cert --suite S --out FILE``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

_SUITES = ("p256", "sm2")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], state_help: str
               ) -> None:
    p = sub.add_parser("device", help="dynamic codes: certify devices (mobile, merchant), "
                                      "revoke them, the settlement certificate")
    actions = p.add_subparsers(dest="action", required=True)
    e = actions.add_parser("enroll", help="certify a device's public key for a role and an "
                                          "account; writes its certificate")
    e.add_argument("--state", required=True, help=state_help)
    e.add_argument("--role", choices=("mobile", "merchant"), required=True)
    e.add_argument("--suite", choices=_SUITES, required=True)
    e.add_argument("--public-key", required=True, help="the unit's SEC1 public key, hex")
    e.add_argument("--account", required=True,
                   help="the account a mobile device pays from or a merchant device collects "
                        "for")
    e.add_argument("--info", required=True, help="device information, printable ASCII")
    e.add_argument("--fingerprint", choices=("features", "device"), default=None,
                   help="mobile only: where the owner's finger is matched")
    e.add_argument("--template-file", default=None,
                   help="mobile with --fingerprint features: the enrolled template (32 bytes)")
    e.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    e.add_argument("--out", required=True, help="file to write the certificate to")
    r = actions.add_parser("revoke", help="revoke a device's certificate at once")
    r.add_argument("--state", required=True, help=state_help)
    r.add_argument("--device-id", required=True, help="32 hex digits")
    po = actions.add_parser("policy", help="change where a payer's finger is matched")
    po.add_argument("--state", required=True, help=state_help)
    po.add_argument("--device-id", required=True, help="32 hex digits")
    po.add_argument("--fingerprint", choices=("features", "device"), required=True,
                    help="features: the settlement server matches (needs the template sealed "
                         "at enrollment); device: the payer's unit matches and attests")
    li = actions.add_parser("list", help="devices, their roles, accounts and state")
    li.add_argument("--state", required=True, help=state_help)
    s = actions.add_parser("settlement-cert", help="write the settlement server's certificate")
    s.add_argument("--state", required=True, help=state_help)
    s.add_argument("--suite", choices=_SUITES, required=True)
    s.add_argument("--out", required=True)


def run(args: argparse.Namespace) -> None:
    """Carry out one ``device`` command; errors propagate to the CLI's one handler."""
    from dynamic_code import Role, Verification
    from e2e.suites import PublicKey, Suite

    from .device_authority import DeviceAuthority, EnrollmentRefused
    from .platform import Platform

    suites = {suite.label: suite for suite in Suite}
    platform = Platform(Path(args.state))
    authority = DeviceAuthority(platform.state_dir, platform.cas, platform.ledger)
    try:
        if args.action == "enroll":
            role = Role.MOBILE if args.role == "mobile" else Role.MERCHANT
            mode = None if args.fingerprint is None else (
                Verification.FEATURES if args.fingerprint == "features" else
                Verification.DEVICE)
            template = Path(args.template_file).read_bytes() if args.template_file else None
            try:
                public = PublicKey(suites[args.suite], bytes.fromhex(args.public_key))
            except ValueError as exc:
                raise EnrollmentRefused(f"--public-key: {exc}") from None
            cert = authority.enroll(role, public, args.account, args.info, verification=mode,
                                    template=template, days=args.days)
            Path(args.out).write_bytes(cert.encode())
            print(cert.device_id.hex())
            print(f"certified {args.role} device {cert.device_id.hex()} for {args.account} -> "
                  f"{args.out}", file=sys.stderr)
        elif args.action == "revoke":
            if not authority.revoke(bytes.fromhex(args.device_id)):
                print(f"blegw-platform: device {args.device_id} is not active", file=sys.stderr)
                sys.exit(1)
            print(f"device {args.device_id}: revoked")
        elif args.action == "policy":
            mode = (Verification.FEATURES if args.fingerprint == "features"
                    else Verification.DEVICE)
            if not authority.registry.set_policy(bytes.fromhex(args.device_id), mode):
                raise EnrollmentRefused(
                    f"device {args.device_id}: no active mobile device"
                    + (" enrolled with a template" if mode is Verification.FEATURES else ""))
            print(f"device {args.device_id}: fingerprint matched by "
                  + ("the settlement server" if mode is Verification.FEATURES
                     else "the payer's unit"))
        elif args.action == "list":
            for record in authority.registry.devices():
                how = "" if record.verification is None else record.verification.name.lower()
                print(f"{record.device_id.hex()}  {record.role.name.lower():8}  "
                      f"{'active' if record.active else 'revoked':7}  {record.account}  "
                      f"{how}  {record.device_info}")
        else:
            Path(args.out).write_bytes(authority.unit.certificate(suites[args.suite]))
            print(f"settlement certificate ({args.suite}) -> {args.out}")
    finally:
        authority.close()
        platform.close()
