"""Bonds cannot be downgraded: the daemon's pairing agent, its watch on bonds, and the check
before every use of a module's link.

BlueZ pairs again on its own when a write needs an encrypted link and the bond is gone on one
side: "just works" if either end has no display, which silently turns a numeric-comparison bond
into an unauthenticated one, and BlueZ never asks the initiator's agent in just works. So the
daemon does three things while it runs:

* it registers an ``org.bluez.Agent1`` (the default agent) that refuses every pairing and
  authorization BlueZ brings to it: the daemon starts none (``blegw pair`` answers its own
  with its own agent); a refusal for a module's device marks that module;
* it watches BlueZ's signals for the modules' devices: ``Paired``/``Bonded`` turning false, the
  device removed (the bond with it), or a new bond made that ``blegw pair`` did not announce
  over the control socket, marks the module;
* before every exchange, the module's link (``guarded_link``) has the guard ask BlueZ
  whether the bond the registry recorded still exists; without it the write would make BlueZ
  pair just works, so nothing is written and the request is answered ``NEEDS_RE_PAIRING`` at
  once.

A marked module gets no request until ``blegw pair`` records a new bond in the registry; each
mark is one WARNING line with the exact command to run, and ``blegw status`` shows it. Marks are
kept in a small file beside the registry, so a restart of the daemon does not lift them (a
replaced bond looks like any other bond once the daemon that saw it happen is gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus

from bluez_pairing import (
    AgentError,
    BluezCallError,
    RefusingAgent,
    bluez_call,
    is_bonded,
    register_agent,
    unregister_agent,
)

from .bond_marks import read_marks, write_marks
from .faults import Fault, classify
from .link import LinkError, ModuleUnreachable

__all__ = ["BondNotTrusted", "BondRecord", "PairingGuard", "re_pair_command"]

log = logging.getLogger("blegw.bonds")

AGENT_PATH = "/blegw/daemon_agent"
REMOVAL_SETTLE = 0.3
"""Seconds to let an adapter's removal finish before a device's removal is read as its bond's."""
BUS_RETRY = 5.0
"""Seconds between attempts to reach a system bus that was not there."""
BLUEZ_TIMEOUT = 5.0
"""Seconds BlueZ (or the bus) has to answer one of the guard's calls."""
ANNOUNCE_SECONDS = 180.0
"""How long a pairing announced by ``blegw pair`` may take (its scan, bonding and enrollment)."""
GUARDED = ("numeric_comparison", "just_works")
"""Bond kinds the registry records since it records them. Every module the registry lists is
guarded, whatever its kind: ``blegw pair`` always bonds, so an ``unknown`` entry (written
before kinds were recorded, or a bond that existed when pair ran) had a bond that must still
exist before each write, and a mark on it is lifted by the new entry ``blegw pair`` writes.
Only a ``[[modules]]`` entry of the configuration (no pairing recorded anywhere, nothing that
could lift a mark) gets the agent's refusals alone: a lost bond fails its writes with its own
fault (``bond_refused``, ``key_missing``)."""
_BLUEZ_AWAY = ("org.freedesktop.DBus.Error.ServiceUnknown",
               "org.freedesktop.DBus.Error.NameHasNoOwner", "")
"""How the bus answers a call to a bluetoothd that is not running (or does not answer)."""
_DEVICE = re.compile(r"/org/bluez/(hci[0-9]+)/dev_([0-9A-F]{2}(?:_[0-9A-F]{2}){5})$")


def re_pair_command(address: str, account: str) -> str:
    """The exact command that makes a new, checked bond (and a new enrollment)."""
    return f"blegw pair {address} --account {account or 'ACCOUNT'} --code CODE"


def needs_re_pairing_fault(address: str, reason: str, command: str) -> Fault:
    return Fault("needs_re_pairing", f"the bond with module {address} {reason}; no request"
                 " goes to it until it is paired again",
                 f"put the module in pairing mode, get a new enrollment code from the"
                 f" platform and run `{command}`", False)


def bluez_restarted(adapter: str) -> Fault:
    return Fault("bluez_restarted", f"bluetoothd stopped or restarted (adapter {adapter}): "
                 "BlueZ dropped every link", "the next request reconnects once it is back;"
                 " if it keeps happening see `journalctl -u bluetooth`", False)


class BondNotTrusted(LinkError):
    """The module's recorded bond is lost or was replaced: nothing was written to it."""


@dataclass
class BondRecord:
    """What the guard knows about one module's bond."""

    address: str
    strength: str
    account: str
    paired_at: float
    needs_re_pairing: str = ""
    """Why it needs pairing again (a plain-language reason); "" while the bond is trusted."""
    marked_at: float | None = None
    rssi: int | None = None
    rssi_at: float | None = None
    registered: bool = True
    """Listed in the registry (paired with ``blegw pair``); False for a ``[[modules]]``
    entry of the configuration."""

    @property
    def guarded(self) -> bool:
        """Checked before every exchange and marked when lost or replaced (see GUARDED)."""
        return self.registered or self.strength in GUARDED

    @property
    def command(self) -> str:
        return re_pair_command(self.address, self.account)


class PairingGuard:
    """The daemon's agent and bond watch on one adapter; see the module's docstring."""

    def __init__(self, adapter: str, marks_file: Path | None = None) -> None:
        self.adapter = adapter
        self.marks_file = marks_file
        """Where marks survive a restart (None: kept in memory only)."""
        self._stored: dict[str, dict[str, Any]] = {}
        self._save_lock = asyncio.Lock()
        self.records: dict[bytes, BondRecord] = {}
        self.refusals = 0
        """Pairings and authorizations the daemon's agent refused (any device)."""
        self._refused_at: dict[str, float] = {}
        """Address -> when the agent last refused a pairing with it (monotonic)."""
        self._dropped_at: dict[str, float] = {}
        """Address -> when BlueZ last said a module's device is no longer connected."""
        self._up_at: dict[str, float] = {}
        """Address -> when BlueZ last said a module's device is connected."""
        self._flicker_waiters: dict[str, list[tuple[float, asyncio.Future[None]]]] = {}
        """Connects watching for their link to come up and go (:meth:`flicker`)."""
        self._bluez_changed_at = -1.0
        """When ``org.bluez`` last lost or changed its owner (monotonic)."""
        self._auth_failed_at: dict[str, float] = {}
        """Address -> when BlueZ last dropped a link to it on an authentication failure
        (``Device1.Disconnected`` with ``org.bluez.Reason.Authentication``; monotonic): a
        BlueZ older than 5.83 answers the connect ``br-connection-canceled`` then."""
        self._announced: dict[str, float] = {}
        """Address -> until when ``blegw pair`` announced it is bonding with it."""
        self._bus: MessageBus | None = None
        self.registered = False
        """Whether BlueZ holds the daemon's agent now (False while bluetoothd is away)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.enabled = False
        """Started by the daemon: bonds are checked with BlueZ before each exchange."""

    # -- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect to the system bus, watch the adapter's devices, register the agent.

        Raises :class:`AgentError` when BlueZ refuses the agent: the daemon must not run
        without one (BlueZ would answer pairings it did not start on its own). If bluetoothd
        is not running yet, the agent is registered when it starts, and again after each
        restart of bluetoothd (which forgets its agents). Without a system bus (no BlueZ can
        pair anything then) the guard tries again every few seconds; meanwhile modules whose
        bond it checks are answered unreachable.
        """
        self.enabled = True
        try:
            await self._connect()
        except (OSError, EOFError, TimeoutError) as exc:
            log.error("pairing agent: no system bus (%s); trying again every %g s",
                      exc or type(exc).__name__, BUS_RETRY)
            self._spawn(self._connect_later(), "agent-bus")

    async def _connect_later(self) -> None:
        while self._bus is None:
            await asyncio.sleep(BUS_RETRY)
            try:
                await self._connect()
            except (OSError, EOFError, TimeoutError):
                continue
            except AgentError as exc:
                log.error("pairing agent: BlueZ refused it: %s; pairings the gateway did not "
                          "start are not refused until it is accepted", exc)
                self._bus = None
                continue
            log.info("pairing agent: system bus reached")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self) -> None:
        bus = await asyncio.wait_for(MessageBus(bus_type=BusType.SYSTEM).connect(),
                                     BLUEZ_TIMEOUT)
        try:
            bus.add_message_handler(self._on_message)
            for rule in (
                    "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged',"
                    "arg0='org.bluez'",
                    "type='signal',sender='org.bluez',interface='org.freedesktop.DBus.Properties',"
                    f"member='PropertiesChanged',path_namespace='/org/bluez/{self.adapter}'",
                    "type='signal',sender='org.bluez',"
                    "interface='org.freedesktop.DBus.ObjectManager',member='InterfacesRemoved'",
                    "type='signal',sender='org.bluez',interface='org.bluez.Device1',"
                    f"member='Disconnected',path_namespace='/org/bluez/{self.adapter}'"):
                reply = await asyncio.wait_for(bus.call(Message(
                    destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                    interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                    body=[rule])), BLUEZ_TIMEOUT)
                if reply is None or reply.message_type == MessageType.ERROR:
                    raise AgentError(f"cannot watch BlueZ's signals: {reply and reply.body}")
            self._bus = bus
            await asyncio.wait_for(self._register(), BLUEZ_TIMEOUT * 2)
        except BaseException:
            self._bus = None
            bus.disconnect()
            raise

    async def _register(self) -> None:
        """Register the refusing agent as BlueZ's default; quiet wait if bluetoothd is away."""
        bus = self._bus
        if bus is None:
            return
        # One call on the adapter first: this process is its user, so an agent-per-adapter
        # BlueZ (and the virtual one) asks this agent about this adapter only.
        with contextlib.suppress(BluezCallError, TimeoutError):
            await asyncio.wait_for(bluez_call(bus, f"/org/bluez/{self.adapter}",
                                              "org.freedesktop.DBus.Properties", "Get", "ss",
                                              ["org.bluez.Adapter1", "Address"]), BLUEZ_TIMEOUT)
        with contextlib.suppress(KeyError, ValueError):
            bus.unexport(AGENT_PATH)  # a previous bluetoothd's registration
        try:
            await register_agent(bus, RefusingAgent(self._on_refused), AGENT_PATH)
        except AgentError as exc:
            if exc.error_name not in _BLUEZ_AWAY:
                raise
            self.registered = False
            log.warning("pairing agent: bluetoothd is not running (%s); the agent is "
                        "registered when it starts", exc.error_name or "no reply")
            return
        self.registered = True
        log.info("pairing agent registered: pairings the gateway did not start are refused")

    def _bluez_owner_changed(self, new_owner: str) -> None:
        """bluetoothd left (its agents with it) or started: register again when it is back."""
        self.registered = False
        self._bluez_changed_at = time.monotonic()
        if not new_owner:
            log.warning("pairing agent: bluetoothd stopped; the agent is registered again "
                        "when it is back")
            return
        self._spawn(self._reregister(), "agent-again")

    async def _reregister(self) -> None:
        try:
            await asyncio.wait_for(self._register(), 10)
        except (AgentError, TimeoutError) as exc:
            log.error("pairing agent: BlueZ refused it after restarting: %s; pairings the "
                      "gateway did not start are not refused until the daemon restarts", exc)

    async def stop(self) -> None:
        saves = [t for t in self._tasks if t.get_name() == "bond-marks"]
        if saves:  # marks made just before stopping are kept
            await asyncio.wait(saves, timeout=5)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        bus, self._bus = self._bus, None
        if bus is None:
            return
        if self.registered:
            with contextlib.suppress(Exception):  # leaving: BlueZ may be gone already
                await asyncio.wait_for(unregister_agent(bus, AGENT_PATH), 2)
        bus.disconnect()

    # -- what the registry says ----------------------------------------------------------------
    def track(self, module_id: bytes, address: str, strength: str, account: str,
              paired_at: float, *, registered: bool = True) -> None:
        """Serve a module with the bond the registry records; a newer pairing (``blegw pair``
        ran again) clears a mark."""
        old = self.records.get(module_id)
        if old is not None and old.address == address and old.paired_at == paired_at:
            return
        record = BondRecord(address, strength, account, paired_at, registered=registered)
        stored = self._stored.get(module_id.hex())
        if old is not None and old.needs_re_pairing and old.paired_at == paired_at:
            record.needs_re_pairing, record.marked_at = old.needs_re_pairing, old.marked_at
        elif old is None and stored is not None and stored["paired_at"] == paired_at:
            record.needs_re_pairing, record.marked_at = stored["reason"], stored["marked_at"]
            log.warning("module %s: still needs re-pairing (since before the daemon started): "
                        "the bond %s; run `%s`", module_id.hex()[:8], record.needs_re_pairing,
                        record.command, extra={"module_id": module_id.hex()})
        elif old is not None and old.needs_re_pairing:
            log.info("module %s: paired again (%s); requests go to it again",
                     module_id.hex()[:8], strength.replace("_", " "),
                     extra={"module_id": module_id.hex()})
        if old is not None:
            record.rssi, record.rssi_at = old.rssi, old.rssi_at
        self.records[module_id] = record
        self._announced.pop(address, None)
        if stored is not None and not record.needs_re_pairing:
            self._save()

    async def load_marks(self) -> None:
        """Read the marks a previous run left (before the registry is read). A file that is
        not what this daemon writes is reported and ignored: the check before each write
        still finds a bond that is gone."""
        if self.marks_file is None:
            return
        try:
            self._stored = await asyncio.to_thread(read_marks, self.marks_file)
        except (OSError, ValueError) as exc:
            log.warning("bond marks in %s ignored: %s", self.marks_file, exc)

    def _save(self) -> None:
        """Write the marks in force (off the loop, one write at a time)."""
        if self.marks_file is None:
            return
        self._stored = {m.hex(): {"reason": r.needs_re_pairing, "marked_at": r.marked_at,
                                  "paired_at": r.paired_at}
                        for m, r in self.records.items() if r.needs_re_pairing}
        data = json.dumps(self._stored, indent=1).encode()
        path = self.marks_file
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): nothing to write with
            return

        async def write() -> None:
            async with self._save_lock:
                try:
                    await asyncio.to_thread(write_marks, path, data)
                except OSError as exc:
                    log.error("cannot keep bond marks in %s: %s (they last until the daemon "
                              "stops)", path, exc)

        self._spawn(write(), "bond-marks")

    def untrack(self, module_id: bytes) -> None:
        record = self.records.pop(module_id, None)
        if record is not None and record.needs_re_pairing:
            self._save()  # a forgotten module's mark goes with it

    def announce(self, address: str, on: bool) -> bool:
        """``blegw pair`` starts (or ends) bonding with ``address``: the bond it makes is not
        a downgrade. Returns whether a module at that address needs pairing again."""
        address = address.upper()
        if on:
            self._announced[address] = time.monotonic() + ANNOUNCE_SECONDS
        else:
            self._announced.pop(address, None)
        return any(r.needs_re_pairing for r in self.records.values() if r.address == address)

    def _is_announced(self, address: str) -> bool:
        until = self._announced.get(address)
        return until is not None and time.monotonic() < until

    def needs_re_pairing(self, module_id: bytes) -> bool:
        record = self.records.get(module_id)
        return record is not None and bool(record.needs_re_pairing)

    # -- the check before each exchange ---------------------------------------------------------
    def mark(self, module_id: bytes, reason: str) -> Fault | None:
        """The module's bond cannot be trusted: refuse it requests until it is paired again.
        One WARNING line per mark, with the command to run. None if not a served module, or
        a ``[[modules]]`` entry of the configuration (no pairing recorded in the registry
        could lift the mark; its failures keep their own faults, such as ``bond_refused``)."""
        record = self.records.get(module_id)
        if record is None or not record.guarded:
            return None
        fault = needs_re_pairing_fault(record.address, reason, record.command)
        if not record.needs_re_pairing:
            record.needs_re_pairing, record.marked_at = reason, time.time()
            self._save()
            log.warning("module %s: needs re-pairing: %s. %s", module_id.hex()[:8],
                        fault.cause, fault.advice, extra={"module_id": module_id.hex()})
        return fault

    async def check(self, module_id: bytes) -> None:
        """Raise :class:`BondNotTrusted` unless the module's recorded bond may be used."""
        record = self.records.get(module_id)
        if record is None:
            return
        if self._is_announced(record.address):
            # `blegw pair` is replacing the bond: nothing goes over the link meanwhile.
            fault = Fault("being_paired", f"module {record.address} is being paired again "
                          "(`blegw pair` is running)", "retry once the pairing is done", False)
            raise BondNotTrusted(fault.text(), fault)
        if not record.needs_re_pairing and record.guarded and self.enabled:
            try:
                if self._bus is None:
                    raise BluezCallError("no system bus")
                bonded = await asyncio.wait_for(
                    is_bonded(self._bus, self.adapter, record.address), BLUEZ_TIMEOUT)
            except (BluezCallError, TimeoutError) as exc:
                # BlueZ cannot say (restarting): the write would fail or re-pair; do not risk
                # it. Not the bond's fault: the module is unreachable for now.
                name = exc.error_name if isinstance(exc, BluezCallError) else ""
                fault = Fault("bluez_unavailable", f"BlueZ does not answer about module "
                              f"{record.address} ({name or 'no reply'})",
                              "check that bluetoothd runs (`systemctl status bluetooth`)",
                              False)
                raise ModuleUnreachable(fault.text(), fault) from exc
            if not bonded:
                if not await self._adapter_present():
                    # The adapter itself is gone (unplugged, bluetoothd restarting): its
                    # bonds come back with it; the module is unreachable, not unpaired.
                    fault = classify(f"adapter {self.adapter} not found", self.adapter,
                                     record.address)
                    raise ModuleUnreachable(fault.text(), fault)
                self.mark(module_id, f"is gone on the gateway's adapter {self.adapter}")
        if record.needs_re_pairing:
            fault = needs_re_pairing_fault(record.address, record.needs_re_pairing,
                                           record.command)
            raise BondNotTrusted(fault.text(), fault)

    # -- BlueZ's signals and questions -----------------------------------------------------------
    def _modules_at(self, path: str) -> list[bytes]:
        match = _DEVICE.match(path)
        if match is None or match.group(1) != self.adapter:
            return []
        address = match.group(2).replace("_", ":")
        return [m for m, r in self.records.items() if r.address == address]

    def _on_refused(self, device: str, what: str) -> None:
        """Log the refusal; the module is marked only if one of the daemon's own exchanges
        failed because of it (:meth:`refused_since`): anyone in radio range can ask to pair
        under a module's address, and that must not take the module out of service."""
        self.refusals += 1
        modules = self._modules_at(device)
        match = _DEVICE.match(device)
        if match is not None:
            self._refused_at[match.group(2).replace("_", ":")] = time.monotonic()
        log.warning("pairing agent: refused %s from %s: the gateway did not start this "
                    "pairing%s", what, device,
                    f" (module {modules[0].hex()[:8]})" if modules else "",
                    extra={"module_id": modules[0].hex()} if modules else {})

    def dropped_since(self, address: str, since: float) -> bool:
        """Whether a link to ``address`` went down after ``since`` (monotonic): during a
        connect that then timed out, that is BlueZ's ``le-connection-abort-by-local``, which
        bleak retries itself until its timeout without saying so."""
        return self._dropped_at.get(address, -1.0) >= since

    def flicker(self, address: str) -> asyncio.Future[None]:
        """A future done once BlueZ shows a link to ``address`` up and then down again from
        now on: during a connect, ``le-connection-abort-by-local``, which bleak would retry
        silently until its timeout. Pass it to :meth:`unwatch` when done."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flicker_waiters.setdefault(address, []).append((time.monotonic(), future))
        return future

    def unwatch(self, address: str, future: asyncio.Future[None]) -> None:
        waiters = self._flicker_waiters.get(address, [])
        self._flicker_waiters[address] = [w for w in waiters if w[1] is not future]
        if not self._flicker_waiters[address]:
            del self._flicker_waiters[address]

    def auth_failed_since(self, address: str, since: float) -> bool:
        """Whether BlueZ dropped a link to ``address`` on an authentication failure (the peer
        has no key) after ``since`` (monotonic)."""
        return self._auth_failed_at.get(address, -1.0) >= since

    def refused_since(self, address: str, since: float) -> bool:
        """Whether the agent refused a pairing with ``address`` after ``since`` (monotonic)."""
        return self._refused_at.get(address, -1.0) >= since

    def _on_message(self, msg: Message) -> bool:
        """Signals of the adapter's devices (a handler: never consumes the message)."""
        if msg.message_type != MessageType.SIGNAL:
            return False
        try:
            if msg.member == "NameOwnerChanged" and msg.sender == "org.freedesktop.DBus":
                if msg.body[0] == "org.bluez":
                    self._bluez_owner_changed(str(msg.body[2]))
            elif msg.member == "Disconnected" and msg.interface == "org.bluez.Device1":
                match = _DEVICE.match(msg.path or "")
                if match is not None and match.group(1) == self.adapter \
                        and str(msg.body[0]) == "org.bluez.Reason.Authentication":
                    self._auth_failed_at[match.group(2).replace("_", ":")] = time.monotonic()
            elif msg.member == "PropertiesChanged" and msg.body[0] == "org.bluez.Device1":
                self._on_device_changed(msg.path or "", msg.body[1])
            elif msg.member == "InterfacesRemoved" and "org.bluez.Device1" in msg.body[1]:
                for module_id in self._modules_at(msg.body[0]):
                    if not self._is_announced(self.records[module_id].address):
                        self._spawn(self._device_removed(module_id), "device-removed")
        except (IndexError, TypeError, AttributeError, KeyError):
            log.debug("unreadable BlueZ signal %s ignored", msg.member)
        return False

    async def _device_removed(self, module_id: bytes) -> None:
        """A module's device object went: its bond with it, unless the whole adapter went
        (unplugged, or bluetoothd restarting: BlueZ removes every device first, and they come
        back with their bonds), so the bond is looked up once things settle."""
        await asyncio.sleep(REMOVAL_SETTLE)
        record = self.records.get(module_id)
        if record is None or self._bus is None or not await self._adapter_present():
            return
        try:
            bonded = await asyncio.wait_for(
                is_bonded(self._bus, self.adapter, record.address), BLUEZ_TIMEOUT)
        except (BluezCallError, TimeoutError):
            return  # BlueZ cannot say: the check before the next write asks again
        if not bonded:
            self.mark(module_id, f"was removed from the gateway's adapter {self.adapter}")

    async def host_fault(self, since: float) -> Fault | None:
        """Why a link was lost since ``since`` (monotonic), if it was the host's doing rather
        than the module's: bluetoothd stopped or restarted (it drops every link), or the
        adapter went. BlueZ drops the links first and then the adapter (and releases its
        name), so this looks once things have settled. None when the host is fine (the
        module went out of range, restarted...) or the guard cannot say (no bus)."""
        if self._bus is None:
            return None
        await asyncio.sleep(REMOVAL_SETTLE)
        if self._bluez_changed_at >= since:
            return bluez_restarted(self.adapter)
        if not await self._adapter_present():
            return classify(f"adapter {self.adapter} not found", self.adapter)
        return None

    async def _adapter_present(self) -> bool:
        """Whether BlueZ has the adapter now (False also when BlueZ cannot say)."""
        if self._bus is None:
            return False
        try:
            await asyncio.wait_for(bluez_call(self._bus, f"/org/bluez/{self.adapter}",
                                              "org.freedesktop.DBus.Properties", "Get", "ss",
                                              ["org.bluez.Adapter1", "Address"]), BLUEZ_TIMEOUT)
        except (BluezCallError, TimeoutError):
            return False
        return True

    def _on_device_changed(self, path: str, changed: dict[str, Any]) -> None:
        modules = self._modules_at(path)
        if not modules:
            return
        values = {k: getattr(v, "value", v) for k, v in changed.items()}
        for module_id in modules:
            record = self.records[module_id]
            if isinstance(values.get("RSSI"), int):
                record.rssi, record.rssi_at = int(values["RSSI"]), time.time()
            if values.get("Connected") is True:
                self._up_at[record.address] = time.monotonic()
            elif values.get("Connected") is False:
                self._dropped_at[record.address] = time.monotonic()
                up = self._up_at.get(record.address, -1.0)
                for since, future in self._flicker_waiters.get(record.address, []):
                    if up >= since and not future.done():
                        future.set_result(None)
            if self._is_announced(record.address):
                continue
            bond = [values[k] for k in ("Paired", "Bonded") if k in values]
            if False in bond:
                self.mark(module_id, "was lost (BlueZ says it is no longer paired)")
            elif True in bond and record.guarded:
                self.mark(module_id, "was replaced by a pairing the gateway did not start")
