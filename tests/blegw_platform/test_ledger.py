"""The ledger on a real SQLite file and a real PostgreSQL server: settle once, never negative,
first outcome wins."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from blegw_platform.ledger import Ledger, LedgerError, TransactionRecord
from blegw_platform.platform import Platform
from tests.ledger_backends import INTEGRITY_ERRORS, raw_execute


def record(i: int, amount: int = 100, module: bytes | None = b"m" * 16) -> TransactionRecord:
    now = time.time()
    return TransactionRecord(i.to_bytes(16, "big"), f"key-{i:06d}", "h", "alice", "shop",
                             amount, "EUR", "o", "d", 1, module, i.to_bytes(16, "big"),
                             int(now) + 60, b"env", "pending", "", None, now, now)


@pytest.fixture
def ledger(ledger_at: Path | str) -> Iterator[Ledger]:
    ledger = Ledger(ledger_at)
    ledger.add_account("alice", "EUR", 250)
    ledger.add_account("shop", "EUR", 0)
    ledger.enroll(b"m" * 16, "alice", "gw", 1, b"cert")
    yield ledger
    ledger.close()


def test_settles_once_and_first_outcome_wins(ledger: Ledger) -> None:
    ledger.create(record(1))
    done = ledger.finish_many([(record(1).id, "settled", "", 1),
                               (record(1).id, "settled", "", 2)])
    assert [r.state for r in done] == ["settled", "settled"]
    assert (ledger.balance("alice"), ledger.balance("shop")) == (150, 100)
    assert ledger.finish(record(1).id, "rejected", "late").state == "settled"
    assert ledger.last_counter(b"m" * 16) == 1


def test_balance_never_negative_and_replay(ledger: Ledger, ledger_at: Path | str) -> None:
    ledger.create(record(1, amount=200))
    ledger.create(record(2, amount=200))
    ledger.create(record(3, amount=10))
    a, b, c = ledger.finish_many([(record(1).id, "settled", "", 5),
                                  (record(2).id, "settled", "", 6),
                                  (record(3).id, "settled", "", 6)])
    assert (a.state, b.state, b.reason) == ("settled", "rejected", "insufficient_funds")
    assert (c.state, c.reason) == ("rejected", "replay")
    assert ledger.balance("alice") == 50
    with pytest.raises(LedgerError):
        ledger.add_account("mallory", "EUR", -1)
    # The CHECK constraint backs the code, whatever writes to the database.
    with pytest.raises(INTEGRITY_ERRORS):
        raw_execute(ledger_at, "UPDATE accounts SET balance_minor=-1 WHERE id='alice'")
    with pytest.raises(INTEGRITY_ERRORS):
        raw_execute(ledger_at, f"UPDATE accounts SET balance_minor=balance_minor+{2**62} "
                               "WHERE id='alice'")
    assert ledger.audit() == []


def test_idempotency_keys(ledger: Ledger) -> None:
    first, created = ledger.create(record(1))
    assert created
    again, created = ledger.create(record(1))
    assert not created
    assert again.id == first.id
    other = record(1)
    other = TransactionRecord(*[getattr(other, f) if f != "request_hash" else "x"
                                for f in TransactionRecord.__slots__])
    with pytest.raises(LedgerError, match="different request"):
        ledger.create(other)


def test_a_failed_batch_changes_nothing(ledger: Ledger) -> None:
    ledger.create(record(1))
    with pytest.raises(LedgerError):
        ledger.finish_many([(record(1).id, "settled", "", 1),
                            (b"\xff" * 16, "settled", "", 2)])
    assert ledger.get(record(1).id).state == "pending"  # type: ignore[union-attr]
    assert ledger.balance("alice") == 250


def test_platform_private_keys_are_owner_only(tmp_path: Path) -> None:
    """Every private key the platform makes (a CA and a request-signing key per suite) exists
    and only its owner can read it; the check fails if no key was found at all."""
    platform = Platform(tmp_path / "p")
    try:
        keys = sorted(key.name for key in (tmp_path / "p").glob("*.key"))
        assert keys == ["ca-p256.key", "ca-sm2.key", "request-p256.key", "request-sm2.key"]
        for name in keys:
            assert stat.S_IMODE((tmp_path / "p" / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE((tmp_path / "p").stat().st_mode) == 0o700
    finally:
        platform.close()


async def test_closing_waits_for_a_call_left_running_by_a_cancelled_task(
        ledger_at: Path | str) -> None:
    """A task cancelled while awaiting ``Ledger.run`` (a platform shutting down mid-notice)
    leaves its call running in the worker thread; closing the database under it crashed the
    whole test process with a segfault in sqlite3. ``close`` now waits for that call, and a
    call after it gets a typed error instead of touching a closed connection."""
    import asyncio
    import threading

    from blegw_platform.ledger import LedgerUnavailable

    ledger = Ledger(ledger_at)
    ledger.add_account("alice", "EUR", 1000)
    inside, release = threading.Event(), threading.Event()
    results: list[int] = []

    def slow_balance() -> int:
        inside.set()
        release.wait(5)
        value = ledger.balance("alice")  # on the database while close() is asked for
        results.append(value)
        return value

    task = asyncio.create_task(ledger.run(slow_balance))
    await asyncio.to_thread(inside.wait, 5)
    task.cancel()
    closer = asyncio.create_task(asyncio.to_thread(ledger.close))
    await asyncio.sleep(0.05)
    assert not closer.done()  # close waits for the call still running
    release.set()
    await closer
    assert results == [1000]
    with pytest.raises(LedgerUnavailable):
        await ledger.run(ledger.balance, "alice")
    ledger.close()  # closing twice is harmless


def test_a_dynamic_code_settles_once_on_either_database(ledger: Ledger) -> None:
    """Flow F-E's single use (docs/dynamic-codes.md) is the database's, on both backends: a
    payment code pays once, a merchant's perturbation code pays once, a retry of the same
    submission from the same terminal gets the same transaction, and the books balance."""
    from dataclasses import replace

    from blegw_platform.ledger import PaymentRefused

    device, perturbation = b"d" * 16, b"p" * 16
    first = replace(record(1, amount=40), request_hash="req-1", terminal="till-1")
    settled, created = ledger.settle_dynamic_code(first, b"1" * 32, device, perturbation)
    assert (settled.state, created) == ("settled", True)
    again, created = ledger.settle_dynamic_code(replace(first, id=b"x" * 16), b"1" * 32,
                                                device, perturbation)
    assert (again.id, created) == (first.id, False)
    assert ledger.dynamic_retry("req-1", "till-1") == settled
    with pytest.raises(PaymentRefused) as used:  # the same payment code from another till
        ledger.settle_dynamic_code(replace(record(2, amount=40), request_hash="req-2",
                                           terminal="till-2"), b"1" * 32, device, b"q" * 16)
    assert used.value.code == "payment_code_used"
    with pytest.raises(PaymentRefused) as stale:  # a new payment code, the old screen
        ledger.settle_dynamic_code(replace(record(3, amount=40), request_hash="req-3",
                                           terminal="till-1"), b"3" * 32, device, perturbation)
    assert stale.value.code == "stale_perturbation"
    assert (ledger.balance("alice"), ledger.balance("shop")) == (210, 40)
    assert ledger.audit() == []
