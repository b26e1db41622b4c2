"""``blegw-platform device policy`` in a real subprocess over the real registry file: a payer
moved to the other fingerprint mode, and the moves that must be refused (no template sealed
for server-side matching, a revoked or unknown device, a merchant device)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from blegw_platform.device_registry import DeviceRegistry
from dynamic_code import Verification
from e2e.suites import Suite, generate_private_key


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blegw_platform", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def _enroll(state: Path, tmp: Path, role: str, *extra: str) -> str:
    key = generate_private_key(Suite.P256_SHA256)
    done = _cli("device", "enroll", "--state", str(state), "--role", role, "--suite", "p256",
                "--public-key", key.public_key.encode().hex(), "--account", "alice",
                "--info", role, "--out", str(tmp / f"{secrets.token_hex(4)}.cert"), *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _policy(state: Path, device: str) -> Verification | None:
    registry = DeviceRegistry(state / "devices.sqlite3")
    try:
        return registry.policy(bytes.fromhex(device))
    finally:
        registry.close()


def test_payer_policy_changes_and_a_server_match_without_template_is_refused(
        tmp_path: Path) -> None:
    state = tmp_path / "platform"
    assert _cli("seed", "--state", str(state), "--account", "alice", "--balance", "5"
                ).returncode == 0
    template = tmp_path / "template.bin"
    template.write_bytes(secrets.token_bytes(32))
    seeded = _enroll(state, tmp_path, "mobile", "--fingerprint", "features",
                     "--template-file", str(template))
    fido = _enroll(state, tmp_path, "mobile", "--fingerprint", "device")
    till = _enroll(state, tmp_path, "merchant")
    assert (state / "devices.sqlite3").exists()

    def policy(device: str, mode: str) -> subprocess.CompletedProcess[str]:
        return _cli("device", "policy", "--state", str(state), "--device-id", device,
                    "--fingerprint", mode)

    # a payer enrolled with a template: to the module's match and back
    done = policy(seeded, "device")
    assert done.returncode == 0 and "the payer's unit" in done.stdout, done.stderr
    assert _policy(state, seeded) is Verification.DEVICE
    assert policy(seeded, "features").returncode == 0
    assert _policy(state, seeded) is Verification.FEATURES
    # no template sealed at enrollment: the server cannot match, the policy stays
    refused = policy(fido, "features")
    assert refused.returncode == 1 and "with a template" in refused.stderr
    assert _policy(state, fido) is Verification.DEVICE
    # a merchant device, an unknown one, a revoked one: refused
    assert policy(till, "device").returncode == 1
    assert policy(secrets.token_hex(16), "device").returncode == 1
    assert _cli("device", "revoke", "--state", str(state), "--device-id", seeded
                ).returncode == 0
    assert policy(seeded, "device").returncode == 1
    # the honest change still works after the refusals
    assert policy(fido, "device").returncode == 0
