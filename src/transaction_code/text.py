"""The code's text form: ``BGC1:`` followed by the code's bytes in base45 (RFC 9285).

Why base45: a QR code's alphanumeric mode holds 5.5 bits per character and base45 packs two
bytes into three of its 45 characters, so the text costs 16.5 bits per 2 bytes, about 3 % more
than raw bytes in byte mode, while staying text that every scanner app, clipboard and terminal
passes unchanged (byte mode's binary is often re-decoded as ISO 8859-1 or UTF-8 on the way,
and base64's lowercase letters force byte mode at 8 bits per character, 33 % larger). The EU
digital COVID certificate made the same choice for the same reasons.

The prefix names the format and version, so a scanner tells a transaction code from any other
QR code before decoding a byte. Hand-written (twenty lines) rather than the ``base45`` package,
unmaintained since 2022; property tests check it against the RFC's examples and round trips.
"""

from __future__ import annotations

from .errors import MalformedCode
from .payload import MAX_REQUEST_SIZE

__all__ = ["ALPHABET", "PREFIX", "b45decode", "b45encode", "from_text", "to_text"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
PREFIX = "BGC1:"
_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}
_MAX_TEXT = len(PREFIX) + (MAX_REQUEST_SIZE * 3 + 1) // 2


def b45encode(data: bytes) -> str:
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        out += [ALPHABET[n % 45], ALPHABET[n // 45 % 45], ALPHABET[n // 2025]]
    if len(data) % 2:
        n = data[-1]
        out += [ALPHABET[n % 45], ALPHABET[n // 45]]
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Strict: only the 45 characters, no trailing single character, no value overflow."""
    if len(text) % 3 == 1:
        raise MalformedCode("base45 text cannot have a length of 3n+1")
    try:
        values = [_INDEX[ch] for ch in text]
    except KeyError:
        raise MalformedCode("a character outside the base45 alphabet") from None
    out = bytearray()
    for i in range(0, len(values), 3):
        chunk = values[i:i + 3]
        n = sum(v * 45**k for k, v in enumerate(chunk))
        if len(chunk) == 3:
            if n > 0xFFFF:
                raise MalformedCode("a base45 triple above 65535")
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                raise MalformedCode("a base45 pair above 255")
            out.append(n)
    return bytes(out)


def to_text(data: bytes) -> str:
    return PREFIX + b45encode(data)


def from_text(text: str) -> bytes:
    """The bytes of a code's text form; MalformedCode for anything else (size checked first)."""
    if not isinstance(text, str) or len(text) > _MAX_TEXT:
        raise MalformedCode("not a transaction code's text (too long or not text)")
    if not text.startswith(PREFIX):
        raise MalformedCode(f"a transaction code's text starts with {PREFIX}")
    return b45decode(text[len(PREFIX):])
