"""How the operator's tools show things: the daemon's status, the paired modules, the scan
table. Pure rendering of data already fetched: no socket, no radio, no platform.

Plain text except the scan table: rich is imported only there (it costs more than the rest of
``blegw devices`` together, and a list of a few modules needs no box drawing).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

__all__ = ["ago", "columns", "device_lines", "make_console", "module_lines", "rssi_bar",
           "scan_table", "status_lines"]


def make_console() -> Any:
    """A terminal console, or a wide one for pipes and logs (rich would cut tables at 80)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def ago(when: float | None) -> str:
    """How long since ``when`` (a Unix time), for people: seconds, then minutes."""
    if when is None:
        return "never"
    seconds = max(0, int(time.time() - when))
    return f"{seconds} s ago" if seconds < 120 else f"{seconds // 60} min ago"


def columns(headers: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    """Rows in aligned columns under their headers, plain text."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows,
                                                                       strict=False)]
    return "\n".join("  ".join(str(cell).ljust(width) for cell, width in
                               zip(line, widths, strict=True)).rstrip()
                     for line in (headers, *rows))


def status_lines(info: dict[str, Any]) -> str:
    """The daemon's status answer for people: gateway and relay counters, one block per
    module, the last errors."""
    relay = info.get("relay") or {}
    lines = [f"gateway {info['gateway']}: uplink {info['uplink']}, outbox {info['outbox']}, "
             f"malformed requests {info.get('malformed_requests', 0)}, pairings refused "
             f"{info.get('pairing_refusals', 0)}",
             f"  relay: cancels {relay.get('cancels', 0)}, progress sent "
             f"{relay.get('progress_sent', 0)}, progress dropped "
             f"{relay.get('progress_dropped', 0)}"]
    lines += [module_lines(m) for m in info["modules"]]
    if not info["modules"]:
        lines.append("  no module in the registry (pair one with 'blegw pair')")
    lines += [f"  error: {error}" for error in info.get("last_errors", [])]
    return "\n".join(lines)


def module_lines(m: dict[str, Any]) -> str:
    """One module in the human view: its link, bond, RSSI, last seen, queue and answers on
    the first line; then what to do if it needs pairing again, and the fault in force with
    its time and advice (gone once the module answers again)."""
    flight = "in flight" if m.get("in_flight") else "idle"
    rssi = m.get("rssi")
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted((m.get("outcomes") or {}).items()))
    lines = [f"  {m['module_id'][:16]}  {m.get('kind', 'module'):6}  {m.get('link', '?'):16}  bond "
             f"{str(m.get('bond', 'unknown')).replace('_', ' ')}  "
             f"rssi {'-' if rssi is None else f'{rssi} dBm'}  seen {ago(m.get('last_seen'))}"
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


def device_lines(rows: list[dict[str, Any]]) -> str:
    """The paired modules (rows of ``blegw devices --json``) as a table for people."""
    if not rows:
        return "no paired module (pair one with 'blegw pair')"
    headers = ("name", "kind", "address", "module id", "account", "suites", "bond", "link",
               "last seen", "counter")
    return f"paired modules ({len(rows)})\n" + columns(headers, [
        (r["name"], r["kind"], r["address"], r["module_id"][:16], r["account"],
         ",".join(r["suites"]), r["bond"].replace("_", " "), r["link"], ago(r["last_seen"]),
         "" if r["counter"] is None else str(r["counter"]))
        for r in rows])


def rssi_bar(rssi: int) -> str:
    """Five steps from -100 dBm (nothing) to -50 dBm and better (full)."""
    level = max(0, min(5, (rssi + 100) // 10))
    return "█" * level + "·" * (5 - level)


def scan_table(rows: list[dict[str, Any]]) -> Any:
    """Modules heard by ``blegw scan`` (rows of its ``--json``) as a rich table."""
    from rich.table import Table

    table = Table(title=f"modules nearby ({len(rows)})", title_justify="left")
    for column in ("name", "address", "module id", "RSSI", "", "pairing"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], r["address"], r["short_id"], f"{r['rssi']} dBm",
                      rssi_bar(r["rssi"]), "ready" if r["pairing_mode"] else "")
    return table
