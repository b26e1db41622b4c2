"""The state of the virtual radio: adapters, remote devices, links, GATT databases, agents.

Plain data; the behaviour lives in :mod:`vbluez.radio`.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from .timing import ConnectionTiming

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
CCCD_UUID = "00002902" + BASE_UUID_SUFFIX

READ_FLAGS = {"read": 0, "encrypt-read": 1, "encrypt-authenticated-read": 2, "secure-read": 2}
WRITE_FLAGS = {"write": 0, "encrypt-write": 1, "encrypt-authenticated-write": 2,
               "secure-write": 2, "reliable-write": 0, "authenticated-signed-writes": 0}
KNOWN_FLAGS = {
    "broadcast", "read", "write-without-response", "write", "notify", "indicate",
    "authenticated-signed-writes", "extended-properties", "reliable-write",
    "writable-auxiliaries", "encrypt-read", "encrypt-write", "encrypt-notify",
    "encrypt-indicate", "encrypt-authenticated-read", "encrypt-authenticated-write",
    "encrypt-authenticated-notify", "encrypt-authenticated-indicate", "secure-read",
    "secure-write", "secure-notify", "secure-indicate", "authorize",
}
SECURITY_NONE, SECURITY_ENCRYPT, SECURITY_AUTHENTICATED = 0, 1, 2


def full_uuid(uuid: str) -> str:
    """Normalise a 16-, 32- or 128-bit UUID string to BlueZ's lowercase 128-bit form."""
    u = uuid.strip().lower()
    if len(u) == 4:
        return "0000" + u + BASE_UUID_SUFFIX
    if len(u) == 8:
        return u + BASE_UUID_SUFFIX
    if len(u) == 36:
        return u
    raise ValueError(f"not a UUID: {uuid!r}")


def uuid_wire_len(uuid: str) -> int:
    u = full_uuid(uuid)
    return 2 if u.startswith("0000") and u.endswith(BASE_UUID_SUFFIX) else 16


def required_level(flags: list[str], table: dict[str, int]) -> int:
    return max((table[f] for f in flags if f in table), default=SECURITY_NONE)


def notify_level(flags: list[str]) -> int:
    """Security the CCCD of a characteristic needs: the strictest of its access flags."""
    level = max(required_level(flags, READ_FLAGS), required_level(flags, WRITE_FLAGS))
    for f in flags:
        if f in ("encrypt-notify", "encrypt-indicate"):
            level = max(level, SECURITY_ENCRYPT)
        elif f.endswith(("-notify", "-indicate")) and f.startswith(("encrypt-auth", "secure")):
            level = max(level, SECURITY_AUTHENTICATED)
    return level


@dataclass(eq=False, slots=True)
class LocalDescriptor:
    path: str
    uuid: str
    flags: list[str]
    handle: int = 0


@dataclass(eq=False, slots=True)
class LocalCharacteristic:
    """A characteristic of a peripheral's registered application (the server side)."""

    app: GattApplication
    path: str
    uuid: str
    flags: list[str]
    descriptors: list[LocalDescriptor] = field(default_factory=list)
    handle: int = 0
    value_handle: int = 0
    cccd_handle: int = 0

    @property
    def can_notify(self) -> bool:
        return any(f.endswith(("notify", "indicate")) for f in self.flags)

    @property
    def indicates(self) -> bool:
        return any(f.endswith("indicate") for f in self.flags) and not any(
            f.endswith("notify") for f in self.flags
        )


@dataclass(eq=False, slots=True)
class LocalService:
    app: GattApplication
    path: str
    uuid: str
    primary: bool
    characteristics: list[LocalCharacteristic] = field(default_factory=list)
    handle: int = 0
    end_handle: int = 0


@dataclass(eq=False, slots=True)
class GattApplication:
    owner: str
    root: str
    adapter: Adapter
    services: list[LocalService] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class Advertisement:
    owner: str
    path: str
    adapter: Adapter
    props: dict[str, Any]

    @property
    def connectable(self) -> bool:
        return bool(self.props.get("Type", "peripheral") == "peripheral")

    @property
    def service_uuids(self) -> list[str]:
        return [full_uuid(u) for u in self.props.get("ServiceUUIDs", [])]

    @property
    def service_data(self) -> dict[str, bytes]:
        return {full_uuid(k): bytes(v) for k, v in self.props.get("ServiceData", {}).items()}

    @property
    def manufacturer_data(self) -> dict[int, bytes]:
        return {int(k): bytes(v) for k, v in self.props.get("ManufacturerData", {}).items()}

    @property
    def includes(self) -> list[str]:
        return list(self.props.get("Includes", []))

    @property
    def tx_power(self) -> int | None:
        """The TX power field on air: only with Includes "tx-power", as in BlueZ (the TxPower
        property alone only requests a transmit level)."""
        if "tx-power" not in self.includes:
            return None
        return int(self.props.get("TxPower", 0))

    def discoverable(self, adapter_discoverable: bool) -> bool:
        if "Discoverable" in self.props:
            return bool(self.props["Discoverable"])
        return adapter_discoverable

    def local_name(self, adapter_alias: str) -> str | None:
        if self.props.get("LocalName"):
            return str(self.props["LocalName"])
        if "local-name" in self.includes:
            return adapter_alias
        return None

    def payload_length(self) -> int:
        """Bytes of advertising data (not scan response) this advertisement needs on air."""
        total = 3  # flags
        for key in ("ServiceUUIDs", "SolicitUUIDs"):
            uuids = self.props.get(key, [])
            for size in (2, 16):
                n = sum(1 for u in uuids if uuid_wire_len(u) == size)
                if n:
                    total += 2 + size * n
        for uuid, data in self.props.get("ServiceData", {}).items():
            total += 2 + uuid_wire_len(uuid) + len(data)
        for data in self.props.get("ManufacturerData", {}).values():
            total += 4 + len(data)
        if self.tx_power is not None:
            total += 3
        if "appearance" in self.includes or "Appearance" in self.props:
            total += 4
        return total


@dataclass(eq=False, slots=True)
class Agent:
    owner: str
    path: str
    capability: str
    pid: int | None = None


@dataclass(slots=True)
class DiscoveryFilter:
    uuids: list[str] = field(default_factory=list)
    rssi: int | None = None
    pathloss: int | None = None
    transport: str = "auto"
    duplicate_data: bool = True
    discoverable: bool = False
    pattern: str = ""


@dataclass(slots=True)
class Bond:
    authenticated: bool


@dataclass(eq=False, slots=True)
class Device:
    """A remote peer as seen from one adapter: ``/org/bluez/hciN/dev_XX_XX_XX_XX_XX_XX``."""

    adapter: Adapter
    address: str
    path: str
    name: str | None = None
    alias: str | None = None
    rssi: int | None = None
    tx_power: int | None = None
    uuids: list[str] = field(default_factory=list)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    adv_flags: bytes = b""
    paired: bool = False
    bonded: bool = False
    trusted: bool = False
    blocked: bool = False
    connected: bool = False
    services_resolved: bool = False
    connect_task: asyncio.Task[Link] | None = None
    """The pending ``Connect``; ``Disconnect`` cancels it as BlueZ's device_request_disconnect."""
    abort_next: int = 0
    """Fault: the next connects end with ``le-connection-abort-by-local`` (RF interference);
    -1: every connect until the fault is lifted."""
    busy_next: int = 0
    """Fault: the next ``Connect`` calls are answered ``InProgress``, as BlueZ does while
    another operation on the device is pending (another program connecting); -1: until
    lifted."""
    pairing: bool = False
    link: Link | None = None
    last_seen: float = 0.0
    advertised: bool = False

    @property
    def display_alias(self) -> str:
        if self.alias:
            return self.alias
        if self.name:
            return self.name
        return self.address.replace(":", "-")

    @property
    def connecting(self) -> bool:
        return self.connect_task is not None

    @property
    def temporary(self) -> bool:
        return not (self.paired or self.bonded or self.trusted or self.connected
                    or self.connecting or self.pairing)


@dataclass(eq=False, slots=True)
class Adapter:
    index: int
    address: str
    name: str
    alias: str
    powered: bool = True
    discoverable: bool = False
    discoverable_timeout: int = 180
    pairable: bool = True
    pairable_timeout: int = 0
    responsive: bool = True
    devices: dict[str, Device] = field(default_factory=dict)
    sessions: dict[str, DiscoveryFilter] = field(default_factory=dict)
    filters: dict[str, DiscoveryFilter] = field(default_factory=dict)
    apps: list[GattApplication] = field(default_factory=list)
    adverts: list[Advertisement] = field(default_factory=list)
    bonds: dict[str, Bond] = field(default_factory=dict)
    gatt_cache: dict[str, list[LocalService]] = field(default_factory=dict)
    """Peers' GATT databases as this host last discovered them (``gatt_cache`` on)."""
    next_handle: int = 0x000A
    users: set[str] = field(default_factory=set)
    """Bus names that used this adapter: the basis of agent affinity (one host per adapter)."""

    @property
    def hci(self) -> str:
        return f"hci{self.index}"

    @property
    def path(self) -> str:
        return f"/org/bluez/hci{self.index}"

    @property
    def discovering(self) -> bool:
        return bool(self.sessions) and self.powered

    def device_path(self, address: str) -> str:
        return f"{self.path}/dev_{address.replace(':', '_')}"


@dataclass(eq=False, slots=True)
class Notification:
    char: LocalCharacteristic
    value: bytes
    indicate: bool


@dataclass(eq=False)
class Link:
    """One LE connection between a central adapter and a peripheral adapter."""

    central: Adapter
    peripheral: Adapter
    c_dev: Device
    p_dev: Device
    mtu: int
    timing: ConnectionTiming
    encrypted: bool = False
    authenticated: bool = False
    closed: bool = False
    lost: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())
    att_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cccd: dict[LocalCharacteristic, int] = field(default_factory=dict)
    notify_clients: dict[LocalCharacteristic, set[str]] = field(default_factory=dict)
    mirror_chars: dict[str, LocalCharacteristic] = field(default_factory=dict)
    mirror_descs: dict[str, tuple[LocalCharacteristic, LocalDescriptor | None]] = field(
        default_factory=dict)
    mirror_services: dict[str, LocalService] = field(default_factory=dict)
    values: dict[str, bytes] = field(default_factory=dict)
    outbound: asyncio.Queue[Notification] = field(default_factory=asyncio.Queue)
    commands: asyncio.Queue[tuple[LocalCharacteristic, bytes]] = field(
        default_factory=asyncio.Queue)
    """Write commands in the order the central queued them (one ATT bearer, one order)."""
    drop_next: int = 0
    write_socks: dict[LocalCharacteristic, socket.socket] = field(default_factory=dict)
    notify_socks: dict[LocalCharacteristic, socket.socket] = field(default_factory=dict)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def other(self, adapter: Adapter) -> Adapter:
        return self.peripheral if adapter is self.central else self.central

    def device_on(self, adapter: Adapter) -> Device:
        return self.c_dev if adapter is self.central else self.p_dev
