"""A platform killed with SIGKILL while it pays codes: each code paid once or not at all.

A real subprocess pays codes through ``Ledger.settle_code`` on a real SQLite file (and on a
real PostgreSQL database, where the worker is the client whose transaction dies), reusing code
ids at random (copied codes), and is killed at a random moment; after every kill the books
balance, every used code points to the one settled transaction that paid it and every code
transaction to its used code, and committed payments survived.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blegw_platform.code_payments import code_idempotency_key
from blegw_platform.ledger import Ledger, PaymentRefused, TransactionRecord
from tests.ledger_backends import raw_query

WORKER = r'''
import hashlib, random, sys, time
from pathlib import Path
from blegw_platform.code_payments import code_idempotency_key
from blegw_platform.ledger import Ledger, PaymentRefused, TransactionRecord
ledger = Ledger(sys.argv[1] if sys.argv[1].startswith("postgresql:") else Path(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
start = int(sys.argv[3])
print("ready", flush=True)
for n in range(start, start + 100000):
    code = hashlib.sha256(b"code%d" % rng.randint(0, n)).digest()   # often one paid before
    payer, payee = rng.choice([("alice", "shop"), ("bob", "shop"), ("alice", "bob")])
    now = time.time()
    tx = n.to_bytes(16, "big")
    record = TransactionRecord(tx, code_idempotency_key(code), "h%d" % n, payer, payee,
                               rng.randint(1, 300), "EUR", "payment code", "d", 1, None,
                               code[:16], int(now) + 60, b"e", "pending", "", None, now, now,
                               "till")
    try:
        ledger.settle_code(record, code, 1, payer, payee)
    except PaymentRefused:
        continue
'''


def _consistent(path: Path | str) -> int:
    """Every used code has its settled transaction and back; the number of paid codes."""
    used = {bytes(code): bytes(tx) for code, tx in raw_query(
        path, "SELECT code_id, tx_id FROM used_codes")}
    code_txs = {bytes(tx): state for tx, state in raw_query(
        path, "SELECT id, state FROM transactions WHERE idempotency_key LIKE 'code %'")}
    assert set(used.values()) == set(code_txs)
    assert set(code_txs.values()) <= {"settled"}
    return len(used)


def test_a_platform_killed_while_paying_codes_pays_each_code_once(ledger_at: Path | str
                                                                  ) -> None:
    path = ledger_at
    ledger = Ledger(path)
    for account, balance in (("alice", 10**7), ("bob", 10**6), ("shop", 0)):
        ledger.add_account(account, "EUR", balance)
    ledger.close()
    rng = random.Random(1616)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    paid_before = 0
    for round_ in range(5 if isinstance(path, Path) else 3):  # PostgreSQL: the client dies
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(round_),
                                   str(round_ * 100000 + 1)], env=env, stdout=subprocess.PIPE)
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.5))                   # a random moment of its work
        assert worker.poll() is None, "the worker ended before it was killed"
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
        worker.stdout.close()
        reopened = Ledger(path)
        try:
            assert reopened.audit() == []
        finally:
            reopened.close()
        paid = _consistent(path)
        assert paid >= paid_before                          # committed payments survived
        paid_before = paid
    assert paid_before > 0, "the workers paid nothing before they were killed"
    # the honest path after the crashes: a new code pays once, its copy is refused
    ledger = Ledger(path)
    try:
        before = ledger.balance("alice")
        now = time.time()
        code = b"\xee" * 32
        record = TransactionRecord(b"\xff" * 16, code_idempotency_key(code), "honest",
                                   "alice", "shop", 5, "EUR", "payment code", "d", 1, None,
                                   code[:16], int(now) + 60, b"e", "pending", "", None, now,
                                   now, "till")
        settled, created = ledger.settle_code(record, code, 1, "alice", "shop")
        assert (settled.state, created) == ("settled", True)
        copy = TransactionRecord(b"\xfe" * 16, "other", "copy", "alice", "shop", 5, "EUR",
                                 "payment code", "d", 1, None, b"\xfd" * 16, int(now) + 60,
                                 b"e", "pending", "", None, now, now, "till")
        with pytest.raises(PaymentRefused) as refused:
            ledger.settle_code(copy, code, 1, "alice", "shop")
        assert refused.value.code == "code_used"
        assert ledger.balance("alice") == before - 5
        assert ledger.audit() == []
    finally:
        ledger.close()
