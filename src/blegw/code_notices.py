"""The daemon's side of code notices: how the platform says a transaction code ended (flow F-D).

The platform publishes a :class:`~relay_contract.CodeNotice` on this gateway's ``note`` topic
when a code of a side this gateway serves ends (settled, declined, timed out, cancelled,
rejected). The daemon checks it (anything that is not a notice is a :class:`NoticeRefused`,
logged and counted, and the daemon keeps serving), logs it, and keeps the last
:data:`MAX_KEPT` for local callers: ``{"cmd": "code_outcome", "code_id": HEX, "wait": S}`` on
the control socket answers with the notice as soon as it is here (``blegw code --wait``,
``blegw scan-code``); ``"role": "payer" | "payee"`` picks one side's when this gateway serves
both (both modules on one gateway).

A notice only informs: nothing here moves money or changes a module's state, so the worst a
forged notice could do is show a wrong outcome (and only the platform's broker account may
publish there, docs/mqtt-contract.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import OrderedDict
from typing import Any

from relay_contract import CodeNotice, MalformedNotice, NoticeRole

__all__ = ["MAX_KEPT", "MAX_WAIT", "CodeNotices", "NoticeRefused"]

log = logging.getLogger("blegw.codes")

MAX_KEPT = 256
"""Notices kept for local callers, newest last; the oldest go first (bounded memory)."""
MAX_WAIT = 300.0
"""Longest wait a local caller may ask for."""
_CODE_ID = re.compile(r"[0-9a-f]{64}")
_ROLES = {role.name.lower(): role for role in NoticeRole}


class NoticeRefused(Exception):
    """A payload on the ``note`` topic that is not a code notice; ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class CodeNotices:
    """The notices this gateway received, by code id, and the local callers waiting for one."""

    def __init__(self) -> None:
        self.kept: OrderedDict[bytes, dict[NoticeRole, CodeNotice]] = OrderedDict()
        """By code id, each side's notice (a gateway serving both sides gets two)."""
        self._waiters: dict[bytes, list[tuple[NoticeRole | None,
                                              asyncio.Future[CodeNotice]]]] = {}
        self.received = 0
        self.refused = 0

    def receive(self, payload: object) -> CodeNotice:
        """Check and keep one payload from the ``note`` topic; :class:`NoticeRefused` for
        anything that is not a notice (counted, nothing kept)."""
        try:
            if not isinstance(payload, bytes | bytearray):
                raise NoticeRefused("malformed_notice", "a notice is bytes")
            try:
                notice = CodeNotice.decode(bytes(payload))
            except MalformedNotice as exc:
                raise NoticeRefused("malformed_notice", str(exc)) from exc
        except NoticeRefused:
            self.refused += 1
            raise
        self.received += 1
        self.kept.setdefault(notice.code_id, {})[notice.role] = notice
        self.kept.move_to_end(notice.code_id)
        while len(self.kept) > MAX_KEPT:
            self.kept.popitem(last=False)
        for role, future in self._waiters.get(notice.code_id, []):
            if role in (None, notice.role) and not future.done():
                future.set_result(notice)
        log.info("code %s %s: %s %d %s%s (transaction %s)", notice.code_id[:6].hex(),
                 notice.state.label, notice.role.name.lower(), notice.amount_minor,
                 notice.currency, f" ({notice.reason})" if notice.reason else "",
                 notice.transaction_id.hex())
        return notice

    def _found(self, code_id: bytes, role: NoticeRole | None) -> CodeNotice | None:
        sides = self.kept.get(code_id, {})
        if role is not None:
            return sides.get(role)
        return next(iter(sides.values()), None)

    async def wait(self, code_id: bytes, timeout: float, role: NoticeRole | None = None
                   ) -> CodeNotice | None:
        """The notice for ``code_id`` (``role``'s side, or any) as soon as it is here, or None
        after ``timeout``."""
        found = self._found(code_id, role)
        if found is not None or timeout <= 0:
            return found
        waiter = (role, asyncio.get_running_loop().create_future())
        self._waiters.setdefault(code_id, []).append(waiter)
        try:
            return await asyncio.wait_for(waiter[1], timeout)
        except TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError, KeyError):
                self._waiters[code_id].remove(waiter)
            if not self._waiters.get(code_id, True):
                del self._waiters[code_id]

    async def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """``{"cmd": "code_outcome", "code_id": HEX, "wait": S}`` from the control socket;
        every field is checked (``bad_request``), no notice in time is ``timeout``."""
        code_id, wait = request.get("code_id"), request.get("wait", 0)
        role_name = request.get("role")
        if not isinstance(code_id, str) or not _CODE_ID.fullmatch(code_id):
            return {"ok": False, "code": "bad_request",
                    "error": "code_id: the code's id, 64 lowercase hex characters"}
        if role_name is not None and role_name not in _ROLES:
            return {"ok": False, "code": "bad_request", "error": "role: payer or payee"}
        if isinstance(wait, bool) or not isinstance(wait, int | float) \
                or not 0 <= wait <= MAX_WAIT:
            return {"ok": False, "code": "bad_request",
                    "error": f"wait: 0..{MAX_WAIT:g} seconds"}
        notice = await self.wait(bytes.fromhex(code_id), float(wait),
                                 None if role_name is None else _ROLES[str(role_name)])
        if notice is None:
            return {"ok": False, "code": "timeout",
                    "error": "no outcome for that code from the platform yet"}
        return {"ok": True, "outcome": notice.public()}
