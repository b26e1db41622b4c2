"""The operator tools behind ``blegw scan|pair|forget|rename|ping`` (``devices`` and ``status``
are in ``daemon_client``, which loads neither bleak nor aiohttp).

Each tool is a coroutine returning an exit code and raising :class:`ToolError` (which carries
its own code) for anything the operator must act on. Exit codes, also in docs/cli.md:

====  =====================================================================
0     done
1     another failure (the message says which)
2     usage or configuration error
10    no such module (not advertising, out of range, or not paired)
11    bonding rejected or failed
12    the module's certificate is invalid or issued by another CA
13    the platform refused or could not be reached
14    timeout (the module did not answer in time)
15    the daemon is not running or refused the request
====  =====================================================================

Nothing is left half-written: the registry is replaced atomically, and a pairing that fails
after bonding removes the bond it made and revokes whatever it enrolled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError
from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus

from ble_profile import (
    AdvertData,
    AdvertisementError,
    ModuleInfo,
    ModuleInfoError,
    uuids,
)
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
from terminal_input import ask_yes_no, sanitise

from .card_pairing import card_hello, enroll_card
from .config import GatewayConfig
from .daemon_client import EXIT, ToolError, daemon_request, make_console, open_registry, say
from .faults import is_key_missing
from .link import DeadlinePassed, LinkError, ModuleLink, ModuleUnreachable
from .link_report import adapter_address
from .registry import MAX_TEXT, Registry, RegistryEntry, RegistryError, is_display_text

__all__ = ["forget", "pair", "ping", "rename", "scan"]

AGENT_PATH = "/blegw/pairing_agent"
HTTP_TIMEOUT = ClientTimeout(total=15)
ANSWER_TIMEOUT = 10.0
"""Seconds a module has to answer a certificate request or a PING while pairing."""

# -- scan -----------------------------------------------------------------------------------------
@dataclass
class Sighting:
    """One module heard advertising the profile, updated as its adverts arrive."""

    address: str
    name: str
    short_id: str
    rssi: int
    pairing_mode: bool
    last_seen: float

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "short_id": self.short_id,
                "rssi": self.rssi, "pairing_mode": self.pairing_mode,
                "last_seen": round(self.last_seen, 3)}


def _advert(adv: AdvertisementData) -> AdvertData | None:
    data = adv.service_data.get(uuids.SERVICE_DATA_UUID)
    if data is None:
        return None
    with contextlib.suppress(AdvertisementError):
        return AdvertData.decode(data)
    return None


def rssi_bar(rssi: int) -> str:
    """Five steps from -100 dBm (nothing) to -50 dBm and better (full)."""
    level = max(0, min(5, (rssi + 100) // 10))
    return "█" * level + "·" * (5 - level)


def _table(sightings: list[Sighting]) -> Any:
    from rich.table import Table

    table = Table(title=f"modules nearby ({len(sightings)})", title_justify="left")
    for column in ("name", "address", "module id", "RSSI", "", "pairing"):
        table.add_column(column)
    for s in sightings:
        table.add_row(s.name, s.address, s.short_id, f"{s.rssi} dBm", rssi_bar(s.rssi),
                      "ready" if s.pairing_mode else "")
    return table


async def scan(config: GatewayConfig, timeout: float, as_json: bool) -> int:
    """A table of nearby modules, live on a terminal; Ctrl-C or ``timeout`` ends it cleanly."""
    from rich.live import Live

    seen: dict[str, Sighting] = {}
    console = make_console()
    live: Live | None = None

    def ordered() -> list[Sighting]:
        return sorted(seen.values(), key=lambda s: (-s.rssi, s.address))

    def on_advert(device: BLEDevice, adv: AdvertisementData) -> None:
        if uuids.SERVICE not in adv.service_uuids:
            return
        data = _advert(adv)
        seen[device.address] = Sighting(
            device.address, sanitise(adv.local_name or device.name or "", MAX_TEXT),
            data.short_id.hex() if data else "?", adv.rssi,
            bool(data and data.pairing_mode), time.time())
        if live is not None:
            live.update(_table(ordered()))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        if console.is_terminal and not as_json:
            live = Live(_table([]), console=console, refresh_per_second=4, transient=True)
            live.start()
        else:
            say(f"scanning on {config.adapter} for {timeout:g} s...")
        async with BleakScanner(on_advert, service_uuids=[uuids.SERVICE],
                                bluez={"adapter": config.adapter}):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
    except (BleakError, BleakDBusError, DBusError, OSError) as exc:
        raise ToolError(f"cannot scan on {config.adapter}: {exc}") from exc
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if live is not None:
            live.stop()
    if as_json:
        print(json.dumps([s.row() for s in ordered()], indent=2))
    elif seen:
        console.print(_table(ordered()))
    else:
        say("no module found (is it advertising and in range?)")
    return 0


# -- pair -----------------------------------------------------------------------------------------
async def _find(config: GatewayConfig, key: str, timeout: float) -> tuple[BLEDevice, str]:
    """A module by address, advertised name or short module id (or a prefix of the full id)."""
    want = key.lower()

    def match(device: BLEDevice, adv: AdvertisementData) -> bool:
        if uuids.SERVICE not in adv.service_uuids:
            return False
        data = _advert(adv)
        short = data.short_id.hex() if data else ""
        return want in (device.address.lower(), (adv.local_name or "").lower()) or (
            len(want) >= 8 and bool(short) and (want.startswith(short) or short == want))

    try:
        device = await BleakScanner.find_device_by_filter(match, timeout=timeout,
                                                          bluez={"adapter": config.adapter})
    except (BleakError, BleakDBusError, DBusError, OSError) as exc:
        raise ToolError(f"cannot scan on {config.adapter}: {exc}") from exc
    if device is None:
        raise ToolError(f"no module matching {key!r} heard on {config.adapter} within "
                        f"{timeout:g} s (is it advertising and in range?)", "not_found")
    return device, sanitise(device.name or "", MAX_TEXT)  # the module chose it: shown, stored


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


async def _platform_cas(http: ClientSession, url: str) -> dict[str, PublicKey]:
    try:
        async with http.get(f"{url}/v1/ca") as resp:
            if resp.status != 200:
                raise ToolError(f"the platform at {url} answered {resp.status} for its CA keys",
                                "platform")
            raw = await resp.json()
        suites = {s.label: s for s in Suite}
        return {label: PublicKey(suites[label], bytes.fromhex(point))
                for label, point in raw.items() if label in suites}
    except (ClientError, OSError, TimeoutError) as exc:
        raise ToolError(f"cannot reach the platform at {url}: {exc}", "platform") from exc
    except (ValueError, E2EError, AttributeError) as exc:
        raise ToolError(f"the platform at {url} sent unusable CA keys: {exc}",
                        "platform") from exc


async def _module_info(link: ModuleLink) -> ModuleInfo:
    try:
        return ModuleInfo.decode(await link.read(uuids.MODULE_INFO))
    except ModuleInfoError as exc:
        raise ToolError(f"the module's info is invalid: {exc}", "certificate") from exc


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
            raise ToolError(f"the platform has no {suite.name} CA", "certificate")
        try:
            envelope, _ = await link.exchange(encode_envelope(CertificateRequest(suite)),
                                              time.time() + ANSWER_TIMEOUT)
            answer = decode_envelope(envelope)
            if not isinstance(answer, CertificateResponse):
                raise ToolError(f"the module has no {suite.name} certificate", "certificate")
            cert = Certificate.decode(answer.certificate)
            if cert.module_id != info.module_id:
                raise ToolError(f"the {suite.name} certificate names module "
                                f"{cert.module_id.hex()}, not {info.module_id.hex()}",
                                "certificate")
            verify_certificate(cert, cas[suite.label], now=int(time.time()))
        except E2EError as exc:
            raise ToolError(f"the module's {suite.name} certificate is refused: {exc}",
                            "certificate") from exc
        certificates.append(answer.certificate)
    if not certificates:
        raise ToolError("the module offers no suite this gateway knows", "certificate")
    return info, certificates


async def _enroll(http: ClientSession, url: str, certificates: list[bytes], account: str,
                  gateway_id: str, code: str, token: str, enrolled: list[str]) -> None:
    for certificate in certificates:
        try:
            async with http.post(f"{url}/v1/modules", json={
                    "certificate": certificate.hex(), "account": account,
                    "gateway_id": gateway_id, "enrollment_code": code,
                    "revocation_token": token}) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 201:
                    detail = body.get("detail") if isinstance(body, dict) else None
                    raise ToolError(f"the platform refused the enrollment: "
                                    f"{detail or resp.status}", "platform")
        except (ClientError, OSError, TimeoutError, ValueError) as exc:
            raise ToolError(f"enrollment at {url} failed: {exc}", "platform") from exc
        enrolled.append(str(body.get("module_id", "")))


async def _revoke(http: ClientSession, url: str, module_id: str, token: str,
                  kind: str = "module") -> str | None:
    """Revoke the module's (or card's) enrollments made with ``token``; an error message, or
    None when done.

    404 (nothing active) counts as done: the platform no longer binds the module.
    """
    if not token:
        return ("this registry entry has no revocation token (paired by an older version); "
                "ask the platform operator to revoke the module")
    route = "cards" if kind == "card" else "modules"
    try:
        async with http.delete(f"{url}/v1/{route}/{module_id}",
                               headers={"Authorization": f"Bearer {token}"}) as resp:
            if resp.status in (200, 404):
                return None
            body = await resp.json(content_type=None)
            detail = body.get("detail") if isinstance(body, dict) else None
            return f"the platform refused the revocation: {detail or resp.status}"
    except (ClientError, OSError, TimeoutError) as exc:
        return f"cannot reach the platform at {url}: {exc}"


async def pair(config: GatewayConfig, key: str, account: str, code: str, *, yes: bool = False,
               timeout: float = 20.0, name: str | None = None) -> int:
    """Bond, check the certificates, enroll, register, and finish with a round trip."""
    if name is not None and not (name and is_display_text(name)):
        raise ToolError(f"--name: 1 to {MAX_TEXT} printable characters", "usage")
    registry = open_registry(config)
    async with ClientSession(timeout=HTTP_TIMEOUT) as http:
        cas = await _platform_cas(http, config.platform_url)
        say(f"looking for {key} on {config.adapter}...")
        device, adv_name = await _find(config, key, timeout)
        say(f"found {adv_name or '(no name)'} at {device.address}; bonding...")
        stale = await _announce(config, device.address, True)
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
                                    "bonding") from exc
                raise ToolError(f"could not connect to {device.address}: {exc}",
                                "timeout") from exc
            made_bond = not was_bonded
            bond = _bond_kind(made_bond, agent.codes, registry, device.address)
            try:
                if made_bond and not agent.codes:
                    # The module has no display or button: BlueZ bonded "just works" without
                    # asking anyone. The person decides; --yes rigs accept it.
                    if yes:
                        say("the module paired without a code (just works): accepted by --yes")
                    elif not await _ask(JUST_WORKS_QUESTION):
                        raise ToolError("pairing without a code declined", "bonding")
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
                    await _enroll(http, config.platform_url, certificates, account,
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
                raise ToolError(f"the module did not answer in time: {exc}", "timeout") from exc
            except LinkError as exc:
                raise ToolError(f"the link to the module failed: {exc}") from exc
            finally:
                await link.close()
        except BaseException:
            with contextlib.suppress(ToolError):
                await _announce(config, device.address, False)
            if enrolled:
                problem = await _revoke(http, config.platform_url, enrolled[0], token, kind)
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
    say(await _daemon_reload(config, entry.module_id, serving=True))
    return 0


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


async def _announce(config: GatewayConfig, address: str, on: bool) -> bool:
    """Tell the running daemon this command bonds with ``address`` (or gave up), so the bond
    change is not taken for a downgrade; True if the daemon says the module needs pairing
    again (its old bond is not to be kept). A daemon that is not running is not an error."""
    try:
        answer = await daemon_request(config, {"cmd": "pairing", "address": address.upper(),
                                               "on": on})
    except ToolError as exc:
        if exc.kind == "daemon":
            return False
        raise
    return bool(answer.get("ok") and answer.get("needs_re_pairing"))


async def _daemon_reload(config: GatewayConfig, module_id: str, *, serving: bool) -> str:
    """Have the running daemon read the registry now; say what it serves.

    Without this the daemon would notice within a second; with it, a payment sent right after
    ``pair`` returns finds the module. A daemon that is not running is not an error here.
    """
    try:
        answer = await daemon_request(config, {"cmd": "reload"})
    except ToolError as exc:
        return f"note: {exc}; it reads the registry when it starts"
    if not answer.get("ok"):
        return f"warning: the daemon did not reload its registry: {answer.get('error')}"
    served = module_id in answer.get("modules", [])
    if served == serving:
        return ("the running daemon now serves it" if serving else
                "the running daemon no longer serves it")
    return (f"warning: the running daemon {'does not serve' if serving else 'still serves'} "
            f"{module_id}; see 'blegw status'")


# -- devices, forget, rename ----------------------------------------------------------------------
def _entry(config: GatewayConfig, key: str) -> RegistryEntry:
    try:
        entry = open_registry(config).find(key)
    except RegistryError as exc:
        raise ToolError(str(exc)) from exc
    if entry is None:
        raise ToolError(f"no paired module matches {key!r} (see 'blegw devices')", "not_found")
    return entry


async def forget(config: GatewayConfig, key: str, *, force: bool = False) -> int:
    """Revoke at the platform first; only then remove the bond and the registry entry."""
    entry = _entry(config, key)
    async with ClientSession(timeout=HTTP_TIMEOUT) as http:
        problem = await _revoke(http, config.platform_url, entry.module_id,
                                entry.revocation_token, entry.kind)
    if problem and not force:
        raise ToolError(f"{problem}; nothing was changed (retry, or pass --force to forget the "
                        "module here anyway)", "platform")
    # The daemon must not take the bond's removal for a lost bond (a needs-re-pairing alarm).
    await _announce(config, entry.address, True)
    try:
        bond = await remove_bond(config.adapter, entry.address)
    except ToolError as exc:
        raise ToolError(f"{exc}; the registry entry is kept (run forget again)") from exc
    try:
        open_registry(config).remove(entry.module_id)
    except (RegistryError, OSError) as exc:
        raise ToolError(f"cannot update {config.registry}: {exc}") from exc
    print(f"forgot {entry.name} ({entry.module_id}): enrollment "
          f"{'NOT revoked' if problem else 'revoked'}, bond {'removed' if bond else 'absent'}, "
          "registry entry removed")
    say(await _daemon_reload(config, entry.module_id, serving=False))
    if problem:
        say(f"warning: {problem}")
        return EXIT["platform"]
    return 0


def rename(config: GatewayConfig, key: str, name: str) -> int:
    entry = _entry(config, key)
    if not name.strip():
        raise ToolError("the new name is empty", "usage")
    try:
        open_registry(config).rename(entry.module_id, name)
    except (RegistryError, OSError) as exc:
        raise ToolError(f"cannot update {config.registry}: {exc}") from exc
    print(f"{entry.module_id}: renamed {entry.name!r} to {name!r}")
    return 0


# -- ping -----------------------------------------------------------------------------------------
async def ping(config: GatewayConfig, key: str, count: int, as_json: bool) -> int:
    """Round trips over the link: through the daemon when it runs (it owns the link)."""
    entry = _entry(config, key)
    times: list[float] = []
    via = "daemon"
    for _ in range(count):
        try:
            answer = await daemon_request(config, {"cmd": "ping", "module": entry.module_id},
                                          timeout=30)
        except ToolError as exc:
            if exc.kind != "daemon" or times:
                raise
            via = "direct"
            times = await _ping_direct(config, entry, count)
            break
        if not answer.get("ok"):
            raise ToolError(f"ping failed: {answer.get('error')}", "timeout")
        times.append(float(answer["round_trip"]))
    ordered = sorted(times)
    summary = {"module_id": entry.module_id, "name": entry.name, "via": via,
               "count": len(times), "round_trips_ms": [round(t * 1000, 2) for t in times],
               "median_ms": round(ordered[len(ordered) // 2] * 1000, 2),
               "max_ms": round(ordered[-1] * 1000, 2)}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{entry.name} ({entry.address}) via {via}: {len(times)} round trips, median "
              f"{summary['median_ms']} ms, max {summary['max_ms']} ms")
    return 0


async def _ping_direct(config: GatewayConfig, entry: RegistryEntry, count: int) -> list[float]:
    say("the daemon is not running: pinging over a link of our own")
    link = ModuleLink(entry.address, config.adapter, connect_timeout=config.connect_timeout)
    try:
        return [(await link.ping(ANSWER_TIMEOUT)).radio for _ in range(count)]
    except ModuleUnreachable as exc:
        raise ToolError(f"{entry.name} ({entry.address}): {exc}", "not_found") from exc
    except LinkError as exc:
        raise ToolError(f"ping failed: {exc}", "timeout") from exc
    finally:
        await link.close()
