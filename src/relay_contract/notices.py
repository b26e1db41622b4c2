"""Code notices: the platform tells a side's gateway how a transaction code ended (flow F-D).

Topic ``blegw/v1/gw/G/note``, platform -> gateway, QoS 1. One notice per side and gateway when
a code's transaction reaches a final state (docs/mqtt-contract.md). A notice carries only what
that side may see: its own role and account, the code's id (which it made or scanned), the
transaction id, the final state, the amount. Never the other side's account: a gateway serves
one side, and the terminal that holds API credentials reads the full transaction there.

Deterministic CBOR map, decoded strictly like every relay payload: size first, exact key set,
exact types, printable bounded text, canonical bytes (re-encoded and compared); anything else is
:class:`MalformedNotice`. A notice moves no money and changes no state at the gateway: it is
shown to the owner's app, nothing more, so a forged one (only the platform's broker account may
publish on the topic) could at worst show a wrong outcome, never settle anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from e2e.cbor import dumps, loads, typed_field
from e2e.errors import MalformedMessage
from e2e.messages import MAX_AMOUNT_MINOR, is_account_name, is_currency

__all__ = ["MAX_NOTICE", "CodeNotice", "MalformedNotice", "NoticeRole", "NoticeState"]

MAX_NOTICE = 512
"""Largest notice read; a real one is under 200 bytes."""

_REASON = re.compile(r"[a-z0-9_:]{0,64}")
_MAX_TIME = 2**40


class MalformedNotice(MalformedMessage):
    """A payload on a gateway's ``note`` topic that is not a code notice."""


class NoticeRole(IntEnum):
    """Which side of the code's transaction the receiving gateway serves."""

    PAYER = 1
    PAYEE = 2


class NoticeState(IntEnum):
    """The transaction's final state (the platform's states, docs/http-api.md)."""

    SETTLED = 1
    DECLINED = 2
    REJECTED = 3
    TIMED_OUT = 4
    CANCELLED = 5

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class CodeNotice:
    code_id: bytes
    """32 bytes: the code's single-use id (``transaction_code`` ``code_id``)."""
    transaction_id: bytes
    role: NoticeRole
    account: str
    """The receiving side's own account."""
    state: NoticeState
    reason: str
    """The platform's reason code (``declined_by_user``, ``module:user_timeout``...), or empty."""
    amount_minor: int
    currency: str
    at: int
    """Unix seconds when the transaction ended."""

    def __post_init__(self) -> None:
        if len(self.code_id) != 32 or len(self.transaction_id) != 16:
            raise MalformedNotice("a notice names a 32-byte code id and a 16-byte transaction")
        if not is_account_name(self.account):
            raise MalformedNotice("the account breaks the account rule")
        if not _REASON.fullmatch(self.reason):
            raise MalformedNotice("the reason is 0..64 of a-z 0-9 _ :")
        if not 0 < self.amount_minor <= MAX_AMOUNT_MINOR or not is_currency(self.currency):
            raise MalformedNotice("amount 1..10^15 minor units of an ISO 4217 currency")
        if not 0 <= self.at < _MAX_TIME:
            raise MalformedNotice("the time is Unix seconds")

    def encode(self) -> bytes:
        return dumps({1: self.code_id, 2: self.transaction_id, 3: int(self.role),
                      4: self.account, 5: int(self.state), 6: self.reason,
                      7: self.amount_minor, 8: self.currency, 9: self.at})

    @classmethod
    def decode(cls, data: bytes) -> CodeNotice:
        """The notice in ``data``; :class:`MalformedNotice` for anything else."""
        if len(data) > MAX_NOTICE:
            raise MalformedNotice(f"a notice is at most {MAX_NOTICE} bytes")
        try:
            raw = loads(data, max_size=MAX_NOTICE)
            if type(raw) is not dict or set(raw) != set(range(1, 10)) \
                    or not all(type(k) is int for k in raw):
                raise MalformedNotice("a notice is a map with keys 1..9")
            fields: dict[int, Any] = {
                key: typed_field(raw, key, kind, f"field {key}") for key, kind in
                ((1, bytes), (2, bytes), (3, int), (4, str), (5, int), (6, str), (7, int),
                 (8, str), (9, int))}
            try:
                role, state = NoticeRole(fields[3]), NoticeState(fields[5])
            except ValueError:
                raise MalformedNotice("unknown role or state") from None
            notice = cls(fields[1], fields[2], role, fields[4], state, fields[6], fields[7],
                         fields[8], fields[9])
        except MalformedNotice:
            raise
        except MalformedMessage as exc:
            raise MalformedNotice(str(exc)) from None
        if notice.encode() != data:
            raise MalformedNotice("a notice is deterministic CBOR")
        return notice

    def public(self) -> dict[str, Any]:
        """The notice as the daemon's control socket answers it (JSON)."""
        return {"code_id": self.code_id.hex(), "transaction": self.transaction_id.hex(),
                "role": self.role.name.lower(), "account": self.account,
                "state": self.state.label, "reason": self.reason,
                "amount_minor": self.amount_minor, "currency": self.currency, "at": self.at}
