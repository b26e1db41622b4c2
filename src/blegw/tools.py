"""The operator tools behind ``blegw scan|pair|forget|rename|ping``, under one name.

Each tool is in a module of its own (``scan_tool``, ``pairing_tool``, ``registry_tools``,
``ping_tool``; ``status`` and ``devices`` in ``inspect_tools``), beside the clients they use
(``daemon_client``, ``platform_client``) and the views (``views``). Each is a coroutine or
function returning an exit code and raising :class:`ToolError` (which carries its
:class:`ExitCode`) for anything the operator must act on; docs/cli.md lists the codes.

Importing this module loads bleak and aiohttp: ``blegw.cli`` imports each tool's own module
when its command runs, never this one.
"""

from __future__ import annotations

from .pairing_tool import pair
from .ping_tool import ping
from .registry_tools import forget, rename
from .scan_tool import scan
from .tool_errors import ExitCode, ToolError

__all__ = ["ExitCode", "ToolError", "forget", "pair", "ping", "rename", "scan"]
