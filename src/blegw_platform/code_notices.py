"""Telling both sides how a transaction code ended (flow F-D).

When a code's transaction becomes final (settled at once, or after the payer's confirmation:
approved, declined, timed out, cancelled), each side learns it without polling:

* **each side's gateway**: a :class:`~relay_contract.CodeNotice` on ``blegw/v1/gw/G/note`` for
  every gateway serving an active module of that side's account (the payer's, the payee's),
  carrying that side's role and account, never the other's; the daemon logs it and answers
  ``blegw code --wait`` and ``blegw scan-code`` with it;
* **the API**: the scanning terminal long-polls its transaction (``GET
  /v1/transactions/{id}/outcome``); the side that showed the code, holding only the code,
  long-polls ``GET /v1/codes/{code_id}?wait=N`` (:meth:`CodeNotifier.wait`).

A notice is queued on the platform's MQTT outbox (QoS 1, kept until the broker acknowledges
it). The gateways are looked up when the transaction ends, from the ledger, so a transaction
that a restarted platform ends (the sweeper's expiry, a late approval) is announced too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

from relay_contract import CodeNotice, NoticeRole, NoticeState, topic

from .ledger import FINAL_STATES, TransactionRecord
from .platform import Platform

__all__ = ["CODE_KEY_PREFIX", "CodeNotifier", "code_id_of"]

log = logging.getLogger("blegw.platform.codes")

CODE_KEY_PREFIX = "code "
"""The idempotency key of a code's transaction is ``code <code id hex>``
(``code_payments.code_idempotency_key``): how a final transaction is known as a code's."""

_CODE_KEY = re.compile(r"code ([0-9a-f]{64})")
_REASON = re.compile(r"[a-z0-9_:]{0,64}")


def code_id_of(record: TransactionRecord) -> bytes | None:
    """The code a transaction paid, or None for any other transaction."""
    found = _CODE_KEY.fullmatch(record.idempotency_key)
    return bytes.fromhex(found.group(1)) if found else None


class CodeNotifier:
    """One per platform: announces final code transactions and wakes long-polls on codes."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self.sent = 0
        """Notices queued for gateways (the benchmark and tests read it)."""
        platform.final_hooks.append(self.ended)
        platform.shutdown_hooks.append(self.aclose)

    def ended(self, record: TransactionRecord) -> None:
        """A transaction became final (a hook of :class:`Platform`): if it is a code's, wake
        the long-polls on that code and announce it to both sides' gateways."""
        code_id = code_id_of(record)
        if code_id is None or record.state not in FINAL_STATES:
            return
        self.changed(code_id)
        task = asyncio.get_running_loop().create_task(self._announce(code_id, record),
                                                      name="code-notice")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def changed(self, code_id: bytes) -> None:
        """Wake every long-poll on ``code_id`` (it was spent or its transaction ended)."""
        for future in self._waiters.pop(code_id, []):
            if not future.done():
                future.set_result(None)

    async def _announce(self, code_id: bytes, record: TransactionRecord) -> None:
        try:
            ledger = self.platform.ledger
            reason = record.reason if _REASON.fullmatch(record.reason) else "other"
            for role, account in ((NoticeRole.PAYER, record.payer),
                                  (NoticeRole.PAYEE, record.payee)):
                gateways: list[str] = await ledger.run(ledger.gateways_for, account)
                notice = CodeNotice(code_id, record.id, role, account,
                                    NoticeState[record.state.upper()], reason,
                                    record.amount_minor, record.currency, int(record.updated))
                for gateway in gateways:
                    await self.platform._outbox.put((topic(gateway, "note"), notice.encode()))
                    self.sent += 1
                    log.info("code %s %s: told the %s's gateway %s", code_id[:6].hex(),
                             record.state, role.name.lower(), gateway)
        except Exception:  # a notice is a courtesy: its failure must not end anything else
            log.exception("notice of code %s not sent", code_id[:6].hex())

    async def wait(self, code_id: bytes, timeout: float) -> TransactionRecord | None:
        """The code's transaction once it is final (or at ``timeout`` as it is then: None if
        the code was not used yet, the pending transaction if its payer is still asked)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        ledger = self.platform.ledger
        while True:
            # Registered before reading, so a change between the read and the wait is not missed.
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(code_id, []).append(future)
            try:
                record: TransactionRecord | None = await ledger.run(ledger.code_transaction,
                                                                    code_id)
                remaining = end - loop.time()
                if (record is not None and record.state in FINAL_STATES) or remaining <= 0:
                    return record
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(future, remaining)
            finally:
                with contextlib.suppress(ValueError, KeyError):
                    self._waiters[code_id].remove(future)
                if not self._waiters.get(code_id, True):
                    del self._waiters[code_id]

    async def aclose(self) -> None:
        """Cancel announcements still looking up gateways (a platform shutting down)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
