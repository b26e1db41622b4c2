"""The exit codes of the project's command lines (``blegw`` and ``blegw-platform``), one
``IntEnum`` so a script, a test and the docs name the same number; docs/cli.md lists them.

A core of its own that imports nothing: both programs use it without importing each other, and
``blegw --help`` pays for one small enum. The numbers are a contract with the scripts that call
the commands: a member's value never changes and a number is never reused.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """Why a command ended; ``blegw`` uses 0-2 and 10-17, ``blegw-platform`` 0-7."""

    OK = 0
    """Done (``pay``: the payment settled; ``audit``: the books balance)."""
    FAILED = 1
    """Another failure; the message says which."""
    USAGE = 2
    """A usage or configuration error: nothing was done."""
    PAYMENT_DECLINED = 3
    """``blegw-platform pay``: the owner declined on the module."""
    PAYMENT_REJECTED = 4
    """``blegw-platform pay``: the platform rejected the payment (the reason is printed)."""
    PAYMENT_TIMED_OUT = 5
    """``blegw-platform pay``: no answer from the module in time."""
    AUDIT_FAILED = 6
    """``blegw-platform audit``: the books do not balance (each violation printed)."""
    PAYMENT_CANCELLED = 7
    """``blegw-platform pay``: cancelled (Ctrl-C while the payment was pending)."""
    NOT_FOUND = 10
    """No such module: not advertising, out of range, or not paired."""
    BONDING = 11
    """Bonding was rejected or failed."""
    CERTIFICATE = 12
    """The module's certificate is invalid or issued by another CA."""
    PLATFORM = 13
    """The platform refused or could not be reached."""
    TIMEOUT = 14
    """The module (or the platform's outcome) did not come in time."""
    DAEMON = 15
    """The gateway daemon is not running or refused the request."""
    DECLINED = 16
    """Declined on the module, or the code ended declined or cancelled."""
    BAD_CODE = 17
    """Not a transaction code."""
    INTERRUPTED = 130
    """Interrupted by Ctrl-C (SIGINT), as a shell reports it."""
