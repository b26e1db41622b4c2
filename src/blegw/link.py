"""The gateway's BLE link to one module: bleak as the central, the link profile on top.

Thin adapter: the request's state (fragmenting, reassembly, KEEPALIVE, ERROR, CANCEL, the
deadline and the silence timer) is ``ble_profile``'s :class:`CentralSession`, sans-IO; this
moves its fragments over bleak and maps its events to :class:`LinkError`. It connects on demand,
subscribes to the status characteristic, writes each request in fragments of the link's size,
and sends CANCEL when the caller cancels or the deadline passes. A lost link is reported as
:class:`LinkError` and the next exchange reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from ble_profile import (
    MIN_FRAGMENT_SIZE,
    AnswerReceived,
    BadControlPayloadError,
    CancelSettled,
    CentralSession,
    Command,
    DeadlineExpired,
    ErrorReceived,
    FramingError,
    KeepaliveReceived,
    KeepaliveStatus,
    ModuleSilent,
    UnexpectedMessageError,
    fragment_size,
    uuids,
)

from . import faults
from .faults import Fault, classify
from .link_protocol import KeepaliveSeen

__all__ = ["DeadlinePassed", "ExchangeCancelled", "LinkError", "ModuleLink",
           "ModuleUnreachable", "is_stale", "keep_links_up"]

log = logging.getLogger("blegw.link")

# Connect attempts and the waits between them, after bleak-retry-connector's field experience:
# BlueZ connects fail transiently and often (faults.classify says which failures are worth a
# retry); the attempts never run past the request's deadline.
CONNECT_ATTEMPTS = 4
CONNECT_BACKOFF = (0.25, 0.5, 1.0)


FRAME_BACKLOG = 256
"""Notifications held for an exchange (at most 512 bytes each): a module that floods the link
between exchanges cannot grow the gateway's memory; what does not fit is dropped, and the next
exchange, which starts by discarding the backlog, fails cleanly if it needed those frames."""

STALE_SETTLE = 0.5
"""Seconds a link with a stale GATT cache stays up so the module's Service Changed
indication can make BlueZ rediscover (it comes a few connection events after the connect)."""

KEEPALIVE_TIMEOUT = 3.0
"""Seconds without any frame from a module that is still deciding before the link is suspect."""


class LinkError(Exception):
    """The exchange failed on the BLE side (disconnect, GATT error, module ERROR frame)."""

    def __init__(self, message: str, fault: Fault | None = None) -> None:
        super().__init__(message)
        self.fault = fault
        """What went wrong in an operator's words, when the link already classified it."""


class ModuleUnreachable(LinkError):
    """The module could not be found or connected within the time allowed."""


class DeadlinePassed(LinkError):
    """The request's deadline passed before the module answered; CANCEL was sent."""


class ExchangeCancelled(LinkError):
    """The caller cancelled the exchange; CANCEL was sent if the request had reached the
    module."""


@dataclass
class ExchangeTimings:
    connect: float = 0.0
    radio: float = 0.0


def is_stale(error: BaseException) -> bool:
    """BlueZ answered for attributes the module no longer has: a stale GATT cache.

    ATT error 0x01 (Invalid Handle, which bleak 3.1 raises as a GATT protocol error) on a
    cached handle, or an object BlueZ already removed after rediscovering (bleak still holds
    its path)."""
    return faults.is_stale_cache(str(error))


def _invalid_handle(error: BaseException) -> bool:
    return faults.is_invalid_handle(str(error))


async def _disconnect(client: BleakClient) -> None:
    with contextlib.suppress(BleakError, TimeoutError, OSError, EOFError):
        await asyncio.wait_for(client.disconnect(), 5)


KEEP_UP_INTERVAL = 1.0
"""Seconds between the keeper's checks of each link (``ble.keep_links_up``); a link that is
down is tried again at this pace, each attempt bounded by the connect timeout."""


async def keep_links_up(links: Callable[[], Iterable[ModuleLink]],
                        interval: float = KEEP_UP_INTERVAL) -> None:
    """Keep every link ``links()`` names connected, in the background, until cancelled.

    Links come and go as modules are paired and forgotten: an attempt still running for a
    link no longer named is cancelled and that link closed; a link already up is left to its
    owner (the relay closes it when the module is forgotten or the daemon stops). All attempts
    are this task's own and end with it.
    """
    attempts: dict[ModuleLink, asyncio.Task[None]] = {}
    try:
        while True:
            current = set(links())
            for link in list(attempts):
                if link not in current:
                    task = attempts.pop(link)
                    if not task.done():
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                        await link.close()  # nothing half-connected is left behind
            for link in current:
                pending = attempts.get(link)
                if (pending is None or pending.done()) and not link.connected:
                    attempts[link] = asyncio.create_task(link.bring_up(),
                                                         name=f"keep-up:{link.label}")
            await asyncio.sleep(interval)
    finally:
        for task in attempts.values():
            task.cancel()
        await asyncio.gather(*attempts.values(), return_exceptions=True)


class ModuleLink:
    def __init__(self, address: str, adapter: str, *, connect_timeout: float = 10.0,
                 pair: bool = False, label: str = "") -> None:
        self.address = address
        self.adapter = adapter
        self.connect_timeout = connect_timeout
        self.pair = pair
        """Bond while connecting (``blegw pair``): BlueZ asks the registered agent."""
        self.label = label or address
        """How log lines name the module (its id in the daemon), so journal lines carry it."""
        self._client: BleakClient | None = None
        self._frames: asyncio.Queue[bytes] = asyncio.Queue(FRAME_BACKLOG)
        self.dropped_frames = 0
        self.last_error: str = ""
        self.connect_retries = 0
        """Connect attempts that failed transiently and were retried (since start)."""
        self._control_point_length = MIN_FRAGMENT_SIZE
        """The largest fragment the module accepts, read once per connection."""
        self._session = CentralSession()
        """The request in flight, sans-IO: fed every notification of the exchange."""
        self._connect_lock = asyncio.Lock()
        """One connect at a time: a request and the background keeper never make two links."""
        self.background_fault: Fault | None = None
        """The fault the background keeper (``keep_links_up``) met with no request in flight,
        until the link is up again: ``blegw status`` shows it like a request's fault."""
        self.background_fault_at: float | None = None
        self.background_faults: Counter[str] = Counter()
        """Background faults met, per code (each counted once until the link is up again)."""
        self.background_detail = ""
        self.on_background_fault: Callable[[Fault, str], None] | None = None
        """Told each new background fault (the fault, BlueZ's words): the daemon's recent
        errors."""

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.is_connected

    async def connect(self, deadline: float | None = None, *, background: bool = False
                      ) -> float:
        """Connect if needed, retrying transient failures; return the seconds it took.

        ``deadline`` (wall clock) bounds the attempts and the waits between them: a request's
        connect never outlives the request. ``background`` (the keeper) logs its retries at
        DEBUG: it reports a fault once, itself.
        """
        if self.connected:
            return 0.0
        started = time.perf_counter()
        wait = None if deadline is None else max(deadline - time.time(), 0.1)
        try:
            await asyncio.wait_for(self._connect_lock.acquire(), wait)
        except TimeoutError:
            fault = classify(TimeoutError(), self.adapter, self.address)
            raise ModuleUnreachable(fault.text(), fault) from None
        try:
            if not self.connected:
                await self._connect_attempts(deadline, logging.DEBUG if background
                                             else logging.WARNING)
        finally:
            self._connect_lock.release()
        self._background_recovered()
        return time.perf_counter() - started

    async def _connect_attempts(self, deadline: float | None, level: int) -> None:
        for attempt in range(CONNECT_ATTEMPTS):
            timeout = self.connect_timeout
            if deadline is not None:
                timeout = min(timeout, max(deadline - time.time(), 0.1))
            try:
                await self._connect_once(timeout)
            except ModuleUnreachable as exc:
                cause = exc.__cause__ or exc
                fault = exc.fault or classify(cause, self.adapter, self.address)
                last = attempt == CONNECT_ATTEMPTS - 1
                wait = 0.0 if last else CONNECT_BACKOFF[attempt]
                out_of_time = deadline is not None and time.time() + wait + 0.1 >= deadline
                if last or not fault.transient or out_of_time:
                    raise ModuleUnreachable(fault.text(), fault) from cause
                self.connect_retries += 1
                log.log(level, "module %s: connect attempt %d of %d failed: %s; retrying in "
                        "%.2f s. %s", self.label, attempt + 1, CONNECT_ATTEMPTS, fault.cause,
                        wait, fault.advice)
                await asyncio.sleep(wait)
            else:
                if attempt:
                    log.info("module %s: connected at attempt %d", self.label, attempt + 1)
                return
        raise AssertionError("unreachable")

    async def bring_up(self) -> None:
        """One background attempt to have the link up (``ble.keep_links_up``), so that the
        next request does not wait for the connect. A new fault is logged once at WARNING
        with its advice and kept for ``blegw status`` (:attr:`background_fault`), and the
        link coming up again (by the keeper or a request) is logged at INFO and clears it."""
        try:
            await self.connect(time.time() + self.connect_timeout, background=True)
        except LinkError as exc:
            self.background_failed(
                exc.fault or classify(exc.__cause__ or exc, self.adapter, self.address),
                str(exc.__cause__ or exc))

    def background_failed(self, fault: Fault, detail: str) -> None:
        """The keeper met ``fault`` with no request in flight: log it once, keep it."""
        previous = self.background_fault
        self.background_fault, self.background_detail = fault, detail
        if previous is not None and previous.code == fault.code:
            return
        self.background_fault_at = time.time()
        self.background_faults[fault.code] += 1
        log.warning("module %s: cannot keep the link up: %s. %s", self.label, fault.cause,
                    fault.advice)
        if self.on_background_fault is not None:
            self.on_background_fault(fault, detail)

    def _background_recovered(self) -> None:
        if self.background_fault is not None:
            log.info("module %s: link up again (was: %s)", self.label,
                     self.background_fault.code)
            self.background_fault, self.background_fault_at = None, None
            self.background_detail = ""

    async def _connect_once(self, timeout: float | None = None) -> None:
        timeout = self.connect_timeout if timeout is None else timeout
        await self.close()
        try:
            device = await BleakScanner.find_device_by_address(
                self.address, timeout=timeout, bluez={"adapter": self.adapter})
            if device is None:
                fault = faults.not_seen(self.adapter, self.address)
                raise ModuleUnreachable(fault.text(), fault)
            client = BleakClient(device, bluez={"adapter": self.adapter}, pair=self.pair,
                                 disconnected_callback=self._on_disconnect)
            try:
                await asyncio.wait_for(client.connect(), timeout)
            except TimeoutError:
                # bleak's pending Connect is abandoned by wait_for; tell BlueZ too, so its
                # next Connect is not answered InProgress.
                with contextlib.suppress(BleakError, TimeoutError, OSError, EOFError):
                    await asyncio.wait_for(client.disconnect(), 5)
                raise
            self._frames = asyncio.Queue(FRAME_BACKLOG)
            try:
                await client.start_notify(uuids.STATUS, self._on_notify)
                length = (bytes(await client.read_gatt_char(uuids.CONTROL_POINT_LENGTH))
                          if client.services.get_characteristic(uuids.CONTROL_POINT_LENGTH)
                          else b"")
            except (BleakError, OSError, EOFError) as exc:
                # Connected, but the subscription or the read failed: never leave that link
                # behind.
                if is_stale(exc):
                    await self._drop_stale(client, exc)
                    fault = faults.stale_cache(self.address)
                    self.last_error = fault.text()
                    raise ModuleUnreachable(fault.text(), fault) from exc
                await _disconnect(client)
                raise
        except (BleakError, TimeoutError, OSError) as exc:
            self.last_error = f"connect failed: {exc!r}"
            raise ModuleUnreachable(self.last_error) from exc
        if client.services.get_characteristic(uuids.CONTROL_POINT) is None or len(length) != 2:
            # A stale GATT cache or another device at that address (no control point, or a
            # control point length that is not the profile's 2 bytes): never talk to it.
            await client.disconnect()
            fault = faults.wrong_profile(self.address)
            raise ModuleUnreachable(fault.text(), fault)
        self._control_point_length = int.from_bytes(length, "big")
        self._client = client

    async def _drop_stale(self, client: BleakClient, error: BaseException) -> None:
        """The GATT objects in use are stale: the module's database changed. If BlueZ still
        shows its cached database (Invalid Handle), a bonded module indicates Service Changed
        on the link and BlueZ rediscovers: give it that time with the link up. If BlueZ
        already removed the objects bleak holds, it has rediscovered. Then disconnect, so
        that the next connect (and bleak) see the new database. Clearing the cache by
        RemoveDevice would also drop the bond, so that is left to the operator (the fault's
        advice) if rediscovery does not happen."""
        settle = STALE_SETTLE if _invalid_handle(error) else 0.0
        log.warning("module %s: its GATT database changed and the copy in use is stale; "
                    "reconnecting%s", self.label,
                    f" once BlueZ has rediscovered (waiting {settle:.1f} s)" if settle else "")
        await asyncio.sleep(settle)
        await _disconnect(client)

    def _on_disconnect(self, _client: BleakClient) -> None:
        log.info("module %s: link down", self.label)
        while self._frames.full():  # the wake-up below must get through
            self._frames.get_nowait()
        self._frames.put_nowait(b"")  # wakes a waiting exchange

    def _on_notify(self, _char: object, data: bytearray) -> None:
        try:
            self._frames.put_nowait(bytes(data))
        except asyncio.QueueFull:
            self.dropped_frames += 1
            if self.dropped_frames == 1 or self.dropped_frames % 1000 == 0:
                log.warning("module %s floods the link: %d frames dropped", self.label,
                            self.dropped_frames)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(BleakError, TimeoutError, OSError, EOFError):
                await asyncio.wait_for(client.disconnect(), 5)

    def _fragment_size(self) -> int:
        assert self._client is not None
        char = self._client.services.get_characteristic(uuids.CONTROL_POINT)
        if char is None:
            raise LinkError("the device does not offer the module profile",
                            faults.wrong_profile(self.address))
        return fragment_size(char.max_write_without_response_size + 3,
                             self._control_point_length)

    async def read(self, char_uuid: str) -> bytes:
        """Read one characteristic (the module info), connecting first if needed."""
        await self.connect()
        assert self._client is not None
        try:
            return bytes(await self._client.read_gatt_char(char_uuid))
        except (BleakError, OSError, EOFError) as exc:
            self.last_error = f"GATT error: {exc!r}"
            await self.close()
            raise LinkError(self.last_error) from exc

    async def exchange(self, envelope: bytes, deadline: float, *,
                       on_keepalive: KeepaliveSeen | None = None,
                       cancel: asyncio.Event | None = None
                       ) -> tuple[bytes, ExchangeTimings]:
        """Send one MSG and return the module's MSG answer (its envelope bytes).

        ``on_keepalive`` hears each KEEPALIVE status; setting ``cancel`` sends CANCEL and
        raises :class:`ExchangeCancelled` (see :class:`blegw.link_protocol.Link`).
        """
        return await self._round_trip(Command.MSG, envelope, deadline, on_keepalive, cancel)

    async def ping(self, timeout: float = 10.0) -> ExchangeTimings:
        """One PING with a random payload that the module must echo (link health, RTT)."""
        payload = os.urandom(8)
        echo, timings = await self._round_trip(Command.PING, payload, time.time() + timeout)
        if echo != payload:
            raise LinkError("the module echoed another payload to PING",
                            faults.protocol_error(self.address))
        return timings

    async def _round_trip(self, command: Command, payload: bytes, deadline: float,
                          on_keepalive: KeepaliveSeen | None = None,
                          cancel: asyncio.Event | None = None
                          ) -> tuple[bytes, ExchangeTimings]:
        timings = ExchangeTimings()
        timings.connect = await self._connect_unless_cancelled(deadline, cancel)
        assert self._client is not None
        if cancel is not None and cancel.is_set():
            raise ExchangeCancelled("cancelled before the request reached the module")
        started = time.perf_counter()
        while not self._frames.empty():
            self._frames.get_nowait()
        self._session.reset()  # the backlog is gone, and so is anything it belonged to
        try:
            frames = self._session.send(command, payload, self._fragment_size())
            if not await self._first_write(frames[0]):
                # The cache went stale on a live link: the module never got the first
                # fragment, so sending the whole message again on a fresh link is safe.
                timings.connect += await self.connect(deadline)
                started = time.perf_counter()
                assert self._client is not None
                self._session.reset()
                frames = self._session.send(command, payload, self._fragment_size())
                await self._client.write_gatt_char(uuids.CONTROL_POINT, frames[0],
                                                   response=True)
            for frame in frames[1:]:
                await self._client.write_gatt_char(uuids.CONTROL_POINT, frame, response=True)
            answer = await self._await_answer(deadline, on_keepalive, cancel)
        except (BleakError, OSError, EOFError) as exc:
            self.last_error = f"GATT error: {exc!r}"
            await self.close()
            raise LinkError(self.last_error) from exc
        timings.radio = time.perf_counter() - started
        return answer, timings

    async def _connect_unless_cancelled(self, deadline: float,
                                        cancel: asyncio.Event | None) -> float:
        """Connect for an exchange; a cancel that comes meanwhile takes effect at once: the
        connect is abandoned (bleak tells BlueZ, which cancels its pending ``Connect``) and
        :class:`ExchangeCancelled` raised. Nothing was written, so nothing reached the
        module."""
        if cancel is None or self.connected:
            return await self.connect(deadline)
        if cancel.is_set():
            raise ExchangeCancelled("cancelled before the connect; nothing reached the module")
        connecting = asyncio.ensure_future(self.connect(deadline))
        waiter = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({connecting, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            connecting.cancel()
            raise
        finally:
            waiter.cancel()
        if connecting.done():
            return connecting.result()  # its own error, if it failed
        connecting.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkError):
            await connecting
        await self.close()
        raise ExchangeCancelled("cancelled while connecting; nothing reached the module")

    async def _first_write(self, frame: bytes) -> bool:
        """Write a message's first fragment; False when BlueZ's GATT objects were stale
        (the link is then closed for a fresh connect), other failures raise."""
        assert self._client is not None
        try:
            await self._client.write_gatt_char(uuids.CONTROL_POINT, frame, response=True)
        except (BleakError, OSError, EOFError) as exc:
            if not is_stale(exc):
                raise
            client, self._client = self._client, None
            await self._drop_stale(client, exc)
            return False
        return True


    async def _next_frame(self, timeout: float, cancel: asyncio.Event | None) -> bytes | None:
        """The next frame within ``timeout`` (TimeoutError otherwise), or None once ``cancel``
        is set."""
        if cancel is None:
            return await asyncio.wait_for(self._frames.get(), timeout)
        if cancel.is_set():
            return None
        getter = asyncio.ensure_future(self._frames.get())
        waiter = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({getter, waiter}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()  # a frame that came with the cancel is not lost
        if cancel.is_set():
            return None
        raise TimeoutError

    async def _await_answer(self, deadline: float,
                            on_keepalive: KeepaliveSeen | None = None,
                            cancel: asyncio.Event | None = None) -> bytes:
        """Feed the session every notification until it delivers the answer; its events
        (and the passing of time, which it judges) become this exchange's outcome."""
        session = self._session
        session.sent(deadline, time.time(), KEEPALIVE_TIMEOUT)
        while True:
            now = time.time()
            timed = session.poll(now)
            if isinstance(timed, DeadlineExpired):
                await self._cancel(timed.cancel)
                raise DeadlinePassed("the deadline passed while the module was deciding")
            if isinstance(timed, ModuleSilent):
                await self.close()
                raise LinkError("the module went silent (no keepalive)",
                                faults.module_silent(self.address))
            try:
                frame = await self._next_frame(session.next_timeout(now), cancel)
            except TimeoutError:
                continue  # the session judges what the silence means
            if frame is None:
                await self._cancel(session.cancel())
                raise ExchangeCancelled("cancelled while the module was deciding; "
                                        "CANCEL sent")
            if frame == b"":
                session.reset()
                await self.close()
                raise LinkError("the link was lost during the exchange",
                                faults.link_lost(self.address))
            try:
                event = session.receive(frame, time.time())
            except BadControlPayloadError as exc:
                # A KEEPALIVE or ERROR whose payload is not one byte: the module is not
                # speaking the profile. This exchange fails; the link is dropped so the module
                # abandons the request and the next exchange starts from a clean connection.
                await self.close()
                raise LinkError(f"garbled {exc.command} from the module: {exc}",
                                faults.protocol_error(self.address)) from exc
            except UnexpectedMessageError as exc:
                raise LinkError(f"unexpected message from the module: {exc}",
                                faults.protocol_error(self.address)) from exc
            except FramingError as exc:
                raise LinkError(f"garbled answer from the module: {exc}",
                                faults.protocol_error(self.address)) from exc
            if isinstance(event, KeepaliveReceived):
                log.debug("keepalive %s", event.status.name)
                if event.status is KeepaliveStatus.UNKNOWN:
                    log.info("unknown keepalive status from %s", self.address)
                elif on_keepalive is not None:
                    on_keepalive(event.status)
            elif isinstance(event, ErrorReceived):
                raise LinkError(f"module answered ERROR {event.code.name}",
                                faults.module_error(self.address, event.code.name))
            elif isinstance(event, AnswerReceived):
                return event.payload

    async def _cancel(self, frame: bytes) -> None:
        """Write the session's CANCEL and wait (briefly) for the module's closing message,
        so it cannot be taken for the answer to the next request."""
        try:
            if self._client is None:
                return
            with contextlib.suppress(BleakError, OSError, EOFError, TimeoutError):
                await asyncio.wait_for(
                    self._client.write_gatt_char(uuids.CONTROL_POINT, frame, response=True), 2)
                end = time.monotonic() + 1.0
                while (left := end - time.monotonic()) > 0:
                    data = await asyncio.wait_for(self._frames.get(), left)
                    if data == b"" or isinstance(self._session.receive(data, time.time()),
                                                 CancelSettled):
                        return
        finally:
            self._session.reset()
