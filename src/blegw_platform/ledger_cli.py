"""``blegw-platform ledger copy --to postgresql://...``: copy the platform's SQLite ledger into
an empty PostgreSQL ledger (:mod:`.ledger_copy`, docs/scale-out.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], state_help: str
               ) -> None:
    p = sub.add_parser("ledger", help="the ledger's database: copy it to PostgreSQL")
    actions = p.add_subparsers(dest="action", required=True)
    c = actions.add_parser("copy", help="copy the SQLite ledger of --state, every table in one "
                                        "transaction, into an empty PostgreSQL ledger")
    c.add_argument("--state", required=True, help=state_help)
    c.add_argument("--to", required=True,
                   help="the target: postgresql://... (no password in it: a passfile or peer "
                        "authentication)")


def run(args: argparse.Namespace) -> None:
    """Carry out one ``ledger`` command; errors propagate to the CLI's one handler."""
    from .ledger_copy import LedgerCopyError, copy_ledger
    from .ledger_store import LEDGER_URL_ENV, ledger_location

    state = Path(args.state)
    location = ledger_location(state)
    if not isinstance(location, Path):
        raise LedgerCopyError(f"the configured ledger ({LEDGER_URL_ENV} or platform.toml) is "
                              "already PostgreSQL; copy reads the SQLite ledger")
    result = copy_ledger(location, args.to)
    for table, count in result.rows.items():
        print(f"{table}: {count} rows")
    for currency, total in sorted(result.balances.items()):
        print(f"balances {currency}: {total} (the same in both)")
    if result.violations:
        for violation in result.violations:
            print(f"audit: {violation}")
        raise LedgerCopyError(f"the copy's audit found {len(result.violations)} violation(s)")
    print("copied; the target's audit finds the books balanced")
