"""The module's side of the link, as a state machine: fragments in, answers out. Sans-IO.

The adapter (the simulator's bless GATT server) feeds every control-point write to
:meth:`PeripheralSession.receive` and notifies the frames in the :class:`SendFrames` it gets
back; a :class:`RequestReceived` is handed to the module's logic, which answers once with
:meth:`~PeripheralSession.respond`. The session answers what the profile answers by itself:
PING is echoed (in any state: it is link health, not a request, so it never meets BUSY),
malformed fragments get ERROR with the code of their :class:`FramingError`, a second MSG while
one is in progress gets ERROR BUSY, and CANCEL is passed on only while a request is in progress.

Each central has its own reassembly (a half-written message from one is not corrupted by
another); the request in progress is the module's, one at a time.

========== ========================= ========== =====================================
state      input                     next       out
========== ========================= ========== =====================================
IDLE       MSG                       PROCESSING RequestReceived
PROCESSING MSG                       PROCESSING ERROR BUSY
any        PING                      same       the echo
PROCESSING CANCEL                    PROCESSING CancelReceived (the answer still follows)
IDLE       CANCEL                    IDLE       nothing (a late CANCEL crossing an answer)
any        KEEPALIVE / ERROR         same       ERROR INVALID_CMD
any        malformed fragment        same       ERROR (the error's code)
PROCESSING respond                   IDLE       the answer's fragments
PROCESSING keepalive                 PROCESSING a KEEPALIVE frame
PROCESSING abandon                   IDLE       nothing (the answer can no longer be sent)
========== ========================= ========== =====================================
"""

from __future__ import annotations

from enum import Enum

from .codes import Command, KeepaliveStatus
from .errors import (
    BusyError,
    FrameTooLongError,
    FramingError,
    SessionStateError,
    UnexpectedMessageError,
)
from .framing import (
    MAX_MESSAGE_SIZE,
    FrameAssembler,
    error_frame,
    fragment,
    fragment_size,
    keepalive_frame,
)
from .session_events import (
    CancelReceived,
    FramingErrorAnswered,
    RequestReceived,
    SendFrames,
)

__all__ = ["PeripheralEvent", "PeripheralSession", "PeripheralState"]

PeripheralEvent = SendFrames | RequestReceived | CancelReceived | FramingErrorAnswered
"""What :meth:`PeripheralSession.receive` can hand back."""

DEFAULT_ATT_MTU = 23
"""The MTU every link starts with, until BlueZ reports the negotiated one."""


class PeripheralState(Enum):
    """Whether the module owes an answer."""

    IDLE = "idle"
    PROCESSING = "processing"


class _Input(Enum):
    REQUEST = "request"
    CANCEL = "cancel"
    RESPOND = "respond"
    KEEPALIVE = "keepalive"
    ABANDON = "abandon"


_S, _I = PeripheralState, _Input
_TRANSITIONS: dict[tuple[PeripheralState, _Input], PeripheralState] = {
    (_S.IDLE, _I.REQUEST): _S.PROCESSING,
    (_S.PROCESSING, _I.CANCEL): _S.PROCESSING,
    (_S.IDLE, _I.CANCEL): _S.IDLE,
    (_S.PROCESSING, _I.RESPOND): _S.IDLE,
    (_S.PROCESSING, _I.KEEPALIVE): _S.PROCESSING,
    (_S.PROCESSING, _I.ABANDON): _S.IDLE,
}
"""Every move on the request; a local call missing here is a :class:`SessionStateError`, a
peer's MSG missing here (one while processing) is BUSY."""


class PeripheralSession:
    """The module's request state and the reassembly of each central's writes.

    ``control_point_length`` is the largest fragment the module accepts (what it publishes in
    the control-point-length characteristic); ``max_message_size`` what it agreed to buffer
    (its module info).
    """

    def __init__(self, control_point_length: int,
                 max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.control_point_length = control_point_length
        self.max_message_size = max_message_size
        self.state = PeripheralState.IDLE
        self.att_mtu = DEFAULT_ATT_MTU
        """The link's ATT MTU (the last BlueZ reported): the size of the frames sent back."""
        self._assemblers: dict[str, FrameAssembler] = {}

    def _move(self, given: _Input) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, given)]
        except KeyError:
            raise SessionStateError(f"{given.value} is not allowed while "
                                    f"{self.state.value}") from None

    def _fragments(self, command: Command, payload: bytes) -> SendFrames:
        size = fragment_size(self.att_mtu, self.control_point_length)
        return SendFrames(tuple(fragment(command, payload, size)))

    def receive(self, data: bytes, *, central: str = "", offset: int = 0
                ) -> list[PeripheralEvent]:
        """Take one control-point write from ``central``; return what follows from it.

        ``offset`` is the ATT offset BlueZ reports: a fragment is one value at offset 0, so a
        part of a long write (a fragment longer than MTU - 3, written with response) makes the
        whole write malformed. Never raises for anything the central sends.
        """
        assembler = self._assemblers.get(central)
        if assembler is None:
            assembler = FrameAssembler(self.control_point_length, self.max_message_size)
            self._assemblers[central] = assembler
        try:
            if offset:
                assembler.reset()
                raise FrameTooLongError("a fragment arrived as a long write (non-zero offset)")
            message = assembler.feed(data)
            if message is None:
                return []
            if message.command is Command.PING:
                return [self._fragments(Command.PING, message.payload)]
            if message.command is Command.CANCEL:
                was = self.state
                self._move(_Input.CANCEL)
                return [CancelReceived()] if was is PeripheralState.PROCESSING else []
            if message.command is Command.MSG:
                if self.state is PeripheralState.PROCESSING:
                    raise BusyError("a request is already in progress")
                self._move(_Input.REQUEST)
                return [RequestReceived(message.payload)]
            raise UnexpectedMessageError(f"{message.command.name} is the module's to send")
        except FramingError as exc:
            return [SendFrames((error_frame(exc.code),)), FramingErrorAnswered(exc)]

    def respond(self, payload: bytes) -> SendFrames:
        """The module's one answer (an MSG envelope) to the request in progress."""
        self._move(_Input.RESPOND)
        return self._fragments(Command.MSG, payload)

    def keepalive(self, status: KeepaliveStatus) -> SendFrames | None:
        """A KEEPALIVE while the request is in progress; None once it is answered (a timer
        that fires after the answer must not send proof of life for a finished request)."""
        if self.state is not PeripheralState.PROCESSING:
            return None
        self._move(_Input.KEEPALIVE)
        return SendFrames((keepalive_frame(status),))

    def abandon(self) -> None:
        """The request ended without an answer that can still be sent (its task died, or it
        was cancelled where no answer is given): the module takes requests again."""
        if self.state is PeripheralState.PROCESSING:
            self._move(_Input.ABANDON)

    def link_lost(self) -> None:
        """Nobody listens any more: drop every half-received message. A request in progress
        stays in progress until the module answers or abandons it."""
        self._assemblers.clear()
