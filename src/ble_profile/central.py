"""The gateway's side of one link, as a state machine: requests out, fragments in. Sans-IO.

One request at a time (the module answers one at a time). The adapter (``blegw.link``, bleak)
writes the fragments :meth:`CentralSession.send` returns, feeds every notification to
:meth:`~CentralSession.receive` and, when nothing arrives, asks :meth:`~CentralSession.poll`
with the current time whether the deadline passed or the module went silent. Time is always
passed in, so the rules (a KEEPALIVE extends the silence timer, never the deadline; a CANCEL
is answered before the next request) are tested without a clock or a radio.

======== ===================== ========== =====================================
state    input                 next       out
======== ===================== ========== =====================================
IDLE     send                  SENDING    the request's fragments
SENDING  sent                  AWAITING   (timers start)
AWAITING KEEPALIVE             AWAITING   KeepaliveReceived
AWAITING answer (same command) IDLE       AnswerReceived
AWAITING ERROR                 IDLE       ErrorReceived
AWAITING garbled / unexpected  IDLE       a FramingError subclass is raised
AWAITING cancel                CANCELLING the CANCEL fragment
AWAITING poll, deadline passed CANCELLING DeadlineExpired (with the CANCEL fragment)
AWAITING poll, silent          IDLE       ModuleSilent
CANCELLING any message but KA  IDLE       CancelSettled
CANCELLING KEEPALIVE, garbled  CANCELLING nothing (the module may still be unwinding)
any      reset                 IDLE       (a new connection, a discarded backlog)
======== ===================== ========== =====================================
"""

from __future__ import annotations

from enum import Enum

from .codes import Command, ErrorCode, KeepaliveStatus
from .errors import (
    BadControlPayloadError,
    FramingError,
    SessionStateError,
    UnexpectedMessageError,
)
from .framing import MIN_FRAGMENT_SIZE, FrameAssembler, Message, fragment
from .session_events import (
    AnswerReceived,
    CancelSettled,
    DeadlineExpired,
    ErrorReceived,
    KeepaliveReceived,
    ModuleSilent,
)

__all__ = ["CentralEvent", "CentralSession", "CentralState"]

CentralEvent = KeepaliveReceived | AnswerReceived | ErrorReceived | CancelSettled
"""What :meth:`CentralSession.receive` can hand back."""

RECEIVE_FRAGMENT_SIZE = 512
"""The largest notification accepted: the largest ATT value, whatever MTU was negotiated."""


class CentralState(Enum):
    """Where the one request of the link stands."""

    IDLE = "idle"
    SENDING = "sending"
    AWAITING = "awaiting"
    CANCELLING = "cancelling"


class _Input(Enum):
    SEND = "send"
    SENT = "sent"
    KEEPALIVE = "keepalive"
    ANSWER = "answer"
    ERROR = "error"
    GARBLED = "garbled"
    CANCEL = "cancel"
    DEADLINE = "deadline"
    SILENCE = "silence"


_S, _I = CentralState, _Input
_TRANSITIONS: dict[tuple[CentralState, _Input], CentralState] = {
    (_S.IDLE, _I.SEND): _S.SENDING,
    (_S.SENDING, _I.SENT): _S.AWAITING,
    (_S.AWAITING, _I.KEEPALIVE): _S.AWAITING,
    (_S.AWAITING, _I.ANSWER): _S.IDLE,
    (_S.AWAITING, _I.ERROR): _S.IDLE,
    (_S.AWAITING, _I.GARBLED): _S.IDLE,
    (_S.AWAITING, _I.CANCEL): _S.CANCELLING,
    (_S.AWAITING, _I.DEADLINE): _S.CANCELLING,
    (_S.AWAITING, _I.SILENCE): _S.IDLE,
    (_S.CANCELLING, _I.KEEPALIVE): _S.CANCELLING,
    (_S.CANCELLING, _I.GARBLED): _S.CANCELLING,
    (_S.CANCELLING, _I.ANSWER): _S.IDLE,
    (_S.CANCELLING, _I.ERROR): _S.IDLE,
}
"""Every move the session makes; a local call missing here is a :class:`SessionStateError`."""


class CentralSession:
    """One link's request/answer state, seen from the gateway."""

    def __init__(self) -> None:
        self.state = CentralState.IDLE
        self._assembler = FrameAssembler(RECEIVE_FRAGMENT_SIZE)
        self._command = Command.MSG
        self._deadline = 0.0
        self._silence_limit = 0.0
        self._heard = 0.0

    def _move(self, given: _Input) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, given)]
        except KeyError:
            raise SessionStateError(f"{given.value} is not allowed while "
                                    f"{self.state.value}") from None

    def reset(self) -> None:
        """Forget any request and half-received message: a new connection, or a backlog the
        adapter discarded."""
        self.state = CentralState.IDLE
        self._assembler.reset()

    def send(self, command: Command, payload: bytes, fragment_size: int) -> list[bytes]:
        """Start a request (MSG or PING); return its fragments for the adapter to write."""
        if command not in (Command.MSG, Command.PING):
            raise SessionStateError(f"{command.name} is not a request")
        frames = fragment(command, payload, fragment_size)
        self._move(_Input.SEND)
        self._command = command
        self._assembler.reset()
        return frames

    def sent(self, deadline: float, now: float, keepalive_timeout: float) -> None:
        """All fragments are written: the answer is awaited until ``deadline``, and the module
        may stay silent for ``keepalive_timeout`` seconds at a time (same clock as ``now``)."""
        self._move(_Input.SENT)
        self._deadline, self._silence_limit, self._heard = deadline, keepalive_timeout, now

    def cancel(self) -> bytes:
        """The caller gives up: return the CANCEL fragment to write."""
        self._move(_Input.CANCEL)
        self._assembler.reset()  # what follows is the module's closing message, from its start
        return _cancel_frame()

    def next_timeout(self, now: float) -> float:
        """Seconds the adapter may wait for a fragment before calling :meth:`poll`."""
        if self.state is not CentralState.AWAITING:
            return 0.0
        return max(0.0, min(self._deadline, self._heard + self._silence_limit) - now)

    def poll(self, now: float) -> DeadlineExpired | ModuleSilent | None:
        """What the passing of time means: the deadline first, then the module's silence."""
        if self.state is not CentralState.AWAITING:
            return None
        if now >= self._deadline:
            self._move(_Input.DEADLINE)
            self._assembler.reset()
            return DeadlineExpired(_cancel_frame())
        if now >= self._heard + self._silence_limit:
            self._move(_Input.SILENCE)
            return ModuleSilent()
        return None

    def receive(self, data: bytes, now: float) -> CentralEvent | None:
        """Take one notification. Returns the event it completes, if any.

        While awaiting an answer, fragments that break the profile raise a
        :class:`FramingError` subclass (the request has failed; the session is idle again);
        a :class:`BadControlPayloadError` means the module does not speak the profile at all.
        Outside a request the fragment is not ours to judge: :class:`UnexpectedMessageError`.
        """
        if self.state is CentralState.CANCELLING:
            return self._settle(data)
        if self.state is not CentralState.AWAITING:
            raise UnexpectedMessageError(f"a fragment while {self.state.value}")
        self._heard = now
        try:
            message = self._assembler.feed(data)
            if message is None:
                return None
            event = self._interpret(message)
        except FramingError:
            self._move(_Input.GARBLED)
            self._assembler.reset()
            raise
        self._move(_Input.KEEPALIVE if isinstance(event, KeepaliveReceived) else
                   _Input.ERROR if isinstance(event, ErrorReceived) else _Input.ANSWER)
        return event

    def _interpret(self, message: Message) -> KeepaliveReceived | AnswerReceived | ErrorReceived:
        if message.command in (Command.KEEPALIVE, Command.ERROR):
            if len(message.payload) != 1:
                raise BadControlPayloadError(
                    message.command.name, f"{message.command.name} carries one byte, got "
                    f"{len(message.payload)}")
            if message.command is Command.KEEPALIVE:
                return KeepaliveReceived(KeepaliveStatus.parse(message.payload[0]))
            return ErrorReceived(ErrorCode.parse(message.payload[0]))
        if message.command is self._command:
            return AnswerReceived(message.payload)
        raise UnexpectedMessageError(f"{message.command.name} in answer to "
                                     f"{self._command.name}")

    def _settle(self, data: bytes) -> CancelSettled | None:
        try:
            message = self._assembler.feed(data)
        except FramingError:
            self._move(_Input.GARBLED)
            return None
        if message is None:
            return None
        if message.command is Command.KEEPALIVE:
            self._move(_Input.KEEPALIVE)
            return None
        self._move(_Input.ERROR if message.command is Command.ERROR else _Input.ANSWER)
        return CancelSettled()


def _cancel_frame() -> bytes:
    return fragment(Command.CANCEL, b"", MIN_FRAGMENT_SIZE)[0]
