"""What every operator tool shares: the error that ends a command with its exit code, and
progress on stderr.

Light on purpose (the exit-code enum and nothing else): ``blegw --help``, ``status`` and
``devices`` import it before anything else.
"""

from __future__ import annotations

import sys
from typing import Literal

from exit_codes import ExitCode

__all__ = ["ExitCode", "ToolError", "ToolErrorKind", "say"]

ToolErrorKind = Literal["failed", "usage", "not_found", "bonding", "certificate", "platform",
                        "timeout", "daemon", "declined", "bad_code"]
"""The lower-case names of the :class:`ExitCode` members a tool may raise, accepted where an
``ExitCode`` is: the type checker still refuses a name that is not one."""


def say(text: str) -> None:
    """Progress for anything that takes more than a moment: stderr, so stdout stays data."""
    print(text, file=sys.stderr, flush=True)


class ToolError(Exception):
    """A failure the operator must act on; ``exit_code`` is the command's exit status."""

    def __init__(self, message: str, code: ExitCode | ToolErrorKind = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = code if isinstance(code, ExitCode) else ExitCode[code.upper()]
