"""Gateways with soft modules speaking the real MQTT contract (no BLE): the load generator and
the worker tests.

Each gateway is one broker session subscribed to its own ``req`` topic, as the daemon is; each
of its modules answers a :class:`~relay_contract.RelayRequest` with a genuine signed approval
(:func:`e2e.sign_confirmation`, the module's own key, its counter rising) on the gateway's
``resp`` topic, after ``delay`` seconds (the owner's thumb). Only the radio is left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt

from blegw_platform.platform import Platform
from e2e import (
    ConfirmationRequest,
    Decision,
    PrivateKey,
    Suite,
    UserVerification,
    decode_envelope,
    encode_envelope,
    generate_private_key,
    sign_confirmation,
)
from relay_contract import RelayRequest, RelayResponse, RelayStatus, decode_from_platform, topic


@dataclass
class SoftModule:
    module_id: bytes
    key: PrivateKey
    counter: int = 0


@dataclass
class SoftGateway:
    gateway_id: str
    modules: dict[bytes, SoftModule] = field(default_factory=dict)
    answered: int = 0

    def answer(self, payload: bytes) -> bytes | None:
        """The relay response a module sends for ``payload`` (None if it is not a request)."""
        message = decode_from_platform(payload)
        if not isinstance(message, RelayRequest):
            return None
        module = self.modules[message.module_id]
        request = decode_envelope(message.envelope)
        assert isinstance(request, ConfirmationRequest)
        module.counter += 1
        response = sign_confirmation(message.envelope, request, decision=Decision.APPROVE,
                                     counter=module.counter,
                                     user_verification=UserVerification.PRESENCE,
                                     key=module.key, module_id=module.module_id)
        self.answered += 1
        return RelayResponse(message.request_id, RelayStatus.OK,
                             encode_envelope(response)).encode()

    async def run(self, host: str, port: int, ready: asyncio.Event, delay: float) -> None:
        async with aiomqtt.Client(host, port, identifier=self.gateway_id) as client:
            await client.subscribe(topic(self.gateway_id, "req"), qos=1)
            ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                reply = self.answer(message.payload)
                if reply is not None:
                    await asyncio.sleep(delay)
                    await client.publish(topic(self.gateway_id, "resp"), reply, qos=1)


def enroll_gateways(platform: Platform, gateways: int, modules_each: int,
                    balance: int) -> tuple[list[SoftGateway], list[str]]:
    """Accounts ``payer-G-M`` with one P-256 module each, on ``gateways`` gateways; returns the
    gateways and the payer names."""
    ledger = platform.ledger
    now = int(time.time())
    result, payers = [], []
    for g in range(gateways):
        gateway = SoftGateway(f"gw-{g:04d}")
        for m in range(modules_each):
            payer = f"payer-{g}-{m}"
            ledger.add_account(payer, "EUR", balance)
            key = generate_private_key(Suite.P256_SHA256)
            module_id = (g * 10_000 + m).to_bytes(16, "big")
            cert = platform.cas[Suite.P256_SHA256].issue(
                key.public_key, module_id, not_before=now - 60, not_after=now + 3600)
            ledger.enroll(module_id, payer, gateway.gateway_id, int(Suite.P256_SHA256),
                          cert.encode())
            gateway.modules[module_id] = SoftModule(module_id, key)
            payers.append(payer)
        result.append(gateway)
    return result, payers


@contextlib.asynccontextmanager
async def running(gateways: list[SoftGateway], host: str, port: int, delay: float,
                  ready_within: float = 30.0) -> AsyncIterator[None]:
    """Every gateway connected and subscribed for the duration of the block."""
    readies = [asyncio.Event() for _ in gateways]
    tasks = [asyncio.create_task(g.run(host, port, r, delay))
             for g, r in zip(gateways, readies, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), ready_within)
        yield None
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
