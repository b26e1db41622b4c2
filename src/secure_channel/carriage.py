"""How channel units ride the gateway: one envelope kind each way, opaque to the gateway.

The gateway moves one envelope to the module per relay request and brings exactly one back
(docs/mqtt-contract.md); the channel fits that shape with two envelope types of the range the
end-to-end layer reserves for it (0x20..0x3F, docs/e2e-messages.md):

* ``0x20`` *channel to module*, body ``{1: [unit, ...]}`` (one to four units), or
  ``{2: [suite id, ...]}``: "open a channel in one of these suites" (the module answers its
  hello, with the session id to resume when it holds one);
* ``0x21`` *channel to platform*, body ``{1: [unit, ...]}``.

Envelope shape and CBOR rules are the end-to-end layer's: ``{1: 1, 2: type, 3: body}``,
deterministic, refused unless it re-encodes to the same bytes. The units inside are checked by
the handshake and the record layer, never here: this module only says which units travel
together. A gateway sees a type byte and lengths; what a record holds (a payment, an approval,
a ping) is inside the encryption and padded to one size (:mod:`secure_channel.application`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e2e.cbor import dumps, loads
from e2e.errors import MalformedMessage

from .errors import Malformed
from .wire import HANDSHAKE_LIMIT

__all__ = ["MAX_CARRIED", "MAX_UNITS", "TO_MODULE", "TO_PLATFORM", "ChannelOpen",
           "ChannelUnits", "decode_carried", "is_channel_envelope"]

TO_MODULE = 0x20
TO_PLATFORM = 0x21
MAX_UNITS = 4
"""A resumption's server resume and finished travel together; nothing needs more than two."""
MAX_CARRIED = 4096
"""An envelope of units is never longer (four handshake-sized units fit in 8 KiB; the module's
message limit is 4 KiB and real traffic is far below it)."""
_VERSION = 1


@dataclass(frozen=True, slots=True)
class ChannelOpen:
    """The platform asks the module to open a channel in one of ``suites`` (its order)."""

    suites: tuple[int, ...]

    def encode(self) -> bytes:
        return dumps({1: _VERSION, 2: TO_MODULE, 3: {2: list(self.suites)}})


@dataclass(frozen=True, slots=True)
class ChannelUnits:
    """Units in one direction: handshake units, records, or an error unit."""

    units: tuple[bytes, ...]
    to_module: bool

    def encode(self) -> bytes:
        kind = TO_MODULE if self.to_module else TO_PLATFORM
        return dumps({1: _VERSION, 2: kind, 3: {1: list(self.units)}})


def is_channel_envelope(data: bytes) -> bool:
    """Whether an envelope names a channel type (cheap: for dispatch, not a check)."""
    return (isinstance(data, bytes) and len(data) >= 6 and data[:5] == b"\xa3\x01\x01\x02\x18"
            and data[5] in (TO_MODULE, TO_PLATFORM))


def decode_carried(data: bytes, *, to_module: bool) -> ChannelOpen | ChannelUnits:
    """One channel envelope in the expected direction; :class:`Malformed` for anything else."""
    try:
        m = loads(data, max_size=MAX_CARRIED)
    except MalformedMessage as exc:
        raise Malformed(f"channel envelope: {exc}") from None
    want = TO_MODULE if to_module else TO_PLATFORM
    if type(m) is not dict or set(m) != {1, 2, 3} or m[1] != _VERSION or type(m[1]) is not int \
            or m[2] != want or type(m[2]) is not int or type(m[3]) is not dict:
        raise Malformed("not a channel envelope in this direction")
    body: dict[Any, Any] = m[3]
    if set(body) == {2} and to_module:
        suites = body[2]
        if type(suites) is not list or not 1 <= len(suites) <= 16 or any(
                type(s) is not int or not 0 <= s < 2**16 for s in suites):
            raise Malformed("an open names 1 to 16 suite ids")
        return ChannelOpen(tuple(suites))
    if set(body) != {1}:
        raise Malformed("a channel envelope carries units or an open")
    units = body[1]
    if type(units) is not list or not 1 <= len(units) <= MAX_UNITS or any(
            type(u) is not bytes or not 1 <= len(u) <= HANDSHAKE_LIMIT for u in units):
        raise Malformed(f"1 to {MAX_UNITS} units of 1 to {HANDSHAKE_LIMIT} bytes")
    return ChannelUnits(tuple(units), to_module)
