"""Framing: round trips at every fragment size, and every kind of garbage gets its typed error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_profile import (
    Command,
    ContinuationWithoutStart,
    ErrorCode,
    FrameAssembler,
    FrameTooLong,
    FramingError,
    InvalidSequence,
    KeepaliveStatus,
    Message,
    MessageTooLong,
    ShortFrame,
    TrailingData,
    UnexpectedStart,
    UnknownCommand,
    error_frame,
    fragment,
    fragment_size,
    keepalive_frame,
    parse_error,
    parse_keepalive,
)

commands = st.sampled_from(list(Command))


def reassemble(frames: list[bytes], size: int) -> Message:
    asm = FrameAssembler(size)
    results = [asm.feed(f) for f in frames]
    assert all(r is None for r in results[:-1])
    assert results[-1] is not None
    assert asm.idle
    return results[-1]


@settings(max_examples=300, deadline=None)
@given(command=commands, payload=st.binary(max_size=2000), size=st.integers(20, 512))
def test_round_trip_at_any_fragment_size(command: Command, payload: bytes, size: int) -> None:
    frames = fragment(command, payload, size)
    assert all(len(f) <= size for f in frames)
    assert reassemble(frames, size) == Message(command, payload)


@pytest.mark.parametrize("size", [20, 21, 182, 244, 500])
def test_sequence_wraps_after_0x7f(size: int) -> None:
    payload = (bytes(range(256)) * 256)[:65535]
    frames = fragment(Command.MSG, payload, size)
    assert len(frames) > 129
    assert frames[128][0] == 0x7F
    assert frames[129][0] == 0x00  # the 129th continuation wraps to sequence 0
    assert reassemble(frames, size).payload == payload


def test_maximum_length_and_empty_payloads() -> None:
    assert reassemble(fragment(Command.MSG, bytes(65535), 244), 244).payload == bytes(65535)
    assert fragment(Command.PING, b"", 20) == [bytes([0x81, 0, 0])]
    with pytest.raises(ValueError, match="exceeds"):
        fragment(Command.MSG, bytes(65536), 244)
    with pytest.raises(ValueError, match="below the minimum"):
        fragment(Command.MSG, b"x", 19)


def test_fragment_size_follows_mtu_and_control_point_length() -> None:
    assert fragment_size(23) == 20
    assert fragment_size(247) == 244
    assert fragment_size(247, 128) == 128
    assert fragment_size(517, 512) == 512


GOOD = fragment(Command.MSG, b"after the error", 20)


@pytest.mark.parametrize(
    ("frames", "error", "code"),
    [
        ([b""], ShortFrame, ErrorCode.INVALID_LEN),
        ([b"\x83\x00"], ShortFrame, ErrorCode.INVALID_LEN),
        ([bytes(21)], FrameTooLong, ErrorCode.INVALID_LEN),
        ([b"\x83\xff\xff"], MessageTooLong, ErrorCode.INVALID_LEN),
        ([b"\x83\x00\x01ab"], TrailingData, ErrorCode.INVALID_LEN),
        ([b"\x83\x00\x20" + bytes(17), b"\x00" + bytes(19)], TrailingData,
         ErrorCode.INVALID_LEN),
        ([b"\x00abc"], ContinuationWithoutStart, ErrorCode.INVALID_SEQ),
        ([b"\x83\x00\x40" + bytes(17), b"\x01abc"], InvalidSequence, ErrorCode.INVALID_SEQ),
        ([b"\x83\x00\x40" + bytes(17), b"\x81\x00\x00"], UnexpectedStart,
         ErrorCode.INVALID_SEQ),
        ([b"\x99\x00\x00"], UnknownCommand, ErrorCode.INVALID_CMD),
    ],
)
def test_malformed_input_gets_its_error_then_a_clean_state(
        frames: list[bytes], error: type[FramingError], code: ErrorCode) -> None:
    asm = FrameAssembler(20, max_message_size=1024)
    with pytest.raises(error) as raised:
        for f in frames:
            asm.feed(f)
    assert raised.value.code is code
    assert asm.idle
    results = [asm.feed(f) for f in GOOD]
    assert results[-1] == Message(Command.MSG, b"after the error")


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=12))
def test_fuzz_parses_or_raises_a_framing_error(frames: list[bytes]) -> None:
    asm = FrameAssembler(32, max_message_size=256)
    for f in frames:
        try:
            message = asm.feed(f)
        except FramingError as exc:
            assert isinstance(exc.code, ErrorCode)
            assert asm.idle
        else:
            assert message is None or len(message.payload) <= 256


def test_keepalive_and_error_frames() -> None:
    msg = reassemble([keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED)], 20)
    assert msg.command is Command.KEEPALIVE
    assert parse_keepalive(msg.payload) is KeepaliveStatus.USER_ACTION_NEEDED
    assert parse_keepalive(b"\x33") is KeepaliveStatus.UNKNOWN
    err = reassemble([error_frame(ErrorCode.BUSY)], 20)
    assert parse_error(err.payload) is ErrorCode.BUSY
    assert parse_error(b"\x55") is ErrorCode.OTHER
    with pytest.raises(ShortFrame):
        parse_error(b"")
