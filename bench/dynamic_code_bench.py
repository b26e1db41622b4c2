"""Dynamic codes (flow F-E): sizes, QR versions and the units' times per suite and mode.

    .venv/bin/python bench/dynamic_code_bench.py [-n 21]

For each suite, each fingerprint mode and a short (``shop``/``alice``) and the longest
(64-character) accounts: the consumption code's, the payment code's and the settlement
request's bytes and the QR versions at level M; then the median and p90 over N runs of the
payer's unit (check the merchant's certificate and code, sign, encrypt), the merchant's unit
(decrypt, check, sign, encrypt to the server) and the settlement unit's checks.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

from dynamic_code import (
    MerchantUnit,
    PayerUnit,
    Role,
    SettlementUnit,
    SimulatedSensor,
    TemplateVault,
    Verification,
    issue_device_certificate,
)
from dynamic_code.certificates import DeviceCertificate
from dynamic_code.fingerprint import Finger
from dynamic_code_image import render
from e2e import CertificateAuthority, Suite, generate_private_key


class Directory:
    def __init__(self) -> None:
        self.policies: dict[bytes, Verification] = {}
        self.templates: dict[bytes, bytes] = {}

    def is_active(self, device_id: bytes, role: Role) -> bool:
        return True

    def policy(self, device_id: bytes) -> Verification | None:
        return self.policies.get(device_id)

    def template_record(self, device_id: bytes) -> bytes | None:
        return self.templates.get(device_id)


def run(suite: Suite, mode: Verification, merchant_account: str, payer_account: str,
        n: int) -> None:
    now = int(time.time())
    ca = CertificateAuthority.generate(suite)
    vault, _ = TemplateVault.generate()
    directory = Directory()

    def cert(key_role: Role, account: str, binding: bytes | None = None
             ) -> tuple[bytes, bytes]:
        key = generate_private_key(suite)
        device_id = secrets.token_bytes(16)
        data = issue_device_certificate(ca, key.public_key, key_role, device_id=device_id,
                                        device_info="bench device", account=account,
                                        not_before=now - 60, not_after=now + 86400,
                                        binding=binding).encode()
        return key.private_bytes(), data

    from e2e import load_private_key

    server_scalar, server_cert = cert(Role.SETTLEMENT, "")
    server = SettlementUnit({suite: (load_private_key(suite, server_scalar), server_cert)},
                            {suite: ca.public_key}, vault)
    merchant_scalar, merchant_cert = cert(Role.MERCHANT, merchant_account)
    merchant = MerchantUnit(load_private_key(suite, merchant_scalar), merchant_cert,
                            ca.public_key)
    sensor = SimulatedSensor()
    sensor.present(Finger.new())
    template = sensor.enroll()
    device_id = secrets.token_bytes(16)
    binding = None
    if mode is Verification.FEATURES:
        binding, directory.templates[device_id] = vault.seal(device_id, template)
    payer_key = generate_private_key(suite)
    payer_cert = issue_device_certificate(ca, payer_key.public_key, Role.MOBILE,
                                          device_id=device_id, device_info="bench phone",
                                          account=payer_account, not_before=now - 60,
                                          not_after=now + 86400, binding=binding).encode()
    directory.policies[DeviceCertificate.decode(payer_cert).device_id] = mode
    payer = PayerUnit(payer_key, payer_cert, ca.public_key,
                      template=template if mode is Verification.DEVICE else None)
    times: dict[str, list[float]] = {"payer": [], "merchant": [], "server": []}
    sizes: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    for _ in range(n):
        shown = merchant.consumption_code(999_999_999, "EUR", now=now)
        t0 = time.perf_counter()
        code = payer.pay(shown, now=now, verification=mode, features=sensor.capture())
        t1 = time.perf_counter()
        accepted = merchant.accept(code, now=now)
        request = merchant.forward(accepted.handle, server_cert, now=now)
        t2 = time.perf_counter()
        server.open(request, now=now, directory=directory)
        t3 = time.perf_counter()
        times["payer"].append(t1 - t0)
        times["merchant"].append(t2 - t1)
        times["server"].append(t3 - t2)
        sizes = (len(shown), render(shown).version, len(code), render(code).version,
                 len(request))
    label = f"{suite.label} {mode.name.lower():8} accounts {len(merchant_account):2}/" \
            f"{len(payer_account):2}"
    print(f"{label}: consumption {sizes[0]} B (v{sizes[1]}), payment {sizes[2]} B "
          f"(v{sizes[3]}), settlement request {sizes[4]} B")
    for unit, samples in times.items():
        samples.sort()
        print(f"    {unit:8} median {1000 * statistics.median(samples):6.2f} ms  "
              f"p90 {1000 * samples[int(0.9 * (len(samples) - 1))]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=21)
    args = parser.parse_args()
    for suite in Suite:
        for mode in Verification:
            run(suite, mode, "shop", "alice", args.n)
        run(suite, Verification.FEATURES, "m" * 64, "p" * 64, args.n)


if __name__ == "__main__":
    main()
