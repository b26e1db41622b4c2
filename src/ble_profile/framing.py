"""Fragmenting messages to the link's size and reassembling them, sans-IO.

Framing follows the FIDO BLE transport (CTAP 2.1, section 11.4): an initial fragment
``CMD | LEN_HI | LEN_LO | data...`` (CMD has its top bit set), then continuation fragments
``SEQ | data...`` with SEQ counting 0x00..0x7F and wrapping. Each fragment fits the fragment
size: min(control-point length, ATT MTU - 3). Both directions use the same framing.

:class:`FrameAssembler` is fed fragments one at a time (like h11's ``receive_data``) and returns
a :class:`Message` when one is complete. Garbage raises a :class:`FramingError` subclass whose
``code`` is the ERROR the receiver answers with; the assembler is then idle again, so the next
valid message parses.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codes import Command, ErrorCode, KeepaliveStatus
from .errors import (
    ContinuationWithoutStartError,
    FrameTooLongError,
    FramingError,
    InvalidSequenceError,
    MessageTooLongError,
    ShortFrameError,
    TrailingDataError,
    UnexpectedStartError,
    UnknownCommandError,
)

__all__ = [
    "MAX_MESSAGE_SIZE",
    "MIN_FRAGMENT_SIZE",
    "Command",
    "ErrorCode",
    "FrameAssembler",
    "KeepaliveStatus",
    "Message",
    "error_frame",
    "fragment",
    "fragment_size",
    "keepalive_frame",
    "parse_error",
    "parse_keepalive",
]

MIN_FRAGMENT_SIZE = 20
"""ATT MTU 23 minus the 3-byte ATT header: every BLE link carries at least this."""
MAX_MESSAGE_SIZE = 0xFFFF
"""The 16-bit length field's limit; receivers may set a lower one."""
_SEQ_MODULO = 0x80


@dataclass(frozen=True, slots=True)
class Message:
    """One reassembled message: what the layer above sees, never a fragment."""

    command: Command
    payload: bytes


def fragment_size(att_mtu: int, control_point_length: int = MAX_MESSAGE_SIZE) -> int:
    """The fragment size for a link: min(control-point length, MTU - 3), at least 20."""
    return max(MIN_FRAGMENT_SIZE, min(control_point_length, att_mtu - 3))


def fragment(command: Command, payload: bytes, fragment_size: int,
             max_message: int = MAX_MESSAGE_SIZE) -> list[bytes]:
    """Split one message into fragments of at most ``fragment_size`` bytes.

    ``max_message`` is the peer's limit (its module info); refusing here gives a local error
    instead of an ERROR INVALID_LEN round trip. Bad arguments are our own bug, so ValueError.
    """
    size = fragment_size
    if size < MIN_FRAGMENT_SIZE:
        raise ValueError(f"fragment size {size} is below the minimum {MIN_FRAGMENT_SIZE}")
    if len(payload) > min(max_message, MAX_MESSAGE_SIZE):
        raise ValueError(f"payload of {len(payload)} bytes exceeds the limit of "
                         f"{min(max_message, MAX_MESSAGE_SIZE)}")
    first = bytes([command]) + len(payload).to_bytes(2, "big") + payload[: size - 3]
    frames = [first]
    rest = payload[size - 3:]
    seq = 0
    while rest:
        frames.append(bytes([seq]) + rest[: size - 1])
        rest = rest[size - 1:]
        seq = (seq + 1) % _SEQ_MODULO
    return frames


def keepalive_frame(status: KeepaliveStatus) -> bytes:
    """The single fragment a module sends every ~500 ms while it waits (fits any link)."""
    return bytes([Command.KEEPALIVE, 0, 1, status])


def error_frame(code: ErrorCode) -> bytes:
    """The single fragment answering malformed input; ``FramingError.code`` says which."""
    return bytes([Command.ERROR, 0, 1, code])


def parse_keepalive(payload: bytes) -> KeepaliveStatus:
    """Status of a KEEPALIVE payload; unknown statuses still count as "alive"."""
    if len(payload) != 1:
        raise ShortFrameError(f"KEEPALIVE carries one status byte, got {len(payload)}")
    return KeepaliveStatus.parse(payload[0])


def parse_error(payload: bytes) -> ErrorCode:
    """Code of an ERROR payload; unknown codes become OTHER rather than failing."""
    if len(payload) != 1:
        raise ShortFrameError(f"ERROR carries one code byte, got {len(payload)}")
    return ErrorCode.parse(payload[0])


class FrameAssembler:
    """Reassembles fragments into messages; one message at a time.

    ``fragment_size`` is the largest fragment accepted (longer ones are refused, as the control
    point length promises); ``max_message_size`` caps the declared length so a peer cannot make
    the receiver buffer more than it agreed to.
    """

    def __init__(self, fragment_size: int, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        if fragment_size < MIN_FRAGMENT_SIZE:
            raise ValueError(f"fragment size {fragment_size} is below {MIN_FRAGMENT_SIZE}")
        self.fragment_size = fragment_size
        self.max_message_size = min(max_message_size, MAX_MESSAGE_SIZE)
        self._command: Command | None = None
        self._expected = 0
        self._buffer = bytearray()
        self._seq = 0

    @property
    def idle(self) -> bool:
        """No message is half-received."""
        return self._command is None

    def reset(self) -> None:
        """Drop any half-received message (after an error, a timeout or a disconnect)."""
        self._command = None
        self._expected = 0
        self._buffer = bytearray()
        self._seq = 0

    def feed(self, data: bytes | bytearray | memoryview) -> Message | None:
        """Take one fragment (one write or notification); return the message it completes.

        Raises a FramingError subclass for malformed input; the assembler is idle afterwards,
        so the caller answers ``error_frame(exc.code)`` and carries on.
        """
        try:
            return self._feed(bytes(data))
        except FramingError:
            self.reset()
            raise

    def _feed(self, data: bytes) -> Message | None:
        if not data:
            raise ShortFrameError("empty fragment")
        if len(data) > self.fragment_size:
            raise FrameTooLongError(f"fragment of {len(data)} bytes exceeds {self.fragment_size}")
        head = data[0]
        if head & 0x80:
            if not self.idle:
                raise UnexpectedStartError("a new message started before the last one ended")
            try:
                command = Command(head)
            except ValueError:
                raise UnknownCommandError(f"unknown command 0x{head:02x}") from None
            if len(data) < 3:
                raise ShortFrameError("initial fragment shorter than its 3-byte header")
            length = int.from_bytes(data[1:3], "big")
            if length > self.max_message_size:
                raise MessageTooLongError(f"declared length {length} exceeds "
                                     f"{self.max_message_size}")
            body = data[3:]
            if len(body) > length:
                raise TrailingDataError(f"{len(body) - length} bytes beyond the declared length")
            self._command, self._expected, self._buffer, self._seq = command, length, \
                bytearray(body), 0
        else:
            if self.idle:
                raise ContinuationWithoutStartError(f"continuation 0x{head:02x} with no message")
            if head != self._seq:
                raise InvalidSequenceError(f"sequence 0x{head:02x}, expected 0x{self._seq:02x}")
            body = data[1:]
            if len(self._buffer) + len(body) > self._expected:
                raise TrailingDataError("continuation carries more than the declared length")
            self._buffer.extend(body)
            self._seq = (self._seq + 1) % _SEQ_MODULO
        if len(self._buffer) == self._expected:
            assert self._command is not None
            message = Message(self._command, bytes(self._buffer))
            self.reset()
            return message
        return None
