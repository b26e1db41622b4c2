"""``GET /v1/transactions/{id}/events``: a transaction's changes as server-sent events.

Beside the long-poll (``GET /v1/transactions/{id}?wait=S&after=T``), for a terminal that would
rather hold one stream open: the same authentication (the terminal's API key; only its own
transactions, an unknown id and another terminal's look the same, 404), then
``text/event-stream``:

* ``event: state`` with the transaction (its public JSON, as the long-poll returns it) at once,
  and again at every change while it is pending (progress such as ``awaiting_owner``);
* ``event: final`` with the transaction once it is final, then the server closes the stream;
* a comment line (``: keepalive``) every ``heartbeat`` seconds without a change (written without
  reading the ledger: the stream waits on the transaction's change signal), so proxies and
  the client can tell a quiet stream from a dead one;
* a bounded lifetime (``lifetime``, at most :data:`MAX_LIFETIME` seconds): then ``event:
  reconnect`` and the stream closes; the client opens a new one, with ``Last-Event-ID`` (each
  event's ``id`` is the transaction's ``updated`` time) so it is told only what changed since.

Each event is built from the ledger's record, never from the request. At most
:data:`MAX_STREAMS` streams are open at once (503 ``too_many_streams`` beyond) and
:data:`MAX_STREAMS_PER_TERMINAL` per terminal (429 ``too_many_streams``): each holds a
connection and a watcher, and their lifetime bounds how long.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from aiohttp import web

from .api import MAX_WAIT, PLATFORM_KEY, _error, _refuse, _seconds, _terminal, _tx_id
from .ledger import FINAL_STATES, TerminalRecord, TransactionRecord
from .platform import PlatformError

__all__ = ["DEFAULT_HEARTBEAT", "MAX_LIFETIME", "MAX_STREAMS", "MAX_STREAMS_PER_TERMINAL",
           "MIN_HEARTBEAT", "add_routes"]

log = logging.getLogger("blegw.platform.events")

MAX_LIFETIME = 300.0
"""Longest a stream stays open (``?lifetime=``, default :data:`MAX_WAIT`)."""
DEFAULT_HEARTBEAT = 15.0
"""Seconds between keepalive comments on a quiet stream (``?heartbeat=``
:data:`MIN_HEARTBEAT`..60)."""
MIN_HEARTBEAT = 1.0
"""The shortest heartbeat a client may ask: a keepalive is a write on every open stream, and
hundreds of streams at 0.1 s kept the server writing for nothing."""
MAX_STREAMS = 512
"""Streams open at once, over all terminals."""
MAX_STREAMS_PER_TERMINAL = 32
"""Streams one terminal may hold open at once, so one terminal cannot take them all."""
RETRY_MS = 1000
"""The reconnection delay the stream suggests to the client (``retry:``)."""

_OPEN: web.AppKey[list[int]] = web.AppKey("open_event_streams", list)
_OPEN_BY_TERMINAL: web.AppKey[dict[str, int]] = web.AppKey("open_event_streams_by_terminal",
                                                            dict)


def _event(kind: str, record: TransactionRecord) -> bytes:
    """One event: the record's public JSON on one ``data:`` line (JSON has no raw newline)."""
    data = json.dumps(record.public(), separators=(",", ":"))
    return f"event: {kind}\nid: {record.updated!r}\ndata: {data}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    try:
        terminal = await _terminal(request)
        lifetime = _seconds(request.query.get("lifetime", str(MAX_WAIT)), "lifetime", 0.1,
                            MAX_LIFETIME)
        heartbeat = _seconds(request.query.get("heartbeat", str(DEFAULT_HEARTBEAT)),
                             "heartbeat", MIN_HEARTBEAT, 60.0)
        after = _seconds(request.headers.get("Last-Event-ID", "0") or "0", "last_event_id",
                         0, 2.0**40)
    except PlatformError as exc:
        return _refuse(request, exc)
    tx_id = _tx_id(request)
    if tx_id is None:
        return _error(400, "invalid_id", "a transaction id is 32 hex characters")
    platform = request.app[PLATFORM_KEY]
    record = await platform.get(tx_id, terminal)
    if record is None:
        return _error(404, "not_found", "no such transaction")
    counter = request.app[_OPEN]
    mine = request.app[_OPEN_BY_TERMINAL]
    if counter[0] >= MAX_STREAMS:
        return _error(503, "too_many_streams", f"{MAX_STREAMS} event streams are open; "
                      "retry, or long-poll instead")
    if mine.get(terminal.name, 0) >= MAX_STREAMS_PER_TERMINAL:
        return _error(429, "too_many_streams", f"this terminal holds {MAX_STREAMS_PER_TERMINAL}"
                      " event streams open; close one, or long-poll instead")
    counter[0] += 1
    mine[terminal.name] = mine.get(terminal.name, 0) + 1
    try:
        return await _stream(request, terminal, record, after, lifetime, heartbeat)
    finally:
        counter[0] -= 1
        mine[terminal.name] -= 1
        if not mine[terminal.name]:
            del mine[terminal.name]


async def _stream(request: web.Request, terminal: TerminalRecord, record: TransactionRecord,
                  after: float, lifetime: float, heartbeat: float) -> web.StreamResponse:
    """Write the events until the transaction is final, the lifetime ends or the client goes
    (the handler's task is then cancelled by aiohttp, or its next write fails)."""
    platform = request.app[PLATFORM_KEY]
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream", "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no"})
    await response.prepare(request)
    start = time.monotonic()
    signal = platform.change_signal(record.id)
    try:
        await response.write(f"retry: {RETRY_MS}\n\n".encode())
        # read again now that the signal is set: a change since the handler's read is seen
        current: TransactionRecord | None = await platform.get(record.id, terminal)
        while current is not None:
            if current.state in FINAL_STATES:
                await response.write(_event("final", current))
                break
            if current.updated > after:
                await response.write(_event("state", current))
                after = current.updated
            if not await _quiet_until_change(response, signal, start, lifetime, heartbeat):
                await response.write(b"event: reconnect\ndata: {}\n\n")
                break
            # changed: a new signal before the read, so a change during the read is not lost
            platform.drop_signal(record.id, signal)
            signal = platform.change_signal(record.id)
            current = await platform.get(record.id, terminal)
        await response.write_eof()
    except (ConnectionResetError, ConnectionError):
        log.debug("event stream of %s closed by the client", record.id.hex())
    finally:
        platform.drop_signal(record.id, signal)
    return response


async def _quiet_until_change(response: web.StreamResponse, signal: asyncio.Future[None],
                              start: float, lifetime: float, heartbeat: float) -> bool:
    """Wait for the transaction's next change, writing a keepalive comment every ``heartbeat``
    seconds meanwhile without reading the ledger; False once the stream's lifetime is over."""
    while True:
        remaining = lifetime - (time.monotonic() - start)
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(asyncio.shield(signal), min(heartbeat, remaining))
            return True
        except TimeoutError:
            if time.monotonic() - start < lifetime:
                await response.write(b": keepalive\n\n")


def add_routes(app: web.Application) -> None:
    app[_OPEN] = [0]
    app[_OPEN_BY_TERMINAL] = {}
    app.router.add_get("/v1/transactions/{tx}/events", events)
