"""The gateway reading a module's answer: ``ModuleLink._await_answer`` over fuzzed notifications.

The real method runs; the notifications it waits for are put in its frame queue as bleak's
callback would, followed by the disconnect marker so a run never waits for a timeout. No bleak
client is connected (the radio is what cannot run here). Only :class:`LinkError` may escape: the
relay turns it into a LINK_ERROR response, anything else kills the module's worker.
"""

from __future__ import annotations

import asyncio
import time

from ble_profile import Command
from blegw.link import LinkError, ModuleLink

from ..engine import Target
from ._samples import join_fragments, link_messages, split_fragments

_loop = asyncio.new_event_loop()
_link = ModuleLink("00:00:00:00:00:33", "hci0")


async def _run(expect: Command, frames: list[bytes]) -> bytes:
    _link._frames = asyncio.Queue()
    for frame in frames:
        if frame:  # an empty notification is the disconnect marker: keep it for the end
            _link._frames.put_nowait(frame)
    _link._frames.put_nowait(b"")
    _link._session.reset()
    _link._session.send(expect, b"fuzz", 20)  # the request these notifications answer
    return await _link._await_answer(time.time() + 30)


def one_input(data: bytes) -> None:
    if not data:
        return
    expect = Command.PING if data[0] & 1 else Command.MSG
    _loop.run_until_complete(_run(expect, split_fragments(data[1:])))


def seeds() -> list[bytes]:
    return [b"\x00" + join_fragments(frames) for frames in link_messages()] + \
        [b"\x01" + join_fragments(link_messages()[-3])]


TARGET = Target("gateway_answer", one_input, (LinkError,), seeds, memory_base=512 * 1024,
                max_len=8192)
