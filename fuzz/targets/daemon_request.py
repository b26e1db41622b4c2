"""The daemon's request path: MQTT payload -> ``GatewayService._read`` -> ``Relay.submit``.

The real service reader and the real relay run; only the BLE link is replaced, by a recorder that
answers at once (the radio is what cannot run here). The contract promises exactly one response
per request whose id can be read, so after each input the harness counts the responses published
for that id (an id the gateway already answered may get one or none: see
``Relay.answer_malformed``; a well-formed cancel gets none, its request is answered).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import aiomqtt

from blegw.config import GatewayConfig, ModuleEntry
from blegw.link import ExchangeTimings, ModuleLink
from blegw.link_protocol import KeepaliveSeen
from blegw.relay import Relay
from blegw.service import GatewayService
from e2e.errors import MalformedMessage
from relay_contract import (
    MAX_PAYLOAD,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    decode_from_platform,
)
from relay_contract.messages import readable_request_id

from ..engine import FuzzOracleError, Target
from ._samples import FAR_FUTURE, envelopes

MODULE_ID = b"\x33" * 16
ANSWER = envelopes()[1]


class RecordingLink(ModuleLink):
    """Stands in for the BLE link: records what would be sent and answers at once."""

    def __init__(self) -> None:
        super().__init__("00:00:00:00:00:33", "hci0")
        self.sent: list[bytes] = []

    async def exchange(self, envelope: bytes, deadline: float, *,
                       on_keepalive: KeepaliveSeen | None = None,
                       cancel: asyncio.Event | None = None
                       ) -> tuple[bytes, ExchangeTimings]:
        self.sent.append(envelope)
        return ANSWER, ExchangeTimings()

    async def close(self) -> None:
        return None


@dataclass
class _Topic:
    value: str = "blegw/v1/gw/gw-fuzz/req"


@dataclass
class _Message:
    payload: Any
    mid: int = 1
    topic: _Topic = field(default_factory=_Topic)


class _Client:
    """What ``_read`` uses of an aiomqtt client: the stream of received messages."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    @property
    def messages(self) -> AsyncIterator[_Message]:
        async def one() -> AsyncIterator[_Message]:
            yield _Message(self._payload)
        return one()


_loop = asyncio.new_event_loop()
_dir = Path(tempfile.mkdtemp(prefix="daemon-"))  # in the engine's scratch directory
_service = GatewayService(GatewayConfig(
    gateway_id="gw-fuzz", modules=(ModuleEntry(MODULE_ID, "00:00:00:00:00:33"),),
    registry=str(_dir / "registry.json"), control_socket=str(_dir / "control.sock")))
_link = RecordingLink()


async def _setup() -> None:
    _service.relay = Relay({MODULE_ID: _link}, _service._enqueue)
    _service.relay.start()


_loop.run_until_complete(_setup())


def readable_id(data: bytes) -> bytes | None:
    """The request id the gateway can answer: what the contract reads (key 1 of the map, 16
    bytes) from a payload within the size limit; an oversized one is refused unread."""
    return readable_request_id(data) if len(data) <= MAX_PAYLOAD else None


def is_cancel(data: bytes) -> bool:
    """Whether the gateway takes ``data`` as a well-formed cancel: a cancel is not answered
    itself (the request it withdraws is, once)."""
    try:
        return len(data) <= MAX_PAYLOAD and isinstance(decode_from_platform(data), RelayCancel)
    except MalformedMessage:
        return False


async def _run(data: bytes) -> list[RelayResponse | RelayProgress]:
    await asyncio.wait_for(_service._read(cast(aiomqtt.Client, _Client(data))), 1.0)
    relay = _service.relay
    for _ in range(200):
        if all(w.queue.empty() and w.current is None for w in relay.workers.values()):
            break
        await asyncio.sleep(0)
    out = []
    while not _service.outbox.empty():
        out.append(_service.outbox.get_nowait())
    return out


def one_input(data: bytes) -> None:
    rid = readable_id(data)
    duplicate = rid is not None and _service.relay.is_known(rid)
    responses = _loop.run_until_complete(_run(data))
    if rid is not None:
        count = sum(r.request_id == rid for r in responses)
        # A new id gets exactly one answer. An id already answered may be answered again (a
        # redelivered request) or not (a malformed payload reusing it), never twice.
        if count > 1 or (count == 0 and not duplicate and not is_cancel(data)):
            raise FuzzOracleError(f"request {rid.hex()} got {count} responses, not exactly one")
    for worker in _service.relay.workers.values():
        if worker.task is None or worker.task.done():
            raise FuzzOracleError("a relay worker stopped")


def seeds() -> list[bytes]:
    return [RelayRequest(b"\x11" * 16, MODULE_ID, envelopes()[0], float(FAR_FUTURE)).encode(),
            RelayRequest(b"\x12" * 16, b"\x44" * 16, envelopes()[0], float(FAR_FUTURE)).encode(),
            RelayRequest(b"\x13" * 16, MODULE_ID, envelopes()[0], 1.0).encode()]


TARGET = Target("daemon_request", one_input, (), seeds, memory_base=512 * 1024, max_len=9000)
