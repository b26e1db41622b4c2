"""``ModuleInfo.decode``: the first thing a gateway reads from a module it connects to.

The documentation promises only the canonical encoding is accepted, so whatever decodes must
re-encode to exactly the same bytes.
"""

from __future__ import annotations

from ble_profile import LinkProfileError, ModuleInfo

from ..engine import FuzzOracleError, Target


def one_input(data: bytes) -> None:
    info = ModuleInfo.decode(data)
    if info.encode() != data:
        raise FuzzOracleError("module info accepted in a non-canonical form")


def seeds() -> list[bytes]:
    return [
        ModuleInfo("blegw wearable-sim", "0.1.0", (1,), (1, 2), b"\x33" * 16, 4096).encode(),
        ModuleInfo("m" * 64, "f" * 32, tuple(range(16)), tuple(range(16)), b"\xff" * 32,
                   0xFFFF).encode(),
        ModuleInfo("\u6a21\u5757", "1", (1,), (2,), b"abcd", 64).encode(),
    ]


TARGET = Target("module_info", one_input, (LinkProfileError,), seeds, max_len=1024)
