"""The daemon's numbers in the Prometheus text format, for a scraper (off by default).

``prometheus-client`` serves them from its own thread (``start_http_server``); what a scrape
reads is taken on the event loop (a snapshot handed over with ``run_coroutine_threadsafe``), so
the server thread never walks the daemon's structures while the loop changes them. Only the
latency histogram is kept here; everything else is read from the daemon's own counters at
scrape time, so the endpoint and ``blegw status`` cannot disagree.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .service import GatewayService

__all__ = ["LINK_STATES", "Metrics"]

log = logging.getLogger("blegw.metrics")

LINK_STATES = ("connected", "idle", "failing", "needs_re_pairing")
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
"""Seconds from a request's arrival to its answer: a relay of tens of ms, a person deciding
in seconds, a deadline of minutes."""
SNAPSHOT_TIMEOUT = 2.0


class _Snapshot(Collector):
    """Reads the daemon's counters on its loop at each scrape."""

    def __init__(self, service: GatewayService, loop: asyncio.AbstractEventLoop) -> None:
        self._service = service
        self._loop = loop

    def collect(self) -> Iterable[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._take(), self._loop)
        try:
            families: list[Metric] = future.result(SNAPSHOT_TIMEOUT)
        except Exception:  # the loop is busy or stopping: scrape the histogram only
            future.cancel()
            log.warning("metrics: the daemon did not hand over its numbers in time")
            return []
        return families

    async def _take(self) -> list[Metric]:
        from .service import link_state

        s = self._service
        answers = CounterMetricFamily("blegw_requests", "Relay requests answered, by outcome",
                                      labels=["outcome"])
        for outcome, count in sorted(s.answers.items()):
            answers.add_metric([outcome], count)
        malformed = CounterMetricFamily("blegw_malformed_requests",
                                        "Relay requests refused before reaching the relay")
        malformed.add_metric([], s.malformed)
        attempts = CounterMetricFamily("blegw_connect_attempts",
                                       "BLE connection attempts, per module", labels=["module"])
        retries = CounterMetricFamily("blegw_connect_retries",
                                      "Connection attempts that failed transiently and were "
                                      "retried, per module", labels=["module"])
        faults = CounterMetricFamily("blegw_faults", "Faults of a module's link, per class",
                                     labels=["module", "fault"])
        state = GaugeMetricFamily("blegw_module_link_state", "1 for the state a module's link "
                                  "is in", labels=["module", "state"])
        queue = GaugeMetricFamily("blegw_queue_depth", "Requests waiting for a module",
                                  labels=["module"])
        bonds = GaugeMetricFamily("blegw_module_needs_re_pairing", "1 while the module's bond "
                                  "is lost or was replaced", labels=["module"])
        for module_id, worker in s.relay.workers.items():
            name = module_id.hex()[:8]
            link = worker.link
            attempts.add_metric([name], getattr(link, "connect_attempts", 0))
            retries.add_metric([name], link.connect_retries)
            # a request's faults and those the keeper met with no request in flight
            for code, count in sorted((worker.faults + link.background_faults).items()):
                faults.add_metric([name, code], count)
            record = s.guard.records.get(module_id)
            current = link_state(worker, record)
            for each in LINK_STATES:
                state.add_metric([name, each], 1.0 if each == current else 0.0)
            queue.add_metric([name], worker.queue.qsize())
            bonds.add_metric([name], 1.0 if record and record.needs_re_pairing else 0.0)
        refusals = CounterMetricFamily("blegw_pairing_refusals",
                                       "Pairings the daemon's agent refused")
        refusals.add_metric([], s.guard.refusals)
        uplink = GaugeMetricFamily("blegw_uplink_connected", "1 while connected to the broker")
        uplink.add_metric([], 1.0 if s.connected.is_set() else 0.0)
        outbox = GaugeMetricFamily("blegw_outbox", "Answers waiting for the broker")
        outbox.add_metric([], s.outbox.qsize())
        return [answers, malformed, attempts, retries, faults, state, queue, bonds, refusals,
                uplink, outbox]


class Metrics:
    """The endpoint's lifetime: started by the daemon when configured, stopped with it."""

    def __init__(self, service: GatewayService) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram("blegw_request_latency_seconds",
                                 "From a relay request's arrival to its answer",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self._service = service
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None

    def observe_latency(self, seconds: float) -> None:
        self.latency.observe(seconds)

    async def start(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        host = re.sub(r"^\[(.*)\]$", r"\1", host)
        self.registry.register(_Snapshot(self._service, asyncio.get_running_loop()))
        server, thread = await asyncio.to_thread(start_http_server, int(port), host,
                                                 self.registry)
        self._server, self._thread = server, thread
        bound: Any = server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        log.info("metrics: Prometheus endpoint on http://%s/metrics", listen)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5)
