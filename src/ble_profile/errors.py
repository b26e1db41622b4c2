"""Errors of the link profile. Each framing error carries the ERROR code the module answers with."""

from __future__ import annotations

from .codes import ErrorCode

__all__ = [
    "AdvertisementError",
    "ContinuationWithoutStart",
    "FrameTooLong",
    "FramingError",
    "InvalidSequence",
    "LinkProfileError",
    "MessageTooLong",
    "ModuleInfoError",
    "ShortFrame",
    "TrailingData",
    "UnexpectedStart",
    "UnknownCommand",
]


class LinkProfileError(Exception):
    """Base of everything the link profile raises."""


class FramingError(LinkProfileError, ValueError):
    """The peer sent fragments that do not form a valid message (a remote protocol error)."""

    code: ErrorCode = ErrorCode.OTHER


class ShortFrame(FramingError):
    code = ErrorCode.INVALID_LEN


class FrameTooLong(FramingError):
    code = ErrorCode.INVALID_LEN


class MessageTooLong(FramingError):
    code = ErrorCode.INVALID_LEN


class TrailingData(FramingError):
    code = ErrorCode.INVALID_LEN


class InvalidSequence(FramingError):
    code = ErrorCode.INVALID_SEQ


class ContinuationWithoutStart(FramingError):
    code = ErrorCode.INVALID_SEQ


class UnexpectedStart(FramingError):
    code = ErrorCode.INVALID_SEQ


class UnknownCommand(FramingError):
    code = ErrorCode.INVALID_CMD


class AdvertisementError(LinkProfileError, ValueError):
    """Service data in an advertisement is not ours or is malformed."""


class ModuleInfoError(LinkProfileError, ValueError):
    """The module-info characteristic does not hold a valid ModuleInfo."""
