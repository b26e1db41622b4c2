"""The ledger's stores: two workers racing on one database, schema versions and migrations,
and the configuration that chooses the database. Each runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from blegw_platform.ledger import (
    Ledger,
    LedgerBusy,
    LedgerConfigError,
    LedgerError,
    LedgerUnavailable,
    PaymentRefused,
    TransactionRecord,
    _retrying,
    ledger_location,
)
from tests.ledger_backends import PostgresServer, raw_execute, raw_query, server_binaries

DATA = Path(__file__).parent / "data"
MODULE = b"m" * 16


VERSIONS = "SELECT version FROM schema_migrations ORDER BY version"
EVERY_VERSION = [(1,), (2,), (3,)]
"""Each migration recorded once: version 1 (the tables before versions), 2 (the dynamic
codes' single-use table)."""

def record(i: int, amount: int, request_hash: str = "h") -> TransactionRecord:
    now = time.time()
    return TransactionRecord(i.to_bytes(16, "big"), f"key-{i:06d}", request_hash, "alice",
                             "shop", amount, "EUR", "o", "d", 1, MODULE, i.to_bytes(16, "big"),
                             int(now) + 60, b"env", "pending", "", None, now, now)


def books(location: Path | str, balance: int) -> None:
    ledger = Ledger(location)
    try:
        ledger.add_account("alice", "EUR", balance)
        ledger.add_account("shop", "EUR", 0)
        ledger.enroll(MODULE, "alice", "gw", 1, b"cert")
    finally:
        ledger.close()


def race(workers: list[Callable[[], Any]]) -> list[Any]:
    """Run each worker in its own thread, released together; their results or exceptions."""
    start = threading.Barrier(len(workers))
    results: list[Any] = [None] * len(workers)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = workers[i]()
        except Exception as exc:  # reported to the test, which checks each one
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a worker hung"
    return results


def test_two_workers_settling_from_one_balance_never_overspend_or_settle_twice(
        ledger_at: Path | str) -> None:
    """Two platform workers (two connections) receive the same approvals, in different
    orders, at the same time: 20 payments of 30 from a balance of 250. At most 8 can settle;
    each transaction gets one outcome that both workers see; the books balance."""
    books(ledger_at, 250)
    setup = Ledger(ledger_at)
    for i in range(1, 21):
        setup.create(record(i, 30))
    setup.close()
    items = [(record(i, 30).id, "settled", "", i) for i in range(1, 21)]
    workers = [Ledger(ledger_at), Ledger(ledger_at)]
    try:
        def deliver(ledger: Ledger, seed: int) -> dict[bytes, str]:
            order = items[:]
            random.Random(seed).shuffle(order)
            seen = {}
            for item in order:                                  # one batch per approval
                seen[item[0]] = ledger.finish_many([item])[0].state
            return seen

        first, second = race([lambda: deliver(workers[0], 1), lambda: deliver(workers[1], 2)])
        assert isinstance(first, dict) and isinstance(second, dict), (first, second)
        assert first == second                                 # one outcome per transaction
        settled = sum(1 for state in first.values() if state == "settled")
        assert 1 <= settled <= 8
        assert workers[0].balance("alice") == 250 - 30 * settled >= 0
        assert workers[0].balance("shop") == 30 * settled
        assert workers[0].audit() == []
        # The honest path after the race: a new payment within the balance settles.
        honest = record(100, 10)
        workers[1].create(honest)
        counter = workers[1].last_counter(MODULE) + 1
        assert workers[1].finish(honest.id, "settled", "", counter=counter).state == "settled"
        assert workers[0].audit() == []
    finally:
        for ledger in workers:
            ledger.close()


def test_one_code_paid_by_two_workers_at_once_pays_once(ledger_at: Path | str) -> None:
    """The same transaction code scanned twice and submitted to two workers at the same
    moment (two submissions: the code's idempotency key, each its own transaction id): one
    pays, the other is ``code_used``."""
    books(ledger_at, 100)
    workers = [Ledger(ledger_at), Ledger(ledger_at)]
    code = b"c" * 32
    first = record(1, 60, "a")
    copy = replace(record(2, 60, "b"), idempotency_key=first.idempotency_key)
    try:
        results = race([lambda: workers[0].settle_code(first, code, 1, "alice", "shop"),
                        lambda: workers[1].settle_code(copy, code, 1, "alice", "shop")])
        paid = [r for r in results if isinstance(r, tuple)]
        refused = [r for r in results if isinstance(r, PaymentRefused)]
        assert len(paid) == 1 and paid[0][0].state == "settled", results
        assert len(refused) == 1 and refused[0].code == "code_used", results
        assert (workers[0].balance("alice"), workers[0].balance("shop")) == (40, 60)
        assert workers[1].code_transaction(code) == paid[0][0]
        assert workers[0].audit() == []
    finally:
        for ledger in workers:
            ledger.close()


def test_workers_starting_together_migrate_once(ledger_at: Path | str) -> None:
    """Four workers open an empty database at once: one creates the schema, none fails."""
    opened = race([lambda: Ledger(ledger_at) for _ in range(4)])
    try:
        assert all(isinstance(ledger, Ledger) for ledger in opened), opened
        assert raw_query(ledger_at, VERSIONS) == EVERY_VERSION
        opened[0].add_account("alice", "EUR", 5)
        assert opened[3].balance("alice") == 5
    finally:
        for ledger in opened:
            if isinstance(ledger, Ledger):
                ledger.close()


def test_a_ledger_from_a_newer_program_is_refused(ledger_at: Path | str) -> None:
    """A database migrated by a newer version is not written by an older one."""
    books(ledger_at, 5)
    raw_execute(ledger_at, "INSERT INTO schema_migrations VALUES (99, 0)")
    with pytest.raises(LedgerUnavailable, match="schema version 99 is newer"):
        Ledger(ledger_at)
    raw_execute(ledger_at, "DELETE FROM schema_migrations WHERE version=99")
    ledger = Ledger(ledger_at)
    try:
        assert ledger.balance("alice") == 5
    finally:
        ledger.close()


def test_a_ledger_file_from_before_schema_versions_upgrades_in_place(tmp_path: Path) -> None:
    """The file the platform wrote before the version table (data/ledger-before-versions.sql,
    made by that code) opens, keeps every balance, transaction and used code, and pays."""
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript((DATA / "ledger-before-versions.sql").read_text())
    db.close()
    ledger = Ledger(path)
    try:
        assert raw_query(path, VERSIONS) == EVERY_VERSION
        assert ledger.audit() == []
        assert (ledger.balance("alice"), ledger.balance("shop"), ledger.balance("bob")) == \
            (675, 325, 50)
        summary = ledger.summary()
        assert (summary.transactions, summary.settled, summary.postings) == (4, 2, 4)
        assert ledger.code_transaction(b"q" * 32) is not None
        with pytest.raises(PaymentRefused, match="already used"):
            ledger.settle_code(record(50, 1, "x"), b"q" * 32, 1, "alice", "shop")
        assert ledger.terminal("till-1") is not None
        tx = record(51, 75)
        ledger.create(tx)
        counter = ledger.last_counter(MODULE) + 1
        assert ledger.finish(tx.id, "settled", "", counter=counter).state == "settled"
        assert ledger.balance("alice") == 600
        assert ledger.audit() == []
    finally:
        ledger.close()
    again = Ledger(path)                                     # a second open changes nothing
    try:
        assert raw_query(path, VERSIONS) == EVERY_VERSION
        assert again.audit() == [] and again.balance("alice") == 600
    finally:
        again.close()


def test_the_configuration_chooses_the_ledger(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLEGW_LEDGER_URL", raising=False)
    assert ledger_location(tmp_path) == tmp_path / "ledger.sqlite3"     # the default, as before
    config = tmp_path / "platform.toml"
    config.write_text('[ledger]\nurl = "books/ledger.db"\n')
    assert ledger_location(tmp_path) == tmp_path / "books" / "ledger.db"
    url = "postgresql:///blegw?host=/run/postgresql&passfile=/etc/blegw/pgpass"
    config.write_text(f'[ledger]\nurl = "{url}"\n')
    assert ledger_location(tmp_path) == url
    monkeypatch.setenv("BLEGW_LEDGER_URL", "/srv/other.sqlite3")
    assert ledger_location(tmp_path) == Path("/srv/other.sqlite3")


@pytest.mark.parametrize(("text", "message"), [
    ('[ledger]\nurl = "postgresql://blegw:hunter2@db/blegw"\n', "no password in the URL"),
    ('[ledger]\nurl = "postgresql:///blegw?password=hunter2"\n', "no password in the URL"),
    ('[ledger]\nurl = "mysql://db/blegw"\n', "postgresql://... or a path"),
    ('[ledger]\nurl = 5\n', "ledger.url must be a string"),
    ('[ledger]\nuri = "x"\n', "unknown key ledger.uri"),
    ('[ledgr]\nurl = "x"\n', "unknown section ledgr"),
    ('[ledger\n', "not valid TOML"),
])
def test_a_hostile_or_mistyped_configuration_is_refused_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, message: str) -> None:
    monkeypatch.delenv("BLEGW_LEDGER_URL", raising=False)
    (tmp_path / "platform.toml").write_text(text)
    with pytest.raises(LedgerConfigError, match=message) as refused:
        ledger_location(tmp_path)
    assert "hunter2" not in str(refused.value)


def test_an_unreachable_database_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerUnavailable, match="ledger postgresql database nowhere"):
        Ledger(f"postgresql:///nowhere?host={tmp_path}&connect_timeout=2")
    (tmp_path / "dir.sqlite3").mkdir()
    with pytest.raises(LedgerUnavailable):
        Ledger(tmp_path / "dir.sqlite3")


def test_a_password_in_the_ledger_url_stops_the_commands_without_showing_it(
        tmp_path: Path) -> None:
    state = tmp_path / "platform"
    state.mkdir()
    (state / "platform.toml").write_text(
        '[ledger]\nurl = "postgresql://blegw:hunter2@127.0.0.1:1/blegw"\n')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    env.pop("BLEGW_LEDGER_URL", None)
    for command in (["audit"], ["seed", "--account", "alice", "--balance", "1"],
                    ["serve", "--http", "127.0.0.1:1", "--broker", "mqtt://127.0.0.1:1"]):
        done = subprocess.run([sys.executable, "-m", "blegw_platform", *command, "--state",
                               str(state)], capture_output=True, text=True, timeout=60,
                              env=env, check=False)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "no password in the URL" in done.stderr
        assert "hunter2" not in done.stdout + done.stderr
    assert sorted(p.name for p in state.iterdir()) == ["platform.toml"]


def test_a_nul_character_is_a_typed_refusal_on_postgresql(
        postgres_server: PostgresServer) -> None:
    """PostgreSQL text cannot hold NUL: the ledger refuses it as a rule, records nothing,
    and goes on (the API refuses such text earlier; this is the ledger's own check)."""
    url = postgres_server.new_ledger_url()
    books(url, 100)
    ledger = Ledger(url)
    try:
        hostile = record(1, 10)
        hostile = TransactionRecord(*[
            "tea\x00<script>" if name == "order_description" else getattr(hostile, name)
            for name in TransactionRecord.__slots__])
        with pytest.raises(LedgerError, match="NUL"):
            ledger.create(hostile)
        assert ledger.get(hostile.id) is None
        honest = record(2, 10)
        ledger.create(honest)
        counter = ledger.last_counter(MODULE) + 1
        assert ledger.finish(honest.id, "settled", "", counter=counter).state == "settled"
        assert ledger.audit() == []
    finally:
        ledger.close()


def test_a_worker_whose_database_connection_is_cut_reconnects(
        postgres_server: PostgresServer) -> None:
    """The server ends the worker's session (a fail-over, an administrator): the call in flight
    fails with a typed ``LedgerUnavailable`` (the API's 503), the next one reconnects, and the
    books are intact."""
    url = postgres_server.new_ledger_url()
    books(url, 100)
    ledger = Ledger(url + "&application_name=cut")
    try:
        tx = record(1, 10)
        ledger.create(tx)
        pid = raw_query(url, "SELECT pid FROM pg_stat_activity WHERE application_name='cut'")
        assert len(pid) == 1
        raw_execute(url, f"SELECT pg_terminate_backend({pid[0][0]})")
        with pytest.raises(LedgerUnavailable, match="connection was lost"):
            ledger.balance("alice")
        assert ledger.balance("alice") == 100                   # reconnected
        done = ledger.finish(tx.id, "settled", "", counter=1)
        assert done.state == "settled" and ledger.balance("alice") == 90
        assert ledger.audit() == []
    finally:
        ledger.close()


def test_the_worker_session_is_serializable_and_keeps_the_urls_options(
        postgres_server: PostgresServer) -> None:
    url = postgres_server.new_ledger_url()              # its options set the search_path
    ledger = Ledger(url + "&application_name=blegw-worker-7")
    try:
        show = ledger._db.execute
        assert show("SHOW default_transaction_isolation").fetchone()[0] == "serializable"
        assert show("SHOW synchronous_commit").fetchone()[0] == "on"
        assert show("SHOW application_name").fetchone()[0] == "blegw-worker-7"
        assert show("SHOW search_path").fetchone()[0] == url.rpartition("%3D")[2]
    finally:
        ledger.close()


def test_missing_postgresql_binaries_fail_the_tests_naming_the_package(tmp_path: Path) -> None:
    """CI must prove the set-up: without the server the PostgreSQL tests fail, never skip."""
    with pytest.raises(pytest.fail.Exception, match=r"run scripts/bootstrap .*postgresql"):
        server_binaries(tmp_path)
    (tmp_path / "15" / "bin").mkdir(parents=True)
    (tmp_path / "15" / "bin" / "pg_ctl").touch()
    (tmp_path / "9" / "bin").mkdir(parents=True)
    (tmp_path / "9" / "bin" / "pg_ctl").touch()
    assert server_binaries(tmp_path) == tmp_path / "15" / "bin"        # the newest


def test_one_idempotency_key_sent_to_two_workers_at_once_makes_one_transaction(
        ledger_at: Path | str) -> None:
    """A terminal's retry reaches a second worker while the first is still creating: one
    transaction is created, the other worker returns that same one (not an error, not two).
    Each worker makes its own transaction id and nonce for the request, as the platform does;
    the last rounds send the very same record twice (a duplicated delivery)."""
    books(ledger_at, 100)
    workers = [Ledger(ledger_at), Ledger(ledger_at)]
    try:
        for i in range(1, 13):
            first = record(i, 5)
            twin = replace(first, id=(1000 + i).to_bytes(16, "big"),
                           nonce=(2000 + i).to_bytes(16, "big")) if i <= 8 else first
            results = race([lambda a=first: workers[0].create(a),     # type: ignore[misc]
                            lambda b=twin: workers[1].create(b)])     # type: ignore[misc]
            assert all(isinstance(r, tuple) for r in results), results
            assert sorted(created for _, created in results) == [False, True]
            assert results[0][0].id == results[1][0].id
        assert workers[0].summary().transactions == 12
        assert workers[1].audit() == []
    finally:
        for ledger in workers:
            ledger.close()


def test_a_call_that_conflicts_on_every_attempt_ends_busy_and_records_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A conflict that never clears (a hot row hammered by other workers) ends in a typed
    ``LedgerBusy`` after a bounded number of attempts and a bounded wait, not a hang."""
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        attempts = []

        class Conflict(Exception):
            pass

        def conflicting(self: Ledger, account: str) -> None:
            attempts.append(1)
            with self._db.transaction() as db:
                db.execute("INSERT INTO accounts VALUES (?, 'EUR', 0)", (account,))
                raise Conflict

        monkeypatch.setattr(ledger._db, "retryable", (Conflict,))
        started = time.monotonic()
        with pytest.raises(LedgerBusy, match="20 attempts"):
            _retrying(conflicting)(ledger, "alice")
        assert len(attempts) == 20 and time.monotonic() - started < 2
        with pytest.raises(LedgerError, match="unknown account"):
            ledger.balance("alice")                             # nothing was recorded
    finally:
        ledger.close()


def test_a_reserved_code_is_spent_once_and_settles_by_its_confirmation(
        ledger_at: Path | str) -> None:
    """``reserve_code`` on both databases: the code is spent with the pending transaction, a
    copy submitted later is ``code_used``, and the payer's confirmation settles it once."""
    books(ledger_at, 100)
    ledger = Ledger(ledger_at)
    try:
        code = b"r" * 32
        pending, created = ledger.reserve_code(record(1, 40, "a"), code, 1, "alice", "shop")
        assert (pending.state, created) == ("pending", True)
        assert ledger.reserve_code(record(1, 40, "a"), code, 1, "alice", "shop")[1] is False
        with pytest.raises(PaymentRefused, match="already used"):
            ledger.reserve_code(record(2, 40, "b"), code, 1, "alice", "shop")
        done = ledger.finish(pending.id, "settled", "", counter=1)
        assert done.state == "settled" and ledger.balance("alice") == 60
        assert ledger.gateways_for("alice") == ["gw"]
        assert ledger.audit() == []
    finally:
        ledger.close()
