"""The platform's side tables (cards, payment modes) on the ledger's store: a ledger file of
schema version 2, written by the code that kept those tables beside the ledger, upgrades in
place to version 3 without losing a row; on both databases the tables hold their rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from blegw_platform.card_payments import CardStore, RevocationRefused
from blegw_platform.ledger import Ledger
from blegw_platform.ledger_postgres import SCHEMA_VERSION as POSTGRES_VERSION
from blegw_platform.ledger_sqlite import SCHEMA_VERSION
from blegw_platform.payment_modes import PaymentMode, PaymentModes
from tests.ledger_backends import INTEGRITY_ERRORS, raw_execute, raw_query

DATA = Path(__file__).parent / "data"
CARD = bytes.fromhex("791b90b8b8c7d27a")


async def test_a_version_2_file_upgrades_in_place_keeping_cards_and_modes(tmp_path: Path
                                                                          ) -> None:
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript((DATA / "ledger-version-2.sql").read_text())
    db.close()
    ledger = Ledger(path)
    try:
        assert SCHEMA_VERSION == POSTGRES_VERSION == 3
        assert raw_query(path, "SELECT MAX(version) FROM schema_migrations") == [(3,)]
        assert await PaymentModes(ledger).get("carol") == PaymentMode(500, 10_000)
        card = ledger.transact(CardStore.enrollment, CARD)
        assert card is not None and (card.account, card.gateway_id) == ("carol", "gw-card")
        assert ledger.balance("carol") == 10_000
        assert ledger.audit() == []
    finally:
        ledger.close()


async def test_a_version_2_file_with_cards_enrolled_before_revocation_tokens_upgrades(
        tmp_path: Path) -> None:
    """The oldest card table had no ``revoke_hash``: version 3 adds it, keeping the row."""
    path = tmp_path / "ledger.sqlite3"
    db = sqlite3.connect(path)
    db.executescript((DATA / "ledger-version-2.sql").read_text())
    db.executescript("ALTER TABLE card_enrollments DROP COLUMN revoke_hash")
    db.close()
    ledger = Ledger(path)
    try:
        columns = [row[1] for row in raw_query(path, "PRAGMA table_info(card_enrollments)")]
        assert "revoke_hash" in columns
        # enrolled without a token: no caller's token revokes it, the operator does
        with pytest.raises(RevocationRefused):
            ledger.transact(CardStore.revoke, CARD, b"\x01" * 32)
        assert ledger.transact(CardStore.revoke, CARD, None) == 1
        assert ledger.transact(CardStore.enrollment, CARD) is None
    finally:
        ledger.close()


def test_side_table_rules_hold_in_the_database(ledger_at: Path | str) -> None:
    """A tampering insider cannot store a negative free limit or an unknown relay step."""
    Ledger(ledger_at).close()
    blob = "X'01'" if isinstance(ledger_at, Path) else "'\\x01'::bytea"
    for sql in ("INSERT INTO payment_modes VALUES ('eve', -1, NULL)",
                "INSERT INTO payment_modes VALUES ('eve', 0, 0)",
                "INSERT INTO card_relays (relay_id, tx_id, step) VALUES "
                f"({blob}, {blob}, 'settle')"):
        with pytest.raises(INTEGRITY_ERRORS):
            raw_execute(ledger_at, sql)
