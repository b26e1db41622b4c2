"""The control-socket client: one request to the running daemon and its answer, blocking
(``ask_daemon``, for ``status`` and ``devices``, which need no event loop) or from a coroutine
(``daemon_request``); and the two notes the pairing tools send it (``announce_pairing``,
``reload_registry``).

Light on purpose: no event loop at import, no bleak, no aiohttp, no cryptography. The errors
are in ``tool_errors`` (re-exported here for the tools that import them from this module), the
views in ``views``, the commands in ``inspect_tools`` and the ``*_tool`` modules.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from .config import GatewayConfig
from .registry import Registry
from .tool_errors import ExitCode, ToolError, say

__all__ = ["MAX_ANSWER", "ToolError", "announce_pairing", "ask_daemon", "daemon_request",
           "open_registry", "reload_registry", "say"]


def open_registry(config: GatewayConfig) -> Registry:
    """The registry the daemon serves, as this configuration names it."""
    return Registry(Path(config.registry))


MAX_ANSWER = 1 << 20
"""Longest answer line read from the control socket (a status of a few hundred modules is
well under it); a longer one is refused rather than held in memory."""


def ask_daemon(config: GatewayConfig, request: dict[str, Any],
               timeout: float = 5.0) -> dict[str, Any]:
    """One request to the running daemon over its control socket, blocking, every wait bounded
    (3 s to connect, ``timeout`` for the answer).

    A plain socket rather than asyncio: ``status`` and ``devices`` need no event loop, and
    importing one is a fifth of their start-up. Async tools use :func:`daemon_request`.
    """
    path = config.control_socket
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(3)
        try:
            sock.connect(path)
        except FileNotFoundError as exc:
            raise ToolError(f"the daemon is not running (no control socket at {path})",
                            ExitCode.DAEMON) from exc
        except PermissionError as exc:
            raise ToolError(f"no permission to open {path}: run as the daemon's user "
                            "(sudo -u blegw ...)", ExitCode.DAEMON) from exc
        except OSError as exc:  # refused (a stale socket), timed out
            raise ToolError(f"the daemon does not answer at {path}: {exc}",
                            ExitCode.DAEMON) from exc
        deadline = time.monotonic() + timeout
        answer = bytearray()
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            while b"\n" not in answer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
                if not chunk:
                    break  # the daemon closed: whatever came is the answer
                answer += chunk
                if len(answer) > MAX_ANSWER:
                    raise ToolError(f"the daemon's answer is longer than {MAX_ANSWER} bytes",
                                    ExitCode.DAEMON)
        except OSError as exc:  # TimeoutError is an OSError
            raise ToolError(f"the daemon did not answer within {timeout:g} s", ExitCode.DAEMON
                            ) from exc
    finally:
        sock.close()
    line = bytes(answer).split(b"\n", 1)[0]
    try:
        decoded = json.loads(line)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, too deep
        raise ToolError(f"the daemon sent an unreadable answer: {line[:80]!r}", ExitCode.DAEMON
                        ) from exc
    if not isinstance(decoded, dict):
        raise ToolError(f"the daemon sent an unreadable answer: {line[:80]!r}", ExitCode.DAEMON)
    return decoded


async def daemon_request(config: GatewayConfig, request: dict[str, Any],
                         timeout: float = 5.0) -> dict[str, Any]:
    """:func:`ask_daemon` from a coroutine, in a worker thread (it blocks for up to
    3 s + ``timeout``), so the caller's loop keeps running."""
    import asyncio  # here: ``--help`` imports this module for its errors, not the event loop

    return await asyncio.to_thread(ask_daemon, config, request, timeout)


async def announce_pairing(config: GatewayConfig, address: str, on: bool) -> bool:
    """Tell the running daemon this command bonds with ``address`` (or gave up), so the bond
    change is not taken for a downgrade; True if the daemon says the module needs pairing
    again (its old bond is not to be kept). A daemon that is not running is not an error."""
    try:
        answer = await daemon_request(config, {"cmd": "pairing", "address": address.upper(),
                                               "on": on})
    except ToolError as exc:
        if exc.exit_code is ExitCode.DAEMON:
            return False
        raise
    return bool(answer.get("ok") and answer.get("needs_re_pairing"))


async def reload_registry(config: GatewayConfig, module_id: str, *, serving: bool) -> str:
    """Have the running daemon read the registry now; say what it serves.

    Without this the daemon would notice within a second; with it, a payment sent right after
    ``pair`` returns finds the module. A daemon that is not running is not an error here.
    """
    try:
        answer = await daemon_request(config, {"cmd": "reload"})
    except ToolError as exc:
        return f"note: {exc}; it reads the registry when it starts"
    if not answer.get("ok"):
        return f"warning: the daemon did not reload its registry: {answer.get('error')}"
    served = module_id in answer.get("modules", [])
    if served == serving:
        return ("the running daemon now serves it" if serving else
                "the running daemon no longer serves it")
    return (f"warning: the running daemon {'does not serve' if serving else 'still serves'} "
            f"{module_id}; see 'blegw status'")
