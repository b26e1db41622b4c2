"""Framing: round trips at every fragment size, and every kind of garbage gets its typed error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ble_profile import (
    Command,
    ContinuationWithoutStartError,
    ErrorCode,
    FrameAssembler,
    FrameTooLongError,
    FramingError,
    InvalidSequenceError,
    KeepaliveStatus,
    Message,
    MessageTooLongError,
    ShortFrameError,
    TrailingDataError,
    UnexpectedStartError,
    UnknownCommandError,
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
        ([b""], ShortFrameError, ErrorCode.INVALID_LEN),
        ([b"\x83\x00"], ShortFrameError, ErrorCode.INVALID_LEN),
        ([bytes(21)], FrameTooLongError, ErrorCode.INVALID_LEN),
        ([b"\x83\xff\xff"], MessageTooLongError, ErrorCode.INVALID_LEN),
        ([b"\x83\x00\x01ab"], TrailingDataError, ErrorCode.INVALID_LEN),
        ([b"\x83\x00\x20" + bytes(17), b"\x00" + bytes(19)], TrailingDataError,
         ErrorCode.INVALID_LEN),
        ([b"\x00abc"], ContinuationWithoutStartError, ErrorCode.INVALID_SEQ),
        ([b"\x83\x00\x40" + bytes(17), b"\x01abc"], InvalidSequenceError, ErrorCode.INVALID_SEQ),
        ([b"\x83\x00\x40" + bytes(17), b"\x81\x00\x00"], UnexpectedStartError,
         ErrorCode.INVALID_SEQ),
        ([b"\x99\x00\x00"], UnknownCommandError, ErrorCode.INVALID_CMD),
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
        feed_checked(asm, f, 256)


def feed_checked(asm: FrameAssembler, frame: bytes, limit: int) -> Message | None:
    """Feed one fragment: it parses or raises a FramingError (then idle), nothing else."""
    try:
        message = asm.feed(frame)
    except FramingError as exc:
        code = exc.code
        idle_after_error = asm.idle
        message = None
        assert isinstance(code, ErrorCode)
        assert idle_after_error
    if message is not None:
        assert len(message.payload) <= limit
        assert asm.idle
    return message


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_valid_streams(data: st.DataObject) -> None:
    """Realistic garbage: valid fragments, then dropped, duplicated, reordered or bit-flipped."""
    size = data.draw(st.integers(20, 64))
    frames = [bytearray(f) for f in
              fragment(data.draw(commands), data.draw(st.binary(max_size=300)), size)]
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(frames) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "swap", "flip", "cut", "grow"]))
        if op == "drop":
            del frames[i]
        elif op == "dup":
            frames.insert(i, bytearray(frames[i]))
        elif op == "swap" and len(frames) > 1:
            j = data.draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif op == "flip" and frames[i]:
            k = data.draw(st.integers(0, len(frames[i]) - 1))
            frames[i][k] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "cut":
            frames[i] = frames[i][: data.draw(st.integers(0, len(frames[i])))]
        elif op == "grow":
            frames[i] += data.draw(st.binary(min_size=1, max_size=8))
        if not frames:
            break
    asm = FrameAssembler(size, max_message_size=300)
    for f in frames:
        feed_checked(asm, bytes(f), 300)
    asm.reset()
    assert reassemble(GOOD, 20) == Message(Command.MSG, b"after the error")


def test_keepalive_and_error_frames() -> None:
    msg = reassemble([keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED)], 20)
    assert msg.command is Command.KEEPALIVE
    assert parse_keepalive(msg.payload) is KeepaliveStatus.USER_ACTION_NEEDED
    assert parse_keepalive(b"\x33") is KeepaliveStatus.UNKNOWN
    err = reassemble([error_frame(ErrorCode.BUSY)], 20)
    assert parse_error(err.payload) is ErrorCode.BUSY
    assert parse_error(b"\x55") is ErrorCode.OTHER
    with pytest.raises(ShortFrameError):
        parse_error(b"")


def test_fragments_are_byte_exact() -> None:
    payload = bytes(range(40))
    assert fragment(Command.MSG, payload, 20) == [
        b"\x83\x00\x28" + payload[:17],
        b"\x00" + payload[17:36],
        b"\x01" + payload[36:],
    ]
    assert fragment(Command.CANCEL, b"", 244) == [b"\xbe\x00\x00"]
    assert keepalive_frame(KeepaliveStatus.PROCESSING) == b"\x82\x00\x01\x01"
    assert error_frame(ErrorCode.INVALID_SEQ) == b"\xbf\x00\x01\x04"


def test_exactly_full_fragments_need_no_empty_continuation() -> None:
    frames = fragment(Command.MSG, bytes(17 + 19), 20)
    assert [len(f) for f in frames] == [20, 20]


def test_back_to_back_messages_on_one_assembler() -> None:
    asm = FrameAssembler(20)
    for n, command in enumerate(Command):
        payload = bytes([n]) * (n * 25)
        results = [asm.feed(bytearray(f)) for f in fragment(command, payload, 20)]
        assert results[-1] == Message(command, payload)


def test_fragment_respects_peer_limit() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        fragment(Command.MSG, bytes(101), fragment_size=20, max_message=100)
    assert len(fragment(Command.MSG, bytes(100), fragment_size=20, max_message=100)) == 6


def test_fragment_size_never_below_twenty() -> None:
    assert fragment_size(23, 5) == 20
    assert fragment_size(10) == 20
    with pytest.raises(ValueError, match="below"):
        FrameAssembler(19)


def test_error_codes_parse_with_fallback() -> None:
    assert ErrorCode.parse(0x06) is ErrorCode.BUSY
    assert ErrorCode.parse(0x42) is ErrorCode.OTHER
    assert KeepaliveStatus.parse(0x01) is KeepaliveStatus.PROCESSING
    assert [int(c) for c in Command] == [0x81, 0x82, 0x83, 0xBE, 0xBF]
