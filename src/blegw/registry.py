"""The gateway's registry of paired modules: a JSON file written atomically.

The pairing CLI writes it; the daemon reads it and picks changes up without a restart. A
half-written registry is impossible (temporary file, fsync, rename, fsync of the directory);
a corrupt one is an error that names the file, never an empty registry. Changes are
read-modify-write under an exclusive lock on a lock file beside it, so two ``blegw pair`` runs at
once cannot lose each other's module.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from private_files import locked, write_atomic

__all__ = ["BOND_KINDS", "DEVICE_KINDS", "MAX_TEXT", "Registry", "RegistryEntry",
           "RegistryError", "is_address", "is_display_text"]

_ADDRESS = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
MAX_TEXT = 64
BOND_KINDS = ("numeric_comparison", "just_works", "unknown")
"""How a module was bonded: by numeric comparison (the person compared a code), just works (no
code: nothing showed it is the module in front of them), or unknown (an entry written before the
registry recorded it, or a bond that existed before ``blegw pair`` ran)."""
DEVICE_KINDS = ("module", "card")
"""What was paired: a public-key module (certificates) or a symmetric-key card (a card ref and
the issuer's key; docs/symmetric-card.md). The relay serves both alike; ``blegw forget``
revokes each at its own platform route."""
MAX_FILE = 1 << 20
"""A registry larger than this is refused unread (a few hundred bytes per module)."""


def is_address(text: object) -> bool:
    """Whether ``text`` is exactly one Bluetooth address, ``AA:BB:CC:DD:EE:FF`` (upper case)."""
    return isinstance(text, str) and _ADDRESS.fullmatch(text) is not None


def is_display_text(text: object) -> bool:
    """Whether ``text`` may be shown to an operator: at most ``MAX_TEXT`` printable characters
    (a module's name, an account)."""
    return isinstance(text, str) and len(text) <= MAX_TEXT and text.isprintable()


class RegistryError(Exception):
    """The registry file is unreadable or a change would break it."""


@dataclass(frozen=True, slots=True)
class RegistryEntry:
    module_id: str
    """hex"""
    address: str
    name: str
    account: str
    suites: tuple[str, ...]
    paired_at: float
    revocation_token: str = ""
    """hex; what the platform asks for to revoke this enrollment (a secret: the file is 0600)"""
    bond: str = "unknown"
    """One of :data:`BOND_KINDS`; an entry without it (older registries) reads as unknown."""
    kind: str = "module"
    """One of :data:`DEVICE_KINDS`; an entry without it (older registries) is a module."""

    def __post_init__(self) -> None:
        """Every field is checked: the file is read by a daemon whose input must never stop it,
        and the name and account are shown to an operator (printable, bounded)."""
        if not isinstance(self.module_id, str) or not re.fullmatch(r"[0-9a-f]{8,64}",
                                                                   self.module_id):
            raise RegistryError("module id is not 8 to 64 lowercase hex digits")
        if not is_address(self.address):
            raise RegistryError("address is not AA:BB:CC:DD:EE:FF")
        for what, text in (("name", self.name), ("account", self.account)):
            if not is_display_text(text):
                raise RegistryError(f"{what} is not at most {MAX_TEXT} printable characters")
        if not isinstance(self.suites, tuple) or len(self.suites) > 8 or not all(
                isinstance(x, str) and re.fullmatch(r"[a-z0-9]{1,16}", x) for x in self.suites):
            raise RegistryError("suites is not a list of suite names")
        if isinstance(self.paired_at, bool) or not isinstance(self.paired_at, int | float) \
                or not 0 <= self.paired_at < 2**40:
            raise RegistryError("paired_at is not a time in seconds")
        if not isinstance(self.revocation_token, str):
            raise RegistryError("revocation token is not text")
        if self.revocation_token and not re.fullmatch(r"[0-9a-f]{32,128}",
                                                      self.revocation_token):
            raise RegistryError("revocation token is not 32 to 128 lowercase hex digits")
        if self.bond not in BOND_KINDS:
            raise RegistryError(f"bond is not one of {', '.join(BOND_KINDS)}")
        if self.kind not in DEVICE_KINDS:
            raise RegistryError(f"kind is not one of {', '.join(DEVICE_KINDS)}")


class Registry:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> list[RegistryEntry]:
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_FILE + 1)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RegistryError(f"{self.path} is unreadable: {exc}") from exc
        if len(data) > MAX_FILE:
            raise RegistryError(f"{self.path} is larger than {MAX_FILE} bytes")
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, too deep
            raise RegistryError(f"{self.path} is unreadable: {type(exc).__name__}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("modules"), list):
            raise RegistryError(f"{self.path}: expected {{\"modules\": [...]}}")
        entries = []
        for i, m in enumerate(raw["modules"]):
            if not isinstance(m, dict) or not isinstance(m.get("suites"), list):
                raise RegistryError(f"{self.path}: malformed entry {i}")
            try:
                entries.append(RegistryEntry(**{**m, "suites": tuple(m["suites"])}))
            except TypeError:
                raise RegistryError(f"{self.path}: malformed entry {i}: unknown or missing "
                                    "fields") from None
            except RegistryError as exc:
                raise RegistryError(f"{self.path}: malformed entry {i}: {exc}") from None
        return entries

    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def _save(self, entries: list[RegistryEntry]) -> None:
        """Replace the file atomically; only called under :meth:`_locked` (which makes the
        directory)."""
        data = json.dumps({"modules": [asdict(e) for e in entries]}, indent=2).encode()
        write_atomic(self.path, data, owner=_directory_owner(self.path.parent))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the registry's lock for one read-modify-write (released when the fd closes)."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(self.path.with_name(f".{self.path.name}.lock"),
                    owner=_directory_owner(self.path.parent)):
            yield

    def add(self, entry: RegistryEntry) -> None:
        with self._locked():
            entries = [e for e in self.load() if e.module_id != entry.module_id]
            self._save([*entries, entry])

    def find(self, key: str) -> RegistryEntry | None:
        """By module id (or a unique prefix of it), address or name."""
        key_l = key.lower()
        entries = self.load()
        exact = [e for e in entries if key_l in (e.module_id, e.address.lower(), e.name.lower())]
        if exact:
            return exact[0]
        prefixed = [e for e in entries if e.module_id.startswith(key_l)]
        return prefixed[0] if len(prefixed) == 1 else None

    def remove(self, module_id: str) -> bool:
        with self._locked():
            entries = self.load()
            kept = [e for e in entries if e.module_id != module_id]
            if len(kept) == len(entries):
                return False
            self._save(kept)
            return True

    def rename(self, module_id: str, name: str) -> bool:
        with self._locked():
            entries = self.load()
            changed = False
            out = []
            for e in entries:
                if e.module_id == module_id:
                    e = replace(e, name=name)
                    changed = True
                out.append(e)
            if changed:
                self._save(out)
            return changed


def _directory_owner(directory: Path) -> tuple[int, int] | None:
    """The owner files in ``directory`` take when root writes them (None: the writer's):
    under ``sudo blegw pair`` a new registry would otherwise belong to root, 0600, and the
    daemon's own user could no longer read it."""
    if os.geteuid() != 0:
        return None
    st = os.stat(directory)
    return None if (st.st_uid, st.st_gid) == (0, 0) else (st.st_uid, st.st_gid)


def now() -> float:
    return time.time()
