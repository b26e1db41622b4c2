"""The gateway's link session over every frame a module can send, with time passed in.

No radio and no clock: the session is sans-IO, so each test feeds it the notifications a module
(honest or hostile) would send and the times at which they arrive, and checks the event or the
typed error that comes out, and that the next request still works.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_profile import (
    AnswerReceived,
    BadControlPayloadError,
    CancelSettled,
    CentralSession,
    CentralState,
    Command,
    ContinuationWithoutStartError,
    DeadlineExpired,
    ErrorCode,
    ErrorReceived,
    FrameTooLongError,
    FramingError,
    InvalidSequenceError,
    KeepaliveReceived,
    KeepaliveStatus,
    LinkProfileError,
    ModuleSilent,
    SessionStateError,
    ShortFrameError,
    TrailingDataError,
    UnexpectedMessageError,
    UnexpectedStartError,
    UnknownCommandError,
    error_frame,
    fragment,
    keepalive_frame,
)

DEADLINE = 100.0
SILENCE = 3.0
CANCEL = bytes([Command.CANCEL, 0, 0])


def awaiting(command: Command = Command.MSG, payload: bytes = b"request") -> CentralSession:
    session = CentralSession()
    session.send(command, payload, 20)
    session.sent(DEADLINE, 0.0, SILENCE)
    return session


def honest_round_trip_works(session: CentralSession) -> None:
    """After whatever came before, the next request gets its answer."""
    session.reset()
    frames = session.send(Command.MSG, b"next", 20)
    assert frames == fragment(Command.MSG, b"next", 20)
    session.sent(DEADLINE, 0.0, SILENCE)
    answer = None
    for frame in fragment(Command.MSG, b"answer" * 30, 20):
        answer = session.receive(frame, 1.0)
    assert answer == AnswerReceived(b"answer" * 30)
    assert session.state is CentralState.IDLE


def test_request_fragments_and_a_multi_fragment_answer() -> None:
    session = CentralSession()
    assert session.send(Command.MSG, b"x" * 100, 30) == fragment(Command.MSG, b"x" * 100, 30)
    assert session.state is CentralState.SENDING
    session.sent(DEADLINE, 0.0, SILENCE)
    frames = fragment(Command.MSG, b"y" * 700, 185)
    assert [session.receive(f, 1.0) for f in frames[:-1]] == [None] * (len(frames) - 1)
    assert session.receive(frames[-1], 1.0) == AnswerReceived(b"y" * 700)
    assert session.state is CentralState.IDLE


def test_ping_is_answered_by_its_echo_and_an_msg_answer_to_ping_is_refused() -> None:
    session = awaiting(Command.PING, b"12345678")
    assert session.receive(fragment(Command.PING, b"12345678", 20)[0], 1.0) == \
        AnswerReceived(b"12345678")
    session = awaiting(Command.PING)
    with pytest.raises(UnexpectedMessageError) as caught:
        session.receive(fragment(Command.MSG, b"envelope", 20)[0], 1.0)
    assert caught.value.code is ErrorCode.INVALID_CMD
    honest_round_trip_works(session)


@pytest.mark.parametrize("status", list(KeepaliveStatus))
def test_keepalive_extends_the_silence_timer_but_never_the_deadline(
        status: KeepaliveStatus) -> None:
    session = awaiting()
    assert session.next_timeout(0.0) == SILENCE
    assert session.receive(keepalive_frame(status), 2.5) == KeepaliveReceived(status)
    assert session.state is CentralState.AWAITING
    assert session.poll(5.0) is None  # heard at 2.5: silent only from 5.5
    assert session.next_timeout(5.0) == pytest.approx(0.5)
    session.receive(keepalive_frame(status), 99.0)
    assert session.next_timeout(99.5) == pytest.approx(0.5)  # the deadline comes first
    expired = session.poll(DEADLINE)
    assert expired == DeadlineExpired(CANCEL)
    assert session.state is CentralState.CANCELLING


def test_unknown_keepalive_status_is_still_proof_of_life() -> None:
    session = awaiting()
    assert session.receive(bytes([Command.KEEPALIVE, 0, 1, 0x55]), 1.0) == \
        KeepaliveReceived(KeepaliveStatus.UNKNOWN)
    assert session.state is CentralState.AWAITING


def test_a_module_that_goes_silent_is_reported_before_the_deadline() -> None:
    session = awaiting()
    assert session.poll(SILENCE - 0.01) is None
    assert session.poll(SILENCE) == ModuleSilent()
    assert session.state is CentralState.IDLE
    honest_round_trip_works(session)


@pytest.mark.parametrize("code", [*ErrorCode, 0x42])
def test_error_frame_ends_the_request_with_its_code(code: int) -> None:
    session = awaiting()
    event = session.receive(bytes([Command.ERROR, 0, 1, code]), 1.0)
    assert event == ErrorReceived(ErrorCode.parse(code))
    assert session.state is CentralState.IDLE
    honest_round_trip_works(session)


@pytest.mark.parametrize(("command", "payload"), [
    (Command.KEEPALIVE, b""), (Command.KEEPALIVE, b"\x01\x02"),
    (Command.ERROR, b""), (Command.ERROR, b"\x7f" * 40),
], ids=["empty-keepalive", "long-keepalive", "empty-error", "long-error"])
def test_garbled_keepalive_or_error_is_a_typed_error_that_names_it(
        command: Command, payload: bytes) -> None:
    """A malformed KEEPALIVE once escaped the gateway as an untyped parse error."""
    session = awaiting()
    with pytest.raises(BadControlPayloadError) as caught:
        for frame in fragment(command, payload, 20):
            session.receive(frame, 1.0)
    assert caught.value.command == command.name
    assert caught.value.code is ErrorCode.INVALID_LEN
    assert session.state is CentralState.IDLE
    honest_round_trip_works(session)


@pytest.mark.parametrize(("frames", "error"), [
    ([b""], ShortFrameError),
    ([bytes([Command.MSG, 0])], ShortFrameError),
    ([b"\x83" + b"\x00" * 600], FrameTooLongError),
    ([b"\x00hello"], ContinuationWithoutStartError),
    ([bytes([0xC4, 0, 1, 0])], UnknownCommandError),
    ([bytes([Command.MSG, 0, 1]) + b"ab"], TrailingDataError),
    ([bytes([Command.MSG, 0, 40]) + b"a" * 17, b"\x01" + b"b" * 19], InvalidSequenceError),
    ([bytes([Command.MSG, 0, 40]) + b"a" * 17, bytes([Command.MSG, 0, 1, 0])],
     UnexpectedStartError),
    ([bytes([Command.CANCEL, 0, 0])], UnexpectedMessageError),
], ids=["empty", "short-header", "too-long", "orphan-continuation", "unknown-command",
        "trailing", "bad-sequence", "restart", "cancel-from-module"])
def test_malformed_answers_are_typed_errors_and_the_session_recovers(
        frames: list[bytes], error: type[FramingError]) -> None:
    session = awaiting()
    with pytest.raises(error):
        for frame in frames:
            session.receive(frame, 1.0)
    assert session.state is CentralState.IDLE
    honest_round_trip_works(session)


def test_a_notification_with_no_request_in_flight_is_refused() -> None:
    session = CentralSession()
    with pytest.raises(UnexpectedMessageError):
        session.receive(fragment(Command.MSG, b"unsolicited", 20)[0], 1.0)
    honest_round_trip_works(session)


def test_cancel_mid_answer_settles_on_the_modules_closing_message() -> None:
    """The half-received answer is dropped with the cancel, so the module's closing ERROR
    (which starts a new message) settles the cancel instead of being refused mid-message."""
    session = awaiting()
    session.receive(bytes([Command.MSG, 0, 40]) + b"half", 1.0)
    session.cancel()
    assert session.receive(error_frame(ErrorCode.OTHER), 2.0) == CancelSettled()
    honest_round_trip_works(session)


def test_cancel_waits_for_the_closing_message_through_keepalives_and_garbage() -> None:
    session = awaiting()
    assert session.cancel() == CANCEL
    assert session.state is CentralState.CANCELLING
    assert session.poll(DEADLINE + 1) is None  # a cancelled request has no timers
    assert session.receive(keepalive_frame(KeepaliveStatus.PROCESSING), 2.0) is None
    assert session.receive(b"\x05garbage", 2.0) is None
    assert session.state is CentralState.CANCELLING
    assert session.receive(error_frame(ErrorCode.OTHER), 2.0) == CancelSettled()
    assert session.state is CentralState.IDLE
    honest_round_trip_works(session)


def test_local_misuse_is_a_session_state_error() -> None:
    """Our own bugs (two requests at once, cancelling nothing) are told apart from the
    module's misbehaviour: a SessionStateError, never a FramingError."""
    session = awaiting()
    with pytest.raises(SessionStateError):
        session.send(Command.MSG, b"second", 20)
    with pytest.raises(SessionStateError):
        CentralSession().cancel()
    with pytest.raises(SessionStateError):
        CentralSession().sent(1.0, 0.0, 1.0)
    with pytest.raises(SessionStateError):
        CentralSession().send(Command.KEEPALIVE, b"\x01", 20)
    assert not issubclass(SessionStateError, FramingError)


inputs = st.one_of(
    st.binary(max_size=40).map(lambda b: ("frame", b)),
    st.sampled_from([keepalive_frame(KeepaliveStatus.PROCESSING), error_frame(ErrorCode.BUSY),
                     b"\x00", b"\x01", bytes([Command.MSG, 0, 2, 1])]).map(lambda b: ("frame", b)),
    st.floats(min_value=0, max_value=200).map(lambda t: ("poll", t)),
    st.sampled_from(["cancel", "send", "sent", "reset"]).map(lambda a: (a, b"")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(inputs, max_size=40))
def test_any_sequence_raises_only_the_profiles_typed_errors(
        steps: list[tuple[str, object]]) -> None:
    session = CentralSession()
    for kind, value in steps:
        try:
            if kind == "frame":
                assert isinstance(value, bytes)
                session.receive(value, 1.0)
            elif kind == "poll":
                assert isinstance(value, float)
                session.poll(value)
                assert session.next_timeout(value) >= 0
            elif kind == "cancel":
                session.cancel()
            elif kind == "send":
                session.send(Command.MSG, b"request", 20)
            elif kind == "sent":
                session.sent(DEADLINE, 0.0, SILENCE)
            else:
                session.reset()
        except LinkProfileError:
            pass
        assert session.state in CentralState
    honest_round_trip_works(session)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=2000), size=st.integers(min_value=20, max_value=512))
def test_an_answer_fragmented_at_any_size_reassembles_to_itself(payload: bytes,
                                                                size: int) -> None:
    session = awaiting()
    events = [session.receive(f, 1.0) for f in fragment(Command.MSG, payload, size)]
    assert events[-1] == AnswerReceived(payload)
    assert all(e is None for e in events[:-1])
