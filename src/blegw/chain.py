"""One machine running the whole chain: virtual radio, broker, platform, module, gateway.

Used by ``blegw demo`` and ``blegw bench``. Each part is the real component (the platform's
HTTP API and MQTT client, the gateway daemon, the bless-based module over the virtual BlueZ);
only the radio is simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aiohttp import ClientSession, web

from blegw_platform.api import make_app
from blegw_platform.platform import Platform
from bluez_pairing import Confirm
from e2e import Suite
from vbluez import VirtualBluez
from wearable_sim.element import SecureElement
from wearable_sim.module import SimulatedModule
from wearable_sim.policy import UserPolicy
from wearable_sim.state import ModuleState

from .config import GatewayConfig, ModuleEntry
from .service import GatewayService

__all__ = ["Chain", "running_chain"]

GATEWAY_ID = "gw-demo"
PAYER, PAYEE = "alice-001", "shop-42"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Chain:
    radio: VirtualBluez
    platform: Platform
    module: SimulatedModule
    gateway: GatewayService
    http: ClientSession
    """Sends the chain's terminal API key (``api_key``) with every request."""
    base_url: str
    api_key: str

    async def pay(self, amount_minor: int, description: str, suite: Suite,
                  key: str) -> dict[str, Any]:
        body = {"payer": PAYER, "payee": PAYEE, "order_reference": key[:20],
                "order_description": description, "amount_minor": amount_minor,
                "currency": "EUR", "suite": suite.label}
        async with self.http.post(f"{self.base_url}/v1/transactions", json=body,
                                  headers={"Idempotency-Key": key}) as resp:
            created: dict[str, Any] = await resp.json()
            if resp.status not in (200, 201):
                raise RuntimeError(f"platform refused the payment: {created}")
        async with self.http.get(f"{self.base_url}/v1/transactions/{created['id']}/outcome",
                                 params={"timeout": "90"}) as resp:
            outcome: dict[str, Any] = await resp.json()
        return outcome


async def _broker(url: str | None) -> tuple[str, Any]:
    if url:
        return url, None
    from amqtt.broker import Broker

    port = free_port()
    broker = Broker({"listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
                     "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin":
                                 {"allow_anonymous": True}}})
    await broker.start()
    return f"mqtt://127.0.0.1:{port}", broker


@contextlib.asynccontextmanager
async def running_chain(policy: UserPolicy, *, broker_url: str | None = None,
                        conn_interval_ms: float = 0.0, approval_window: int = 60,
                        queue_size: int = 8, with_gateway: bool = True,
                        paired: bool = True, pairing_consent: Confirm | None = None,
                        ) -> AsyncIterator[Chain]:
    """The chain, ready to pay; with ``paired=False`` the module holds its certificates but is
    neither enrolled at the platform nor in the gateway's registry (``blegw pair`` does that)."""
    from vbluez import RadioConfig

    stack = contextlib.AsyncExitStack()
    async with stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blegw-")))
        # When the chain stops, bleak's shared BlueZ connection ends with the radio, on purpose;
        # bleak would report it as a lost connection (a warning). Quiet only for that moment.
        manager_log = logging.getLogger("bleak.backends.bluezdbus.manager")
        level = manager_log.level
        stack.callback(manager_log.setLevel, level)                 # after the radio stopped
        radio = await stack.enter_async_context(
            VirtualBluez(config=RadioConfig(adapters=2, conn_interval_ms=conn_interval_ms)))
        stack.callback(manager_log.setLevel, logging.ERROR)         # just before it stops
        os.environ.update(radio.environ())
        url, broker = await _broker(broker_url)
        if broker is not None:
            stack.push_async_callback(broker.shutdown)
        parsed = urlparse(url)
        platform = Platform(workdir / "platform", mqtt_host=parsed.hostname or "127.0.0.1",
                            mqtt_port=parsed.port or 1883, approval_window=approval_window)
        stack.push_async_callback(platform.aclose)
        await platform.ledger.run(platform.ledger.add_account, PAYER, "EUR", 1_000_000)
        await platform.ledger.run(platform.ledger.add_account, PAYEE, "EUR", 0)
        element = SecureElement(ModuleState(workdir / "module"))
        now = int(time.time())
        for suite in Suite:
            cert = platform.cas[suite].issue(element.public_key(suite), element.module_id,
                                             not_before=now - 60, not_after=now + 86400)
            element.install_certificate(cert.encode())
            if paired:
                await platform.enroll(cert.encode(), PAYER, GATEWAY_ID)
        element.install_trust_anchors(platform.trust_anchors())
        module = SimulatedModule(element, policy, adapter="hci1", name="wearable-sim",
                                 pairing_mode=not paired, pairing_consent=pairing_consent)
        await module.start()
        stack.push_async_callback(module.stop)
        stop = asyncio.Event()
        uplink = asyncio.create_task(platform.run_uplink(stop), name="platform-uplink")

        async def stop_uplink() -> None:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await uplink

        stack.push_async_callback(stop_uplink)
        runner = web.AppRunner(make_app(platform))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stack.push_async_callback(runner.cleanup)
        gateway = GatewayService(GatewayConfig(
            gateway_id=GATEWAY_ID, mqtt_url=url, adapter="hci0", queue_size=queue_size,
            registry=str(workdir / "gateway" / "registry.json"),
            control_socket=str(workdir / "gateway" / "control.sock"),
            modules=(ModuleEntry(element.module_id, radio.adapters[1].address, "demo"),)
            if paired else ()))
        if with_gateway:
            gw_task = asyncio.create_task(gateway.run(), name="gateway")

            async def stop_gateway() -> None:
                gateway.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(gw_task, 15)

            stack.push_async_callback(stop_gateway)
            await asyncio.wait_for(gateway.connected.wait(), 15)
        await asyncio.wait_for(platform.connected.wait(), 15)
        api_key = await platform.add_terminal("chain-terminal", [PAYEE])
        http = await stack.enter_async_context(
            ClientSession(headers={"Authorization": f"Bearer {api_key}"}))
        yield Chain(radio, platform, module, gateway, http, f"http://127.0.0.1:{port}", api_key)
