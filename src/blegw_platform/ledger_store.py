"""Where the ledger lives and what a database must offer it: the store interface.

The ledger's logic (:class:`blegw_platform.ledger.Ledger`: money rules, settlement, the audit)
is written once, in SQL both databases speak; a store gives it a connection to one database:
SQLite (:mod:`.ledger_sqlite`, the one-machine default) or PostgreSQL (:mod:`.ledger_postgres`,
several platform workers sharing one ledger). A store owns what differs between them: the
schema and its migrations, how a transaction begins (a write lock or serializable isolation),
which errors mean "run the transaction again", and the placeholder style.

Which store a platform opens is configuration (docs/configuration.md): ``BLEGW_LEDGER_URL``,
else ``[ledger] url`` in ``platform.toml`` in the state directory, else the SQLite file
``ledger.sqlite3`` there, as before.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = ["CONFIG_FILE", "LEDGER_FILE", "LEDGER_URL_ENV", "POSTGRES_SCHEMES", "Cursor",
           "LedgerConfigError", "LedgerError", "LedgerUnavailable", "Store", "check_postgres_url",
           "is_postgres_url", "ledger_location"]

LEDGER_FILE = "ledger.sqlite3"
"""The ledger's file name in the platform's state directory (the default store)."""

CONFIG_FILE = "platform.toml"
"""The platform's configuration file in its state directory (optional)."""

LEDGER_URL_ENV = "BLEGW_LEDGER_URL"
"""Overrides ``[ledger] url``: a ``postgresql://`` URL or a path to an SQLite file."""

POSTGRES_SCHEMES = ("postgresql", "postgres")


class LedgerError(Exception):
    """A ledger rule would be broken (unknown account, duplicate key with other content...).

    Defined here, beside the configuration, so every ledger module shares one hierarchy;
    imported from :mod:`blegw_platform.ledger` as before."""


class LedgerConfigError(LedgerError):
    """The ledger's configuration cannot be used (bad TOML, unknown key, password in a URL)."""


class LedgerUnavailable(LedgerError):
    """The ledger's database cannot be opened (no such file or server, refused, too new)."""


class Cursor(Protocol):
    """The part of a DB-API cursor the ledger uses (sqlite3's and psycopg's both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Store(Protocol):
    """One connection to the ledger's database, used by one thread at a time."""

    location: str
    """Where the ledger is, for messages: a file path or a URL without secrets."""

    retryable: tuple[type[BaseException], ...]
    """Errors after which the whole ledger call is run again (a serialization failure)."""

    retry_once: tuple[type[BaseException], ...]
    """Errors after which the call is run again once: a unique key that a concurrent
    transaction took first (the rerun sees its row); a second time it is no race."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, params: Sequence[object] = ()) -> Cursor:
        """Run one statement; ``?`` marks each parameter, whatever the database."""

    def executemany(self, sql: str, rows: Sequence[Sequence[object]]) -> None: ...

    def transaction(self, *, write: bool = True) -> contextlib.AbstractContextManager[Store]:
        """One database transaction, committed if the block ends and rolled back if it raises;
        inside another it joins that one. ``write=False`` takes a consistent read snapshot that
        does not hold writers back (the audit)."""

    def reset(self) -> None:
        """Make the next call usable after a failure (reconnect a connection that broke)."""

    def close(self) -> None: ...


def is_postgres_url(location: str) -> bool:
    return urlsplit(location).scheme in POSTGRES_SCHEMES


def check_postgres_url(url: str) -> str:
    """The URL if it may be used; :class:`LedgerConfigError` if it carries a password.

    A password in the URL would sit in a configuration file, the environment of every worker
    and any message that shows the URL; libpq reads it from a passfile (``passfile=`` in the
    URL or ``PGPASSFILE``) or the worker authenticates without one (peer, certificates).
    """
    parts = urlsplit(url)
    if parts.password is not None or "password" in parse_qs(parts.query):
        raise LedgerConfigError("ledger url: no password in the URL; use a passfile "
                                "(passfile=... in the URL, or PGPASSFILE) or peer "
                                "authentication")
    return url


def ledger_location(state_dir: Path) -> Path | str:
    """The ledger a platform with state in ``state_dir`` uses: a path or a PostgreSQL URL.

    ``BLEGW_LEDGER_URL`` wins, then ``[ledger] url`` in ``state_dir/platform.toml``, then the
    SQLite file in ``state_dir``. A relative path in the file is relative to ``state_dir``.
    Raises :class:`LedgerConfigError` naming what is wrong.
    """
    value = os.environ.get(LEDGER_URL_ENV, "")
    source = LEDGER_URL_ENV
    if not value:
        value, source = _configured_url(state_dir / CONFIG_FILE), "ledger.url"
    if not value:
        return state_dir / LEDGER_FILE
    if is_postgres_url(value):
        return check_postgres_url(value)
    if "://" in value:
        raise LedgerConfigError(f"{source}: postgresql://... or a path to an SQLite file")
    path = Path(value).expanduser()
    return path if path.is_absolute() or source == LEDGER_URL_ENV else state_dir / path


def _configured_url(config: Path) -> str:
    """``[ledger] url`` from the platform's configuration file, "" when there is none."""
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        raise LedgerConfigError(f"{config}: cannot be read: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LedgerConfigError(f"{config}: not valid TOML: {exc}") from exc
    unknown = sorted(set(data) - {"ledger", "workers"})  # workers: blegw_platform.workers
    if unknown:
        raise LedgerConfigError(f"{config}: unknown section {unknown[0]}")
    section = data.get("ledger", {})
    if not isinstance(section, dict):
        raise LedgerConfigError(f"{config}: ledger must be a table")
    unknown = sorted(set(section) - {"url"})
    if unknown:
        raise LedgerConfigError(f"{config}: unknown key ledger.{unknown[0]}")
    url = section.get("url", "")
    if not isinstance(url, str):
        raise LedgerConfigError(f"{config}: ledger.url must be a string")
    return url
