"""The secure-module link profile: GATT layout, advertising, framing. Sans-IO.

See docs/ble-profile.md for the specification.
"""

from . import uuids
from .advertising import ADVERT_VERSION, FLAG_PAIRING_MODE, AdvertData
from .codes import Command, ErrorCode, KeepaliveStatus
from .errors import (
    AdvertisementError,
    ContinuationWithoutStart,
    FrameTooLong,
    FramingError,
    InvalidSequence,
    LinkProfileError,
    MessageTooLong,
    ModuleInfoError,
    ShortFrame,
    TrailingData,
    UnexpectedStart,
    UnknownCommand,
)
from .framing import (
    MAX_MESSAGE_SIZE,
    MIN_FRAGMENT_SIZE,
    FrameAssembler,
    Message,
    error_frame,
    fragment,
    fragment_size,
    keepalive_frame,
    parse_error,
    parse_keepalive,
)
from .module_info import ModuleInfo

__all__ = [
    "ADVERT_VERSION",
    "FLAG_PAIRING_MODE",
    "MAX_MESSAGE_SIZE",
    "MIN_FRAGMENT_SIZE",
    "AdvertData",
    "AdvertisementError",
    "Command",
    "ContinuationWithoutStart",
    "ErrorCode",
    "FrameAssembler",
    "FrameTooLong",
    "FramingError",
    "InvalidSequence",
    "KeepaliveStatus",
    "LinkProfileError",
    "Message",
    "MessageTooLong",
    "ModuleInfo",
    "ModuleInfoError",
    "ShortFrame",
    "TrailingData",
    "UnexpectedStart",
    "UnknownCommand",
    "error_frame",
    "fragment",
    "fragment_size",
    "keepalive_frame",
    "parse_error",
    "parse_keepalive",
    "uuids",
]
