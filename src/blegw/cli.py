"""``blegw``: the gateway daemon and its tools.

    blegw run --config FILE      run the gateway daemon
    blegw demo [--interactive] [--broker URL]
                                 the whole chain on the virtual radio with an embedded broker
    blegw bench [-n N] [--broker URL] [--interval-ms MS]
                                 latency of each hop, and settlement throughput
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from .config import ConfigError, load_config
from .logs import setup_logging
from .service import GatewayService

EXIT_CONFIG = 2


async def _run(config_path: Path) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        print(f"blegw: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    service = GatewayService(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)
    await service.run()
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blegw", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--log-format", choices=["text", "json"], default="text",
                        help="json: one JSON object per line (for journald and log shippers)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the gateway daemon")
    run.add_argument("--config", type=Path, default=Path("/etc/blegw/blegw.toml"))
    demo = sub.add_parser("demo", help="the whole chain on the virtual radio")
    demo.add_argument("--interactive", action="store_true", help="approve on the keyboard")
    demo.add_argument("--broker", default=None, help="use this MQTT broker (mqtt://host:port)")
    bench = sub.add_parser("bench", help="figures for the whole chain and for settlement")
    bench.add_argument("-n", type=int, default=200, help="payments per suite")
    bench.add_argument("--broker", default=None, help="MQTT broker URL (default: embedded)")
    bench.add_argument("--interval-ms", type=float, default=0.0,
                       help="radio connection interval (0 = latency model off)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO if args.verbose else logging.WARNING, args.log_format)
    if args.cmd == "run":
        sys.exit(asyncio.run(_run(args.config)))
    if args.cmd == "bench":
        from .bench import main as bench_main

        sys.exit(bench_main(args.n, args.broker, args.interval_ms))
    from .demo import main as demo_main

    sys.exit(demo_main(interactive=args.interactive, broker=args.broker))
