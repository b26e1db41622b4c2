"""The secure-module link profile: GATT layout, advertising, framing, module info. Sans-IO.

Sans-IO (no asyncio, no Bluetooth calls) so the same code runs in the gateway, in the simulated
module and in tests, and every byte on the wire can be checked without a radio.
See docs/ble-profile.md for the specification.
"""

from . import uuids
from .advertising import (
    ADVERT_VERSION,
    FLAG_PAIRING_MODE,
    LEGACY_ADVERT_SIZE,
    SERVICE_DATA_SIZE,
    AdvertData,
    legacy_advertising_data,
)
from .codes import Command, ErrorCode, KeepaliveStatus
from .errors import (
    AdvertisementError,
    ContinuationWithoutStartError,
    FrameTooLongError,
    FramingError,
    InvalidSequenceError,
    LinkProfileError,
    MessageTooLongError,
    ModuleInfoError,
    ShortFrameError,
    TrailingDataError,
    UnexpectedStartError,
    UnknownCommandError,
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
from .module_info import CARD_PROTOCOL_VERSION, E2E_PROTOCOL_VERSION, MAX_INFO_SIZE, ModuleInfo

__all__ = [
    "ADVERT_VERSION",
    "CARD_PROTOCOL_VERSION",
    "E2E_PROTOCOL_VERSION",
    "FLAG_PAIRING_MODE",
    "LEGACY_ADVERT_SIZE",
    "MAX_INFO_SIZE",
    "MAX_MESSAGE_SIZE",
    "MIN_FRAGMENT_SIZE",
    "SERVICE_DATA_SIZE",
    "AdvertData",
    "AdvertisementError",
    "Command",
    "ContinuationWithoutStartError",
    "ErrorCode",
    "FrameAssembler",
    "FrameTooLongError",
    "FramingError",
    "InvalidSequenceError",
    "KeepaliveStatus",
    "LinkProfileError",
    "Message",
    "MessageTooLongError",
    "ModuleInfo",
    "ModuleInfoError",
    "ShortFrameError",
    "TrailingDataError",
    "UnexpectedStartError",
    "UnknownCommandError",
    "error_frame",
    "fragment",
    "fragment_size",
    "keepalive_frame",
    "legacy_advertising_data",
    "parse_error",
    "parse_keepalive",
    "uuids",
]
