"""``blegw status`` and ``blegw devices``: the operator's view of a running daemon and of the
registry.

Light on purpose: the blocking control-socket client, the registry and the plain-text views,
no event loop, no bleak, no aiohttp, no cryptography, so they answer as fast as
``bluetoothctl`` (bench/cli_startup_bench.py).
"""

from __future__ import annotations

import json
from typing import Any

from .config import GatewayConfig
from .daemon_client import ask_daemon, open_registry
from .registry import RegistryError
from .tool_errors import ExitCode, ToolError, say
from .views import device_lines, status_lines

__all__ = ["devices", "status"]



def status(config: GatewayConfig, as_json: bool) -> int:
    """The daemon's own account of itself: uplink, each module's link and queue, errors."""
    answer = ask_daemon(config, {"cmd": "status"})
    if not answer.get("ok"):
        raise ToolError(f"the daemon refused: {answer.get('error')}", ExitCode.DAEMON)
    info: dict[str, Any] = answer["status"]
    print(json.dumps(info, indent=2) if as_json else status_lines(info))
    return ExitCode.OK


def devices(config: GatewayConfig, as_json: bool) -> int:
    """The registry, with each module's link state when the daemon answers (the registry is
    still worth listing when it does not)."""
    try:
        entries = open_registry(config).load()
    except RegistryError as exc:
        raise ToolError(str(exc)) from exc
    live: dict[str, dict[str, Any]] | None = None
    try:
        answer = ask_daemon(config, {"cmd": "status"})
    except ToolError as exc:
        say(f"note: {exc}; link states unknown")
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
    print(json.dumps(rows, indent=2) if as_json else device_lines(rows))
    return ExitCode.OK
