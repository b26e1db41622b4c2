"""What the link sessions hand back to their adapters: events to act on, never I/O.

The sessions (:mod:`.central`, :mod:`.peripheral`) are fed fragments and local calls, and answer
with these values, as h11 answers with events: the adapter writes ``SendFrames`` to its radio and
hands every other event to the layer above. Nothing here touches a clock or a socket.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codes import ErrorCode, KeepaliveStatus
from .errors import FramingError

__all__ = [
    "AnswerReceived",
    "CancelReceived",
    "CancelSettled",
    "DeadlineExpired",
    "ErrorReceived",
    "FramingErrorAnswered",
    "KeepaliveReceived",
    "ModuleSilent",
    "RequestReceived",
    "SendFrames",
]


@dataclass(frozen=True, slots=True)
class SendFrames:
    """Fragments the adapter writes (central) or notifies (peripheral), in order."""

    frames: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class KeepaliveReceived:
    """The module is alive and still deciding; UNKNOWN is a newer module's status."""

    status: KeepaliveStatus


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """The module's answer to the request in flight (an MSG envelope, or a PING echo)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """The module answered the request with an ERROR frame (BUSY, INVALID_SEQ, ...)."""

    code: ErrorCode


@dataclass(frozen=True, slots=True)
class CancelSettled:
    """After a CANCEL, the module's closing message arrived: the next request is not confused
    with the answer to the cancelled one."""


@dataclass(frozen=True, slots=True)
class DeadlineExpired:
    """The request's deadline passed; ``cancel`` is the CANCEL fragment to write."""

    cancel: bytes


@dataclass(frozen=True, slots=True)
class ModuleSilent:
    """No fragment for longer than the keepalive timeout, before the deadline."""


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A complete MSG from the central: the module now owes exactly one answer."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """The central cancelled the request in progress; the module still answers it (CANCELLED)."""


@dataclass(frozen=True, slots=True)
class FramingErrorAnswered:
    """The central sent fragments that break the profile; ``error.code`` went back as ERROR
    (or BUSY). Kept for the module's log and counters."""

    error: FramingError
