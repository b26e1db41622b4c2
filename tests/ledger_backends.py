"""The ledger's two databases for tests: an SQLite file, or a real PostgreSQL server.

The server is Debian's ``postgresql`` package (scripts/bootstrap installs it): ``initdb`` and
``pg_ctl`` from ``/usr/lib/postgresql/*/bin`` into a temporary directory, listening on a unix
socket only, with ``fsync`` and synchronous commits on (what a deployment runs). One server
per test session, and a fresh ledger per test: its own schema in the server's one database
(the URL's ``search_path``), as isolated as a database of its own but made in milliseconds
instead of copying a template each time. Run as root (CI), the server runs as the
``postgres`` user the package creates, as PostgreSQL refuses root. Missing binaries FAIL the
PostgreSQL tests with a message; they are never skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

BACKENDS = ("sqlite", "postgresql")
INTEGRITY_ERRORS = (sqlite3.IntegrityError, psycopg.IntegrityError)
"""What a write that breaks a constraint raises, on either database."""

SUPERUSER = "blegw"
DATABASE = "ledgers"


def server_binaries(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The newest installed PostgreSQL server's bin directory; the test fails without one."""
    found = sorted(root.glob("*/bin/pg_ctl"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if not found:
        pytest.fail(f"PostgreSQL server binaries not found in {root}/*/bin: run "
                    "scripts/bootstrap (it installs Debian's postgresql package)",
                    pytrace=False)
    return found[-1].parent


class PostgresServer:
    """One throw-away PostgreSQL cluster on a unix socket in a temporary directory."""

    def __init__(self) -> None:
        self.bindir = server_binaries()
        self.root = Path(tempfile.mkdtemp(prefix="blegw-pg-"))  # short: socket path limit
        self.data = self.root / "data"
        self.user: str | None = None
        if os.geteuid() == 0:
            try:
                shutil.chown(self.root, "postgres", "postgres")
            except LookupError:
                pytest.fail("running as root, PostgreSQL needs the 'postgres' user that "
                            "Debian's postgresql package creates", pytrace=False)
            self.user = "postgres"
        self._names = itertools.count(1)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "-o",
                  f"-k {self.root} -c listen_addresses='' -c fsync=on "
                  "-c synchronous_commit=on -c max_connections=60 -c shared_buffers=16MB",
                  "start")
        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {DATABASE}".encode())

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([str(self.bindir / program), *args], capture_output=True,
                              text=True, timeout=120, check=False, user=self.user,
                              cwd=self.root)
        if done.returncode != 0:
            log = self.root / "server.log"
            pytest.fail(f"{program} failed ({done.returncode}): {done.stderr.strip()}\n"
                        f"{log.read_text() if log.exists() else ''}", pytrace=False)

    def url(self, database: str) -> str:
        return f"postgresql:///{database}?host={self.root}&user={SUPERUSER}"

    def new_ledger_url(self) -> str:
        """The URL of a new, empty ledger: a schema of its own that the URL selects."""
        name = f"ledger_{next(self._names)}"
        with psycopg.connect(self.url(DATABASE), autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {name}".encode())
        return f"{self.url(DATABASE)}&options=-c%20search_path%3D{name}"

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=BACKENDS)
def ledger_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a test's ledger lives: an SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "ledger.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.new_ledger_url()


def raw_execute(location: Path | str, sql: str) -> None:
    """Run ``sql`` on the ledger's database behind the ledger's back (a tampering insider)."""
    if isinstance(location, Path):
        db = sqlite3.connect(location)
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()
    else:
        with psycopg.connect(location, autocommit=True) as conn:
            conn.execute(sql.encode())


def raw_query(location: Path | str, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of ``sql`` read directly from the ledger's database (``?`` placeholders)."""
    if isinstance(location, Path):
        db = sqlite3.connect(location)
        try:
            return db.execute(sql, params).fetchall()
        finally:
            db.close()
    with psycopg.connect(location, autocommit=True) as conn:
        if not params:                          # no placeholders: '%' stays a character
            return conn.execute(sql.encode()).fetchall()
        return conn.execute(sql.replace("?", "%s").encode(), params).fetchall()


LEDGER_TABLES = ("accounts", "modules", "enrollment_codes", "transactions", "issuance",
                 "postings", "terminals", "terminal_payees", "used_codes", "used_dynamic_codes",
                 "card_enrollments", "card_relays", "card_replay", "payment_modes")


def wipe(url: str) -> None:
    """Empty a PostgreSQL ledger's tables (a fresh ledger, faster than a new database)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('accounts')").fetchone()
        if exists is not None and exists[0] is not None:
            conn.execute(f"TRUNCATE {', '.join(LEDGER_TABLES)} RESTART IDENTITY".encode())
