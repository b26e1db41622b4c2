"""The HIL mode's tripwire: vbluez-only operations refuse to run in HIL mode.

Kept apart from :mod:`vbluez.hil` so that the runtime and the control client can call
:func:`guard` without importing the HIL radio (which imports them).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import VBluezError

__all__ = ["HIL_ENV", "VIOLATIONS_ENV", "HilViolation", "guard", "hil_active"]

HIL_ENV = "BLEGW_HIL"
VIOLATIONS_ENV = "BLEGW_HIL_VIOLATIONS"


class HilViolation(VBluezError):
    """HIL mode reached something only the virtual radio has (its start-up or control API)."""


def hil_active() -> bool:
    """Whether this process runs in HIL mode (``BLEGW_HIL=1``)."""
    return os.environ.get(HIL_ENV) == "1"


def guard(what: str) -> None:
    """Refuse ``what`` (a vbluez-only operation) in HIL mode; record it where asked."""
    if not hil_active():
        return
    log = os.environ.get(VIOLATIONS_ENV)
    if log:
        with Path(log).open("a", encoding="utf-8") as out:
            out.write(what + "\n")
    raise HilViolation(f"HIL mode: {what} is vbluez-only and must not be reached")
