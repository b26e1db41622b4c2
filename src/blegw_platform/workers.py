"""Several ``blegw-platform serve`` processes sharing one ledger, one HTTP port and one broker.

A worker keeps nothing another worker needs: the request sent, its deadline, payee and amount,
the idempotency keys and every outcome are rows of the ledger, so a gateway's response is
verified and settled by whichever worker the broker hands it to (MQTT 5 shared subscription
``$share/<group>/blegw/v1/gw/+/resp``), and a terminal's long-poll or event stream on one
worker sees an outcome another worker recorded. The in-process waiters of :class:`Platform`
stay (they answer at once for outcomes recorded here); :class:`ChangeFeed` wakes them for
changes made elsewhere:

* PostgreSQL: ``LISTEN blegw_tx_changed``; every worker sends ``NOTIFY`` with the transaction id
  after each change it recorded, and a slow poll of the watched rows covers a worker killed
  between its commit and its notify.
* SQLite (the one-machine default): a bounded poll of the watched rows of the file
  (:data:`POLL_SQLITE`). One process needs none of this and starts no feed.

The expiry sweep needs no coordination: each outcome is a conditional change of a pending row
inside one database transaction (:meth:`Ledger.finish_many`), so two workers sweeping together
end each transaction once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relay_contract import topic

from .ledger import FINAL_STATES
from .ledger_store import is_postgres_url

if TYPE_CHECKING:
    from .platform import Platform

__all__ = ["ChangeFeed", "WorkerSettings", "WorkerSettingsError", "response_subscription"]

log = logging.getLogger("blegw.platform.workers")

CHANNEL = "blegw_tx_changed"
"""The PostgreSQL notification channel; the payload is a transaction id in hex."""

POLL_SQLITE = 0.2
"""Seconds between two reads of the watched rows on SQLite: a long-poll learns of another
worker's outcome within this."""

POLL_POSTGRES = 1.0
"""Seconds between two safety-net reads on PostgreSQL (notifications are the fast path)."""

MAX_POLLED = 500
"""Watched transactions read per statement (bounded parameter lists)."""

GROUP_RULE = re.compile(r"[A-Za-z0-9_-]{1,64}")


class WorkerSettingsError(Exception):
    """A ``[workers]`` setting is unusable; the message names it."""


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """How this process shares the work: ``share_group`` set means several workers.

    ``reuse_port``: bind the HTTP port with SO_REUSEPORT, so N processes listen on one port and
    the kernel spreads connections among them (Linux). ``share_group``: the MQTT 5 shared
    subscription group the workers take gateway responses in (each response goes to ONE of
    them), and the switch that starts the cross-worker :class:`ChangeFeed`.
    """

    reuse_port: bool = False
    share_group: str | None = None

    def __post_init__(self) -> None:
        if self.share_group is not None and not GROUP_RULE.fullmatch(self.share_group):
            raise WorkerSettingsError(
                f"share_group: {self.share_group!r} is not 1..64 of A-Z a-z 0-9 _ -")

    @classmethod
    def load(cls, state_dir: Path, reuse_port: bool | None = None,
             share_group: str | None = None) -> WorkerSettings:
        """``[workers]`` of ``platform.toml`` in the state directory; options given on the
        command line win over the file."""
        table: dict[str, Any] = {}
        config = state_dir / "platform.toml"
        if config.exists():
            try:
                table = tomllib.loads(config.read_text()).get("workers", {})
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise WorkerSettingsError(f"{config}: {exc}") from exc
            if not isinstance(table, dict):
                raise WorkerSettingsError(f"{config}: [workers] must be a table")
        unknown = sorted(set(table) - {"reuse_port", "share_group"})
        if unknown:
            raise WorkerSettingsError(f"{config}: unknown key workers.{unknown[0]}")
        file_reuse = table.get("reuse_port", False)
        file_group = table.get("share_group")
        if not isinstance(file_reuse, bool):
            raise WorkerSettingsError("reuse_port: true or false")
        if file_group is not None and not isinstance(file_group, str):
            raise WorkerSettingsError("share_group: a string")
        return cls(file_reuse if reuse_port is None else reuse_port,
                   share_group if share_group is not None else file_group)

    def client_id(self) -> str:
        """The broker session name: one shared name for the lone worker (its persistent
        session keeps responses while it restarts); a name of its own for each of N workers
        (two sessions with one name would throw each other off the broker)."""
        if self.share_group is None:
            return "blegw-platform"
        return f"blegw-platform-{os.getpid()}-{secrets.token_hex(4)}"


def response_subscription(share_group: str | None) -> str:
    """The topic filter responses are taken from: shared among the group's workers if any."""
    plain = topic("+", "resp")
    return plain if share_group is None else f"$share/{share_group}/{plain}"


def _updated_of(db: Any, ids: list[bytes]) -> list[tuple[bytes, float, str]]:
    marks = ",".join("?" * len(ids))
    return [(bytes(row[0]), float(row[1]), str(row[2])) for row in db.execute(
        f"SELECT id, updated, state FROM transactions WHERE id IN ({marks})",  # noqa: S608
        ids)]


class ChangeFeed:
    """Wakes this worker's long-polls and event streams for changes other workers recorded."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        location = platform.ledger.location
        self._url = location if isinstance(location, str) and is_postgres_url(location) \
            else None
        self._seen: dict[bytes, float] = {}
        self._notifier: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start the poll (and on PostgreSQL the listener); :meth:`aclose` stops them."""
        self._platform.change_hooks.append(self._local_change)
        self._tasks.append(asyncio.create_task(self._poll(), name="change-feed-poll"))
        if self._url is not None:
            import psycopg

            self._notifier = await asyncio.wait_for(
                psycopg.AsyncConnection.connect(self._url, autocommit=True), 10.0)
            self._tasks.append(asyncio.create_task(self._listen(), name="change-feed-listen"))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._notifier is not None:
            await self._notifier.close()
            self._notifier = None

    def _local_change(self, tx_id: bytes) -> None:
        """A change this worker recorded: tell the others (PostgreSQL), best effort."""
        if self._notifier is not None:
            task = asyncio.create_task(self._notify(tx_id))
            self._tasks.append(task)
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)

    async def _notify(self, tx_id: bytes) -> None:
        try:
            await asyncio.wait_for(self._notifier.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL, tx_id.hex())), 5.0)
        except Exception as exc:  # the others' poll still finds the change
            log.warning("cannot notify the other workers of %s: %s", tx_id.hex(), exc)

    async def _listen(self) -> None:
        import psycopg

        assert self._url is not None
        while True:
            try:
                async with await asyncio.wait_for(psycopg.AsyncConnection.connect(
                        self._url, autocommit=True), 10.0) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    async for note in conn.notifies():
                        with contextlib.suppress(ValueError):
                            tx_id = bytes.fromhex(note.payload)
                            if len(tx_id) == 16:
                                await self._remote_change(tx_id)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("change feed: %s; listening again in 1 s", exc)
                await asyncio.sleep(1.0)

    def _watched(self) -> set[bytes]:
        return self._platform.watched_transactions()

    async def _poll(self) -> None:
        interval = POLL_POSTGRES if self._url is not None else POLL_SQLITE
        while True:
            await asyncio.sleep(interval)
            try:
                await self._poll_once()
            except Exception:  # a failed read is retried at the next tick, not fatal
                log.exception("change feed: reading watched transactions failed")

    async def _poll_once(self) -> None:
        watched = list(self._watched())
        for gone in set(self._seen) - set(watched):
            del self._seen[gone]
        for chunk in _chunks(watched, MAX_POLLED):
            rows = await self._platform.ledger.run_read(_updated_of, chunk)
            for tx_id, updated, state in rows:
                before = self._seen.get(tx_id)
                self._seen[tx_id] = updated
                if before is None or updated > before or state in FINAL_STATES:
                    await self._remote_change(tx_id)

    async def _remote_change(self, tx_id: bytes) -> None:
        if tx_id in self._watched():
            record = await self._platform.get(tx_id)
            if record is not None:
                self._platform.wake(record)


def _chunks(items: list[bytes], size: int) -> Iterable[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
