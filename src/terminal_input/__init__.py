"""Reading a person's answer from the terminal without a thread that outlives Ctrl-C.

``asyncio.to_thread(sys.stdin.readline)`` cannot be cancelled: on Ctrl-C or SIGTERM the loop
shuts down and then waits for that thread, which waits for Enter, so the program hangs at its
prompt. Here the loop watches stdin itself (``add_reader``) and a cancelled wait simply stops
watching. Files that cannot be watched (a regular file on stdin) are read directly: they never
block.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import TextIO

from .display import MAX_FIELD, REPLACEMENT, sanitise

__all__ = ["MAX_FIELD", "REPLACEMENT", "ask_yes_no", "read_line", "sanitise"]


async def read_line(stream: TextIO | None = None) -> str:
    """The next line typed (with its newline), or "" at end of input."""
    stream = stream or sys.stdin
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return stream.readline()  # not a real file (a test's StringIO): it never blocks
    loop = asyncio.get_running_loop()
    pending = _pending.setdefault(fd, bytearray())
    while b"\n" not in pending:
        ready: asyncio.Future[None] = loop.create_future()

        def on_readable(ready: asyncio.Future[None] = ready) -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(fd, on_readable)
        except (PermissionError, ValueError, NotImplementedError):
            return stream.readline()  # a regular file: reading it does not block
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        chunk = os.read(fd, 4096)  # readable: this returns at once
        if not chunk:  # end of input: what is left, then ""
            line = bytes(pending)
            pending.clear()
            return line.decode(errors="replace")
        pending += chunk
    end = pending.index(b"\n") + 1
    line = bytes(pending[:end])
    del pending[:end]
    return line.decode(errors="replace")


async def ask_yes_no(question: str, *, out: TextIO | None = None) -> bool:
    """Print ``question`` (no newline) and take "y" or "yes" as yes; anything else is no."""
    print(question, end="", file=out or sys.stdout, flush=True)
    return (await read_line()).strip().lower() in ("y", "yes")


# Bytes read past the end of the line asked for, per descriptor: the next answer (a rig may
# pipe several at once). Python's own buffered reader is bypassed, so nothing else holds them.
_pending: dict[int, bytearray] = {}
