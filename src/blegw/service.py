"""The gateway daemon: MQTT uplink (aiomqtt) + relay + BLE links, with a clean lifecycle.

* A persistent MQTT session (fixed client id, clean_session false, QoS 1 both ways) so requests
  published while the gateway is away are delivered when it comes back.
* A retained ``online`` status, and a last will that says ``offline`` if the gateway dies.
* Reconnects with exponential backoff and jitter; the broker may restart at any time.
* Answers wait in an outbox until the broker has them: nothing is lost while disconnected.
* SIGTERM: stop taking requests, answer the queued ones as SHUTTING_DOWN, let the in-flight one
  finish (bounded), flush the outbox, publish ``offline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import socket
import time
from collections import Counter, OrderedDict, deque
from pathlib import Path
from typing import Any

import aiomqtt

from bluez_pairing import AgentError
from e2e import ConfirmationResponse, E2EError, MalformedMessage, decode_envelope
from relay_contract import (
    MAX_PAYLOAD,
    MalformedRelayMessage,
    RelayCancel,
    RelayProgress,
    RelayResponse,
    decode_from_platform,
    topic,
)

from .code_notices import CodeNotices, NoticeRefused
from .config import GatewayConfig
from .guarded_link import GuardedLink
from .link import LinkError, ModuleLink, keep_links_up
from .link_report import adapter_address
from .metrics import Metrics
from .pairing_guard import BondRecord, PairingGuard
from .registry import Registry, RegistryEntry, RegistryError, is_address
from .relay import RECENT_FAULTS, ModuleWorker, Relay
from .sdnotify import Notifier

# Small QoS 1 packets must not wait for Nagle's algorithm and the peer's delayed ACK (about
# 40 ms per hop on Linux): send them at once.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)

__all__ = ["GatewayService", "backoff"]

log = logging.getLogger("blegw")

BACKOFF_BASE, BACKOFF_CAP = 0.25, 10.0
MAX_QUEUED_INCOMING = 256
"""MQTT messages aiomqtt holds before the reader takes them: with the broker's own message size
limit this bounds the memory a flood of requests can take (the reader drains the queue quickly:
it decodes and enqueues, it never waits for a module)."""
CONTROL_LINE_LIMIT = 4096
"""Longest control request line; a longer one is answered with an error, not read into memory."""
MAX_TIMED = 4096
"""Requests whose arrival time is kept for the latency metric (each is answered, so this only
bounds memory if answers stop coming)."""
REGISTRY_POLL = 1.0
"""Seconds between checks of the registry file for pairings made by the CLI."""


def backoff(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before reconnect ``attempt`` (0-based): exponential, capped, jittered."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)
    return (rng or random).uniform(ceiling / 2, ceiling)


class GatewayService:
    def __init__(self, config: GatewayConfig, *, pairing_agent: bool = True) -> None:
        """``pairing_agent=False`` only for a rig that runs a module in the daemon's own
        process: BlueZ (and the virtual one) picks an agent by process, so the daemon's would
        answer the module's pairings too."""
        self.config = config
        self.pairing_agent = pairing_agent
        self.outbox: asyncio.Queue[RelayResponse | RelayProgress] = asyncio.Queue()
        self.guard = PairingGuard(config.adapter,
                                  Path(config.registry).with_name("bond-marks.json"))
        """The daemon's pairing agent and bond watch (pairing_guard)."""
        self.answers: Counter[str] = Counter()
        """Relay answers published, per status name (every request ends in exactly one)."""
        self._received: OrderedDict[bytes, float] = OrderedDict()
        """When each request still waiting for its answer arrived (for the latency metric)."""
        self.metrics: Metrics | None = None
        links = {m.module_id: self._link(m.module_id, m.address) for m in config.modules}
        self.relay: Relay[ModuleLink] = Relay(links, self._enqueue,
                                              queue_size=config.queue_size)
        self.connected = asyncio.Event()
        self.malformed = 0
        """Relay requests refused before reaching the relay (unreadable, oversized, bad field)."""
        self.oversized = 0
        self.reader_errors = 0
        """Unexpected failures while handling one incoming message (logged; reading went on)."""
        self.control_errors = 0
        self.notices = CodeNotices()
        """How the platform said this gateway's sides' transaction codes ended (code_notices)."""
        self._stop = asyncio.Event()
        self.notifier = Notifier()
        self._watchdog: asyncio.Task[None] | None = None
        self.registry = Registry(Path(config.registry))
        self._registry_mtime = -1.0
        self._registry_ids: set[bytes] = set()
        self._kinds: dict[bytes, str] = {}
        """Module or card, per registry entry (``blegw status``); a configured one is a module."""
        self._registry_lock = asyncio.Lock()
        self._errors: deque[tuple[float, str]] = deque(maxlen=RECENT_FAULTS)
        self._helpers: list[asyncio.Task[None]] = []
        self._control: asyncio.AbstractServer | None = None

    def _link(self, module_id: bytes, address: str) -> GuardedLink:
        """The BLE link to one module, used only over the bond the registry recorded; its log
        lines, and the relay's, name the module by the first 8 hex digits of its id."""
        link = GuardedLink(address, self.config.adapter, guard=self.guard,
                           module_id=module_id, connect_timeout=self.config.connect_timeout,
                           label=module_id.hex()[:8])
        link.on_background_fault = lambda fault, detail: self._errors.append(
            (time.time(), f"module {link.label}: {fault.code}: {fault.text()} ({detail})"))
        return link

    async def _enqueue(self, response: RelayResponse | RelayProgress) -> None:
        if isinstance(response, RelayResponse):
            self.answers[response.status.name.lower()] += 1
            received = self._received.pop(response.request_id, None)
            if received is not None and self.metrics is not None:
                self.metrics.observe_latency(time.perf_counter() - received)
        await self.outbox.put(response)

    def stop(self) -> None:
        if not self._stop.is_set():
            self.notifier.stopping()
        self._stop.set()

    async def _pet_watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    def _client(self) -> aiomqtt.Client:
        """This gateway's broker session: its own account and TLS when configured.

        The client id ``blegw-G`` names the persistent session on a broker without accounts;
        the shipped broker replaces it with the user name (``use_username_as_clientid``), so
        no other account can take the session over.
        """
        cfg = self.config
        mqtt = cfg.mqtt
        return aiomqtt.Client(
            mqtt.host, mqtt.port, identifier=f"blegw-{cfg.gateway_id}",
            clean_session=False, username=mqtt.username, password=mqtt.password,
            tls_params=mqtt.tls_params(),
            will=aiomqtt.Will(topic(cfg.gateway_id, "status"), b"offline", qos=1, retain=True),
            keepalive=15, timeout=10, socket_options=NO_DELAY,
            max_queued_incoming_messages=MAX_QUEUED_INCOMING)

    async def _sync_registry(self, *, force: bool = False) -> None:
        """Serve what the registry lists now: add new modules, drop forgotten ones.

        The watcher calls this every second; ``blegw pair`` and ``forget`` ask for it at once
        (``force``) over the control socket, so a payment right after pairing finds the module.
        """
        async with self._registry_lock:
            mtime = await asyncio.to_thread(self.registry.mtime)
            if mtime == self._registry_mtime and not force:
                return
            try:
                entries = await asyncio.to_thread(self.registry.load)
            except RegistryError as exc:
                self._error(f"registry: {exc}")
                return
            self._registry_mtime = mtime
            wanted = {bytes.fromhex(e.module_id): e for e in entries}
            self._kinds = {module_id: e.kind for module_id, e in wanted.items()}
            static = {m.module_id for m in self.config.modules}
            for module_id, entry in wanted.items():
                self._track(module_id, entry)
                if module_id not in self.relay.workers:
                    log.info("registry: now serving module %s (%s)", entry.module_id, entry.name)
                    self.relay.add_module(module_id, self._link(module_id, entry.address),
                                          self.config.queue_size)
            for module_id in self._registry_ids - set(wanted) - static:
                log.info("registry: module %s forgotten", module_id.hex())
                await self.relay.remove_module(module_id)
                self.guard.untrack(module_id)
            self._registry_ids = set(wanted)

    def _track(self, module_id: bytes, entry: RegistryEntry) -> None:
        """Tell the guard which bond the registry records for a module (a new pairing clears
        its needs-re-pairing mark)."""
        self.guard.track(module_id, entry.address, entry.bond, entry.account, entry.paired_at)

    async def _watch_registry(self) -> None:
        while True:
            await self._sync_registry()
            await asyncio.sleep(REGISTRY_POLL)

    def _error(self, text: str) -> None:
        log.error("%s", text)
        self._errors.append((time.time(), text))

    def _last_errors(self) -> list[str]:
        """The last ten errors of the daemon and of every module's link, oldest first, each
        with its local time: what an operator reads first in ``blegw status``."""
        merged = sorted([*self._errors, *self.relay.recent_faults])[-RECENT_FAULTS:]
        return [f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(at))} {text}"
                for at, text in merged]

    async def _serve_control(self) -> None:
        """A Unix socket only the service's user can open: one JSON request per line."""
        path = Path(self.config.control_socket)
        await asyncio.to_thread(_clear_socket_path, path)
        old = os.umask(0o177)
        try:
            self._control = await asyncio.start_unix_server(self._control_client, path=path,
                                                            limit=CONTROL_LINE_LIMIT)
        finally:
            os.umask(old)

    async def _control_answer(self, request: Any,
                              reader: asyncio.StreamReader | None = None) -> dict[str, Any]:
        """One control request: {"cmd": "status" | "reload"}, {"cmd": "ping", "module": HEX},
        or a local signing request ``code`` / ``countersign`` (``local_codes``)."""
        cmd = request.get("cmd") if isinstance(request, dict) else None
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "reload":
            await self._sync_registry(force=True)
            return {"ok": True, "modules": sorted(m.hex() for m in self.relay.workers)}
        if cmd == "pairing":
            return await self._pairing(request)
        if cmd == "ping":
            try:
                module_id = bytes.fromhex(str(request.get("module", "")))
            except ValueError:
                return {"ok": False, "error": "module: expected the module id in hex"}
            if module_id not in self.relay.workers:
                return {"ok": False, "error": f"module {module_id.hex()} is not in the registry"}
            try:
                timings = await self.relay.ping(module_id)
            except LinkError as exc:
                return {"ok": False, "error": str(exc)}
            return {"ok": True, "connect": timings.connect, "round_trip": timings.radio}
        if cmd == "code_outcome":
            return await self.notices.answer(request)
        if cmd in ("code", "countersign"):
            from . import local_codes  # loads the code stack only when a code is asked for

            return await local_codes.answer(request, self.relay, reader)
        if cmd in ("dynamic_offer", "dynamic_pay", "dynamic_accept"):
            from . import local_dynamic_codes  # the dynamic-code stack, only when asked for

            return await local_dynamic_codes.answer(request, self.relay, reader)
        return {"ok": False, "error": 'unknown request; send {"cmd": "status"}, '
                                      '{"cmd": "reload"}, {"cmd": "ping", "module": HEX}, '
                                      '{"cmd": "pairing", "address": A, "on": true|false}, '
                                      '{"cmd": "code", ...}, {"cmd": "countersign", ...} or '
                                      '{"cmd": "code_outcome", "code_id": HEX, "wait": S}'}

    async def _pairing(self, request: dict[str, Any]) -> dict[str, Any]:
        """``blegw pair`` announces the bond it is about to make (``on``), or that it gave up:
        the bond change it causes is then not taken for a downgrade, and the daemon drops its
        own link to that module so the pairing has the device to itself."""
        address, on = request.get("address"), request.get("on")
        if not is_address(address) or not isinstance(on, bool):
            return {"ok": False, "error": "pairing: expected an address AA:BB:CC:DD:EE:FF "
                                          "and on: true or false"}
        assert isinstance(address, str)
        needs = self.guard.announce(address, on)
        if on:
            for worker in self.relay.workers.values():
                if worker.link.address == address:
                    await _close_when_idle(worker)
        return {"ok": True, "needs_re_pairing": needs}

    async def _control_client(self, reader: asyncio.StreamReader,
                              writer: asyncio.StreamWriter) -> None:
        """One control connection: a bounded line in, one JSON answer out, whatever arrives."""
        try:
            answer = await self._control_line(reader)
            writer.write(json.dumps(answer).encode() + b"\n")
            await asyncio.wait_for(writer.drain(), 5)
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _control_line(self, reader: asyncio.StreamReader) -> dict[str, Any]:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
        except ValueError:  # asyncio.LimitOverrunError is wrapped in ValueError by readline()
            self.control_errors += 1
            return {"ok": False, "error": f"request longer than {CONTROL_LINE_LIMIT} bytes"}
        try:
            request = json.loads(line or b"{}")
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested too deep
            self.control_errors += 1
            return {"ok": False, "error": "the request is not one line of JSON"}
        try:
            return await self._control_answer(request, reader)
        except Exception as exc:  # supervised: the socket keeps serving the next client
            self.control_errors += 1
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error ({type(exc).__name__})"}

    async def run(self) -> None:
        if self.pairing_agent:
            try:
                await self.guard.start()
            except (AgentError, OSError, EOFError, TimeoutError) as exc:
                # Without its agent BlueZ would answer pairings the gateway did not start.
                log.error("cannot register the daemon's pairing agent with BlueZ: %s; not "
                          "starting", exc)
                raise SystemExit(1) from exc
        try:
            await self._run()
        finally:
            await self.guard.stop()
            if self.metrics is not None:
                await self.metrics.stop()

    async def _run(self) -> None:
        await self.guard.load_marks()
        await self._sync_registry()
        self.relay.central_address = await adapter_address(self.config.adapter)
        for m in self.config.modules:
            self.guard.track(m.module_id, m.address, "unknown", "", 0.0, registered=False)
        self.relay.start()
        await self._serve_control()
        if self.config.metrics_listen:
            self.metrics = Metrics(self)
            await self.metrics.start(self.config.metrics_listen)
        self._helpers.append(asyncio.create_task(self._watch_registry(), name="registry"))
        if self.config.keep_links_up:
            # Stopping, it keeps nothing up: the relay closes the links. A module that needs
            # re-pairing is not kept up either: nothing may use its link.
            self._helpers.append(asyncio.create_task(keep_links_up(
                lambda: [] if self._stop.is_set() else
                [w.link for w in self.relay.workers.values()
                 if not self.guard.needs_re_pairing(w.module_id)]), name="keep-links-up"))
        if self.notifier.watchdog_interval is not None:
            self._watchdog = asyncio.create_task(
                self._pet_watchdog(self.notifier.watchdog_interval), name="watchdog")
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    async with self._client() as client:
                        attempt = 0
                        await self._session(client)
                        return
                except aiomqtt.MqttError as exc:
                    self.connected.clear()
                    self.notifier.status(f"broker unreachable: {exc}; retrying")
                    delay = backoff(attempt)
                    attempt += 1
                    log.warning("MQTT: %s; reconnecting in %.2f s", exc, delay)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), delay)
            # Stopped while disconnected: still answer what is queued, if the broker is back.
            await self.relay.stop()
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    async with self._client() as client:
                        await self._flush(client)
                        await self._publish_status(client, "offline")
        finally:
            self.connected.clear()
            if self._watchdog is not None:
                self._watchdog.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._watchdog
            for task in self._helpers:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._control is not None:
                self._control.close()
                await self._control.wait_closed()
                await asyncio.to_thread(_clear_socket_path, Path(self.config.control_socket))
            self.notifier.close()

    async def _publish_status(self, client: aiomqtt.Client, state: str) -> None:
        await client.publish(topic(self.config.gateway_id, "status"), state.encode(), qos=1,
                             retain=True)

    async def _session(self, client: aiomqtt.Client) -> None:
        gw = self.config.gateway_id
        await client.subscribe(topic(gw, "req"), qos=1)
        await client.subscribe(topic(gw, "note"), qos=1)
        await self._publish_status(client, "online")
        self.connected.set()
        # READY only now: the uplink is up and the module registry is loaded (systemd orders
        # dependants on it). Sent again after a reconnect; systemd ignores repeats.
        self.notifier.ready(f"online; {len(self.relay.workers)} module(s)")
        log.info("gateway %s online", gw)
        reader = asyncio.create_task(self._read(client), name="mqtt-reader")
        writer = asyncio.create_task(self._write(client), name="mqtt-writer")
        stopper = asyncio.create_task(self._stop.wait(), name="stop-wait")
        done, _ = await asyncio.wait({reader, writer, stopper},
                                     return_when=asyncio.FIRST_COMPLETED)
        reader.cancel()
        if stopper in done:
            await self.relay.stop()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            await self._flush(client)
            await self._publish_status(client, "offline")
            return
        stopper.cancel()
        writer.cancel()
        for task in (reader, writer):
            with contextlib.suppress(asyncio.CancelledError):
                exc = task.exception() if task.done() and not task.cancelled() else None
                if exc is not None:
                    raise exc

    async def _read(self, client: aiomqtt.Client) -> None:
        """Read requests for ever: no payload, however hostile, ends this task."""
        note = topic(self.config.gateway_id, "note")
        async for message in client.messages:
            try:
                if message.topic.value == note:
                    self._on_notice(message.payload)
                    continue
                await self._on_request(message.payload)
            except Exception:  # supervised: log, count, take the next message
                self.reader_errors += 1
                log.exception("relay request (mid %s) failed", message.mid)

    def _on_notice(self, payload: object) -> None:
        """One payload from the ``note`` topic: a code notice kept for local callers; anything
        else is logged and counted (``blegw status``: ``refused_notices``)."""
        try:
            self.notices.receive(payload)
        except NoticeRefused as exc:
            self._error(f"code notice refused ({exc.code}): {exc}")

    async def _on_request(self, payload: object) -> None:
        """One payload from the ``req`` topic: refused unread if oversized; answered status 7
        if its request id is readable but the rest is not; otherwise given to the relay (a
        request to serve, or a cancel of one)."""
        if not isinstance(payload, bytes | bytearray):
            self.malformed += 1
            log.error("relay request that is not bytes dropped")
            return
        if len(payload) > MAX_PAYLOAD:
            self.malformed += 1
            self.oversized += 1
            self._error(f"relay request of {len(payload)} bytes refused unread "
                        f"(limit {MAX_PAYLOAD}; no request id to answer)")
            return
        try:
            request = decode_from_platform(bytes(payload))
        except MalformedRelayMessage as exc:
            self.malformed += 1
            if exc.request_id is None:
                log.error("malformed relay request dropped (no request id to answer): %s", exc)
                return
            log.error("malformed relay request %s: %s", exc.request_id.hex(), exc)
            await self.relay.answer_malformed(exc.request_id, f"malformed request: {exc}")
            return
        except MalformedMessage as exc:
            self.malformed += 1
            log.error("malformed relay request dropped (no request id to answer): %s", exc)
            return
        if isinstance(request, RelayCancel):
            done = await self.relay.cancel(request)
            log.info("cancel of request %s: %s", request.request_id.hex(), done)
            return
        if request.request_id not in self._received:
            self._received[request.request_id] = time.perf_counter()
            while len(self._received) > MAX_TIMED:
                self._received.popitem(last=False)
        await self.relay.submit(request)

    async def _write(self, client: aiomqtt.Client) -> None:
        while True:
            response = await self.outbox.get()
            await self._publish_kept(client, response)

    async def _publish_kept(self, client: aiomqtt.Client,
                            response: RelayResponse | RelayProgress) -> None:
        """Publish one answer; until the broker has acknowledged it, it stays ours.

        A failed publish, and also one cancelled while it waits for the PUBACK (the session
        ends when the reader sees the connection drop), puts the answer back in the outbox for
        the next connection: QoS 1 may deliver it twice (the platform ignores the second), but
        it is never dropped.
        """
        try:
            await client.publish(topic(self.config.gateway_id, "resp"), response.encode(),
                                 qos=1)
        except BaseException:
            self.outbox.put_nowait(response)
            raise

    async def _flush(self, client: aiomqtt.Client) -> None:
        while not self.outbox.empty():
            await self._publish_kept(client, self.outbox.get_nowait())

    def status(self) -> dict[str, Any]:
        return {
            "gateway": self.config.gateway_id,
            "uplink": "connected" if self.connected.is_set() else "disconnected",
            "outbox": self.outbox.qsize(),
            "malformed_requests": self.malformed,
            "oversized_requests": self.oversized,
            "reader_errors": self.reader_errors,
            "control_errors": self.control_errors,
            "refused_notices": self.notices.refused,
            "last_errors": self._last_errors(),
            "pairing_refusals": self.guard.refusals,
            "relay": {"cancels": self.relay.cancels, "progress_sent": self.relay.progress_sent,
                      "progress_dropped": self.relay.progress_dropped},
            "modules": [{**_module_status(w, self.guard.records.get(w.module_id)),
                         "kind": self._kinds.get(w.module_id, "module")}
                        for w in self.relay.workers.values()],
            "time": time.time(),
        }


def link_state(w: ModuleWorker[ModuleLink], bond: BondRecord | None) -> str:
    """One word for the module's link: needs_re_pairing, connected, failing or idle."""
    if bond is not None and bond.needs_re_pairing:
        return "needs_re_pairing"
    if w.link.connected:
        return "connected"
    return "failing" if w.last_error or w.link.background_fault else "idle"


def _module_status(w: ModuleWorker[ModuleLink], bond: BondRecord | None) -> dict[str, Any]:
    """One module in ``blegw status``: link state, bond and whether it needs pairing again
    (with the command), last seen, RSSI, the fault in force (cause and advice, with its time;
    cleared when the module answers again), answers per outcome."""
    state = link_state(w, bond)
    error = (w.last_error, w.last_error_code, w.last_error_at, w.last_error_detail)
    kept = w.link.background_fault
    if not w.last_error and kept is not None:  # met by the keeper, no request in flight
        error = (kept.text(), kept.code, w.link.background_fault_at, w.link.background_detail)
    return {"module_id": w.module_id.hex(), "link": state, "connected": w.link.connected,
            "address": w.link.address,
            "bond": bond.strength if bond is not None else "unknown",
            "needs_re_pairing": bool(bond and bond.needs_re_pairing),
            "re_pair_reason": (bond.needs_re_pairing or None) if bond else None,
            "re_pair_command": bond.command if bond and bond.needs_re_pairing else None,
            "rssi": bond.rssi if bond else None, "rssi_at": bond.rssi_at if bond else None,
            "queue": w.queue.qsize(), "in_flight": w.current is not None,
            "handled": w.handled, "failures": w.failures,
            "last_error": error[0] or None, "last_error_code": error[1] or None,
            "last_error_at": error[2], "last_error_detail": error[3] or None,
            "last_seen": w.last_seen,
            "connect_retries": w.link.connect_retries, "outcomes": dict(w.outcomes),
            "counter": _counter(w.last_answer)}


def _counter(answer: bytes) -> int | None:
    """The module's signature counter in its last answer (public data; None if unreadable)."""
    if not answer:
        return None
    try:
        message = decode_envelope(answer)
    except E2EError:
        return None
    return message.counter if isinstance(message, ConfirmationResponse) else None


async def _close_when_idle(worker: ModuleWorker[ModuleLink], wait: float = 2.0) -> None:
    """Drop the worker's link between uses (a request in flight keeps it: pairing then waits
    for BlueZ, which serves one operation on a device at a time)."""
    try:
        await asyncio.wait_for(worker.busy.acquire(), wait)
    except TimeoutError:
        return
    try:
        await worker.link.close()
    finally:
        worker.busy.release()


def _clear_socket_path(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def status_json(service: GatewayService) -> str:
    return json.dumps(service.status())
