"""``blegw-platform ledger copy``: an SQLite ledger that took payments, copied into a real
PostgreSQL server by the real command (a subprocess); the platform serving from the copy
settles the next card payment. Copying into a ledger that has rows (a second run, or the wrong
database) is refused and changes nothing; a URL with a password is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blegw_platform.issuer_keys import FileIssuerKeys, IssuedCards, issue_card
from blegw_platform.ledger import Ledger
from blegw_platform.ledger_copy import LedgerCopyError, copy_ledger
from blegw_platform.ledger_store import LedgerConfigError
from blegw_platform.platform import Platform
from private_files import write_atomic
from tests.blegw_platform.test_card_payments import GATEWAY, PAYEE, PAYER, World
from tests.ledger_backends import PostgresServer, raw_execute, raw_query
from wearable_sim.card_element import CARD_FILE


def copy(state: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "blegw_platform", "ledger", "copy",
                           "--state", str(state), "--to", url],
                          capture_output=True, text=True, timeout=60, check=False)


async def test_copied_ledger_serves_the_next_payment_and_a_second_copy_is_refused(
        tmp_path: Path, postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
        ) -> None:
    monkeypatch.delenv("BLEGW_LEDGER_URL", raising=False)
    state, card_dir = tmp_path / "platform", tmp_path / "card"
    platform = Platform(state)
    await platform.ledger.run(platform.ledger.add_account, PAYER, "EUR", 10_000)
    await platform.ledger.run(platform.ledger.add_account, PAYEE, "EUR", 0)
    provision = issue_card(FileIssuerKeys(state), IssuedCards(state), bound_user=PAYER)
    card_dir.mkdir(mode=0o700)
    write_atomic(card_dir / CARD_FILE, provision.encode())
    await platform.cards.enroll(provision.card_ref, GATEWAY)
    platform.close()
    world = World(state, card_dir)
    try:
        assert (await world.pay("before-the-copy-0001")).state == "settled"
        await world.platform.aclose()

        url = postgres_server.new_ledger_url()
        done = copy(state, url)
        assert done.returncode == 0, done.stderr
        assert "transactions: 1 rows" in done.stdout and "balances EUR: 10000" in done.stdout
        again = copy(state, url)                     # the target has rows now: refused
        assert again.returncode == 1 and "not empty" in again.stderr
        assert raw_query(url, "SELECT COUNT(*) FROM transactions") == [(1,)]

        monkeypatch.setenv("BLEGW_LEDGER_URL", url)   # the platform now serves from the copy
        world.platform = Platform(state)
        assert world.platform.ledger.path is None
        assert await world.balances() == (9_900, 100)
        assert (await world.pay("after-the-copy-00001")).state == "settled"
        assert await world.balances() == (9_800, 200)
        await world.assert_books_balance()
        assert raw_query(url, "SELECT COUNT(*) FROM postings") == [(4,)]
    finally:
        await world.platform.aclose()


def test_copy_refuses_what_it_cannot_copy_safely(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.sqlite3"
    with pytest.raises(LedgerConfigError, match="password"):
        copy_ledger(ledger, "postgresql://u:secret@db/ledger")
    with pytest.raises(LedgerCopyError, match="postgresql"):
        copy_ledger(ledger, str(tmp_path / "other.sqlite3"))
    with pytest.raises(LedgerCopyError, match="no ledger"):
        copy_ledger(ledger, "postgresql:///ledger")
    assert not ledger.exists()                       # a refusal created nothing


def test_a_hostile_source_table_name_reaches_no_statement(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    """A ledger file given a table whose name is SQL: refused, the target left empty."""
    path = tmp_path / "ledger.sqlite3"
    ledger = Ledger(path)
    ledger.add_account("alice", "EUR", 100)
    ledger.close()
    raw_execute(path, 'CREATE TABLE "accounts; DROP TABLE accounts" (a)')
    url = postgres_server.new_ledger_url()
    with pytest.raises(LedgerCopyError, match="a table named"):
        copy_ledger(path, url)
    assert raw_query(url, "SELECT COUNT(*) FROM accounts") == [(0,)]
    raw_execute(path, 'DROP TABLE "accounts; DROP TABLE accounts"')
    result = copy_ledger(path, url)                  # the honest file still copies
    assert result.rows["accounts"] == 1 and result.violations == []
