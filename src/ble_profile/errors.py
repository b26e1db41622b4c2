"""Errors of the link profile. Each framing error carries the ERROR code the module answers with."""

from __future__ import annotations

from .codes import ErrorCode

__all__ = [
    "AdvertisementError",
    "BadControlPayloadError",
    "BusyError",
    "ContinuationWithoutStartError",
    "FrameTooLongError",
    "FramingError",
    "InvalidSequenceError",
    "LinkProfileError",
    "MessageTooLongError",
    "ModuleInfoError",
    "SessionStateError",
    "ShortFrameError",
    "TrailingDataError",
    "UnexpectedMessageError",
    "UnexpectedStartError",
    "UnknownCommandError",
]


class LinkProfileError(Exception):
    """Base of everything the link profile raises."""


class FramingError(LinkProfileError, ValueError):
    """The peer sent fragments that do not form a valid message (a remote protocol error).

    ``code`` is the ERROR code the receiver answers with, so the code that catches the exception
    never has to map exception types to wire values itself.
    """

    code: ErrorCode = ErrorCode.OTHER


class ShortFrameError(FramingError):
    """An empty fragment, or an initial fragment without its 3-byte header."""

    code = ErrorCode.INVALID_LEN


class FrameTooLongError(FramingError):
    """A fragment longer than the fragment size the receiver advertised."""

    code = ErrorCode.INVALID_LEN


class MessageTooLongError(FramingError):
    """The declared length exceeds what the receiver agreed to buffer."""

    code = ErrorCode.INVALID_LEN


class TrailingDataError(FramingError):
    """Fragments carry more bytes than the initial fragment declared."""

    code = ErrorCode.INVALID_LEN


class InvalidSequenceError(FramingError):
    """A continuation out of order: a fragment was lost, repeated or reordered."""

    code = ErrorCode.INVALID_SEQ


class ContinuationWithoutStartError(FramingError):
    """A continuation arrived while no message was being received."""

    code = ErrorCode.INVALID_SEQ


class UnexpectedStartError(FramingError):
    """A new initial fragment arrived before the current message was complete."""

    code = ErrorCode.INVALID_SEQ


class UnknownCommandError(FramingError):
    """An initial fragment whose command byte this profile does not define."""

    code = ErrorCode.INVALID_CMD


class AdvertisementError(LinkProfileError, ValueError):
    """Service data in an advertisement is not ours or is malformed."""


class ModuleInfoError(LinkProfileError, ValueError):
    """The module-info characteristic does not hold a valid ModuleInfo."""


class BadControlPayloadError(FramingError):
    """A KEEPALIVE or ERROR message whose payload is not the one byte the profile defines: the
    peer does not speak the profile, so the link it came over is not to be trusted further."""

    code = ErrorCode.INVALID_LEN

    def __init__(self, command: str, message: str) -> None:
        super().__init__(message)
        self.command = command
        """The command's name (KEEPALIVE or ERROR), for the operator's log."""


class UnexpectedMessageError(FramingError):
    """A well-formed message the session's state does not allow (an answer nobody asked for,
    or a command only the other side sends)."""

    code = ErrorCode.INVALID_CMD


class SessionStateError(LinkProfileError, RuntimeError):
    """Our own code asked a session for something its state does not allow (answering with no
    request, a second request in flight): a local bug, never the peer's doing."""


class BusyError(FramingError):
    """A request arrived while the module was still answering another: one at a time."""

    code = ErrorCode.BUSY
