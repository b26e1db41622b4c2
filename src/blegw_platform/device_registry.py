"""The platform's register of certified devices for dynamic codes (flow F-E), in SQLite.

One row per device the CA certified: its role (mobile, merchant device), suite, account,
device information, certificate, whether it is still active, and for a mobile device how its
owner's finger is verified (the platform's per-payer policy) and, when the settlement server
matches it, the sealed template (``dynamic_code.fingerprint.TemplateVault``: encrypted under
the server's template key, opened only inside the settlement unit).

Its own file (``devices.sqlite3``), beside the ledger: it holds no money and its rows are read
from the settlement unit's worker thread. It implements ``dynamic_code.DeviceDirectory``.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dynamic_code import Role, Verification

__all__ = ["DEVICES_FILE", "DeviceRecord", "DeviceRegistry"]

DEVICES_FILE = "devices.sqlite3"

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id BLOB PRIMARY KEY CHECK (length(device_id) = 16),
    role INTEGER NOT NULL CHECK (role IN (1, 2)),
    suite INTEGER NOT NULL,
    account TEXT NOT NULL,
    device_info TEXT NOT NULL,
    certificate BLOB NOT NULL,
    verification INTEGER CHECK (verification IS NULL OR verification IN (1, 2)),
    active INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS owner_templates (
    device_id BLOB PRIMARY KEY REFERENCES devices(device_id),
    sealed BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: bytes
    role: Role
    suite: int
    account: str
    device_info: str
    verification: Verification | None
    active: bool


class DeviceRegistry:
    """Thread-safe (one connection, one lock): the settlement unit reads it from a worker
    thread while the CLI or API adds and revokes."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def add(self, device_id: bytes, role: Role, suite: int, account: str, device_info: str,
            certificate: bytes, verification: Verification | None, sealed: bytes | None
            ) -> None:
        """Record a newly certified device (and its sealed template) in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO devices (device_id, role, suite, account, device_info, "
                    "certificate, verification, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (device_id, int(role), suite, account, device_info, certificate,
                     None if verification is None else int(verification), time.time()))
                if sealed is not None:
                    self._db.execute("INSERT INTO owner_templates VALUES (?, ?)",
                                     (device_id, sealed))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def revoke(self, device_id: bytes) -> bool:
        """End a device's certificate at once; False if it was not active."""
        with self._lock:
            return self._db.execute(
                "UPDATE devices SET active=0, revoked=? WHERE device_id=? AND active=1",
                (time.time(), device_id)).rowcount == 1

    def set_policy(self, device_id: bytes, verification: Verification) -> bool:
        """Change an active mobile device's fingerprint policy; False if there is none. The
        features mode needs the template sealed at enrollment (checked in the same
        statement: the certificate's owner binding commits to it, so it cannot come later)."""
        with self._lock:
            return self._db.execute(
                "UPDATE devices SET verification=? WHERE device_id=? AND role=? AND active=1 "
                "AND (? = ? OR EXISTS (SELECT 1 FROM owner_templates t "
                "WHERE t.device_id = devices.device_id))",
                (int(verification), device_id, int(Role.MOBILE), int(verification),
                 int(Verification.DEVICE))).rowcount == 1

    def devices(self) -> list[DeviceRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id, role, suite, account, device_info, verification, active "
                "FROM devices ORDER BY created").fetchall()
        return [DeviceRecord(bytes(r[0]), Role(r[1]), r[2], r[3], r[4],
                             None if r[5] is None else Verification(r[5]), bool(r[6]))
                for r in rows]

    # -- dynamic_code.DeviceDirectory ------------------------------------------------------
    def is_active(self, device_id: bytes, role: Role) -> bool:
        with self._lock:
            return self._db.execute(
                "SELECT 1 FROM devices WHERE device_id=? AND role=? AND active=1",
                (device_id, int(role))).fetchone() is not None

    def policy(self, device_id: bytes) -> Verification | None:
        with self._lock:
            row = self._db.execute(
                "SELECT verification FROM devices WHERE device_id=? AND role=? AND active=1",
                (device_id, int(Role.MOBILE))).fetchone()
        return None if row is None or row[0] is None else Verification(row[0])

    def template_record(self, device_id: bytes) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT sealed FROM owner_templates WHERE device_id=?",
                                   (device_id,)).fetchone()
        return None if row is None else bytes(row[0])
