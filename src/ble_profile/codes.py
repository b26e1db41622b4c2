"""Command bytes, keepalive statuses and error codes: the values that cross the wire."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["Command", "ErrorCode", "KeepaliveStatus"]


class Command(IntEnum):
    """Initial-frame command bytes (top bit set), as in the FIDO BLE transport."""

    PING = 0x81
    KEEPALIVE = 0x82
    MSG = 0x83
    CANCEL = 0xBE
    ERROR = 0xBF


class KeepaliveStatus(IntEnum):
    """Why the module is still busy. Any KEEPALIVE resets the gateway's timeout.

    UNKNOWN stands for a status a newer module may send: still proof of life, so not an error.
    """

    PROCESSING = 0x01
    USER_ACTION_NEEDED = 0x02
    UNKNOWN = 0x00

    @classmethod
    def parse(cls, value: int) -> KeepaliveStatus:
        """Unknown statuses become UNKNOWN instead of failing."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class ErrorCode(IntEnum):
    """The one-byte payload of ERROR: what was wrong with the peer's fragments."""

    INVALID_CMD = 0x01
    INVALID_PAR = 0x02
    INVALID_LEN = 0x03
    INVALID_SEQ = 0x04
    REQ_TIMEOUT = 0x05
    BUSY = 0x06
    OTHER = 0x7F

    @classmethod
    def parse(cls, value: int) -> ErrorCode:
        """Unknown codes from a newer peer become OTHER instead of failing."""
        try:
            return cls(value)
        except ValueError:
            return cls.OTHER
