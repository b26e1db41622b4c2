"""The soft secure element's persistent state: a directory only its owner can read.

Layout (all files mode 0600, the directory 0700):

* ``keys/<suite>.key`` — private keys, made on first start, never exported by any message or
  command;
* ``certs/<suite>.cbor`` — the module's certificates, as issued by the platform CA;
* ``counter`` — the signature counter, a decimal number;
* ``trust-anchors.cbor`` — the platform's CA root keys and platform id, installed at
  provisioning (public values, but only provisioning may change them: the module checks every
  confirmation request against them before it prompts);
* ``seen-requests`` — transaction ids of requests already shown, with their expiry, one
  ``<hex id> <expiry>`` per line, so a replayed request does not prompt again, not even after
  a restart.

Every write is atomic (write a temporary file, fsync, rename, fsync the directory), so a crash
or a power cut leaves either the old or the new content, never a torn file. The counter is
persisted *before* a signature using it is released, so no counter value is ever used twice.
"""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

from private_files import NotPrivateError, read_private, write_atomic

__all__ = ["ModuleState", "StateError"]


class StateError(Exception):
    """The state directory is missing, unsafe (readable by others) or corrupt."""


def _atomic_write(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


class ModuleState:
    """Owner-only files of one simulated module."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for sub in (directory, directory / "keys", directory / "certs"):
            sub.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = stat.S_IMODE(sub.stat().st_mode)
            if mode & 0o077:
                raise StateError(f"{sub} is accessible by others (mode {mode:o}); "
                                 "it must be 0700")

    # -- keys ----------------------------------------------------------------------------------
    def key_path(self, suite_name: str) -> Path:
        return self.directory / "keys" / f"{suite_name}.key"

    def read_secret(self, path: Path) -> bytes | None:
        """Read a key file, refusing one that others could read."""
        try:
            return read_private(path)
        except NotPrivateError as exc:
            raise StateError(f"{exc}; refusing to use it") from None

    def write_secret(self, path: Path, data: bytes) -> None:
        _atomic_write(path, data)

    # -- certificates --------------------------------------------------------------------------
    def cert_path(self, suite_name: str) -> Path:
        return self.directory / "certs" / f"{suite_name}.cbor"

    def read_file(self, path: Path) -> bytes | None:
        with contextlib.suppress(FileNotFoundError):
            return path.read_bytes()
        return None

    def write_file(self, path: Path, data: bytes) -> None:
        _atomic_write(path, data)

    # -- counter -------------------------------------------------------------------------------
    @property
    def counter_path(self) -> Path:
        return self.directory / "counter"

    def counter(self) -> int:
        raw = self.read_file(self.counter_path)
        if raw is None:
            return 0
        try:
            value = int(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError) as exc:
            raise StateError(f"{self.counter_path} is corrupt: {raw[:32]!r}") from exc
        if value < 0:
            raise StateError(f"{self.counter_path} holds a negative counter")
        return value

    def next_counter(self) -> int:
        """Increment and persist the counter; return the new value (first one is 1)."""
        value = self.counter() + 1
        _atomic_write(self.counter_path, f"{value}\n".encode("ascii"))
        return value

    # -- trust anchors and answered requests --------------------------------------------------
    @property
    def trust_anchors_path(self) -> Path:
        return self.directory / "trust-anchors.cbor"

    @property
    def seen_path(self) -> Path:
        return self.directory / "seen-requests"

    def seen_requests(self) -> list[tuple[bytes, int]]:
        raw = self.read_file(self.seen_path)
        if raw is None:
            return []
        entries = []
        try:
            for line in raw.decode("ascii").splitlines():
                tx_hex, expiry = line.split()
                entries.append((bytes.fromhex(tx_hex), int(expiry)))
        except (UnicodeDecodeError, ValueError) as exc:
            raise StateError(f"{self.seen_path} is corrupt") from exc
        return entries

    def write_seen_requests(self, entries: list[tuple[bytes, int]]) -> None:
        _atomic_write(self.seen_path,
                      "".join(f"{tx.hex()} {expiry}\n" for tx, expiry in entries).encode())
