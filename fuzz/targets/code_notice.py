"""``CodeNotice.decode``: what the daemon reads from the broker on its ``note`` topic (the
platform's word on how a transaction code ended)."""

from __future__ import annotations

from relay_contract import CodeNotice, NoticeRole, NoticeState
from relay_contract.notices import MalformedNotice

from ..engine import FuzzOracleError, Target
from ._samples import FAR_FUTURE


def one_input(data: bytes) -> None:
    notice = CodeNotice.decode(data)
    if notice.encode() != data:
        raise FuzzOracleError("code notice accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    return [CodeNotice(b"\x11" * 32, b"\x22" * 16, role, "shop-42", state,
                       "module:user_timeout" if state is NoticeState.TIMED_OUT else "",
                       1250, "EUR", FAR_FUTURE).encode()
            for role in NoticeRole for state in NoticeState]


TARGET = Target("code_notice", one_input, (MalformedNotice,), seeds, max_len=1024)
