"""``parse_keepalive`` and ``parse_error``: the payloads of the two one-byte link commands."""

from __future__ import annotations

from ble_profile import LinkProfileError, parse_error, parse_keepalive

from ..engine import Target


def one_input(data: bytes) -> None:
    if not data:
        return
    (parse_keepalive if data[0] & 1 else parse_error)(data[1:])


def seeds() -> list[bytes]:
    return [b"\x01\x02", b"\x00\x04", b"\x01\x00", b"\x00\x7f", b"\x01", b"\x00\x01\x02"]


TARGET = Target("frame_payloads", one_input, (LinkProfileError,), seeds, max_len=64)
