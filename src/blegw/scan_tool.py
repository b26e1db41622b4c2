"""``blegw scan`` (modules nearby, live on a terminal) and the search ``pair`` starts with: a
module by address, advertised name or module id.

Every advert is hostile until decoded: a malformed one shows as "?" and is never matched by
id; names are sanitised before they reach the terminal.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from dataclasses import dataclass
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakDBusError, BleakError
from dbus_fast import DBusError

from ble_profile import AdvertData, AdvertisementError, uuids
from terminal_input import sanitise

from .config import GatewayConfig
from .registry import MAX_TEXT
from .tool_errors import ExitCode, ToolError, say
from .views import make_console, scan_table

__all__ = ["Sighting", "advert_of", "find_module", "scan"]


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


def advert_of(adv: AdvertisementData) -> AdvertData | None:
    """The profile's service data in an advert, decoded; None if absent or malformed."""
    data = adv.service_data.get(uuids.SERVICE_DATA_UUID)
    if data is None:
        return None
    with contextlib.suppress(AdvertisementError):
        return AdvertData.decode(data)
    return None


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
        data = advert_of(adv)
        seen[device.address] = Sighting(
            device.address, sanitise(adv.local_name or device.name or "", MAX_TEXT),
            data.short_id.hex() if data else "?", adv.rssi,
            bool(data and data.pairing_mode), time.time())
        if live is not None:
            live.update(scan_table([s.row() for s in ordered()]))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, stop.set)
    try:
        if console.is_terminal and not as_json:
            live = Live(scan_table([]), console=console, refresh_per_second=4, transient=True)
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
        console.print(scan_table([s.row() for s in ordered()]))
    else:
        say("no module found (is it advertising and in range?)")
    return ExitCode.OK


async def find_module(config: GatewayConfig, key: str, timeout: float) -> tuple[BLEDevice, str]:
    """A module by address, advertised name or short module id (or a prefix of the full id)."""
    want = key.lower()

    def match(device: BLEDevice, adv: AdvertisementData) -> bool:
        if uuids.SERVICE not in adv.service_uuids:
            return False
        data = advert_of(adv)
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
                        f"{timeout:g} s (is it advertising and in range?)", ExitCode.NOT_FOUND)
    return device, sanitise(device.name or "", MAX_TEXT)  # the module chose it: shown, stored
