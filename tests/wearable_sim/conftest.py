"""A bleak-based test client for the link profile, and module fixtures on the virtual radio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_asyncio
from bleak import BleakClient, BleakScanner

from ble_profile import (
    Command,
    FrameAssembler,
    KeepaliveStatus,
    Message,
    fragment,
    parse_keepalive,
    uuids,
)
from e2e import (
    USAGE_REQUEST_SIGNING,
    Certificate,
    CertificateAuthority,
    ConfirmationRequest,
    ConfirmationResponse,
    RequestSigner,
    Suite,
    TrustAnchors,
    decode_envelope,
    encode_envelope,
    generate_private_key,
    verify_confirmation,
)
from vbluez import VirtualBluez
from wearable_sim.element import SecureElement
from wearable_sim.module import SimulatedModule
from wearable_sim.policy import UserPolicy, make_policy
from wearable_sim.state import ModuleState


@dataclass
class LinkClient:
    """The gateway's side of the link, minimal: frames out, frames in."""

    client: BleakClient
    keepalives: list[KeepaliveStatus] = field(default_factory=list)
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    assembler: FrameAssembler = field(default_factory=lambda: FrameAssembler(512))
    keepalive_seen: asyncio.Event = field(default_factory=asyncio.Event)

    def _on_notify(self, _char: object, data: bytearray) -> None:
        message = self.assembler.feed(bytes(data))
        if message is None:
            return
        if message.command is Command.KEEPALIVE:
            self.keepalives.append(parse_keepalive(message.payload))
            self.keepalive_seen.set()
        else:
            self.inbox.put_nowait(message)

    async def start(self) -> None:
        await self.client.start_notify(uuids.STATUS, self._on_notify)

    async def wait_keepalives(self, status: KeepaliveStatus, count: int,
                              timeout: float = 10) -> None:
        """Until ``count`` KEEPALIVEs with ``status`` have arrived: on the notifications
        themselves, not on a guess of how long they take."""
        async def enough() -> None:
            while True:
                self.keepalive_seen.clear()
                if self.keepalives.count(status) >= count:
                    return
                await self.keepalive_seen.wait()

        await asyncio.wait_for(enough(), timeout)

    @property
    def size(self) -> int:
        char = self.client.services.get_characteristic(uuids.CONTROL_POINT)
        assert char is not None
        return min(512, char.max_write_without_response_size)

    async def write_raw(self, frame: bytes) -> None:
        await self.client.write_gatt_char(uuids.CONTROL_POINT, frame, response=True)

    async def send(self, command: Command, payload: bytes) -> None:
        for frame in fragment(command, payload, self.size):
            await self.write_raw(frame)

    async def receive(self, timeout: float = 10) -> Message:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def request(self, envelope: bytes, timeout: float = 10) -> object:
        await self.send(Command.MSG, envelope)
        message = await self.receive(timeout)
        assert message.command is Command.MSG, message
        return decode_envelope(message.payload)


# The test's platform: one CA per suite and a request signer certified by it, as
# blegw_platform makes them; start_module installs these CA roots and PLATFORM_ID.
PLATFORM_ID = b"test-platform-id"
TEST_CAS = {suite: CertificateAuthority.generate(suite) for suite in Suite}
TEST_SIGNERS: dict[Suite, RequestSigner] = {}


def request_signer(suite: Suite) -> RequestSigner:
    if suite not in TEST_SIGNERS:
        key, now = generate_private_key(suite), int(time.time())
        cert = TEST_CAS[suite].issue(key.public_key, PLATFORM_ID, not_before=now - 60,
                                     not_after=now + 86400, usage=USAGE_REQUEST_SIGNING)
        TEST_SIGNERS[suite] = RequestSigner(key, cert)
    return TEST_SIGNERS[suite]


def make_request(suite: Suite, *, expires_in: int = 60, amount: int = 1250,
                 tx: bytes = b"\x07" * 16, signed: bool = True
                 ) -> tuple[bytes, ConfirmationRequest]:
    request = ConfirmationRequest(tx, "alice-001", "shop-42", "A-17", "coffee beans", amount,
                                  "EUR", bytes(range(16)), int(time.time()) + expires_in, suite)
    if signed:
        request = request_signer(suite).sign(request)
    return encode_envelope(request), request


async def assert_signs_honest_request(link: Any, certs: dict[Suite, Certificate],
                                      cas: dict[Suite, CertificateAuthority], suite: Suite, *,
                                      tx: bytes = b"\x07" * 16) -> ConfirmationResponse:
    """The honest path: a genuine request over ``link`` comes back signed by the module, and
    the platform's check (its CA, the request it sent, no earlier counter) accepts it."""
    envelope, _ = make_request(suite, tx=tx)
    response = await link.request(envelope)
    assert isinstance(response, ConfirmationResponse), response
    verify_confirmation(envelope, response, certs[suite], cas[suite].public_key,
                        now=int(time.time()), last_counter=0)
    return response


def provision(element: SecureElement) -> None:
    """Install the test platform's trust anchors, as blegw-harness provision-module does."""
    element.install_trust_anchors(TrustAnchors(
        PLATFORM_ID, {suite: ca.public_key for suite, ca in TEST_CAS.items()}))


async def start_module(radio: VirtualBluez, state_dir: Path, policy: UserPolicy | str,
                       **kwargs: object) -> tuple[SimulatedModule, SecureElement,
                                                   dict[Suite, CertificateAuthority],
                                                   dict[Suite, Certificate]]:
    element = SecureElement(ModuleState(state_dir))
    cas, certs = {}, {}
    now = int(time.time())
    for suite in Suite:
        cas[suite] = TEST_CAS[suite]
        cert = cas[suite].issue(element.public_key(suite), element.module_id,
                                not_before=now - 60, not_after=now + 86400)
        element.install_certificate(cert.encode())
        certs[suite] = cert
    provision(element)
    if isinstance(policy, str):
        policy = await make_policy(policy, state_dir)
    kwargs.setdefault("pairing_mode", True)  # the test central bonds on its first write
    module = SimulatedModule(element, policy, adapter="hci1", name="wearable-sim",
                             **kwargs)  # type: ignore[arg-type]
    await module.start()
    return module, element, cas, certs


@pytest_asyncio.fixture
async def link_to(vbluez: VirtualBluez) -> AsyncIterator[object]:
    """``await link_to(module)`` connects a bleak client on hci0 to the module on hci1."""
    clients: list[BleakClient] = []

    async def connect(module: SimulatedModule) -> LinkClient:
        device = await BleakScanner.find_device_by_filter(
            lambda _d, adv: uuids.SERVICE in adv.service_uuids, timeout=10,
            bluez={"adapter": "hci0"})
        assert device is not None
        client = BleakClient(device, bluez={"adapter": "hci0"})
        await client.connect()
        clients.append(client)
        link = LinkClient(client)
        await link.start()
        return link

    yield connect
    for c in clients:
        await c.disconnect()
