"""private_files: one writer for every private file (keys, secrets, the registry)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from private_files import NotPrivateError, read_private, write_atomic


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_has_its_mode_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "key", b"secret")
        write_atomic(tmp_path / "cert", b"public", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "key") == 0o600
    assert _mode(tmp_path / "cert") == 0o644
    assert read_private(tmp_path / "key") == b"secret"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cert", "key"]   # no temporary left


def test_a_stale_wide_temporary_file_does_not_widen_the_new_one(tmp_path: Path) -> None:
    stale = tmp_path / ".key.tmp"
    stale.write_bytes(b"left by a crash")
    stale.chmod(0o666)
    write_atomic(tmp_path / "key", b"secret")
    assert _mode(tmp_path / "key") == 0o600
    assert (tmp_path / "key").read_bytes() == b"secret"
    assert not stale.exists()


def test_the_content_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "key"
    write_atomic(path, b"old" * 1000)
    before = path.stat().st_ino
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    assert path.stat().st_ino != before               # a new file renamed over, not rewritten
    assert _mode(path) == 0o600


def test_a_failed_write_leaves_the_old_content(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "key"
    write_atomic(path, b"old")

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space"):
        write_atomic(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]


def test_short_writes_are_continued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))
    write_atomic(tmp_path / "big", bytes(range(256)) * 40)
    monkeypatch.undo()
    assert (tmp_path / "big").read_bytes() == bytes(range(256)) * 40


def test_read_private_refuses_a_file_others_can_read(tmp_path: Path) -> None:
    assert read_private(tmp_path / "missing") is None
    path = tmp_path / "key"
    write_atomic(path, b"secret", mode=0o640)
    with pytest.raises(NotPrivateError, match="readable by others"):
        read_private(path)
