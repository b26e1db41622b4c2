"""The codes' text form for QR images: ``BDC1:`` and base45 (RFC 9285), as the signed
transaction codes' ``BGC1:`` (``transaction_code.text``, which explains the choice). A
distinct prefix, so a scanner never takes one kind of code for the other."""

from __future__ import annotations

from transaction_code.errors import MalformedCode
from transaction_code.text import b45decode, b45encode

from .errors import MalformedDynamicCode

__all__ = ["MAX_CODE_BYTES", "PREFIX", "from_text", "to_text"]

PREFIX = "BDC1:"
MAX_CODE_BYTES = 2048
"""The largest message carried as text: a settlement request (about 1 kB, 1.3 kB with 64-byte
accounts; the codes shown as QR codes are smaller, see docs/dynamic-codes.md)."""
_MAX_TEXT = len(PREFIX) + (MAX_CODE_BYTES * 3 + 1) // 2


def to_text(data: bytes) -> str:
    return PREFIX + b45encode(data)


def from_text(text: str) -> bytes:
    """A code's bytes from its text; :class:`MalformedDynamicCode` for anything else (the size
    is checked before a character is decoded)."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise MalformedDynamicCode("not a dynamic code's text (too long or not text)")
    if not text.startswith(PREFIX):
        raise MalformedDynamicCode(f"a dynamic code's text starts with {PREFIX}")
    try:
        return b45decode(text[len(PREFIX):])
    except MalformedCode as exc:
        raise MalformedDynamicCode(str(exc)) from None
