"""Terminal answers through real pipes and files: several answers at once, end of input, and a
wait that Ctrl-C (cancellation) ends at once without leaving the loop watching stdin."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from terminal_input import ask_yes_no, read_line
from wearable_sim.policy import Prompt, TerminalPolicy


@pytest.fixture
def pipe() -> Iterator[tuple[TextIO, int]]:
    read_fd, write_fd = os.pipe()
    reader = os.fdopen(read_fd, "r")
    try:
        yield reader, write_fd
    finally:
        reader.close()
        with contextlib.suppress(OSError):             # a test may have closed it already
            os.close(write_fd)


async def test_answers_piped_at_once_come_back_one_line_at_a_time(
        pipe: tuple[TextIO, int]) -> None:
    reader, write_fd = pipe
    os.write(write_fd, b"y\nno\npartial")
    assert await read_line(reader) == "y\n"
    assert await read_line(reader) == "no\n"
    os.close(write_fd)                                   # end of input after a partial line
    assert await read_line(reader) == "partial"
    assert await read_line(reader) == ""


async def test_a_cancelled_wait_ends_at_once_and_stops_watching(
        pipe: tuple[TextIO, int]) -> None:
    reader, write_fd = pipe
    waiting = asyncio.create_task(read_line(reader))
    await asyncio.sleep(0.05)
    assert not waiting.done()                             # nobody has typed anything
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 1)
    loop = asyncio.get_running_loop()
    assert loop.remove_reader(reader.fileno()) is False   # no watcher left behind
    os.write(write_fd, b"later\n")                       # the next question still gets it
    assert await read_line(reader) == "later\n"


async def test_a_regular_file_on_stdin_is_read_directly(tmp_path: Path) -> None:
    answers = tmp_path / "answers"
    answers.write_text("y\n")
    with answers.open() as stream:
        assert await read_line(stream) == "y\n"
        assert await read_line(stream) == ""


async def test_the_simulators_terminal_policy_reads_the_owners_answer(
        pipe: tuple[TextIO, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    reader, write_fd = pipe
    monkeypatch.setattr(sys, "stdin", reader)
    prompt = Prompt(1250, "EUR", "shop-42", "A-17", "coffee")
    os.write(write_fd, b"maybe\ny\nn\n")                 # an unclear answer is asked again
    policy = TerminalPolicy()
    assert await policy.decide(prompt) is True
    assert await policy.decide(prompt) is False
    shown = capsys.readouterr().out
    assert "Pay 12.50 EUR to shop-42 (order A-17: coffee)" in shown
    assert shown.count("approve? [y/n]") == 3
    os.close(write_fd)
    assert await policy.decide(prompt) is False           # end of input: nobody to approve


async def test_ask_yes_no_prints_the_question_where_asked_and_reads_the_answer(
        pipe: tuple[TextIO, int], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    reader, write_fd = pipe
    monkeypatch.setattr(sys, "stdin", reader)
    os.write(write_fd, b" YES \nnope\n")
    assert await ask_yes_no("Keep it? [y/n] ", out=sys.stderr) is True
    assert await ask_yes_no("Again? [y/n] ") is False
    shown = capsys.readouterr()
    assert (shown.err, shown.out) == ("Keep it? [y/n] ", "Again? [y/n] ")
