"""Deterministic CBOR: the only encoding this layer signs or accepts where bytes are signed."""

from __future__ import annotations

from typing import Any

import cbor2

from .errors import MalformedMessage

__all__ = ["MAX_MESSAGE_SIZE", "dumps", "loads"]

MAX_MESSAGE_SIZE = 8192


def dumps(value: Any) -> bytes:
    return bytes(cbor2.dumps(value, canonical=True))


def loads(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Any:
    """Decode, refusing oversize input, garbage, trailing bytes and non-canonical encodings."""
    if len(data) > max_size:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {max_size}")
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        raise MalformedMessage(f"not CBOR: {exc}") from exc
    try:
        canonical = dumps(value)
    except Exception as exc:
        raise MalformedMessage(f"CBOR value cannot be re-encoded: {exc}") from exc
    if canonical != bytes(data):
        raise MalformedMessage("CBOR is not in deterministic (canonical) form")
    return value
