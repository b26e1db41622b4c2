"""``blegw pair``: find the module, bond (the person compares the code), check its certificates
against the platform's CA (or a card's hello, checked by the platform), enroll it, record it,
and finish with a round trip.

Nothing is left half-written: a pairing that fails after bonding removes the bond it made and
revokes whatever it enrolled; the registry is replaced atomically.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import time

from aiohttp import ClientSession
from bleak.exc import BleakDBusError
from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus

from ble_profile import ModuleInfo, ModuleInfoError, uuids
from bluez_pairing import (
    AgentError,
    BluezCallError,
    Confirm,
    PairingAgent,
    is_bonded,
    register_agent,
    remove_device,
    unregister_agent,
)
from e2e import (
    Certificate,
    CertificateRequest,
    CertificateResponse,
    E2EError,
    PublicKey,
    Suite,
    decode_envelope,
    encode_envelope,
    verify_certificate,
)
from terminal_input import ask_yes_no

from .card_pairing import card_hello, enroll_card
from .config import GatewayConfig
from .daemon_client import announce_pairing, open_registry, reload_registry
from .faults import is_key_missing
from .link import DeadlinePassed, LinkError, ModuleLink, ModuleUnreachable
from .link_report import adapter_address
from .platform_client import HTTP_TIMEOUT, enroll_module, platform_cas, revoke
from .registry import MAX_TEXT, Registry, RegistryEntry, RegistryError, is_display_text
from .scan_tool import find_module
from .tool_errors import ExitCode, ToolError, say

__all__ = ["ANSWER_TIMEOUT", "pair", "remove_bond"]

AGENT_PATH = "/blegw/pairing_agent"
ANSWER_TIMEOUT = 10.0
"""Seconds a module has to answer a certificate request or a PING while pairing."""


async def remove_bond(adapter: str, address: str) -> bool:
    """Remove the device (and its bond) from the adapter; False if BlueZ did not know it,
    ToolError if BlueZ could not say."""
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    try:
        return await remove_device(bus, adapter, address)
    except BluezCallError as exc:
        raise ToolError(f"BlueZ could not remove {address} from {adapter}: {exc}") from exc
    finally:
        bus.disconnect()


async def _is_bonded(bus: MessageBus, adapter: str, address: str) -> bool:
    try:
        return await is_bonded(bus, adapter, address)
    except BluezCallError as exc:
        raise ToolError(f"BlueZ could not say whether {adapter} is bonded with {address}: "
                        f"{exc}") from exc


JUST_WORKS_QUESTION = ("The module paired without a code (just works): nothing showed it is the "
                      "module in front of you. Keep it anyway? [y/n] ")


async def _ask(question: str) -> bool:
    return await ask_yes_no(question, out=sys.stderr)  # stderr: stdout stays data


def _terminal_confirm(yes: bool) -> Confirm:
    async def confirm(device: str, code: int) -> bool:
        if code == 0:
            # Just works, authorized here: no code to compare. Certificates still prove the
            # module is genuine; whether it is the one in front of you is the person's call.
            return yes or await _ask(JUST_WORKS_QUESTION)
        if yes:
            say(f"pairing code {code:06d} (accepted by --yes)")
            return True
        accepted = await _ask(f"Pairing code {code:06d}. Does the module show the same code? "
                              "[y/n] ")
        if not accepted:
            say("code not confirmed: pairing rejected")
        return accepted

    return confirm


async def _module_info(link: ModuleLink) -> ModuleInfo:
    try:
        return ModuleInfo.decode(await link.read(uuids.MODULE_INFO))
    except ModuleInfoError as exc:
        raise ToolError(f"the module's info is invalid: {exc}", ExitCode.CERTIFICATE) from exc


async def _module_certificates(link: ModuleLink, cas: dict[str, PublicKey], info: ModuleInfo
                               ) -> tuple[ModuleInfo, list[bytes]]:
    """One certificate per suite of the module, each checked against the CA."""
    certificates: list[bytes] = []
    for number in info.suites:
        try:
            suite = Suite(number)
        except ValueError:
            continue  # a suite this gateway does not know: not enrolled, not an error
        if suite.label not in cas:
            raise ToolError(f"the platform has no {suite.name} CA", ExitCode.CERTIFICATE)
        try:
            envelope, _ = await link.exchange(encode_envelope(CertificateRequest(suite)),
                                              time.time() + ANSWER_TIMEOUT)
            answer = decode_envelope(envelope)
            if not isinstance(answer, CertificateResponse):
                raise ToolError(f"the module has no {suite.name} certificate", ExitCode.CERTIFICATE)
            cert = Certificate.decode(answer.certificate)
            if cert.module_id != info.module_id:
                raise ToolError(f"the {suite.name} certificate names module "
                                f"{cert.module_id.hex()}, not {info.module_id.hex()}",
                                ExitCode.CERTIFICATE)
            verify_certificate(cert, cas[suite.label], now=int(time.time()))
        except E2EError as exc:
            raise ToolError(f"the module's {suite.name} certificate is refused: {exc}",
                            ExitCode.CERTIFICATE) from exc
        certificates.append(answer.certificate)
    if not certificates:
        raise ToolError("the module offers no suite this gateway knows", ExitCode.CERTIFICATE)
    return info, certificates


async def pair(config: GatewayConfig, key: str, account: str, code: str, *, yes: bool = False,
               timeout: float = 20.0, name: str | None = None) -> int:
    """Bond, check the certificates, enroll, register, and finish with a round trip."""
    if name is not None and not (name and is_display_text(name)):
        raise ToolError(f"--name: 1 to {MAX_TEXT} printable characters", ExitCode.USAGE)
    registry = open_registry(config)
    async with ClientSession(timeout=HTTP_TIMEOUT) as http:
        cas = await platform_cas(http, config.platform_url)
        say(f"looking for {key} on {config.adapter}...")
        device, adv_name = await find_module(config, key, timeout)
        say(f"found {adv_name or '(no name)'} at {device.address}; bonding...")
        stale = await announce_pairing(config, device.address, True)
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        made_bond = False
        enrolled: list[str] = []
        token = secrets.token_hex(32)  # revokes what this pairing enrolls; kept in the registry
        kind = "module"
        agent = PairingAgent(_terminal_confirm(yes))
        try:
            try:
                await register_agent(bus, agent, AGENT_PATH)
            except AgentError as exc:
                raise ToolError(f"BlueZ refused the pairing agent: {exc}") from exc
            was_bonded = await _is_bonded(bus, config.adapter, device.address)
            if was_bonded and stale:
                # The running daemon found this bond lost on the module's side or replaced:
                # it is not kept; a new one is made, checked by the person.
                say("the daemon found the bond with this module lost or replaced: removing it "
                    "and bonding again")
                await remove_bond(config.adapter, device.address)
                was_bonded = False
            elif was_bonded:
                say("already bonded with this adapter: keeping the bond")
            link = ModuleLink(device.address, config.adapter, connect_timeout=timeout, pair=True)
            try:
                try:
                    await link.connect()
                except ModuleUnreachable as exc:
                    cause = exc.__cause__
                    if not (was_bonded and isinstance(cause, BleakDBusError)
                            and is_key_missing(f"{cause.dbus_error} {cause.dbus_error_details}")):
                        raise
                    # The module lost its key before the daemon saw it (BlueZ's encryption
                    # with the kept key failed): the person asked for a new bond, so the old
                    # one goes and a new one is made, checked by the person as any other.
                    say("the module no longer has the key of the bond this adapter keeps: "
                        "removing it and bonding again")
                    await link.close()
                    await remove_bond(config.adapter, device.address)
                    was_bonded = False
                    link = ModuleLink(device.address, config.adapter, connect_timeout=timeout,
                                      pair=True)
                    await link.connect()
            except ModuleUnreachable as exc:
                if isinstance(exc.__cause__, BleakDBusError):
                    made_bond = await _is_bonded(bus, config.adapter, device.address) \
                        and not was_bonded
                    cause = exc.__cause__
                    raise ToolError("bonding failed: "
                                    f"{cause.dbus_error_details or cause.dbus_error}",
                                    ExitCode.BONDING) from exc
                raise ToolError(f"could not connect to {device.address}: {exc}",
                                ExitCode.TIMEOUT) from exc
            made_bond = not was_bonded
            bond = _bond_kind(made_bond, agent.codes, registry, device.address)
            try:
                if made_bond and not agent.codes:
                    # The module has no display or button: BlueZ bonded "just works" without
                    # asking anyone. The person decides; --yes rigs accept it.
                    if yes:
                        say("the module paired without a code (just works): accepted by --yes")
                    elif not await _ask(JUST_WORKS_QUESTION):
                        raise ToolError("pairing without a code declined", ExitCode.BONDING)
                info = await _module_info(link)
                if info.is_card:
                    kind = "card"
                    suites, account = await _pair_card(config, link, info, http, device.address,
                                                       code, token, enrolled)
                    rtt = (await link.ping(ANSWER_TIMEOUT)).radio
                else:
                    say("bonded; reading the module's certificates...")
                    info, certificates = await _module_certificates(link, cas, info)
                    rtt = (await link.ping(ANSWER_TIMEOUT)).radio
                    say(f"certificates valid; enrolling module {info.module_id.hex()} for "
                        f"{account}...")
                    await enroll_module(http, config.platform_url, certificates, account,
                                        config.gateway_id, code, token, enrolled)
                    suites = tuple(Certificate.decode(c).suite.label for c in certificates)
                entry = RegistryEntry(
                    info.module_id.hex(), device.address.upper(), name or adv_name or
                    device.address, account, suites, time.time(), token, bond, kind)
                try:
                    registry.add(entry)
                except (RegistryError, OSError) as exc:
                    raise ToolError(f"cannot record the module in {registry.path}: {exc}"
                                    ) from exc
            except DeadlinePassed as exc:
                raise ToolError(f"the module did not answer in time: {exc}",
                                ExitCode.TIMEOUT) from exc
            except LinkError as exc:
                raise ToolError(f"the link to the module failed: {exc}") from exc
            finally:
                await link.close()
        except BaseException:
            with contextlib.suppress(ToolError):
                await announce_pairing(config, device.address, False)
            if enrolled:
                problem = await revoke(http, config.platform_url, enrolled[0], token, kind)
                say(f"warning: {problem}; the enrollment may remain" if problem else
                    "the enrollment made for this attempt was revoked")
            if made_bond:
                try:
                    if await remove_bond(config.adapter, device.address):
                        say("the bond made for this attempt was removed")
                except ToolError as exc:
                    say(f"warning: {exc}; the bond made for this attempt may remain")
            raise
        finally:
            await agent.cancel_pending()
            with contextlib.suppress(DBusError, OSError, EOFError):
                await unregister_agent(bus, AGENT_PATH)
            bus.disconnect()
    print(f"paired {entry.name} ({entry.address}), {kind} {entry.module_id}, account "
          f"{account}, suites {', '.join(entry.suites)}, bond "
          f"{entry.bond.replace('_', ' ')}; round trip {rtt * 1000:.1f} ms")
    say(await reload_registry(config, entry.module_id, serving=True))
    return ExitCode.OK


async def _pair_card(config: GatewayConfig, link: ModuleLink, info: ModuleInfo,
                     http: ClientSession, address: str, code: str, token: str,
                     enrolled: list[str]) -> tuple[tuple[str, ...], str]:
    """A symmetric-key card: its hello to the platform's challenge, checked and enrolled by
    the platform (``card_pairing``); its suites and the account it was enrolled for."""
    say("bonded; the device is a symmetric-key card: asking it for its hello...")
    hello = await card_hello(http, config.platform_url, link, info, ANSWER_TIMEOUT)
    central = await adapter_address(config.adapter)
    say(f"enrolling card {info.module_id.hex()} (the platform checks its key)...")
    account, suites = await enroll_card(
        http, config.platform_url, info, hello,
        None if central is None else (address.upper(), central.upper()), config.gateway_id,
        code, token, enrolled)
    return suites, account


def _bond_kind(made_bond: bool, codes: list[int], registry: Registry, address: str) -> str:
    """How the module is bonded: by the code the person compared, just works, or (a bond
    kept from before) what the registry says of it."""
    if made_bond:
        return "numeric_comparison" if any(codes) else "just_works"
    with contextlib.suppress(RegistryError):
        entry = registry.find(address)
        if entry is not None:
            return entry.bond
    return "unknown"
