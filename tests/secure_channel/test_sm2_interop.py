"""SM2 key transport against an independent implementation: the ``openssl`` command (OpenSSL
3). Our ciphertexts, from the C backend and from the pure-Python arithmetic, decrypt with
``openssl pkeyutl``, and OpenSSL's decrypt with ours, both ways and with either backend. The
signature backends are checked against OpenSSL in tests/e2e/test_e2e.py."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path

import pytest

from secure_channel import primitives
from secure_channel.errors import DecryptFailed
from secure_channel.primitives import sm2_decrypt, sm2_encrypt, sm2_public

SECRET = bytes(range(48))


def openssl(*args: str, cwd: Path) -> bytes:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True,
                          timeout=30).stdout


@pytest.fixture
def openssl_key(tmp_path: Path) -> tuple[bytes, bytes]:
    """An SM2 key OpenSSL made: (scalar, public point)."""
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:SM2", "-out",
            "key.pem", cwd=tmp_path)
    openssl("pkey", "-in", "key.pem", "-pubout", "-out", "pub.pem", cwd=tmp_path)
    text = openssl("pkey", "-in", "key.pem", "-noout", "-text", cwd=tmp_path).decode()
    hexes = re.findall(r"priv:\s*([0-9a-f:\s]+?)\s*pub:\s*([0-9a-f:\s]+?)\s*ASN1", text)[0]
    scalar, point = (bytes.fromhex(re.sub(r"[^0-9a-f]", "", h)) for h in hexes)
    scalar = scalar.rjust(32, b"\x00")[-32:]
    assert sm2_public(scalar) == point
    return scalar, point


@pytest.fixture(params=["gmalglib", "pure"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with the C backend and with the pure-Python fallback (the backend
    selector answers "not installed")."""
    if request.param == "pure":
        monkeypatch.setattr(primitives, "_gmalglib", lambda: None)
    elif primitives._gmalglib() is None:
        pytest.skip("gmalglib not installed")
    return str(request.param)


def test_our_sm2_ciphertext_decrypts_with_openssl(tmp_path: Path, openssl_key: tuple[bytes, bytes],
                                                  backend: str) -> None:
    _, point = openssl_key
    for rng in (None, secrets.token_bytes):
        (tmp_path / "ct").write_bytes(sm2_encrypt(point, SECRET, rng))
        out = openssl("pkeyutl", "-decrypt", "-inkey", "key.pem", "-in", "ct", cwd=tmp_path)
        assert out == SECRET


def test_openssl_sm2_ciphertext_decrypts_with_ours(tmp_path: Path,
                                                   openssl_key: tuple[bytes, bytes],
                                                   backend: str) -> None:
    scalar, _ = openssl_key
    (tmp_path / "msg").write_bytes(SECRET)
    openssl("pkeyutl", "-encrypt", "-pubin", "-inkey", "pub.pem", "-in", "msg", "-out", "ct",
            cwd=tmp_path)
    ct = (tmp_path / "ct").read_bytes()
    assert sm2_decrypt(scalar, ct) == SECRET
    altered = bytearray(ct)
    altered[-1] ^= 1
    with pytest.raises(DecryptFailed):
        sm2_decrypt(scalar, bytes(altered))
    with pytest.raises(DecryptFailed):
        sm2_decrypt(b"\x01" * 32, ct)  # another key
