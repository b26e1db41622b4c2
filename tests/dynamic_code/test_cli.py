"""``blegw-platform device`` in a real subprocess: enrollment per role, list, revocation, the
settlement certificate; what a certificate carries instead of the owner's template."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

from dynamic_code import Role
from dynamic_code.certificates import DeviceCertificate
from e2e.suites import Suite, generate_private_key


def test_device_enroll_and_revoke_commands(tmp_path: Path) -> None:
    """``blegw-platform device enroll|list|revoke|settlement-cert`` in a real subprocess."""
    state = tmp_path / "platform"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "blegw_platform", *args],
                              capture_output=True, text=True, timeout=60, check=False)

    assert cli("seed", "--state", str(state), "--account", "alice", "--balance", "5").returncode \
        == 0
    key = generate_private_key(Suite.SM2_SM3)
    template = tmp_path / "template.bin"
    template.write_bytes(secrets.token_bytes(32))
    out = tmp_path / "phone.cert"
    done = cli("device", "enroll", "--state", str(state), "--role", "mobile", "--suite", "sm2",
               "--public-key", key.public_key.encode().hex(), "--account", "alice",
               "--info", "phone 1", "--fingerprint", "features", "--template-file",
               str(template), "--out", str(out))
    assert done.returncode == 0, done.stderr
    cert = DeviceCertificate.decode(out.read_bytes())
    assert (cert.role, cert.account, cert.device_info) == (Role.MOBILE, "alice", "phone 1")
    assert cert.binding is not None and template.read_bytes() not in out.read_bytes()
    assert cert.device_id.hex() == done.stdout.strip()
    listed = cli("device", "list", "--state", str(state))
    assert f"{cert.device_id.hex()}  mobile    active " in listed.stdout
    server = tmp_path / "server.cert"
    assert cli("device", "settlement-cert", "--state", str(state), "--suite", "sm2", "--out",
               str(server)).returncode == 0
    assert DeviceCertificate.decode(server.read_bytes()).role is Role.SETTLEMENT
    assert cli("device", "revoke", "--state", str(state), "--device-id",
               cert.device_id.hex()).returncode == 0
    again = cli("device", "revoke", "--state", str(state), "--device-id", cert.device_id.hex())
    assert again.returncode == 1 and "not active" in again.stderr
    refused = cli("device", "enroll", "--state", str(state), "--role", "merchant", "--suite",
                  "p256", "--public-key", "04" + "00" * 64, "--account", "alice", "--info",
                  "till", "--out", str(tmp_path / "x"))
    assert refused.returncode == 1 and "public-key" in refused.stderr
