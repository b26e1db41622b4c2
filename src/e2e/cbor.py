"""Deterministic CBOR: the only encoding this layer signs or accepts where bytes are signed.

Decoding is strict, because every byte handed to :func:`loads` may come from an attacker:

* the size is checked before a single byte is decoded;
* only the CBOR major types the messages use may appear: unsigned and negative integers that
  fit in 64 bits, byte strings, text strings, arrays and maps; floats only where the caller
  allows them, and then finite. No tags (so no bignums, dates, decimals), no ``true``/``false``,
  ``null`` or ``undefined``, no other simple values;
* map keys are integers or text, never floats or booleans (``{1.0: ...}`` and ``{true: ...}``
  would otherwise compare equal to ``{1: ...}`` in Python);
* nesting is bounded;
* the value must re-encode to exactly the bytes received (RFC 8949 §4.2 deterministic form).

Nothing decoded is ever formatted into an error message: a 5000-digit integer must not reach
``str()`` (Python refuses to format it and raises a plain ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import cbor2

from .errors import MalformedMessage

__all__ = ["MAX_DEPTH", "MAX_MESSAGE_SIZE", "dumps", "loads", "peek", "peeked_field",
           "typed_field"]

MAX_MESSAGE_SIZE = 8192
MAX_DEPTH = 4
"""Maps and arrays nest at most this deep; the deepest message (relay response timings inside
a response) needs 2."""

_INT_MIN, _INT_MAX = -(2**64), 2**64 - 1


def dumps(value: Any) -> bytes:
    return bytes(cbor2.dumps(value, canonical=True))


def loads(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE, floats: bool = False) -> Any:
    """Decode one deterministic CBOR value; :class:`MalformedMessage` for anything else.

    ``floats`` allows finite floats as values (the relay contract's deadline and timings); the
    end-to-end messages never carry one.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedMessage("CBOR input must be bytes")
    if len(data) > max_size:
        raise MalformedMessage(f"message of {len(data)} bytes exceeds {max_size}")
    data = bytes(data)
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, ...)
        raise MalformedMessage(f"not CBOR ({type(exc).__name__})") from None
    _check(value, floats)
    try:
        canonical = dumps(value)
    except Exception as exc:
        raise MalformedMessage(f"CBOR value cannot be re-encoded ({type(exc).__name__})") from None
    if canonical != data:
        raise MalformedMessage("CBOR is not in deterministic (canonical) form")
    return value


def peek(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Any:
    """Decode *without* the strict checks, only to read an identifier out of input
    :func:`loads` refused, so the error answer can name the request; None if even that fails.

    Never act on what this returns beyond reading an id of an exact type and length.
    """
    if len(data) > max_size:
        return None
    try:
        return cbor2.loads(bytes(data))
    except Exception:  # any decoding failure: nothing can be read
        return None


def peeked_field(value: Any, key: int) -> Any:
    """``value[key]`` from what :func:`peek` returned, only when ``value`` is a map that holds
    the integer ``key`` itself: Python takes ``True`` and ``1.0`` for the same key as ``1``, and
    an id under such a key is not where the contract puts it. None otherwise."""
    if type(value) is not dict:
        return None
    for candidate, field in value.items():
        if type(candidate) is int and candidate == key:
            return field
    return None


_T = TypeVar("_T")


def typed_field(body: Mapping[Any, Any], key: int, kind: type[_T], name: str,
                error: Callable[[str], Exception] = MalformedMessage) -> _T:
    """One field of a decoded map, of exactly ``kind`` (``type(...) is``: no bool for int, no
    subclass), or ``error`` naming the field. Every message layer (e2e, codes, cards, the
    channel) reads its fields through this one check, each raising its own error class."""
    if key not in body:
        raise error(f"{name} (key {key}) is missing")
    value = body[key]
    if type(value) is not kind:
        raise error(f"{name} must be {kind.__name__}")
    return value


def _check(value: Any, floats: bool) -> None:
    """Walk the decoded value (iteratively: depth is bounded, the stack is not used)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is int:
            if not _INT_MIN <= item <= _INT_MAX:
                raise MalformedMessage("integer outside 64 bits")
        elif kind is bytes or kind is str:
            continue
        elif kind is float:
            if not floats:
                raise MalformedMessage("a float where an integer is expected")
            if not math.isfinite(item):
                raise MalformedMessage("NaN or infinity")
        elif kind is dict or kind is list:
            if depth >= MAX_DEPTH:
                raise MalformedMessage(f"nested deeper than {MAX_DEPTH}")
            if kind is dict:
                for key in item:
                    if type(key) is not int and type(key) is not str:
                        raise MalformedMessage("a map key is neither an integer nor text")
                    stack.append((key, depth + 1))
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        else:
            # bool, None, undefined, simple values, tags and whatever cbor2 builds from them
            raise MalformedMessage(f"CBOR item of a kind no message uses ({kind.__name__})")
