"""Symmetric-key cards (flow F-C): key diversification, process keys bound to a time factor
and the channel's unique id, sealed messages with the seed's verification codes, freshness.

Sans-IO: plain classes fed bytes and the caller's clock. See docs/symmetric-card.md.
"""

from __future__ import annotations

from .channel import LinkAddresses, channel_id
from .errors import (
    Busy,
    CardError,
    CardErrorCode,
    Expired,
    Malformed,
    OutOfOrder,
    Replay,
    StaleTimeFactor,
    Tampered,
    UnknownKeyVersion,
    UnsupportedSuite,
    UserTimeout,
    WrongCard,
    WrongChannel,
    WrongKey,
    WrongTransaction,
    error_class,
)
from .freshness import ReplayGuard, ServerTimeClock, TimeWindow
from .keys import CardKey, diversify, is_card_number, luhn_digit, process_key
from .messages import (
    CardChallenge,
    CardErrorMessage,
    CardInfo,
    Decision,
    MessageType,
    SealedMessage,
    TransactionInfo,
    UserVerification,
    decode,
    encode,
)
from .provisioning import CardProvision
from .session import CardOutcome, CardRecord, CardSession, CardVerifier, ServerSession
from .suites import CardSuite

__all__ = [
    "Busy", "CardChallenge", "CardError", "CardErrorCode", "CardErrorMessage", "CardInfo",
    "CardKey", "CardOutcome", "CardProvision", "CardRecord", "CardSession", "CardSuite",
    "CardVerifier", "Decision", "Expired", "LinkAddresses", "Malformed", "MessageType",
    "OutOfOrder", "Replay", "ReplayGuard", "SealedMessage", "ServerSession", "ServerTimeClock",
    "StaleTimeFactor", "Tampered", "TimeWindow", "TransactionInfo", "UnknownKeyVersion",
    "UnsupportedSuite", "UserTimeout", "UserVerification", "WrongCard", "WrongChannel", "WrongKey",
    "WrongTransaction", "channel_id", "decode", "diversify", "encode", "error_class",
    "is_card_number", "luhn_digit", "process_key",
]
