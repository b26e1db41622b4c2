"""The ``blegw`` console script: ``status`` and ``devices`` answer without loading typer.

Typer (with its vendored click) is about two thirds of what ``blegw status`` imported, and an
operator's status check should answer as fast as ``bluetoothctl`` (bench/cli_startup_bench.py).
This entry point recognises only the plain forms, ``blegw status|devices [--json]
[-c|--config FILE]``, and runs them through the same ``tool_runner`` as ``cli``; anything else
(``--help``, global options, a typo, an option given twice) goes to the typer application in
``cli``, which parses, explains and refuses as always. The configuration comes from
``--config``, else ``BLEGW_CONFIG``, else the default, as there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["main", "quick_command"]

QUICK = ("status", "devices")
DEFAULT_CONFIG = "/etc/blegw/blegw.toml"
"""As ``cli.DEFAULT_CONFIG`` (a test checks they agree)."""


def quick_command(argv: list[str]) -> tuple[str, Path, bool] | None:
    """``(command, config, as_json)`` when ``argv`` is a plain ``status`` or ``devices``;
    None for anything the full command line must handle."""
    if not argv or argv[0] not in QUICK:
        return None
    config: str | None = None
    as_json = False
    rest = argv[1:]
    while rest:
        arg = rest.pop(0)
        if arg == "--json" and not as_json:
            as_json = True
        elif arg in ("-c", "--config") and config is None and rest and rest[0]:
            config = rest.pop(0)
        elif arg.startswith("--config=") and config is None and len(arg) > len("--config="):
            config = arg.removeprefix("--config=")
        else:
            return None
    if config is None:
        config = os.environ.get("BLEGW_CONFIG") or DEFAULT_CONFIG
    return argv[0], Path(config), as_json


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    quick = quick_command(args)
    if quick is None:
        from .cli import main as full

        full(args)
        return
    command, path, as_json = quick
    # No logging set-up (``cli``'s callback does it): nothing on this path logs, and the
    # logging package with the journal handler is a sixth of what ``status`` would import.
    from exit_codes import ExitCode

    from .tool_runner import ConfigRefused, load, run_tool

    try:
        config = load(path)
    except ConfigRefused:
        sys.exit(ExitCode.USAGE)
    from . import inspect_tools

    show = inspect_tools.status if command == "status" else inspect_tools.devices
    sys.exit(run_tool(lambda: show(config, as_json)))
