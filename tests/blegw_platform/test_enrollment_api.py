"""The enrollment endpoints (GET /v1/ca, POST /v1/modules, DELETE /v1/modules/{id}) over real
HTTP on a real SQLite ledger; the MQTT uplink is not started (these endpoints do not use it)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from blegw_platform.api import make_app
from blegw_platform.ledger import Ledger, RevocationRefused
from blegw_platform.platform import Platform, PlatformError
from e2e import CertificateAuthority, PublicKey, Suite, generate_private_key


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[Platform, ClientSession, str]]:
    platform = Platform(tmp_path / "platform")
    await platform.ledger.run(platform.ledger.add_account, "alice", "EUR", 100)
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield platform, http, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()
        await platform.aclose()


TOKEN = "ab" * 32


def _certificate(ca: CertificateAuthority, module_id: bytes, suite: Suite) -> bytes:
    now = int(time.time())
    key = generate_private_key(suite)
    return ca.issue(key.public_key, module_id, not_before=now - 60,
                    not_after=now + 3600).encode()


async def test_ca_enroll_revoke_round_trip(api: tuple[Platform, ClientSession, str]) -> None:
    platform, http, url = api
    async with http.get(f"{url}/v1/ca") as resp:
        cas = await resp.json()
    assert set(cas) == {"p256", "sm2"}
    assert PublicKey(Suite.SM2_SM3, bytes.fromhex(cas["sm2"])).encode() == \
        platform.cas[Suite.SM2_SM3].public_key.encode()
    module_id = bytes(range(16))
    code = await platform.enrollment_code("alice")
    for suite in Suite:                      # one code covers every suite of the one module
        cert = _certificate(platform.cas[suite], module_id, suite)
        async with http.post(f"{url}/v1/modules", json={
                "certificate": cert.hex(), "account": "alice", "gateway_id": "gw-1",
                "enrollment_code": code, "revocation_token": TOKEN}) as resp:
            assert resp.status == 201, await resp.text()
            assert (await resp.json())["module_id"] == module_id.hex()
    assert await platform.ledger.run(platform.ledger.module_for, "alice", 2) is not None
    path = f"{url}/v1/modules/{module_id.hex()}"
    # Only the holder of the token given at enrollment (the gateway that paired) may revoke.
    async with http.delete(path) as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "revocation_token_required")
    async with http.delete(path, headers={"Authorization": f"Bearer {'0' * 64}"}) as resp:
        assert (resp.status, (await resp.json())["error"]) == (403, "revocation_not_authorized")
    assert await platform.ledger.run(platform.ledger.module_for, "alice", 1) is not None
    async with http.delete(path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200 and (await resp.json()) == {"revoked": 2}
    assert await platform.ledger.run(platform.ledger.module_for, "alice", 1) is None
    async with http.delete(path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 404


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"{not json", 400, "malformed_json"),
    (b"[]", 400, "invalid_request"),
    (b'{"certificate": "zz", "account": "alice", "gateway_id": "gw", "enrollment_code": "x",'
     b' "revocation_token": "' + TOKEN.encode() + b'"}', 400, "invalid_request"),
    (b'{"certificate": "a0", "account": "alice", "gateway_id": "gw", "enrollment_code": "x",'
     b' "revocation_token": "' + TOKEN.encode() + b'"}', 422, "enrollment_refused"),
    (b'{"certificate": "00", "account": 7, "gateway_id": "gw", "enrollment_code": "x",'
     b' "revocation_token": "' + TOKEN.encode() + b'"}', 400, "invalid_request"),
    (b'{"certificate": "00", "account": "alice", "gateway_id": "gw", "revocation_token": "'
     + TOKEN.encode() + b'"}', 400, "invalid_request"),
    (b'{"certificate": "00", "account": "alice", "gateway_id": "gw", "enrollment_code": "x"}',
     400, "invalid_request"),
    (b'{"certificate": "00", "account": "alice", "gateway_id": "gw", "enrollment_code": "x",'
     b' "revocation_token": "short"}', 400, "invalid_request"),
])
async def test_bad_enrollments_get_typed_errors(api: tuple[Platform, ClientSession, str],
                                                body: bytes, status: int, code: str) -> None:
    _, http, url = api
    async with http.post(f"{url}/v1/modules", data=body,
                         headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == status
        assert (await resp.json())["error"] == code


async def test_foreign_ca_and_unknown_account_are_refused(
        api: tuple[Platform, ClientSession, str]) -> None:
    platform, http, url = api
    foreign = _certificate(CertificateAuthority.generate(Suite.P256_SHA256), b"\x01" * 16,
                           Suite.P256_SHA256)
    genuine = _certificate(platform.cas[Suite.P256_SHA256], b"\x02" * 16, Suite.P256_SHA256)
    code = await platform.enrollment_code("alice")
    for cert, account, status, detail in (
            (foreign, "alice", 422, "another CA"),
            (genuine, "nobody", 403, "not valid for account nobody")):
        async with http.post(f"{url}/v1/modules", json={
                "certificate": cert.hex(), "account": account, "gateway_id": "gw",
                "enrollment_code": code, "revocation_token": TOKEN}) as resp:
            assert resp.status == status
            assert detail in (await resp.json())["detail"]
    assert await platform.ledger.run(platform.ledger.module_for, "alice", 1) is None
    async with http.delete(f"{url}/v1/modules/not-hex") as resp:
        assert resp.status == 400


async def _enroll(http: ClientSession, url: str, cert: bytes, code: str,
                  account: str = "alice") -> tuple[int, dict[str, str]]:
    async with http.post(f"{url}/v1/modules", json={
            "certificate": cert.hex(), "account": account, "gateway_id": "gw",
            "enrollment_code": code, "revocation_token": TOKEN}) as resp:
        return resp.status, await resp.json()


async def test_an_enrollment_code_binds_one_module_to_one_account_for_a_while(
        api: tuple[Platform, ClientSession, str]) -> None:
    """The gateway is hostile: without the holder's code it cannot enroll a module for them."""
    platform, http, url = api
    ca = platform.cas[Suite.P256_SHA256]
    first, second = (_certificate(ca, bytes([n]) * 16, Suite.P256_SHA256) for n in (1, 2))
    status, body = await _enroll(http, url, first, "AAAA-BBBB-CCCC-DDDD")
    assert (status, body["error"]) == (403, "enrollment_not_authorized")

    code = await platform.enrollment_code("alice")
    assert len(code) == 19 and code.count("-") == 3
    # People retype codes: case, dashes and look-alike digits do not matter.
    status, _ = await _enroll(http, url, first, code.replace("-", "").lower())
    assert status == 201
    misread = code.replace("O", "0").replace("I", "1").replace("B", "8")
    status, _ = await _enroll(http, url, first, f" {misread} ")  # 0/1/8 typed for O/I/B
    assert status == 201
    status, _ = await _enroll(http, url, first, code)             # the same module again: ok
    assert status == 201
    status, body = await _enroll(http, url, second, code)          # another module: refused
    assert status == 403 and "another module" in body["detail"]
    assert await platform.ledger.run(platform.ledger.module_for, "alice", 1) is not None
    assert (await platform.ledger.run(platform.ledger.module_for, "alice", 1)).module_id == \
        bytes([1]) * 16

    expired = await platform.enrollment_code("alice", ttl=60)
    db = platform.ledger._db                                      # age it in the real file
    db.execute("UPDATE enrollment_codes SET expires_at = expires_at - 120")
    status, body = await _enroll(http, url, second, expired)
    assert status == 403 and "expired" in body["detail"]

    with pytest.raises(PlatformError, match="unknown account"):
        await platform.enrollment_code("nobody")
    with pytest.raises(PlatformError, match="lifetime"):
        await platform.enrollment_code("alice", ttl=5)
    # Only a hash of each code is stored: neither code appears anywhere in the database.
    assert db.execute("SELECT COUNT(*) FROM enrollment_codes").fetchone()[0] == 2
    raw = sqlite3.connect(platform.ledger.path)                    # the file, byte for byte
    dump = "\n".join(raw.iterdump())
    raw.close()
    for issued in (code, expired):
        assert issued not in dump and issued.replace("-", "") not in dump


async def test_the_operator_revokes_without_a_token_and_old_ledgers_are_migrated(
        tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:        # a ledger from before revocation tokens existed
        db.executescript(
            "CREATE TABLE accounts (id TEXT PRIMARY KEY, currency TEXT NOT NULL,"
            " balance_minor INTEGER NOT NULL);"
            "CREATE TABLE modules (module_id BLOB NOT NULL, account TEXT NOT NULL,"
            " gateway_id TEXT NOT NULL, suite INTEGER NOT NULL, certificate BLOB NOT NULL,"
            " last_counter INTEGER NOT NULL DEFAULT 0, active INTEGER NOT NULL DEFAULT 1,"
            " PRIMARY KEY (module_id, suite));"
            "INSERT INTO accounts VALUES ('alice', 'EUR', 5);"
            "INSERT INTO modules (module_id, account, gateway_id, suite, certificate,"
            " last_counter) VALUES (x'01', 'alice', 'gw', 1, x'00', 7);")
    ledger = Ledger(path)
    try:
        with pytest.raises(RevocationRefused):       # an API caller has no matching token
            ledger.revoke(b"\x01", b"h" * 32)
        assert ledger.last_counter(b"\x01") == 7      # nothing lost in the migration
        assert ledger.revoke(b"\x01") == 1            # the operator
    finally:
        ledger.close()
