"""``vbluez``: run a virtual radio, or steer a running one.

    vbluez [run] [--adapters N] [--mtu M] [--interval-ms I] ...
        Starts a private dbus-daemon with the emulator on it. Prints the bus address first, on
        its own line (``unix:path=...``), then one line per adapter, and runs until Ctrl-C or
        SIGTERM. Point bleak/bless/bluetoothctl at it with
        ``export DBUS_SYSTEM_BUS_ADDRESS=<address>``.
    vbluez ctl COMMAND ...
        Faults and timing on a running radio (bus from --bus or DBUS_SYSTEM_BUS_ADDRESS):
        adapters, links, link-loss, power, drop-notifications, responsive, rssi, configure.
    vbluez serve --bus ADDRESS
        The emulator alone on an existing bus (used by VirtualBluez to run it as a child).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from typing import Any

from .config import ConfigError, RadioConfig
from .control import RadioControl
from .dbus_daemon import DBusDaemon
from .errors import VBluezError
from .radio import VirtualRadio

EXIT_USAGE = 2
EXIT_FAILED = 1


def _add_radio_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapters", type=int, default=2, help="number of adapters (default 2)")
    p.add_argument("--mtu", type=int, default=247, help="ATT MTU of new links (default 247)")
    p.add_argument("--interval-ms", type=float, default=0.0,
                   help="connection interval for the latency model; 0 = off (default)")
    p.add_argument("--rssi", type=int, default=-60, help="RSSI of every advertiser (dBm)")
    p.add_argument("--rssi-noise", type=float, default=0.0, help="RSSI noise, std dev in dB")
    p.add_argument("--notification-loss", type=float, default=0.0,
                   help="probability that a notification is lost on air")
    p.add_argument("--att-timeout", type=float, default=30.0, help="ATT timeout in seconds")
    p.add_argument("--seed", type=int, default=None, help="seed for noise and loss")
    p.add_argument("--gatt-cache", action="store_true",
                   help="centrals keep peers' GATT databases (BlueZ's Cache = always)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every operation")


def _config_from(args: argparse.Namespace) -> RadioConfig:
    return RadioConfig(adapters=args.adapters, mtu=args.mtu, conn_interval_ms=args.interval_ms,
                       rssi=args.rssi, rssi_noise=args.rssi_noise,
                       notification_loss=args.notification_loss, att_timeout=args.att_timeout,
                       seed=args.seed, gatt_cache=args.gatt_cache)


async def _wait_for_signal() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _run(config: RadioConfig) -> None:
    daemon = DBusDaemon()
    address = await asyncio.to_thread(daemon.start)
    radio = VirtualRadio(config)
    try:
        await radio.start(address)
        print(address, flush=True)
        for a in radio.adapters:
            print(f"{a.hci} {a.address}", flush=True)
        print(f"# export DBUS_SYSTEM_BUS_ADDRESS='{address}'", flush=True)
        await _wait_for_signal()
    finally:
        await radio.stop()
        await asyncio.to_thread(daemon.stop)


async def _serve(bus: str, config: RadioConfig) -> None:
    from .runtime import READY_LINE

    radio = VirtualRadio(config)
    await radio.start(bus)
    try:
        print(READY_LINE, flush=True)
        # Stop on a signal, or when the bus goes away (its owner died): never linger.
        signal_wait = asyncio.ensure_future(_wait_for_signal())
        bus_gone = asyncio.ensure_future(radio.bus_gone())
        await asyncio.wait({signal_wait, bus_gone}, return_when=asyncio.FIRST_COMPLETED)
        for task in (signal_wait, bus_gone):
            task.cancel()
    finally:
        await radio.stop()


def _fault_count(text: str) -> int:
    """``connect-fault``'s count: N (at least 1), ``until-lifted`` (-1) or ``off`` (0)."""
    named = {"until-lifted": -1, "off": 0}
    if text in named:
        return named[text]
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError("expected N >= 1, until-lifted or off")
    return int(text)


async def _ctl(args: argparse.Namespace) -> int:
    bus = args.bus or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    if not bus:
        print("vbluez ctl: no bus; pass --bus or set DBUS_SYSTEM_BUS_ADDRESS", file=sys.stderr)
        return EXIT_USAGE
    async with RadioControl(bus) as ctl:
        cmd = args.command
        if cmd == "adapters":
            for a in await ctl.adapters():
                print(f"{a.name} {a.address}")
        elif cmd == "links":
            print(json.dumps([asdict(x) for x in await ctl.links()], indent=2))
        elif cmd == "link-loss":
            await ctl.link_loss(args.adapter, args.address)
        elif cmd == "power":
            await ctl.set_powered(args.adapter, args.state == "on")
        elif cmd == "drop-notifications":
            await ctl.drop_notifications(args.adapter, args.address, args.count)
        elif cmd == "abort-connects":
            await ctl.abort_connects(args.adapter, args.address, args.count)
        elif cmd == "connect-fault":
            await ctl.connect_fault(args.adapter, args.address, args.kind, args.count)
        elif cmd == "responsive":
            await ctl.set_responsive(args.adapter, args.state == "on")
        elif cmd == "adapter-add":
            added = await ctl.add_adapter()
            print(f"{added.name} {added.address}")
        elif cmd == "adapter-remove":
            await ctl.remove_adapter(args.adapter)
        elif cmd == "adapter-restore":
            await ctl.restore_adapter(args.adapter)
        elif cmd == "restart":
            await ctl.restart_bluetoothd(args.downtime, wipe_bonds=tuple(args.wipe_bonds))
        elif cmd == "rssi":
            await ctl.set_rssi(args.scanner, args.advertiser, args.rssi)
        elif cmd == "interval":
            await ctl.set_link_interval(args.adapter, args.address, args.interval_ms)
        elif cmd == "configure":
            values: dict[str, Any] = {}
            for item in args.settings:
                key, _, raw = item.partition("=")
                try:
                    values[key] = json.loads(raw)
                except json.JSONDecodeError:
                    print(f"vbluez ctl: {item!r} is not KEY=JSON-VALUE", file=sys.stderr)
                    return EXIT_USAGE
            await ctl.configure(**values)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vbluez", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode")
    run = sub.add_parser("run", help="start a virtual radio (the default)")
    _add_radio_options(run)
    serve = sub.add_parser("serve", help="the emulator alone on an existing bus")
    serve.add_argument("--bus", required=True)
    serve.add_argument("--config-json", default=None)
    serve.add_argument("-v", "--verbose", action="store_true")
    ctl = sub.add_parser("ctl", help="steer a running radio")
    ctl.add_argument("--bus", default=None)
    cs = ctl.add_subparsers(dest="command", required=True)
    cs.add_parser("adapters")
    cs.add_parser("links")
    p = cs.add_parser("link-loss")
    p.add_argument("adapter")
    p.add_argument("address")
    p = cs.add_parser("power")
    p.add_argument("adapter")
    p.add_argument("state", choices=["on", "off"])
    p = cs.add_parser("drop-notifications")
    p.add_argument("adapter")
    p.add_argument("address")
    p.add_argument("count", type=int, nargs="?", default=1)
    p = cs.add_parser("abort-connects")
    p.add_argument("adapter")
    p.add_argument("address")
    p.add_argument("count", type=int, nargs="?", default=1)
    p = cs.add_parser("connect-fault", help="connects fail abort-by-local or InProgress, "
                      "N times, until lifted, or off")
    p.add_argument("adapter")
    p.add_argument("address")
    p.add_argument("kind", choices=["abort-by-local", "in-progress"])
    p.add_argument("count", nargs="?", default=-1, type=_fault_count,
                   help="N, until-lifted (the default) or off")
    p = cs.add_parser("responsive")
    p.add_argument("adapter")
    p.add_argument("state", choices=["on", "off"])
    cs.add_parser("adapter-add", help="one more controller is plugged in")
    p = cs.add_parser("adapter-remove", help="the controller goes away (dongle pulled)")
    p.add_argument("adapter")
    p = cs.add_parser("adapter-restore", help="a removed controller comes back")
    p.add_argument("adapter")
    p = cs.add_parser("restart", help="bluetoothd restarts (org.bluez lost and re-acquired)")
    p.add_argument("--downtime", type=float, default=0.5)
    p.add_argument("--wipe-bonds", action="append", default=[], metavar="ADAPTER",
                   help="this adapter's bonds are lost (repeatable)")
    p = cs.add_parser("rssi")
    p.add_argument("scanner")
    p.add_argument("advertiser")
    p.add_argument("rssi", type=int)
    p = cs.add_parser("interval")
    p.add_argument("adapter")
    p.add_argument("address")
    p.add_argument("interval_ms", type=float)
    p = cs.add_parser("configure")
    p.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        if args.mode in (None, "run"):
            if args.mode is None:
                args = build_parser().parse_args(["run"])
            asyncio.run(_run(_config_from(args)))
        elif args.mode == "serve":
            config = RadioConfig.from_json(args.config_json) if args.config_json else \
                RadioConfig()
            asyncio.run(_serve(args.bus, config))
        else:
            sys.exit(asyncio.run(_ctl(args)))
    except ConfigError as exc:
        print(f"vbluez: invalid setting: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except VBluezError as exc:
        print(f"vbluez: {exc}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    except KeyboardInterrupt:
        pass
    with contextlib.suppress(Exception):
        sys.stdout.flush()
