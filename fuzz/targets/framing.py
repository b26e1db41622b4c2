"""``FrameAssembler.feed`` over a sequence of fragments (module and gateway both run it).

Input: ``len | fragment`` records (see ``split_fragments``); the first byte picks the fragment
size (20..275) the receiver advertised. Beyond typed errors, the assembler must stay usable: after
a FramingError it is idle, and every message it returns re-fragments to fragments it accepts.
"""

from __future__ import annotations

from ble_profile import MIN_FRAGMENT_SIZE, FrameAssembler, LinkProfileError, fragment

from ..engine import FuzzOracleError, Target
from ._samples import join_fragments, link_messages, split_fragments


def one_input(data: bytes) -> None:
    if not data:
        return
    size = MIN_FRAGMENT_SIZE + data[0]
    assembler = FrameAssembler(size, max_message_size=4096)
    for frame in split_fragments(data[1:]):
        try:
            message = assembler.feed(frame)
        except LinkProfileError:
            if not assembler.idle:
                raise FuzzOracleError("assembler not idle after a framing error") from None
            continue
        if message is not None:
            check = FrameAssembler(size, max_message_size=4096)
            got = [check.feed(f) for f in fragment(message.command, message.payload, size)]
            if got[-1] != message:
                raise FuzzOracleError("a reassembled message does not survive re-fragmenting")


def seeds() -> list[bytes]:
    return [bytes([0]) + join_fragments(frames) for frames in link_messages()] + \
        [bytes([165]) + join_fragments(frames) for frames in link_messages()]


TARGET = Target("framing", one_input, (LinkProfileError,), seeds, max_len=8192)
