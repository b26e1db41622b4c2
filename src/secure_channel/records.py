"""The record layer: AEAD records with explicit sequence numbers, one key per direction.

A record is ``type (1) || epoch (2) || sequence (4) || AEAD(key_epoch, nonce, inner,
aad=the 7 header bytes)`` where ``nonce = iv_epoch XOR (0^4 || sequence as 8 bytes)`` and
``inner = content || 0x80 || 0x00 * padding``: the sender may pad every message to one size so
that a relay cannot tell a payment from a ping by its length. The
receiver accepts only the next sequence number of its current epoch: an older one is a replay, a
newer one means a record was dropped (the BLE link and MQTT both deliver in order, so a gap is
an attack or a fault, never normal). A key update record (type ``0x18``, empty plaintext, under
the old key) moves its sender's direction to the next epoch: ``secret' = HKDF-Expand-Label(
secret, "traffic upd", "", Hlen)``. Any failure closes the session; the module then resumes.

Time is given in (``now``, seconds); nothing here reads a clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import (
    BadRecord,
    ChannelError,
    Malformed,
    RecordOutOfOrder,
    RecordReplay,
    RecordTooLarge,
    SessionExpired,
    Unexpected,
)
from .primitives import TAG_SIZE, aead_open, aead_seal, expand_label
from .suites import Aead, HashName
from .wire import ContentType

__all__ = ["HEADER_SIZE", "MAX_PLAINTEXT", "RECORDS_PER_KEY", "Direction", "Session"]

HEADER_SIZE = 7
MAX_PLAINTEXT = 1023
"""Content bytes per record (1024 with the padding marker): records carry payment messages of
a few hundred bytes; a longer one is refused unread."""
_PAD_MARK = b"\x80"
RECORDS_PER_KEY = 1 << 24
"""A sender moves to new keys after this many records (far below the 2^32 the header holds
and GCM's limits)."""
_HEADER = struct.Struct(">BHI")


@dataclass(slots=True)
class Direction:
    """One direction's traffic secret, epoch and next sequence number."""

    hash: HashName
    aead: Aead
    secret: bytes = field(repr=False)
    epoch: int = 0
    sequence: int = 0
    key: bytes = field(init=False, repr=False)
    iv: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._derive()

    def _derive(self) -> None:
        self.key = expand_label(self.hash, self.secret, "key", b"", self.aead.key_size)
        self.iv = expand_label(self.hash, self.secret, "iv", b"", 12)

    def nonce(self) -> bytes:
        pad = b"\x00" * 4 + self.sequence.to_bytes(8, "big")
        return bytes(a ^ b for a, b in zip(self.iv, pad, strict=True))

    def advance(self) -> None:
        self.secret = expand_label(self.hash, self.secret, "traffic upd", b"",
                                   len(self.secret))
        self.epoch += 1
        self.sequence = 0
        self._derive()


class Session:
    """An established channel: seal what this side sends, open what the peer sent."""

    def __init__(self, *, hash: HashName, aead: Aead, send_secret: bytes,
                 receive_secret: bytes, expires_at: float, session_id: bytes,
                 peer_id: bytes, max_plaintext: int = MAX_PLAINTEXT) -> None:
        self._send = Direction(hash, aead, send_secret)
        self._receive = Direction(hash, aead, receive_secret)
        self._aead = aead
        self.expires_at = expires_at
        self.session_id = session_id
        self.peer_id = peer_id
        """The module id (on the platform) or the platform id (on the module), from the
        certificate the handshake checked."""
        self.max_plaintext = max_plaintext
        self.closed = False

    def _live(self, now: float) -> None:
        if self.closed:
            raise Unexpected("session closed")
        if now >= self.expires_at:
            self.closed = True
            raise SessionExpired("session expired: resume or run a new handshake")

    def _record(self, kind: ContentType, content: bytes, pad_to: int = 0) -> bytes:
        d = self._send
        header = _HEADER.pack(kind, d.epoch, d.sequence)
        inner = content + _PAD_MARK
        inner += bytes(max(0, pad_to - len(content)))
        out = header + aead_seal(self._aead, d.key, d.nonce(), inner, header)
        d.sequence += 1
        return out

    def seal(self, plaintext: bytes, now: float, *, pad_to: int = 0) -> list[bytes]:
        """Units to send for one message: its record, preceded by a key update when this
        direction's key has carried :data:`RECORDS_PER_KEY` records. ``pad_to`` pads the
        content to that many bytes inside the encryption (give every message kind the same
        size to hide which one it is)."""
        self._live(now)
        if max(len(plaintext), pad_to) > self.max_plaintext:
            raise RecordTooLarge(f"plaintext over {self.max_plaintext} bytes")
        out = []
        if self._send.sequence >= RECORDS_PER_KEY - 1:
            out.append(self.update_keys(now))
        out.append(self._record(ContentType.APPLICATION, plaintext, pad_to))
        return out

    def update_keys(self, now: float) -> bytes:
        """A key update unit; this side's sending keys move to the next epoch after it."""
        self._live(now)
        unit = self._record(ContentType.KEY_UPDATE, b"")
        self._send.advance()
        return unit

    def open(self, unit: bytes, now: float) -> bytes | None:
        """The plaintext of an application record; None for a key update (applied). Any error
        closes the session."""
        self._live(now)
        try:
            return self._open(unit)
        except ChannelError:
            self.closed = True
            raise

    def _open(self, unit: bytes) -> bytes | None:
        if not isinstance(unit, bytes) or len(unit) < HEADER_SIZE + TAG_SIZE:
            raise Malformed("record shorter than header and tag")
        if len(unit) > HEADER_SIZE + self.max_plaintext + 1 + TAG_SIZE:
            raise RecordTooLarge("record over the size limit")
        kind, epoch, sequence = _HEADER.unpack_from(unit)
        if kind not in (ContentType.APPLICATION, ContentType.KEY_UPDATE):
            raise Unexpected("not a record")
        d = self._receive
        if (epoch, sequence) < (d.epoch, d.sequence):
            raise RecordReplay("record already received")
        if (epoch, sequence) > (d.epoch, d.sequence):
            raise RecordOutOfOrder("record ahead of the next expected one")
        inner = aead_open(self._aead, d.key, d.nonce(), unit[HEADER_SIZE:],
                          unit[:HEADER_SIZE])
        d.sequence += 1
        unpadded = inner.rstrip(b"\x00")
        if not unpadded.endswith(_PAD_MARK):
            raise BadRecord("record without its padding marker")
        plaintext = unpadded[:-1]
        if kind == ContentType.KEY_UPDATE:
            if plaintext:
                raise BadRecord("a key update carries nothing")
            d.advance()
            return None
        return plaintext
