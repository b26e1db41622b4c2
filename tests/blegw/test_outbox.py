"""An answer or a request that is being published when the broker goes silent is not lost.

Found tried as an attacker would: the session ends when its reader sees the connection drop
and cancels the writer; a message the writer had taken from its outbox and was waiting to see
acknowledged (PUBACK) went nowhere. A real mosquitto is frozen with SIGSTOP so the publish is
sent but never acknowledged; the writer is then cancelled exactly as the session does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from blegw.config import GatewayConfig
from blegw.service import GatewayService
from blegw_platform.platform import Platform
from mqtt_uplink import MqttEndpoint
from relay_contract import RelayResponse, RelayStatus, topic

from .conftest import Mosquitto


@contextlib.asynccontextmanager
async def _frozen(broker: Mosquitto) -> AsyncIterator[None]:
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(broker.proc.pid, signal.SIGCONT)


async def _cancel_mid_publish(writer: asyncio.Task[None], taken: Callable[[], bool]) -> None:
    for _ in range(200):
        if taken():
            break
        await asyncio.sleep(0.01)
    assert taken(), "the writer never took the message"
    await asyncio.sleep(0.3)                       # published, waiting for the PUBACK
    assert not writer.done()
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer


async def _run(broker: Mosquitto, client_cm: contextlib.AbstractAsyncContextManager[object],
               write: Callable[[object], Awaitable[None]], taken: Callable[[], bool]) -> None:
    async with client_cm as client, _frozen(broker):
        writer = asyncio.create_task(write(client))
        await _cancel_mid_publish(writer, taken)


@pytest.mark.parametrize("side", ["gateway answer", "platform request"])
async def test_message_in_flight_when_the_broker_goes_silent_is_kept(
        mosquitto: Mosquitto, tmp_path: Path, side: str) -> None:
    if side == "gateway answer":
        service = GatewayService(GatewayConfig(
            gateway_id="gw-1", mqtt=MqttEndpoint(mosquitto.url),
            registry=str(tmp_path / "registry.json"),
            control_socket=str(tmp_path / "control.sock")))
        answer = RelayResponse(b"\x01" * 16, RelayStatus.OK, b"\xa0")
        service.outbox.put_nowait(answer)
        await _run(mosquitto, service._client(), service._write,  # type: ignore[arg-type]
                   service.outbox.empty)
        assert service.outbox.qsize() == 1
        assert service.outbox.get_nowait() == answer
        return
    platform = Platform(tmp_path / "platform", mqtt=MqttEndpoint(mosquitto.url))
    try:
        request = (topic("gw-1", "req"), b"\xa0")
        platform._outbox.put_nowait(request)
        await _run(mosquitto, platform._mqtt_client(), platform._write,  # type: ignore[arg-type]
                   platform._outbox.empty)
        assert platform._outbox.qsize() == 1
        assert platform._outbox.get_nowait() == request
    finally:
        await platform.aclose()
