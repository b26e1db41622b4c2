"""Verification + settlement against bare verification, on SQLite and PostgreSQL in one run.

    .venv/bin/python bench/ledger_bench.py [--payments 400] [--in-flight 32] [--postgres URL]

For each suite (P-256, SM2) and each ledger, the platform (its real ``handle_response``: decode,
verify the module's signature against the stored request and certificate, counter, settlement
through the settler's group commit) settles N approvals arriving ``--in-flight`` at a time, as
from many gateways at once (32 modules, each with one request at a time). The bare rate is
``verify_confirmation`` alone on the same payloads, measured in the same run, twice: verifying
each module certificate's CA signature every time (the issue's baseline), and with the
certificate checks remembered as the platform does (``e2e.CertificateChecks``: an enrolled
certificate's CA signature is verified once), so the second ratio is the ledger's cost alone.
Both ledgers
commit durably: SQLite with ``synchronous=FULL``, PostgreSQL with ``fsync`` and
``synchronous_commit`` on.

Without ``--postgres`` a throw-away PostgreSQL server is started from Debian's ``postgresql``
package on a unix socket (the tests' ``tests/ledger_backends.py``) and removed afterwards; with
it, each suite uses a new database ``blegw_bench_<n>`` created through that URL's server.

Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from blegw_platform.ledger import TransactionRecord
from blegw_platform.platform import Platform
from e2e import (
    CertificateAuthority,
    CertificateChecks,
    ConfirmationRequest,
    Decision,
    Suite,
    UserVerification,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
    verify_confirmation,
)
from mqtt_uplink import MqttEndpoint
from relay_contract import RelayResponse, RelayStatus

MODULES = 32


def measure(suite: Suite, n: int, in_flight: int, ledger_url: str | None
            ) -> tuple[float, float, float]:
    """(bare verifications/s, the same with certificate checks remembered,
    verifications+settlements/s) for one suite on one ledger."""
    with tempfile.TemporaryDirectory() as tmp:
        if ledger_url is not None:
            os.environ["BLEGW_LEDGER_URL"] = ledger_url
        try:
            platform = Platform(Path(tmp), mqtt=MqttEndpoint("mqtt://127.0.0.1:1"))
        finally:
            os.environ.pop("BLEGW_LEDGER_URL", None)
        ledger = platform.ledger
        for m in range(MODULES):
            ledger.add_account(f"alice-{m}", "EUR", 10**12)
        ledger.add_account("shop", "EUR", 0)
        modules = []
        now = int(time.time())
        for m in range(MODULES):
            key = generate_private_key(suite)
            module_id = m.to_bytes(16, "big")
            cert = platform.cas[suite].issue(key.public_key, module_id, not_before=now - 60,
                                             not_after=now + 3600)
            ledger.enroll(module_id, f"alice-{m}", "gw", int(suite), cert.encode())
            modules.append((key, module_id, cert))
        payloads = []
        for i in range(n):
            key, module_id, cert = modules[i % MODULES]
            tx = i.to_bytes(16, "big")
            payer = f"alice-{i % MODULES}"
            request = ConfirmationRequest(tx, payer, "shop", f"o{i}", "bench", 100, "EUR", tx,
                                          now + 600, suite)
            envelope = encode_envelope(request)
            ledger.create(TransactionRecord(
                tx, f"key-{i:08d}", "h", payer, "shop", 100, "EUR", f"o{i}", "bench",
                int(suite), module_id, tx, now + 600, envelope, "pending", "", None, now, now))
            response = sign_confirmation(envelope, request, decision=Decision.APPROVE,
                                         counter=i // MODULES + 1,
                                         user_verification=UserVerification.PRESENCE, key=key,
                                         module_id=module_id)
            payloads.append((envelope, response, cert, RelayResponse(
                tx, RelayStatus.OK, encode_envelope(response)).encode()))
        ca: CertificateAuthority = platform.cas[suite]
        started = time.perf_counter()
        for envelope, response, cert, _ in payloads:
            verify_confirmation(envelope, response, cert, ca.public_key, now=now,
                                last_counter=0)
        bare = n / (time.perf_counter() - started)
        checks = CertificateChecks()
        started = time.perf_counter()
        for envelope, response, cert, _ in payloads:
            verify_confirmation(envelope, response, cert, ca.public_key, now=now,
                                last_counter=0, checks=checks)
        remembered = n / (time.perf_counter() - started)
        settled = asyncio.run(_settle_all(platform, [p for *_, p in payloads], in_flight))
    return bare, remembered, settled


async def _settle_all(platform: Platform, payloads: list[bytes], in_flight: int) -> float:
    begin = time.perf_counter()
    for i in range(0, len(payloads), in_flight):
        records = await asyncio.gather(*(platform.handle_response(p)
                                         for p in payloads[i:i + in_flight]))
        for record in records:
            if record is None or record.state != "settled":
                raise SystemExit(f"bench: settlement failed: {record}")
    elapsed = time.perf_counter() - begin
    violations = platform.ledger.audit()
    await platform.aclose()
    if violations:
        raise SystemExit(f"bench: the audit failed: {violations}")
    return len(payloads) / elapsed


def postgres_databases(url: str | None) -> tuple[Callable[[], str], Callable[[], None]]:
    """A factory of new PostgreSQL databases, and what stops the server it started."""
    if url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.ledger_backends import PostgresServer

        server = PostgresServer()
        return server.new_ledger_url, server.stop
    import psycopg

    count = 0

    def create() -> str:
        nonlocal count
        count += 1
        name = f"blegw_bench_{os.getpid()}_{count}"
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}".encode())
        info = psycopg.conninfo.conninfo_to_dict(url)
        info["dbname"] = name
        return psycopg.conninfo.make_conninfo(**info)   # a libpq key=value string

    return create, lambda: None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=400)
    parser.add_argument("--in-flight", type=int, default=32)
    parser.add_argument("--postgres", help="a PostgreSQL server's URL (its user may create "
                                           "databases); default: start a temporary one")
    args = parser.parse_args()
    create, stop = postgres_databases(args.postgres)
    try:
        print(f"verification + settlement vs bare verification, {args.payments} approvals "
              f"per suite, {args.in_flight} in flight, one process")
        print("  ratio = settle/s over bare verify/s; 'remembered': bare verification with the "
              "certificate checks remembered")
        print(f"  {'suite':<12} {'bare verify/s':>14} {'remembered/s':>13} "
              f"{'SQLite settle/s':>16} {'ratio':>7} {'vs rem.':>7} "
              f"{'PostgreSQL settle/s':>20} {'ratio':>7} {'vs rem.':>7}")
        for suite in Suite:
            bare_s, rem_s, sqlite = measure(suite, args.payments, args.in_flight, None)
            bare_p, rem_p, postgres = measure(suite, args.payments, args.in_flight, create())
            bare, rem = (bare_s + bare_p) / 2, (rem_s + rem_p) / 2
            print(f"  {suite.name:<12} {bare:14.0f} {rem:13.0f} {sqlite:16.0f} "
                  f"{sqlite / bare:7.1%} {sqlite / rem:7.1%} {postgres:20.0f} "
                  f"{postgres / bare:7.1%} {postgres / rem:7.1%}")
    finally:
        stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
