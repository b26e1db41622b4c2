"""Needs-re-pairing marks kept beside the registry, so a daemon restart does not lift them.

A replaced bond looks like any other bond once the daemon that saw it happen is gone; the mark
is what remembers. The file is the daemon's own (0600, written atomically); what it reads back
is checked like any input, and a file that is not what the daemon writes is refused whole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from private_files import write_atomic

__all__ = ["MAX_MARKS_FILE", "read_marks", "write_marks"]

MAX_MARKS_FILE = 1 << 16


def read_marks(path: Path) -> dict[str, dict[str, Any]]:
    """{module id hex: {"reason", "marked_at", "paired_at"}}; ValueError if it is not that."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_MARKS_FILE + 1)
    except FileNotFoundError:
        return {}
    if len(data) > MAX_MARKS_FILE:
        raise ValueError(f"larger than {MAX_MARKS_FILE} bytes")
    try:
        raw = json.loads(data)
    except RecursionError:
        raise ValueError("nested too deep") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    marks: dict[str, dict[str, Any]] = {}
    for key, mark in raw.items():
        if not (isinstance(key, str) and re.fullmatch(r"[0-9a-f]{8,64}", key)
                and isinstance(mark, dict) and isinstance(mark.get("reason"), str)
                and 0 < len(mark["reason"]) <= 200 and mark["reason"].isprintable()
                and all(type(mark.get(k)) in (int, float) for k in ("marked_at", "paired_at"))):
            raise ValueError(f"malformed mark for {key[:64]!r}")
        marks[key] = {"reason": mark["reason"], "marked_at": float(mark["marked_at"]),
                      "paired_at": float(mark["paired_at"])}
    return marks


def write_marks(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, data)
