"""The operator's view of a running daemon: ``blegw status`` and ``blegw devices``, the
control-socket client they and the other tools use, and the errors every tool raises.

Apart from the tools that scan, pair and ping (``tools.py``) so that these two commands, and
``--help``, load neither bleak nor aiohttp nor the cryptography stack: an operator's
``blegw status`` answers as fast as ``bluetoothctl``. Exit codes are listed in ``tools.py`` and
docs/cli.md.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from .config import GatewayConfig
from .registry import Registry, RegistryError

__all__ = ["EXIT", "ToolError", "ask_daemon", "columns", "daemon_request", "devices",
           "make_console", "open_registry", "say", "status"]

EXIT = {"ok": 0, "failed": 1, "usage": 2, "not_found": 10, "bonding": 11, "certificate": 12,
        "platform": 13, "timeout": 14, "daemon": 15, "declined": 16, "bad_code": 17}

def say(text: str) -> None:
    """Progress for anything that takes more than a moment: stderr, so stdout stays data."""
    print(text, file=sys.stderr, flush=True)


class ToolError(Exception):
    """A failure the operator must act on; ``exit_code`` is one of :data:`EXIT`."""

    def __init__(self, message: str, kind: str = "failed") -> None:
        super().__init__(message)
        self.kind = kind
        self.exit_code = EXIT[kind]


def make_console() -> Any:
    """A terminal console, or a wide one for pipes and logs (rich would cut tables at 80)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def open_registry(config: GatewayConfig) -> Registry:
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
                            "daemon") from exc
        except PermissionError as exc:
            raise ToolError(f"no permission to open {path}: run as the daemon's user "
                            "(sudo -u blegw ...)", "daemon") from exc
        except OSError as exc:  # refused (a stale socket), timed out
            raise ToolError(f"the daemon does not answer at {path}: {exc}", "daemon") from exc
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
                                    "daemon")
        except OSError as exc:  # TimeoutError is an OSError
            raise ToolError(f"the daemon did not answer within {timeout:g} s", "daemon"
                            ) from exc
    finally:
        sock.close()
    line = bytes(answer).split(b"\n", 1)[0]
    try:
        decoded = json.loads(line)
    except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, too deep
        raise ToolError(f"the daemon sent an unreadable answer: {line[:80]!r}", "daemon"
                        ) from exc
    if not isinstance(decoded, dict):
        raise ToolError(f"the daemon sent an unreadable answer: {line[:80]!r}", "daemon")
    return decoded


async def daemon_request(config: GatewayConfig, request: dict[str, Any],
                         timeout: float = 5.0) -> dict[str, Any]:
    """:func:`ask_daemon` from a coroutine, in a worker thread (it blocks for up to
    3 s + ``timeout``), so the caller's loop keeps running."""
    import asyncio  # here: ``--help`` imports this module for its errors, not the event loop

    return await asyncio.to_thread(ask_daemon, config, request, timeout)


def status(config: GatewayConfig, as_json: bool) -> int:
    answer = ask_daemon(config, {"cmd": "status"})
    if not answer.get("ok"):
        raise ToolError(f"the daemon refused: {answer.get('error')}", "daemon")
    info: dict[str, Any] = answer["status"]
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"gateway {info['gateway']}: uplink {info['uplink']}, outbox {info['outbox']}, "
          f"malformed requests {info.get('malformed_requests', 0)}, pairings refused "
          f"{info.get('pairing_refusals', 0)}")
    relay = info.get("relay") or {}
    print(f"  relay: cancels {relay.get('cancels', 0)}, progress sent "
          f"{relay.get('progress_sent', 0)}, progress dropped "
          f"{relay.get('progress_dropped', 0)}")
    for m in info["modules"]:
        print(module_lines(m))
    if not info["modules"]:
        print("  no module in the registry (pair one with 'blegw pair')")
    for error in info.get("last_errors", []):
        print(f"  error: {error}")
    return 0


def module_lines(m: dict[str, Any]) -> str:
    """One module in the human view: its link, bond, RSSI, last seen, queue and answers on
    the first line; then what to do if it needs pairing again, and the fault in force with
    its time and advice (gone once the module answers again)."""
    flight = "in flight" if m.get("in_flight") else "idle"
    rssi = m.get("rssi")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted((m.get("outcomes") or {}).items()))
    lines = [f"  {m['module_id'][:16]}  {m.get('kind', 'module'):6}  {m.get('link', '?'):16}  bond "
             f"{str(m.get('bond', 'unknown')).replace('_', ' ')}  "
             f"rssi {'-' if rssi is None else f'{rssi} dBm'}  seen {_ago(m.get('last_seen'))}"
             f"  queue {m.get('queue', 0)}  {flight}  handled {m.get('handled', 0)}"
             f"{f' ({outcomes})' if outcomes else ''}"]
    if m.get("needs_re_pairing"):
        lines.append(f"    NEEDS RE-PAIRING: the bond {m.get('re_pair_reason')}; run: "
                     f"{m.get('re_pair_command')}")
    if m.get("last_error"):
        at = m.get("last_error_at")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "?"
        lines.append(f"    last error at {when} ({m.get('last_error_code')}): "
                     f"{m['last_error']}")
    return "\n".join(lines)


def _ago(when: float | None) -> str:
    if when is None:
        return "never"
    seconds = max(0, int(time.time() - when))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def devices(config: GatewayConfig, as_json: bool) -> int:
    try:
        entries = open_registry(config).load()
    except RegistryError as exc:
        raise ToolError(str(exc)) from exc
    live: dict[str, dict[str, Any]] | None = None
    try:
        answer = ask_daemon(config, {"cmd": "status"})
    except ToolError as exc:
        say(f"note: {exc}; link states unknown")  # the registry is still worth listing
    else:
        if answer.get("ok"):
            live = {m["module_id"]: m for m in answer["status"]["modules"]}
        else:
            say(f"note: the daemon refused the status request: {answer.get('error')}")
    rows: list[dict[str, Any]] = []
    for e in entries:
        state = (live or {}).get(e.module_id)
        link = "unknown" if live is None else (
            "not loaded yet" if state is None else
            "NEEDS RE-PAIRING" if state.get("needs_re_pairing") else
            "connected" if state["connected"] else "disconnected")
        rows.append({"module_id": e.module_id, "kind": e.kind, "name": e.name,
                     "address": e.address, "account": e.account, "suites": list(e.suites),
                     "paired_at": e.paired_at, "bond": e.bond,
                     "link": link, "last_seen": state.get("last_seen") if state else None,
                     "counter": state.get("counter") if state else None})
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no paired module (pair one with 'blegw pair')")
        return 0
    print(f"paired modules ({len(rows)})")
    headers = ("name", "kind", "address", "module id", "account", "suites", "bond", "link",
               "last seen", "counter")
    print(columns(headers, [
        (r["name"], r["kind"], r["address"], r["module_id"][:16], r["account"],
         ",".join(r["suites"]), r["bond"].replace("_", " "), r["link"], _ago(r["last_seen"]),
         "" if r["counter"] is None else str(r["counter"]))
        for r in rows]))
    return 0


def columns(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Rows in aligned columns under their headers, plain text.

    Not a rich table: importing rich costs more than the rest of ``blegw devices`` together,
    and a list of a few modules needs no box drawing.
    """
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                       strict=False)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in
                               zip(line, widths, strict=True)).rstrip()
                     for line in (headers, *rows))
