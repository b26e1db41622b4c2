"""Property tests of the books on a real SQLite file and a real PostgreSQL database: random
sequences of payments, declines, rejections, replays, unknown payees, currency mismatches,
balance changes and restarts keep the audit clean and the balances equal to a simple model; a
worker killed with SIGKILL at random moments leaves books that reopen clean and go on
settling."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from blegw_platform.ledger import (
    MAX_BALANCE_MINOR,
    Ledger,
    PaymentRefused,
    TransactionRecord,
)
from tests.ledger_backends import BACKENDS, raw_query, wipe

ACCOUNTS = {"alice": "EUR", "bob": "EUR", "shop": "EUR", "usd-shop": "USD", "carol": "USD"}
PAYERS = {"alice": b"a" * 16, "bob": b"b" * 16, "carol": b"c" * 16}
NAMES = [*ACCOUNTS, "nobody"]


def record(n: int, payer: str, payee: str, amount: int, currency: str) -> TransactionRecord:
    now = time.time()
    tx = n.to_bytes(16, "big")
    return TransactionRecord(tx, f"key-{n:08d}", f"h{n}", payer, payee, amount, currency, "o",
                             "d", 1, PAYERS.get(payer), tx, int(now) + 60, b"env", "pending", "",
                             None, now, now)


class Books(RuleBasedStateMachine):
    """The ledger against a model: balances, pending payments, each module's last counter."""

    transactions = Bundle("transactions")

    def __init__(self, database: str | None = None) -> None:
        """On a new SQLite file, or on ``database`` (PostgreSQL) emptied first."""
        super().__init__()
        self.dir = tempfile.TemporaryDirectory(prefix="books-")
        self.path: Path | str = Path(self.dir.name) / "ledger.sqlite3"
        if database is not None:
            wipe(database)
            self.path = database
        self.ledger = Ledger(self.path)
        self.balances: dict[str, int] = {}
        self.pending: dict[bytes, TransactionRecord] = {}
        self.final: dict[bytes, str] = {}
        self.last = dict.fromkeys(PAYERS.values(), 0)
        self.spent: dict[bytes, list[int]] = {m: [] for m in PAYERS.values()}
        self.n = 0

    @initialize(alice=st.integers(0, 10**6), bob=st.integers(0, 10**6),
                carol=st.integers(0, 10**6))
    def open_accounts(self, alice: int, bob: int, carol: int) -> None:
        for account, balance in {"alice": alice, "bob": bob, "shop": 0, "usd-shop": 0,
                                 "carol": carol}.items():
            self.ledger.add_account(account, ACCOUNTS[account], balance)
            self.balances[account] = balance
        for payer, module in PAYERS.items():
            self.ledger.enroll(module, payer, "gw", 1, b"cert")

    @rule(target=transactions, payer=st.sampled_from(sorted(PAYERS)),
          payee=st.sampled_from(NAMES), amount=st.integers(1, 2 * 10**6),
          currency=st.sampled_from(["EUR", "USD"]))
    def create(self, payer: str, payee: str, amount: int, currency: str) -> bytes:
        self.n += 1
        tx = record(self.n, payer, payee, amount, currency)
        expected_refusal = ("same_account" if payer == payee else
                            "unknown_payee" if payee not in ACCOUNTS else
                            "currency_mismatch" if {ACCOUNTS[payer], ACCOUNTS[payee]} != {currency}
                            else None)
        try:
            self.ledger.create(tx)
        except PaymentRefused as exc:
            assert exc.code == expected_refusal
            self.final[tx.id] = "refused"
        else:
            assert expected_refusal is None
            self.pending[tx.id] = tx
        return tx.id

    @rule(tx_id=transactions, outcome=st.sampled_from(["settled", "declined", "rejected",
                                                       "timed_out"]),
          replay=st.integers(-1, 7))
    def answer(self, tx_id: bytes, outcome: str, replay: int) -> None:
        """The module's answer (a fresh counter, or one spent before) or any other outcome."""
        tx = self.pending.get(tx_id)
        module = PAYERS.get(tx.payer) if tx is not None else None
        counter = None
        if outcome in ("settled", "declined") and module is not None:
            spent = self.spent[module]
            counter = spent[replay % len(spent)] if replay >= 0 and spent \
                else self.last[module] + 1
        if tx_id in self.final and self.final[tx_id] == "refused":
            return                                  # nothing was recorded for it
        result = self.ledger.finish_many([(tx_id, outcome, "", counter)])
        if tx is None:                             # already final: nothing changes
            assert result[0].state == self.final[tx_id]
            return
        state = outcome
        assert module is not None
        if counter is not None and counter <= self.last[module]:
            state = "rejected"
        elif counter is not None:
            self.last[module] = counter
            self.spent[module].append(counter)
        if state == "settled":
            if self.balances[tx.payer] < tx.amount_minor \
                    or self.balances[tx.payee] + tx.amount_minor > MAX_BALANCE_MINOR:
                state = "rejected"
            else:
                self.balances[tx.payer] -= tx.amount_minor
                self.balances[tx.payee] += tx.amount_minor
        assert result[0].state == state, (result[0], state)
        del self.pending[tx_id]
        self.final[tx_id] = state

    @rule(tx_id=consumes(transactions))
    def deliver_twice(self, tx_id: bytes) -> None:
        """The same settlement delivered twice in one batch and again later."""
        if tx_id not in self.pending:
            return
        tx = self.pending[tx_id]
        module = PAYERS[tx.payer]
        counter = self.last[module] + 1
        first, second = self.ledger.finish_many([(tx_id, "settled", "", counter),
                                                 (tx_id, "settled", "", counter + 1)])
        assert first.state == second.state
        self.last[module] = counter
        self.spent[module].append(counter)
        if first.state == "settled":
            self.balances[tx.payer] -= tx.amount_minor
            self.balances[tx.payee] += tx.amount_minor
        del self.pending[tx_id]
        self.final[tx_id] = first.state

    @rule(account=st.sampled_from(sorted(ACCOUNTS)), balance=st.integers(0, 10**6))
    def seed(self, account: str, balance: int) -> None:
        """The operator sets a balance: an adjustment keeps the books balanced."""
        self.ledger.add_account(account, ACCOUNTS[account], balance)
        self.balances[account] = balance

    @rule()
    def restart(self) -> None:
        self.ledger.close()
        self.ledger = Ledger(self.path)

    @invariant()
    def books_balance(self) -> None:
        if not self.balances:
            return
        assert self.ledger.audit() == []
        assert {a: self.ledger.balance(a) for a in ACCOUNTS} == self.balances

    def teardown(self) -> None:
        self.ledger.close()
        self.dir.cleanup()


@pytest.mark.parametrize("backend", BACKENDS)
def test_random_payments_declines_replays_and_restarts_keep_the_books(
        backend: str, request: pytest.FixtureRequest) -> None:
    database, examples = None, 40
    if backend == "postgresql":
        # Fewer runs: each commit there waits for a real fsync of the server's WAL.
        database, examples = request.getfixturevalue("postgres_server").new_ledger_url(), 12
    run_state_machine_as_test(
        lambda: Books(database),
        settings=settings(max_examples=examples, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow]))


WORKER = r'''
import random, sys, time
from pathlib import Path
from blegw_platform.ledger import Ledger, PaymentRefused, TransactionRecord
location = sys.argv[1]
ledger = Ledger(location if location.startswith("postgresql:") else Path(location))
rng = random.Random(int(sys.argv[2]))
start = int(sys.argv[3])
payers = {"alice": b"a" * 16, "bob": b"b" * 16}
print("ready", flush=True)
for n in range(start, start + 100000):
    payer = rng.choice(sorted(payers))
    payee = rng.choice(["shop", "bob", "alice", "nobody", "usd-shop"])
    now = time.time()
    tx = n.to_bytes(16, "big")
    try:
        ledger.create(TransactionRecord(tx, f"k{n}", "h", payer, payee, rng.randint(1, 300),
                                        "EUR", "o", "d", 1, payers[payer], tx, int(now) + 60,
                                        b"e", "pending", "", None, now, now))
    except PaymentRefused:
        continue
    if rng.random() < 0.1:
        ledger.add_account(rng.choice(["shop", "bob"]), "EUR", rng.randint(0, 5000))
    counter = ledger.last_counter(payers[payer]) + rng.choice([1, 1, 1, 0])
    outcome = rng.choice(["settled", "settled", "declined", "rejected"])
    ledger.finish_many([(tx, outcome, "", counter)])
'''


def _settled_sums(path: Path | str) -> dict[str, int]:
    """Balances recomputed without postings: issuance plus the settled transactions."""
    sums = {account: int(total) for account, total in raw_query(
        path, "SELECT account, SUM(amount_minor) FROM issuance GROUP BY account")}
    for payer, payee, amount in raw_query(
            path, "SELECT payer, payee, amount_minor FROM transactions WHERE state='settled'"):
        sums[payer] = sums.get(payer, 0) - amount
        sums[payee] = sums.get(payee, 0) + amount
    return sums


def test_a_ledger_worker_killed_with_sigkill_leaves_balanced_books(ledger_at: Path | str
                                                                  ) -> None:
    """On PostgreSQL the worker is the client: its open transaction dies with it."""
    path = ledger_at
    ledger = Ledger(path)
    for account, currency, balance in (("alice", "EUR", 10**6), ("bob", "EUR", 5000),
                                       ("shop", "EUR", 0), ("usd-shop", "USD", 0)):
        ledger.add_account(account, currency, balance)
    ledger.enroll(b"a" * 16, "alice", "gw", 1, b"cert")
    ledger.enroll(b"b" * 16, "bob", "gw", 1, b"cert")
    ledger.close()
    rng = random.Random(1107)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    settled_before = 0
    # Fewer kills on PostgreSQL: there the worker is only the client (the server never dies).
    for round_ in range(6 if isinstance(path, Path) else 3):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(round_),
                                   str(round_ * 100000 + 1)], env=env, stdout=subprocess.PIPE)
        assert worker.stdout is not None
        assert worker.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.6))                   # a random moment of its work
        assert worker.poll() is None, "the worker ended before it was killed"
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(10) == -signal.SIGKILL
        worker.stdout.close()
        reopened = Ledger(path)
        try:
            assert reopened.audit() == []
            sums = _settled_sums(path)
            for account in ("alice", "bob", "shop", "usd-shop"):
                assert reopened.balance(account) == sums.get(account, 0), account
            settled = reopened.summary().settled
            assert settled >= settled_before            # committed work survived the kill
            settled_before = settled
        finally:
            reopened.close()
    assert settled_before > 0, "the workers settled nothing before they were killed"
    # The honest path after the crashes: one more payment settles and the books balance.
    ledger = Ledger(path)
    try:
        before = ledger.balance("alice"), ledger.balance("shop")
        tx = record(999_999_999, "alice", "shop", 1, "EUR")
        ledger.create(tx)
        done = ledger.finish(tx.id, "settled", "", counter=ledger.last_counter(b"a" * 16) + 1)
        assert done.state == "settled"
        assert (ledger.balance("alice"), ledger.balance("shop")) == (before[0] - 1, before[1] + 1)
        assert ledger.audit() == []
    finally:
        ledger.close()
