"""Relay: one request at a time per module, a bounded queue behind it, nothing dropped.

Every relay request ends in exactly one :class:`RelayResponse`: the module's answer, or an
explicit status (unknown module, queue full, module unreachable, deadline passed, link error,
shutting down). Duplicate deliveries (MQTT QoS 1 redelivers after a reconnect) are recognised by
request id: a request still in progress is not queued twice, a finished one is answered again
with the same response.

While the module asks its owner, its KEEPALIVE status goes to the platform as a
:class:`RelayProgress` (when it changes, else at most once per :data:`PROGRESS_INTERVAL`).
A :class:`RelayCancel` drops a queued request or sends CANCEL to the module for the one in
flight; either way the request is still answered exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ble_profile import KeepaliveStatus
from relay_contract import (
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
)

from . import faults
from .faults import Fault, classify
from .link import (
    DeadlinePassed,
    ExchangeCancelled,
    ExchangeTimings,
    LinkError,
    ModuleUnreachable,
)
from .link_protocol import Link
from .link_report import link_report
from .pairing_guard import BondNotTrusted

__all__ = ["ModuleWorker", "Relay"]

log = logging.getLogger("blegw.relay")

Publish = Callable[[RelayResponse | RelayProgress], Awaitable[None]]
RECENT = 1024
RECENT_FAULTS = 10
PROGRESS_INTERVAL = 1.0
"""Seconds between two progress messages of one request with the same status: a module
sends KEEPALIVE every half second or so, the platform needs to hear it only once in a while."""
PROGRESS_BACKLOG = 256
"""Progress messages waiting to be published; advisory, so beyond this they are dropped."""

L = TypeVar("L", bound=Link)
"""The link type a relay serves: ``ModuleLink`` in the daemon, a fake radio path in tests."""

_OWNER_STATUS = {KeepaliveStatus.PROCESSING: OwnerStatus.PROCESSING,
                 KeepaliveStatus.USER_ACTION_NEEDED: OwnerStatus.AWAITING_OWNER}


@dataclass
class RecentFault:
    """One distinct fault line of ``blegw status``, with how often it came and since when."""

    first_at: float
    last_at: float
    line: str
    count: int = 1


@dataclass
class ModuleWorker(Generic[L]):
    module_id: bytes
    link: L
    """Its ``label`` names the module in log lines and in the recent faults."""
    queue: asyncio.Queue[tuple[RelayRequest, float]]
    task: asyncio.Task[None] | None = None
    current: bytes | None = None
    handled: int = 0
    last_error: str = ""
    """The fault that ended the last failed exchange, cause and advice; cleared on recovery."""
    last_error_code: str = ""
    last_error_detail: str = ""
    """The error as the link reported it (BlueZ's words), beside the plain-language one."""
    last_error_at: float | None = None
    last_seen: float | None = None
    """When the module last answered (wall clock)."""
    outcomes: Counter[str] = field(default_factory=Counter)
    """Answers given, per relay status name (``ok``, ``module_unreachable``...)."""
    last_answer: bytes = b""
    faults: Counter[str] = field(default_factory=Counter)
    """Faults recorded, per fault code (for the metrics)."""
    failures: int = 0
    """Exchanges that ended in an unexpected error (answered LINK_ERROR; the worker went on)."""
    pending_ids: set[bytes] = field(default_factory=set)
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held for each use of the link: a relayed request and an operator's ping never interleave."""
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    """Set to cancel the request in flight (a fresh event for each request)."""
    progress: tuple[OwnerStatus, float] | None = None
    """The last progress forwarded for the request in flight, and when (monotonic)."""


class Relay(Generic[L]):
    def __init__(self, workers: Mapping[bytes, L], publish: Publish, *,
                 queue_size: int = 8) -> None:
        self._publish = publish
        self.workers = {
            mid: ModuleWorker(mid, link, asyncio.Queue(maxsize=queue_size))
            for mid, link in workers.items()}
        self._done: OrderedDict[bytes, RelayResponse] = OrderedDict()
        self._stopping = False
        self._fault_lines: deque[RecentFault] = deque(maxlen=RECENT_FAULTS)
        self._cancelled: OrderedDict[bytes, None] = OrderedDict()
        """Ids cancelled before this gateway saw their request (answered CANCELLED on arrival)."""
        self._progress: asyncio.Queue[RelayProgress] = asyncio.Queue(PROGRESS_BACKLOG)
        self._progress_task: asyncio.Task[None] | None = None
        self.progress_sent = 0
        self.progress_dropped = 0
        self.cancels = 0
        """Cancels received for requests this gateway was serving or had queued."""
        self.central_address: str | None = None
        """The gateway adapter's own address (``link_report.adapter_address``): with it, every
        answer reports the link it came over (relay contract key 7)."""
        self._local: dict[bytes, asyncio.Future[RelayResponse]] = {}
        """Requests from the host's own apps (``blegw code``): answered to their caller, never
        published to the platform."""

    def start(self) -> None:
        for worker in self.workers.values():
            self._start_worker(worker)
        self._progress_task = asyncio.get_running_loop().create_task(
            self._pump_progress(), name="relay:progress")

    async def _pump_progress(self) -> None:
        """Publish progress in order, off the exchange's path (a slow uplink never delays the
        module's answer)."""
        while True:
            progress = await self._progress.get()
            if progress.request_id in self._done:
                continue  # answered meanwhile: progress never follows the answer
            try:
                await self._publish(progress)
            except Exception:  # advisory: a failed progress message is logged, not fatal
                log.exception("progress for request %s not published",
                              progress.request_id.hex())
            else:
                self.progress_sent += 1

    def _keepalive_seen(self, worker: ModuleWorker[L], request_id: bytes) -> Callable[
            [KeepaliveStatus], None]:
        """The link's keepalive callback for one request: queues progress when the status
        changes, else at most once per PROGRESS_INTERVAL; never raises into the link, and
        never reports for a request that is no longer the worker's."""
        def seen(status: KeepaliveStatus) -> None:
            owner = _OWNER_STATUS.get(status)
            # a local request's progress is the host's business, never the platform's
            if owner is None or worker.current != request_id or request_id in self._local:
                return
            now = time.monotonic()
            last = worker.progress
            if last is not None and last[0] is owner and now - last[1] < PROGRESS_INTERVAL:
                return
            worker.progress = (owner, now)
            try:
                self._progress.put_nowait(RelayProgress(request_id, owner))
            except asyncio.QueueFull:
                self.progress_dropped += 1
        return seen

    def _start_worker(self, worker: ModuleWorker[L]) -> None:
        worker.task = asyncio.get_running_loop().create_task(
            self._run(worker), name=f"relay:{worker.link.label}")

    def add_module(self, module_id: bytes, link: L, queue_size: int) -> None:
        """Serve a newly paired module from now on (no restart)."""
        if module_id in self.workers:
            return
        worker = ModuleWorker(module_id, link, asyncio.Queue(maxsize=queue_size))
        self.workers[module_id] = worker
        self._start_worker(worker)

    async def remove_module(self, module_id: bytes) -> None:
        """Stop serving a forgotten module: queued requests are answered UNKNOWN_MODULE."""
        worker = self.workers.pop(module_id, None)
        if worker is None:
            return
        while not worker.queue.empty():
            request, _ = worker.queue.get_nowait()
            await self._finish(RelayResponse(request.request_id, RelayStatus.UNKNOWN_MODULE,
                                             detail="the module was forgotten"))
        if worker.current is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._idle(worker)), 5)
        if worker.task is not None:
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker.task
        await worker.link.close()

    async def submit(self, request: RelayRequest) -> None:
        """Take one request from the uplink; its answer is published, never dropped."""
        received = time.perf_counter()
        done = self._done.get(request.request_id)
        if done is not None:
            log.info("duplicate of finished request %s: answering again",
                     request.request_id.hex())
            await self._publish(done)
            return
        worker = self.workers.get(request.module_id)
        if worker is None:
            await self._finish(RelayResponse(request.request_id, RelayStatus.UNKNOWN_MODULE,
                                             detail="this gateway does not serve that module"))
            return
        if request.request_id in self._cancelled:
            del self._cancelled[request.request_id]
            await self._finish(RelayResponse(request.request_id, RelayStatus.CANCELLED,
                                             detail="cancelled before it arrived"))
            return
        if request.request_id in worker.pending_ids:
            log.info("duplicate of pending request %s ignored", request.request_id.hex())
            return
        if self._stopping:
            await self._finish(RelayResponse(request.request_id, RelayStatus.SHUTTING_DOWN))
            return
        try:
            worker.queue.put_nowait((request, received))
        except asyncio.QueueFull:
            await self._finish(RelayResponse(request.request_id, RelayStatus.QUEUE_FULL,
                                             detail=f"{worker.queue.maxsize} requests queued"))
            return
        worker.pending_ids.add(request.request_id)

    async def cancel(self, cancel: RelayCancel) -> str:
        """Withdraw a request: dropped from its module's queue and answered CANCELLED at once,
        or CANCEL sent to the module if it is in flight (answered when the module stops). A
        request this gateway has not seen yet is answered CANCELLED when it arrives; one
        already answered is left as it is. Returns what was done, for the log."""
        rid = cancel.request_id
        if rid in self._done:
            return "already answered"
        worker = self.workers.get(cancel.module_id)
        if worker is not None and worker.current == rid:
            self.cancels += 1
            worker.cancel.set()
            log.info("module %s: request %s cancelled by the platform: sending CANCEL",
                     worker.link.label, rid.hex())
            return "in flight: CANCEL sent"
        if worker is not None and rid in worker.pending_ids:
            self.cancels += 1
            kept = []
            while not worker.queue.empty():
                item = worker.queue.get_nowait()
                if item[0].request_id != rid:
                    kept.append(item)
            for item in kept:  # same order, nothing awaited in between: no request lost
                worker.queue.put_nowait(item)
            worker.pending_ids.discard(rid)
            worker.outcomes["cancelled"] += 1
            await self._finish(RelayResponse(rid, RelayStatus.CANCELLED,
                                             detail="cancelled while queued"))
            return "dropped from the queue"
        self._cancelled[rid] = None
        while len(self._cancelled) > RECENT:
            self._cancelled.popitem(last=False)
        return "not seen yet: will be answered CANCELLED"

    async def local(self, module_id: bytes, envelope: bytes, deadline: float) -> RelayResponse:
        """Send a request of the host's own app to a module through its worker and queue.

        The same path as the platform's requests: one exchange at a time per module, the same
        bounded queue (QUEUE_FULL when it is full), keepalives and CANCEL at ``deadline``; the
        answer comes back here instead of to the uplink (UNKNOWN_MODULE for a module the relay
        does not serve). Cancelled by its caller (the control client went away), a queued
        request is withdrawn and one in flight is cancelled on the module.
        """
        request = RelayRequest(secrets.token_bytes(16), module_id, envelope, deadline)
        answer: asyncio.Future[RelayResponse] = asyncio.get_running_loop().create_future()
        self._local[request.request_id] = answer
        try:
            await self.submit(request)
            # shielded: cancelling the caller must not cancel the future the worker answers
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            if not answer.done():
                await self.cancel(RelayCancel(request.request_id, module_id))
            raise
        finally:
            if answer.done():  # else the worker's answer still comes, and is dropped here
                self._local.pop(request.request_id, None)

    async def _finish(self, response: RelayResponse) -> None:
        waiter = self._local.pop(response.request_id, None)
        if waiter is not None:  # a local request's answer never goes to the platform
            if not waiter.done():
                waiter.set_result(response)
            return
        self._done[response.request_id] = response
        while len(self._done) > RECENT:
            self._done.popitem(last=False)
        await self._publish(response)

    def is_known(self, request_id: bytes) -> bool:
        """Whether this gateway is serving the request or has answered it recently."""
        return request_id in self._done or any(
            request_id in w.pending_ids or request_id == w.current
            for w in self.workers.values())

    async def answer_malformed(self, request_id: bytes, detail: str) -> bool:
        """Answer a request whose id was readable but whose other fields were not: status 7,
        exactly once. A payload reusing the id of a request this gateway is serving or has
        answered is a duplicate, not a new request: it is not answered (False).

        The answer is not remembered as the id's outcome, so a well-formed request with that id
        arriving later is still served.
        """
        if self.is_known(request_id):
            log.warning("malformed payload reusing request id %s ignored", request_id.hex())
            return False
        await self._publish(RelayResponse(request_id, RelayStatus.MALFORMED_REQUEST,
                                          detail=detail))
        return True

    async def _run(self, worker: ModuleWorker[L]) -> None:
        """Serve one module's queue for ever: whatever one exchange raises, the request gets
        an answer and the worker takes the next (a dead worker would leave its queue stuck)."""
        while True:
            request, received = await worker.queue.get()
            worker.current = request.request_id
            worker.cancel = asyncio.Event()
            worker.progress = None
            try:
                async with worker.busy:
                    response = await self._exchange(worker, request, received)
            except Exception as exc:  # supervised: any failure is this request's LINK_ERROR
                worker.failures += 1
                log.exception("relay worker %s: request %s failed",
                              worker.link.label, request.request_id.hex())
                fault = faults.internal_error(exc)
                self._fault(worker, exc, f"request {request.request_id.hex()[:8]}", fault)
                response = RelayResponse(request.request_id, RelayStatus.LINK_ERROR,
                                         detail=fault.cause)
            finally:
                worker.current = None
                worker.pending_ids.discard(request.request_id)
            worker.handled += 1
            worker.outcomes[response.status.name.lower()] += 1
            await self._finish(response)

    def _fault(self, worker: ModuleWorker[L], error: BaseException, what: str,
               fault: Fault | None = None) -> str:
        """Record and log one fault of ``worker``'s module: one WARNING line with the module
        id, the cause in plain words and the advice. ``fault`` is what the error was, if known
        (else the link's, or ``classify``'s reading of it). Returns the text for the answer."""
        if fault is None:
            fault = (error.fault if isinstance(error, LinkError) and error.fault
                     else classify(error, worker.link.adapter, worker.link.address))
        name = worker.link.label
        worker.last_error, worker.last_error_code = fault.text(), fault.code
        worker.faults[fault.code] += 1
        worker.last_error_at = time.time()
        log.warning("module %s: %s failed: %s. %s", name, what, fault.cause, fault.advice)
        worker.last_error_detail = str(error)
        line = f"module {name}: {fault.code}: {fault.text()}"
        if str(error) and str(error) not in line:
            line += f" ({error})"
        self._note_fault(worker.last_error_at, line)
        return fault.text()

    def _note_fault(self, at: float, line: str) -> None:
        """Keep one line per distinct fault, counted: a module refused on every request (one
        that needs pairing again) would otherwise fill the ten lines ``blegw status`` shows
        with copies and push every other fault out."""
        for seen in self._fault_lines:
            if seen.line == line:
                self._fault_lines.remove(seen)
                seen.count += 1
                seen.last_at = at
                self._fault_lines.append(seen)
                return
        self._fault_lines.append(RecentFault(first_at=at, last_at=at, line=line))

    @property
    def recent_faults(self) -> list[tuple[float, str]]:
        """The last distinct faults of any module, (wall clock of the latest, line), oldest
        first, for ``blegw status``; a repeated one says how often and since when."""
        return [(f.last_at, f.line if f.count == 1 else
                 f"{f.line} [{f.count} times since "
                 f"{time.strftime('%H:%M:%S', time.localtime(f.first_at))}]")
                for f in self._fault_lines]

    def _recovered(self, worker: ModuleWorker[L]) -> None:
        """The module answered again: clear its fault, say so once at INFO."""
        worker.last_seen = time.time()
        if worker.last_error:
            log.info("module %s: recovered (was: %s)", worker.link.label,
                     worker.last_error_code or worker.last_error)
            worker.last_error, worker.last_error_code = "", ""
            worker.last_error_detail, worker.last_error_at = "", None

    async def _exchange(self, worker: ModuleWorker[L], request: RelayRequest,
                        received: float) -> RelayResponse:
        rid = request.request_id
        if time.time() >= request.deadline:
            return RelayResponse(rid, RelayStatus.DEADLINE_PASSED,
                                 detail="the deadline passed while queued")
        started = time.perf_counter()
        try:
            answer, timings = await worker.link.exchange(
                request.envelope, request.deadline,
                on_keepalive=self._keepalive_seen(worker, rid), cancel=worker.cancel)
        except ExchangeCancelled as exc:
            # The platform withdrew the request: an outcome, not a fault of the link.
            log.info("module %s: request %s: %s", worker.link.label, rid.hex(), exc)
            return RelayResponse(rid, RelayStatus.CANCELLED, detail=str(exc))
        except DeadlinePassed as exc:
            # The owner did not decide in time: an outcome, not a fault of the link.
            log.info("module %s: request %s: %s", worker.link.label, rid.hex(), exc)
            return RelayResponse(rid, RelayStatus.DEADLINE_PASSED, detail=str(exc))
        except BondNotTrusted as exc:
            detail = self._fault(worker, exc, f"request {rid.hex()[:8]}")
            return RelayResponse(rid, RelayStatus.NEEDS_RE_PAIRING, detail=detail)
        except ModuleUnreachable as exc:
            detail = self._fault(worker, exc, f"request {rid.hex()[:8]}")
            return RelayResponse(rid, RelayStatus.MODULE_UNREACHABLE, detail=detail)
        except LinkError as exc:
            detail = self._fault(worker, exc, f"request {rid.hex()[:8]}")
            return RelayResponse(rid, RelayStatus.LINK_ERROR, detail=detail)
        self._recovered(worker)
        worker.last_answer = answer
        own = (started - received) + (time.perf_counter() - started) - timings.radio \
            - timings.connect
        return RelayResponse(rid, RelayStatus.OK, answer, timings={
            "queue": started - received, "connect": timings.connect, "ble": timings.radio,
            "gateway_own": max(own, 0.0)},
            link=link_report(worker.link.address, self.central_address))

    async def ping(self, module_id: bytes, timeout: float = 15.0) -> ExchangeTimings:
        """PING a module over its link, between relayed requests (never during one).

        Raises KeyError for a module not in the relay and LinkError when the module cannot be
        reached or does not echo within ``timeout`` (waiting for a request in flight included).
        """
        worker = self.workers[module_id]
        deadline = time.time() + timeout
        try:
            await asyncio.wait_for(worker.busy.acquire(), timeout)
        except TimeoutError:
            raise LinkError("the module stayed busy with relayed requests") from None
        try:
            timings = await worker.link.ping(max(deadline - time.time(), 0.5))
        except LinkError as exc:
            self._fault(worker, exc, "ping")
            raise
        else:
            self._recovered(worker)
            return timings
        finally:
            worker.busy.release()

    async def stop(self) -> None:
        """Answer everything still queued as SHUTTING_DOWN; let the in-flight one finish briefly."""
        self._stopping = True
        if self._progress_task is not None:
            self._progress_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._progress_task
            self._progress_task = None
        for worker in self.workers.values():
            while not worker.queue.empty():
                request, _ = worker.queue.get_nowait()
                worker.pending_ids.discard(request.request_id)
                await self._finish(RelayResponse(request.request_id, RelayStatus.SHUTTING_DOWN,
                                                 detail="the gateway is stopping"))
        for worker in self.workers.values():
            if worker.task is None:
                continue
            if worker.current is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._idle(worker)), 5)
            current = worker.current
            worker.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker.task
            if current is not None and current not in self._done:
                await self._finish(RelayResponse(current, RelayStatus.SHUTTING_DOWN,
                                                 detail="the gateway stopped mid-exchange"))
            await worker.link.close()

    @staticmethod
    async def _idle(worker: ModuleWorker[L]) -> None:
        while worker.current is not None:  # noqa: ASYNC110 - polled only during shutdown
            await asyncio.sleep(0.02)
