"""Text an untrusted party chose (a payee, an order description, a device's advertised name),
made safe to show a person on a terminal.

Both the module's prompt and the operator's tools print such text; an escape sequence in it
could clear the screen, rewrite a line already shown or retitle the window, and a bidi override
could show "shop" for a payee that reads otherwise. One sanitiser serves both.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["MAX_FIELD", "REPLACEMENT", "sanitise"]

MAX_FIELD = 140
"""Characters of one field shown to the owner; the rest is cut and marked with an ellipsis."""
REPLACEMENT = "\N{REPLACEMENT CHARACTER}"

# ANSI/ECMA-48 escape sequences, removed whole so no parameter bytes are left on screen: CSI
# (ESC [ or U+009B, parameters, one final byte), OSC/DCS/SOS/PM/APC strings (up to BEL or ST),
# and two-byte ESC sequences.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[\x20-\x3f]*[\x40-\x7e]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[\x20-\x7e]?")


def sanitise(text: str, limit: int = MAX_FIELD) -> str:
    """Text an untrusted party chose, made safe to show a person.

    Escape sequences are removed (they could move the cursor, recolour or rewrite what was
    already shown); every other control, format (bidi overrides and isolates U+202A..U+202E,
    U+2066..U+2069, marks U+200E/U+200F/U+061C, zero-width characters), surrogate, private-use,
    unassigned or line/paragraph separator character is replaced by U+FFFD, visibly, so the owner
    sees that something was there; the result is at most ``limit`` characters.
    """
    text = _ESCAPES.sub("", text)
    shown = "".join(REPLACEMENT if unicodedata.category(c) in _HIDDEN else c for c in text)
    return shown if len(shown) <= limit else shown[:limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
