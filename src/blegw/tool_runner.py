"""How a ``blegw`` command runs a tool: its configuration loaded, a coroutine on a new event
loop (a plain function as it is), a :class:`ToolError` turned into its one-line message on
stderr and its exit code.

Apart from ``cli`` (typer) so that ``quick_start`` runs ``status`` and ``devices`` the same way
without importing typer; asyncio is imported only for a tool that is a coroutine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from exit_codes import ExitCode

from .config import GatewayConfig

__all__ = ["ConfigRefused", "load", "run_tool"]


class ConfigRefused(Exception):
    """The configuration could not be used; the message was printed, the exit code is 2."""


def load(path: Path) -> GatewayConfig:
    """The gateway configuration at ``path``; :class:`ConfigRefused` (after one line on
    stderr) if it is missing or invalid."""
    from .config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"blegw: invalid configuration: {exc}", file=sys.stderr)
        raise ConfigRefused(str(exc)) from exc


def run_tool(make: Callable[[], Coroutine[Any, Any, int] | int]) -> int:
    """Run one tool and return its exit code: a ToolError is its message on stderr and its
    code, a broken registry exit 1, Ctrl-C exit 130."""
    from .registry import RegistryError
    from .tool_errors import ToolError

    try:
        result = make()
        if isinstance(result, int):
            return result
        import asyncio

        return asyncio.run(result)
    except ToolError as exc:
        print(f"blegw: {exc}", file=sys.stderr)
        return exc.exit_code
    except RegistryError as exc:
        print(f"blegw: {exc}", file=sys.stderr)
        return ExitCode.FAILED
    except KeyboardInterrupt:
        print("blegw: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
