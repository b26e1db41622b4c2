"""One machine running the whole chain: virtual radio, broker, platform, module, gateway.

The broker is mosquitto with the shipped configuration (blegw-platform broker-setup): TLS,
no anonymous clients, one account for the platform and one for the gateway, per-gateway ACLs.

Used by ``blegw-harness demo`` and ``bench``. Each part is the real component (the platform's
HTTP API and MQTT client, the gateway daemon, the bless-based module over the virtual BlueZ);
only the radio is simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

from blegw.config import GatewayConfig, ModuleEntry
from blegw.service import GatewayService
from blegw_platform.api import make_app
from blegw_platform.broker_process import MosquittoProcess
from blegw_platform.broker_setup import PLATFORM_USER, add_gateway, setup
from blegw_platform.issuer_keys import FileIssuerKeys, IssuedCards, issue_card
from blegw_platform.platform import Platform
from bluez_pairing import BluezCallError, Confirm
from e2e import Suite
from mqtt_uplink import MqttEndpoint, read_secret_file
from private_files import write_atomic
from vbluez import VirtualBluez
from vbluez.hil import HilRadio, open_radio
from wearable_sim.card_element import CARD_FILE, CardElement
from wearable_sim.card_module import CardModule
from wearable_sim.element import SecureElement
from wearable_sim.module import SimulatedModule
from wearable_sim.policy import UserPolicy
from wearable_sim.state import ModuleState

from .provision import certify_module

__all__ = ["BrokerAccess", "Chain", "broker_access", "running_chain"]

GATEWAY_ID = "gw-demo"
MERCHANT_GATEWAY_ID = "gw-shop"
"""The merchant's own gateway (``merchant_own_gateway``): its module is enrolled there."""
PAYER, PAYEE = "alice-001", "shop-42"
CARD_PAYER = "bob-002"
"""The account of the chain's symmetric-key card (a payer may hold either kind)."""


async def _bond_with(adapter: str, address: str, timeout: float = 15.0) -> None:
    """Find ``address`` from ``adapter`` and bond with it (the peer must be in pairing mode);
    whichever agents this process registered answer BlueZ's questions: a module already paired,
    as ``blegw pair`` would leave it."""
    from bleak import BleakClient, BleakScanner
    from bleak.exc import BleakError

    device = await BleakScanner.find_device_by_address(address, timeout=timeout,
                                                       bluez={"adapter": adapter})
    if device is None:
        raise BluezCallError(f"Pair: {address} not seen on {adapter}")
    client = BleakClient(device, bluez={"adapter": adapter}, pair=True, timeout=timeout)
    try:
        await client.connect()
    except (BleakError, TimeoutError) as exc:
        raise BluezCallError(f"Pair: {exc}") from exc
    await client.disconnect()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Chain:
    radio: VirtualBluez | HilRadio
    platform: Platform
    module: SimulatedModule
    gateway: GatewayService
    http: ClientSession
    """Sends the chain's terminal API key (``api_key``) with every request."""
    base_url: str
    api_key: str
    broker: BrokerAccess
    merchant: SimulatedModule | None = None
    """The merchant's module (``shop-42``, on hci2) when the chain was asked for one: the
    second module of flow F-D, served by the same gateway."""
    card: CardModule | None = None
    """The symmetric-key card on the next free adapter (hci2, or after the merchant's),
    enrolled for :data:`CARD_PAYER` (``with_card``)."""
    card_dir: Path | None = None

    async def pay(self, amount_minor: int, description: str, suite: Suite,
                  key: str, payer: str = PAYER) -> dict[str, Any]:
        body = {"payer": payer, "payee": PAYEE, "order_reference": key[:20],
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


@dataclass(frozen=True, slots=True)
class BrokerAccess:
    """How the chain's platform and gateway reach the broker, each with its own account."""

    platform: MqttEndpoint
    gateway: MqttEndpoint
    directory: Path | None = None
    """The broker directory (configuration, CA, password file) when there is one."""
    process: MosquittoProcess | None = None
    """The mosquitto the chain started (none for an external broker)."""
    merchant_gateway: MqttEndpoint | None = None
    """The merchant's own gateway's account (``merchant_own_gateway``), when the chain made
    it or the broker directory holds its password (``DIR/gw-shop.password``)."""


def broker_access(url: str, broker_dir: Path, gateway_password_file: Path) -> BrokerAccess:
    """Accounts from a ``blegw-platform broker-setup`` directory: the platform's password and
    CA from it, the gateway's password (user ``gw-demo``) from ``gateway_password_file``."""
    ca = str(broker_dir / "ca.pem") if url.startswith("mqtts:") else None
    platform_password = read_secret_file(broker_dir / "platform.password", "platform password")
    gateway_password = read_secret_file(gateway_password_file, "gateway password")
    return BrokerAccess(MqttEndpoint(url, PLATFORM_USER, platform_password, ca),
                        MqttEndpoint(url, GATEWAY_ID, gateway_password, ca), broker_dir)


async def _broker(stack: contextlib.AsyncExitStack, workdir: Path, url: str | None,
                  broker_dir: Path | None) -> BrokerAccess:
    """The broker the chain uses.

    No URL: mosquitto with the shipped configuration (TLS, no anonymous clients, per-gateway
    ACLs) in the chain's temporary directory, one account for the platform and one for the
    gateway. A URL and a broker directory: that broker, with the accounts from the directory
    (the gateway's password in ``DIR/gw-demo.password``). A URL alone: an anonymous broker
    (test brokers).
    """
    if url is not None:
        if broker_dir is None:
            return BrokerAccess(MqttEndpoint(url), MqttEndpoint(url))
        return await asyncio.to_thread(broker_access, url, broker_dir,
                                       broker_dir / f"{GATEWAY_ID}.password")
    directory, port = workdir / "broker", free_port()
    await asyncio.to_thread(setup, directory, port=port, listen="127.0.0.1",
                            hosts=("127.0.0.1", "localhost"))
    password_file = workdir / "gateway" / "mqtt.password"
    await asyncio.to_thread(add_gateway, directory, GATEWAY_ID, password_file)
    # the merchant's own gateway (merchant_own_gateway), should the chain be asked for it
    await asyncio.to_thread(add_gateway, directory, MERCHANT_GATEWAY_ID,
                            workdir / "merchant-gateway" / "mqtt.password")
    broker = MosquittoProcess(directory / "mosquitto.conf", port, directory / "mosquitto.log")
    await broker.start()
    stack.push_async_callback(broker.stop)
    access = await asyncio.to_thread(broker_access, f"mqtts://127.0.0.1:{port}", directory,
                                     password_file)
    return dataclasses.replace(access, process=broker)


async def _merchant_account(access: BrokerAccess, workdir: Path, url: str | None
                            ) -> BrokerAccess:
    """The merchant's gateway's broker account: made with the chain's own broker
    (:func:`_broker`), read from an external one's ``gw-shop.password``, anonymous on an
    anonymous broker."""
    gateway = access.gateway
    if access.directory is None:
        return dataclasses.replace(access, merchant_gateway=MqttEndpoint(gateway.url))
    password_file = (workdir / "merchant-gateway" / "mqtt.password" if url is None
                     else access.directory / f"{MERCHANT_GATEWAY_ID}.password")
    if not password_file.exists():
        return access
    password = read_secret_file(password_file, "merchant gateway password")
    return dataclasses.replace(access, merchant_gateway=MqttEndpoint(
        gateway.url, MERCHANT_GATEWAY_ID, password, gateway.ca))


@contextlib.asynccontextmanager
async def running_chain(policy: UserPolicy, *, broker_url: str | None = None,
                        broker_dir: Path | None = None,
                        conn_interval_ms: float = 0.0, approval_window: int = 60,
                        queue_size: int = 8, with_gateway: bool = True,
                        paired: bool = True, pairing_consent: Confirm | None = None,
                        module_name: str = "wearable-sim",
                        merchant_policy: UserPolicy | None = None,
                        merchant_own_gateway: bool = False,
                        card_policy: UserPolicy | None = None,
                        radio_adapters: int = 2) -> AsyncIterator[Chain]:
    """The chain, ready to pay (see :func:`_broker` for ``broker_url`` and ``broker_dir``);
    with ``paired=False`` the module holds its certificates but is
    neither enrolled at the platform nor in the gateway's registry (``blegw pair`` does that).
    With ``merchant_policy``, a second module on hci2, enrolled for the payee and bonded with
    the gateway's adapter, whose owner answers by that policy (transaction codes); with
    ``merchant_own_gateway`` it is bonded with hci3 instead, for a second gateway the caller
    runs, and the chain's gateway does not serve it.
    With ``card_policy``, a symmetric-key card too (its owner's button answers with that
    policy): issued by the platform (``provision-card``), on the next free adapter (hci2, or
    after the merchant's adapters), bonded, served by the gateway and enrolled for
    :data:`CARD_PAYER`. ``radio_adapters`` adds idle adapters for devices a caller starts
    itself."""
    from vbluez import RadioConfig

    # hci0 the gateway, hci1 the module, then the merchant's module (and its own gateway's
    # adapter), then the card.
    card_index = 2 + (merchant_policy is not None) + (merchant_own_gateway
                                                      and merchant_policy is not None)
    used_adapters = card_index + (card_policy is not None)

    stack = contextlib.AsyncExitStack()
    async with stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="blegw-")))
        # When the chain stops, bleak's shared BlueZ connection ends with the radio, on purpose;
        # bleak would report it as a lost connection (a warning). Quiet only for that moment.
        manager_log = logging.getLogger("bleak.backends.bluezdbus.manager")
        level = manager_log.level
        stack.callback(manager_log.setLevel, level)                 # after the radio stopped
        radio = open_radio(RadioConfig(adapters=max(radio_adapters, used_adapters),
                                       conn_interval_ms=conn_interval_ms))
        await stack.enter_async_context(radio)
        stack.callback(manager_log.setLevel, logging.ERROR)         # just before it stops
        os.environ.update(radio.environ())
        access = await _broker(stack, workdir, broker_url, broker_dir)
        if merchant_own_gateway:
            access = await _merchant_account(access, workdir, broker_url)
        platform = Platform(workdir / "platform", mqtt=access.platform,
                            approval_window=approval_window)
        stack.push_async_callback(platform.aclose)
        await platform.ledger.run(platform.ledger.add_account, PAYER, "EUR", 1_000_000)
        await platform.ledger.run(platform.ledger.add_account, PAYEE, "EUR", 0)
        element = SecureElement(ModuleState(workdir / "module"))
        for cert in certify_module(platform, element, days=1, backdate=60):
            if paired:
                await platform.enroll(cert.encode(), PAYER, GATEWAY_ID)
        module = SimulatedModule(element, policy, adapter=radio.adapters[1].name,
                                 name=module_name, pairing_mode=True,
                                 pairing_consent=pairing_consent)
        await module.start()
        stack.push_async_callback(module.stop)
        # The card's GATT server is up before the first bond: bleak's BlueZ manager, made by
        # that bond, would otherwise see a local service appear and log an error about it.
        card: CardModule | None = None
        card_dir: Path | None = None
        entries: tuple[ModuleEntry, ...] = ()
        if card_policy is not None:
            card_dir = workdir / "card"
            card, entry = await _start_card(stack, platform, card_policy, card_dir,
                                            radio.adapters[card_index].name,
                                            radio.adapters[card_index].address,
                                            radio.adapters[0].name, paired,
                                            pairing_consent)
            entries = (entry,) if paired else ()
        if paired:  # bonded in pairing mode, then out of it, as `blegw pair` leaves a module
            await _bond_with(radio.adapters[0].name, radio.adapters[1].address)
            await module.set_pairing_mode(False)
        merchant = None
        if merchant_policy is not None:
            merchant_element = SecureElement(ModuleState(workdir / "merchant"))
            for cert in certify_module(platform, merchant_element, days=1, backdate=60):
                await platform.enroll(cert.encode(), PAYEE, MERCHANT_GATEWAY_ID
                                      if merchant_own_gateway else GATEWAY_ID)
            merchant = SimulatedModule(merchant_element, merchant_policy,
                                       adapter=radio.adapters[2].name,
                                       name="merchant-sim", pairing_mode=True)
            await merchant.start()
            stack.push_async_callback(merchant.stop)
            await _bond_with(radio.adapters[3 if merchant_own_gateway else 0].name,
                             radio.adapters[2].address)
            await merchant.set_pairing_mode(False)
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
            gateway_id=GATEWAY_ID, mqtt=access.gateway, adapter=radio.adapters[0].name,
            queue_size=queue_size,
            registry=str(workdir / "gateway" / "registry.json"),
            control_socket=str(workdir / "gateway" / "control.sock"),
            modules=((ModuleEntry(element.module_id, radio.adapters[1].address, "demo"),
                      *entries) if paired else ()) + ((ModuleEntry(
                         merchant.element.module_id, radio.adapters[2].address, "merchant"),)
                         if merchant is not None and not merchant_own_gateway else ())),
            pairing_agent=False)  # the modules (and the card) run in this process too
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
        yield Chain(radio, platform, module, gateway, http, f"http://127.0.0.1:{port}",
                    api_key, access, merchant, card, card_dir)


async def _start_card(stack: contextlib.AsyncExitStack, platform: Platform,
                      policy: UserPolicy, card_dir: Path, adapter: str, address: str,
                      gateway_adapter: str, paired: bool, pairing_consent: Confirm | None
                      ) -> tuple[CardModule, ModuleEntry]:
    """Issue a card for :data:`CARD_PAYER` in both suites (the factory step), start it on
    ``adapter`` and, when ``paired``, bond it with ``gateway_adapter`` and enroll it at the
    platform."""
    await platform.ledger.run(platform.ledger.add_account, CARD_PAYER, "EUR", 1_000_000)
    keys, register = FileIssuerKeys(platform.state_dir), IssuedCards(platform.state_dir)
    provision = await asyncio.to_thread(issue_card, keys, register, bound_user=CARD_PAYER)
    await asyncio.to_thread(card_dir.mkdir, mode=0o700)
    await asyncio.to_thread(write_atomic, card_dir / CARD_FILE, provision.encode())
    card = CardModule(CardElement(card_dir), policy, adapter=adapter, name="wearable-card",
                      pairing_mode=True, pairing_consent=pairing_consent)
    await card.start()
    stack.push_async_callback(card.stop)
    if paired:
        await _bond_with(gateway_adapter, address)
        await card.set_pairing_mode(False)
        await platform.cards.enroll(provision.card_ref, GATEWAY_ID)
    return card, ModuleEntry(provision.card_ref, address, "card")
