"""The operator's control-socket client against a hostile or broken daemon socket.

A real Unix socket served by a thread plays the daemon; each test is an answer a compromised or
wedged daemon could give. The client must end with a typed error (exit code 15), never hang,
never hold an unbounded answer, and still read an honest answer afterwards.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from blegw.config import GatewayConfig, parse_config
from blegw.daemon_client import MAX_ANSWER, ToolError, ask_daemon, daemon_request

Serve = Callable[[socket.socket], None]
Daemon = Callable[[Serve], GatewayConfig]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """``daemon(serve)``: a socket whose every connection is handed to ``serve``; yields the
    gateway configuration that points at it."""
    path = tmp_path / "control.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.1)
    stop = threading.Event()
    handler: list[Serve] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                with contextlib.suppress(OSError):
                    handler[0](conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    config = parse_config({"gateway": {"id": "gw-x", "control_socket": str(path),
                                       "registry": str(tmp_path / "registry.json")}})

    def use(serve: Serve) -> GatewayConfig:
        handler[:] = [serve]
        return config

    yield use
    stop.set()
    thread.join(5)
    server.close()


def honest(conn: socket.socket) -> None:
    conn.recv(4096)
    conn.sendall(json.dumps({"ok": True, "status": {"gateway": "gw-x"}}).encode() + b"\n")


def test_a_daemon_that_never_answers_is_a_timeout_not_a_hang(daemon: Daemon) -> None:
    release = threading.Event()
    config = daemon(lambda conn: release.wait(10))
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        ask_daemon(config, {"cmd": "status"}, timeout=0.5)
    release.set()
    assert caught.value.exit_code == 15 and "did not answer within 0.5 s" in str(caught.value)
    assert time.monotonic() - started < 5
    daemon(honest)
    assert ask_daemon(config, {"cmd": "status"})["ok"] is True


def test_an_endless_answer_is_refused_at_the_bound(daemon: Daemon) -> None:
    def flood(conn: socket.socket) -> None:
        conn.recv(4096)
        chunk = b"x" * 65536
        for _ in range(MAX_ANSWER // len(chunk) + 4):
            conn.sendall(chunk)

    config = daemon(flood)
    with pytest.raises(ToolError) as caught:
        ask_daemon(config, {"cmd": "status"})
    assert caught.value.exit_code == 15 and "longer than" in str(caught.value)


@pytest.mark.parametrize("answer", [b"{not json\n", b"[1, 2, 3]\n", b"\xff\xfe\n",
                                    b"[" * 100000 + b"\n", b""],
                         ids=["not-json", "not-an-object", "not-utf8", "deep", "closed"])
def test_an_unreadable_answer_is_a_typed_error(daemon: Daemon, answer: bytes) -> None:
    def reply(conn: socket.socket) -> None:
        conn.recv(4096)
        conn.sendall(answer)

    config = daemon(reply)
    with pytest.raises(ToolError) as caught:
        ask_daemon(config, {"cmd": "status"})
    assert caught.value.exit_code == 15 and "unreadable answer" in str(caught.value)


def test_no_daemon_and_a_stale_socket(tmp_path: Path) -> None:
    config = parse_config({"gateway": {"id": "gw-x",
                                       "control_socket": str(tmp_path / "none.sock")}})
    with pytest.raises(ToolError, match="not running"):
        ask_daemon(config, {"cmd": "status"})
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "stale.sock"))  # bound, never listening: a daemon that died
    stale.close()
    config = parse_config({"gateway": {"id": "gw-x",
                                       "control_socket": str(tmp_path / "stale.sock")}})
    with pytest.raises(ToolError, match="does not answer"):
        ask_daemon(config, {"cmd": "status"})


async def test_the_async_form_keeps_the_loop_running(daemon: Daemon) -> None:
    import asyncio

    release = threading.Event()

    def slow(conn: socket.socket) -> None:
        conn.recv(4096)
        release.wait(10)
        conn.sendall(b'{"ok": true}\n')

    config = daemon(slow)
    request = asyncio.create_task(daemon_request(config, {"cmd": "reload"}))
    await asyncio.sleep(0)  # the loop runs while the thread waits for the answer
    assert not request.done()
    release.set()
    assert (await asyncio.wait_for(request, 10)) == {"ok": True}
