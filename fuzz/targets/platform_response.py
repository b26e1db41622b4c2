"""The platform's response path: ``Platform.handle_response`` over a real SQLite ledger.

A real platform (CA keys, ledger file in a temporary directory) with two accounts, one enrolled
module and always one pending transaction. The first input byte picks the shape: odd, the rest is
a whole relay response as it arrives from the broker; even, the rest is the module's answer
envelope, wrapped by the harness in a status-OK response for the pending transaction, so the
fuzzer reaches the verification and settlement code. After each input the money is counted: the
sum of balances never changes and no balance is negative; every 500 inputs the ledger's own audit
(``blegw-platform audit``) must find nothing. Nothing may escape ``handle_response``:
it runs inside the platform's MQTT reader.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from pathlib import Path

from blegw_platform.platform import Platform, TransactionInput
from e2e import CertificateAuthority, Suite, generate_private_key
from relay_contract import OwnerStatus, RelayProgress, RelayResponse, RelayStatus

from ..engine import FuzzOracleError, Target
from ._samples import certificates, envelopes

ACCOUNTS = {"alice": 10**9, "shop": 0}

_loop = asyncio.new_event_loop()
_dir = Path(tempfile.mkdtemp(prefix="platform-"))  # in the engine's scratch directory
_platform = Platform(_dir / "platform")
_pending: list[bytes] = []


def _enroll() -> None:
    for account, balance in ACCOUNTS.items():
        _platform.ledger.add_account(account, "EUR", balance)
    now = int(time.time())
    key = generate_private_key(Suite.P256_SHA256)
    ca: CertificateAuthority = _platform.cas[Suite.P256_SHA256]
    cert = ca.issue(key.public_key, b"\x33" * 16, not_before=now - 60, not_after=now + 86400)
    _loop.run_until_complete(_platform.enroll(cert.encode(), "alice", "gw-fuzz"))


_enroll()


async def _pending_id() -> bytes:
    """The pending transaction's id, making a new one when the last input finished it."""
    if _pending:
        record = await _platform.get(_pending[0])
        if record is not None and record.state == "pending":
            return _pending[0]
        _pending.clear()
    data = TransactionInput("alice", "shop", "order-1", "two coffees", 450, "EUR")
    record, _ = await _platform.create(data, secrets.token_hex(8))
    while not _platform._outbox.empty():  # nobody publishes here: keep memory flat
        _platform._outbox.get_nowait()
    _pending.append(record.id)
    return record.id


async def _run(data: bytes) -> None:
    tx_id = await _pending_id()
    wrapped = RelayResponse(tx_id, RelayStatus.OK, data[1:]).encode()
    payload = data[1:] if data[0] & 1 else wrapped
    await asyncio.wait_for(_platform.handle_response(payload, "gw-fuzz"), 5)


def one_input(data: bytes) -> None:
    if not data:
        return
    _loop.run_until_complete(_run(data))
    balances = [_platform.ledger.balance(a) for a in ACCOUNTS]
    if sum(balances) != sum(ACCOUNTS.values()) or min(balances) < 0:
        raise FuzzOracleError(f"money not conserved: balances {balances}")
    if len(_platform.timings) > 10_000:
        raise FuzzOracleError(f"Platform.timings holds {len(_platform.timings)} entries")


def audit() -> None:
    """The ledger's own audit (``blegw-platform audit``): it reads every transaction, so the
    judge runs it every few hundred inputs, outside the per-input timing."""
    violations = _platform.ledger.audit()
    if violations:
        raise FuzzOracleError(f"the ledger audit fails: {violations[:3]}")


def seeds() -> list[bytes]:
    timings = {"queue": 0.001, "connect": 0.0, "ble": 0.2, "gateway_own": 0.003}
    out = [b"\x00" + env for env in envelopes()]
    out += [b"\x01" + RelayResponse(b"\x11" * 16, RelayStatus(s), certificates()[
        Suite.P256_SHA256][1], "", timings).encode() for s in (0, 2, 4)]
    out += [b"\x01" + RelayProgress(b"\x11" * 16, OwnerStatus.AWAITING_OWNER).encode()]
    return out


TARGET = Target("platform_response", one_input, (), seeds, memory_base=1024 * 1024,
                max_len=9000, periodic=audit)
