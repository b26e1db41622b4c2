"""One direction of records: header, nonce, padding, sequence checks and key update."""

from __future__ import annotations

from . import crypto
from .crypto import expand_label
from .schedule import (
    BAD_RECORD,
    RECORD_OUT_OF_ORDER,
    RECORD_REPLAY,
    RECORD_TOO_LARGE,
    OutsideError,
    Suite,
    key_iv,
)

MAX_INNER = 1024
KEY_UPDATE_AFTER = 1 << 24


class Direction:
    """The sender's or the receiver's state for one direction (same code, used one way)."""

    def __init__(self, suite: Suite, traffic: bytes) -> None:
        self.suite, self.traffic, self.epoch, self.seq = suite, traffic, 0, 0
        self.key, self.iv = key_iv(suite, traffic)

    def _nonce(self) -> bytes:
        return bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"), strict=True))

    def _next_epoch(self) -> None:
        self.traffic = expand_label(self.suite.family, self.traffic, "traffic upd", b"", 32)
        self.key, self.iv = key_iv(self.suite, self.traffic)
        self.epoch, self.seq = self.epoch + 1, 0

    def seal(self, content: bytes, pad_to: int = 0, *, kind: int = 0x17) -> bytes:
        """type || epoch || seq || AEAD(content || 0x80 || zeros)."""
        inner = content + b"\x80" + b"\x00" * max(0, pad_to - len(content))
        if len(inner) > MAX_INNER:
            raise OutsideError(RECORD_TOO_LARGE, "content")
        header = bytes([kind]) + self.epoch.to_bytes(2, "big") + self.seq.to_bytes(4, "big")
        unit = header + crypto.aead_seal(self.suite.aead, self.key, self._nonce(), inner, header)
        self.seq += 1
        if kind == 0x18:
            self._next_epoch()
        return unit

    def needs_update(self) -> bool:
        """True once this key has carried 2^24 records: the sender must update first."""
        return self.seq >= KEY_UPDATE_AFTER

    def key_update(self) -> bytes:
        """A 0x18 record with empty content, then this direction moves to the next epoch."""
        return self.seal(b"", kind=0x18)

    def open(self, unit: bytes) -> bytes | None:
        """Content of an application record, or None for a key update; typed refusals."""
        if len(unit) < 7 + 16 or unit[0] not in (0x17, 0x18):
            raise OutsideError(BAD_RECORD, "not a record")
        if len(unit) - 7 - 16 > MAX_INNER:
            raise OutsideError(RECORD_TOO_LARGE, "inner")
        got = (int.from_bytes(unit[1:3], "big"), int.from_bytes(unit[3:7], "big"))
        if got < (self.epoch, self.seq):
            raise OutsideError(RECORD_REPLAY, str(got))
        if got > (self.epoch, self.seq):
            raise OutsideError(RECORD_OUT_OF_ORDER, str(got))
        try:
            inner = crypto.aead_open(self.suite.aead, self.key, self._nonce(), unit[7:], unit[:7])
        except crypto.CryptoFailure as exc:
            raise OutsideError(BAD_RECORD, "tag") from exc
        stripped = inner.rstrip(b"\x00")
        if not stripped or stripped[-1] != 0x80:
            raise OutsideError(BAD_RECORD, "padding")
        content = stripped[:-1]
        self.seq += 1
        if unit[0] == 0x18:
            if content:
                raise OutsideError(BAD_RECORD, "key update with content")
            self._next_epoch()
            return None
        return content
