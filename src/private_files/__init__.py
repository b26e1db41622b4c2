"""Private files: written atomically with their mode and owner from the start, read only if
no one else can read them. A core with no dependencies; every package may use it.

:func:`write_atomic` writes a temporary file beside the target (a stale one from a crash is
removed first), created ``O_EXCL`` with the final mode, so the content is never readable by
others, not even for a moment, and an old temporary file's wider mode is never inherited; then
fsync, rename over the target, fsync the directory. A crash or a power cut leaves the old
content or the new, never a torn or empty file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["NotPrivateError", "locked", "read_private", "write_atomic"]


class NotPrivateError(PermissionError):
    """A file that must be private is readable (or writable) by others."""

    def __init__(self, path: Path, mode: int) -> None:
        super().__init__(f"{path} is readable by others (mode {mode:o})")
        self.path = path
        self.mode = mode


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600,
                 owner: tuple[int, int] | None = None) -> None:
    """Replace ``path`` with ``data`` atomically, the new file ``mode`` from its creation.

    ``owner`` (uid, gid) is given to the file only when running as root (a root tool writing
    a file a service account must read); otherwise the file is the caller's.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)                     # the umask may have narrowed it
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def locked(path: Path, *, owner: tuple[int, int] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600) for one read-modify-write of the
    files it guards, across processes; released when the descriptor closes, so a crashed
    holder never leaves it taken. ``owner`` as for :func:`write_atomic`."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if owner is not None and os.geteuid() == 0:
            os.fchown(fd, *owner)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_private(path: Path) -> bytes | None:
    """The content of ``path``; None if it does not exist; :class:`NotPrivateError` if group
    or others have any access to it."""
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return None
    with file:
        mode = stat.S_IMODE(os.fstat(file.fileno()).st_mode)
        if mode & 0o077:
            raise NotPrivateError(path, mode)
        return file.read()
