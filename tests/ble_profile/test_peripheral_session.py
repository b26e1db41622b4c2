"""The module's link session over every frame a central can send.

Sans-IO: each test writes what a gateway (honest or hostile) would write and checks the frames
the module sends back, the request it is handed, and that an honest request still works after.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_profile import (
    BusyError,
    CancelReceived,
    Command,
    ContinuationWithoutStartError,
    ErrorCode,
    FrameAssembler,
    FrameTooLongError,
    FramingError,
    FramingErrorAnswered,
    InvalidSequenceError,
    KeepaliveStatus,
    MessageTooLongError,
    PeripheralEvent,
    PeripheralSession,
    PeripheralState,
    RequestReceived,
    SendFrames,
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

CONTROL_POINT = 512
MAX_MESSAGE = 4096


def write(session: PeripheralSession, frames: list[bytes], central: str = "gw"
          ) -> list[PeripheralEvent]:
    events: list[PeripheralEvent] = []
    for frame in frames:
        events.extend(session.receive(frame, central=central))
    return events


def refused_with(events: list[PeripheralEvent], error: type[FramingError]) -> None:
    assert len(events) == 2
    sent, answered = events
    assert isinstance(answered, FramingErrorAnswered) and isinstance(answered.error, error)
    assert sent == SendFrames((error_frame(answered.error.code),))


def honest_request_is_answered(session: PeripheralSession) -> None:
    events = write(session, fragment(Command.MSG, b"request" * 40, 20))
    assert events == [RequestReceived(b"request" * 40)]
    assert session.state is PeripheralState.PROCESSING
    sent = session.respond(b"answer" * 50)
    gateway = FrameAssembler(512)
    messages = [gateway.feed(f) for f in sent.frames]
    assert messages[-1] is not None and messages[-1].payload == b"answer" * 50
    assert session.state is PeripheralState.IDLE


def test_request_answer_and_keepalives_in_between() -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    session.att_mtu = 185
    assert write(session, fragment(Command.MSG, b"r" * 300, 182)) == [RequestReceived(b"r" * 300)]
    assert session.keepalive(KeepaliveStatus.USER_ACTION_NEEDED) == \
        SendFrames((keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED),))
    sent = session.respond(b"a" * 400)
    assert sent.frames == tuple(fragment(Command.MSG, b"a" * 400, 182))
    assert session.keepalive(KeepaliveStatus.PROCESSING) is None  # nothing left to keep alive


@pytest.mark.parametrize("state", list(PeripheralState))
def test_ping_is_echoed_in_any_state_and_never_meets_busy(state: PeripheralState) -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    if state is PeripheralState.PROCESSING:
        write(session, fragment(Command.MSG, b"pending", 20))
    assert write(session, fragment(Command.PING, b"12345678", 20)) == \
        [SendFrames(tuple(fragment(Command.PING, b"12345678", 20)))]
    assert session.state is state


def test_a_second_request_while_one_is_in_progress_gets_busy() -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    write(session, fragment(Command.MSG, b"first", 20))
    events = write(session, fragment(Command.MSG, b"second", 20), central="other-gateway")
    refused_with(events, BusyError)
    assert events[0] == SendFrames((error_frame(ErrorCode.BUSY),))
    session.respond(b"answer to the first")
    honest_request_is_answered(session)


def test_cancel_is_passed_on_only_while_a_request_is_in_progress() -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    cancel = fragment(Command.CANCEL, b"", 20)
    assert write(session, cancel) == []  # a late CANCEL that crossed the answer
    write(session, fragment(Command.MSG, b"pending", 20))
    assert write(session, cancel) == [CancelReceived()]
    assert session.state is PeripheralState.PROCESSING  # the CANCELLED answer still follows
    session.respond(b"cancelled")
    honest_request_is_answered(session)


@pytest.mark.parametrize(("frames", "error"), [
    ([b""], ShortFrameError),
    ([bytes([Command.MSG, 0])], ShortFrameError),
    ([b"\x83" + b"\x00" * 600], FrameTooLongError),
    ([bytes([Command.MSG, 0x10, 0x01])], MessageTooLongError),
    ([b"\x00hello"], ContinuationWithoutStartError),
    ([bytes([0xC4, 0, 1, 0])], UnknownCommandError),
    ([bytes([Command.MSG, 0, 1]) + b"ab"], TrailingDataError),
    ([bytes([Command.MSG, 0, 40]) + b"a" * 17, b"\x01" + b"b" * 19], InvalidSequenceError),
    ([bytes([Command.MSG, 0, 40]) + b"a" * 17, bytes([Command.PING, 0, 1, 0])],
     UnexpectedStartError),
    ([keepalive_frame(KeepaliveStatus.PROCESSING)], UnexpectedMessageError),
    ([error_frame(ErrorCode.OTHER)], UnexpectedMessageError),
], ids=["empty", "short-header", "too-long-fragment", "too-long-message",
        "orphan-continuation", "unknown-command", "trailing", "bad-sequence", "restart",
        "keepalive-from-gateway", "error-from-gateway"])
def test_malformed_writes_get_their_error_code_and_the_module_serves_on(
        frames: list[bytes], error: type[FramingError]) -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    events = write(session, frames)
    refused_with(events[-2:], error)
    assert session.state is PeripheralState.IDLE
    honest_request_is_answered(session)


def test_a_long_write_part_is_refused_as_too_long() -> None:
    """BlueZ splits a fragment longer than MTU - 3 into a long write: offsets after 0."""
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    session.receive(bytes([Command.MSG, 0, 40]) + b"a" * 17, central="gw")
    refused_with(session.receive(b"\x00" + b"b" * 23, central="gw", offset=20),
                 FrameTooLongError)
    honest_request_is_answered(session)


def test_each_central_reassembles_on_its_own_and_a_lost_link_forgets_halves() -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    first = fragment(Command.MSG, b"A" * 30, 20)
    second = fragment(Command.PING, b"B" * 30, 20)
    assert session.receive(first[0], central="one") == []
    assert session.receive(second[0], central="two") == []
    assert session.receive(second[1], central="two") == \
        [SendFrames(tuple(fragment(Command.PING, b"B" * 30, 20)))]
    session.link_lost()
    refused_with(session.receive(first[1], central="one"), ContinuationWithoutStartError)
    honest_request_is_answered(session)


def test_a_request_abandoned_without_answer_frees_the_module() -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    write(session, fragment(Command.MSG, b"pending", 20))
    session.abandon()
    assert session.state is PeripheralState.IDLE
    session.abandon()  # twice is harmless: the task's end and a cancel may both report it
    honest_request_is_answered(session)


def test_answering_with_no_request_is_a_session_state_error() -> None:
    with pytest.raises(SessionStateError):
        PeripheralSession(CONTROL_POINT, MAX_MESSAGE).respond(b"unasked")


frames = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([keepalive_frame(KeepaliveStatus.PROCESSING), error_frame(ErrorCode.BUSY),
                     bytes([Command.CANCEL, 0, 0]), bytes([Command.MSG, 0, 1, 7]),
                     bytes([Command.PING, 0, 2, 1]), b"\x00\x01"]),
)
steps = st.one_of(
    st.tuples(st.just("write"), frames, st.sampled_from(["a", "b"]), st.sampled_from([0, 0, 5])),
    st.tuples(st.sampled_from(["respond", "keepalive", "abandon", "lost"]), st.just(b""),
              st.just(""), st.just(0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40), st.integers(min_value=23, max_value=517))
def test_any_sequence_of_writes_never_raises_and_every_frame_reassembles(
        sequence: list[tuple[str, bytes, str, int]], mtu: int) -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    session.att_mtu = mtu
    gateway = FrameAssembler(512)
    for kind, data, central, offset in sequence:
        out: list[SendFrames] = []
        if kind == "write":
            out = [e for e in session.receive(data, central=central, offset=offset)
                   if isinstance(e, SendFrames)]
        elif kind == "respond":
            if session.state is PeripheralState.PROCESSING:
                out = [session.respond(b"answer" * 20)]
            else:
                with pytest.raises(SessionStateError):
                    session.respond(b"unasked")
        elif kind == "keepalive":
            sent = session.keepalive(KeepaliveStatus.PROCESSING)
            out = [sent] if sent is not None else []
        elif kind == "abandon":
            session.abandon()
        else:
            session.link_lost()
        for sent in out:
            for frame in sent.frames:
                gateway.feed(frame)  # a FramingError here fails the test: the module misspoke
    assert gateway.idle
    session.abandon()
    honest_request_is_answered(session)


@settings(max_examples=200, deadline=None)
@given(payload=st.binary(max_size=MAX_MESSAGE), size=st.integers(min_value=20, max_value=512))
def test_a_request_fragmented_at_any_size_reassembles_to_itself(payload: bytes,
                                                                 size: int) -> None:
    session = PeripheralSession(CONTROL_POINT, MAX_MESSAGE)
    assert write(session, fragment(Command.MSG, payload, size)) == [RequestReceived(payload)]
