"""A platform killed with SIGKILL while it settles dynamic codes: each payment code and each
perturbation code of a merchant device pays once or not at all.

A real subprocess settles through ``Ledger.settle_dynamic_code`` on a real SQLite file, reusing
payment ids and perturbation codes at random (replays, cloned merchant units), and is killed at
a random moment; after every kill the books balance, every use points to the one settled
transaction that paid it and back, and committed payments survived.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blegw_platform.ledger import Ledger, PaymentRefused, TransactionRecord

WORKER = r'''
import hashlib, random, sys, time
from pathlib import Path
from blegw_platform.ledger import Ledger, PaymentRefused, TransactionRecord
ledger = Ledger(Path(sys.argv[1]))
rng = random.Random(int(sys.argv[2]))
start = int(sys.argv[3])
print("ready", flush=True)
for n in range(start, start + 100000):
    payment = hashlib.sha256(b"pay%d" % rng.randint(0, n)).digest()     # often paid before
    merchant = bytes([rng.randint(0, 2)]) * 16
    perturbation = hashlib.sha256(b"r%d" % rng.randint(0, n)).digest()[:16]  # often reused
    now = time.time()
    record = TransactionRecord(n.to_bytes(16, "big"), "dynamic " + payment.hex(), "h%d" % n,
                               rng.choice(["alice", "bob"]), "shop", rng.randint(1, 300), "EUR",
                               "dynamic code", "d", 1, None, n.to_bytes(16, "big"),
                               int(now) + 60, b"e", "pending", "", None, now, now, "till")
    try:
        ledger.settle_dynamic_code(record, payment, merchant, perturbation)
    except PaymentRefused:
        continue
'''


def _consistent(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        used = dict(db.execute("SELECT payment_id, tx_id FROM used_dynamic_codes").fetchall())
        txs = dict(db.execute("SELECT id, state FROM transactions WHERE idempotency_key "
                              "LIKE 'dynamic %'").fetchall())
        assert set(used.values()) == set(txs)
        assert set(txs.values()) <= {"settled"}
        return len(used)
    finally:
        db.close()


def test_a_platform_killed_while_settling_dynamic_codes_pays_each_once(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    for account, balance in (("alice", 10**7), ("bob", 10**7), ("shop", 0)):
        ledger.add_account(account, "EUR", balance)
    ledger.close()
    rng = random.Random(1717)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    paid_before = 0
    for round_ in range(3):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(round_),
                                   str(round_ * 100000 + 1)], env=env, stdout=subprocess.PIPE)
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.4))                   # a random moment of its work
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
        assert paid >= paid_before
        paid_before = paid
    assert paid_before > 0, "the workers paid nothing before they were killed"
    ledger = Ledger(path)  # the honest path after the crashes
    try:
        before = ledger.balance("alice")
        now = time.time()
        record = TransactionRecord(b"\xff" * 16, "dynamic honest", "honest", "alice", "shop", 5,
                                   "EUR", "dynamic code", "d", 1, None, b"\xfe" * 16,
                                   int(now) + 60, b"e", "pending", "", None, now, now, "till")
        settled, created = ledger.settle_dynamic_code(record, b"\xee" * 32, b"\x09" * 16,
                                                      b"\x01" * 16)
        assert (settled.state, created) == ("settled", True)
        replay = TransactionRecord(b"\xfd" * 16, "dynamic other", "other", "alice", "shop", 5,
                                   "EUR", "dynamic code", "d", 1, None, b"\xfc" * 16,
                                   int(now) + 60, b"e", "pending", "", None, now, now, "till")
        with pytest.raises(PaymentRefused) as refused:
            ledger.settle_dynamic_code(replay, b"\xed" * 32, b"\x09" * 16, b"\x01" * 16)
        assert refused.value.code == "stale_perturbation"
        assert ledger.balance("alice") == before - 5
        assert ledger.audit() == []
    finally:
        ledger.close()
