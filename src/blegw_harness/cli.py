"""``blegw-harness``: the whole chain on one machine, for a demonstration, a benchmark or a try.

    blegw-harness demo [--interactive] [--broker mqtts://HOST:PORT --broker-dir DIR]
    blegw-harness bench [-n 200] [--broker mqtt://HOST:PORT] [--interval-ms MS]
    blegw-harness provision-module --state DIR --module-state DIR [--days 365]

Exit codes: 0 done, 1 failure (a demo payment ended otherwise than scripted, a refused
provisioning), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="blegw-harness",
                                     description=__doc__.split("\n")[0].replace("``", ""))
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("demo", help="payments through the whole chain on the virtual radio, "
                                    "each step shown with its timing")
    p.add_argument("--interactive", action="store_true", help="approve on the keyboard")
    p.add_argument("--broker", default=None,
                   help="use this MQTT broker (mqtts://host:port) instead of starting mosquitto")
    p.add_argument("--broker-dir", type=Path, default=None,
                   help="its blegw-platform broker-setup directory: platform.password, ca.pem "
                        "and gw-demo.password (made by broker-user); without it the broker is "
                        "anonymous")
    p = sub.add_parser("bench", help="latency of each hop, and settlement throughput against "
                                     "bare verification")
    p.add_argument("-n", type=int, default=200, help="payments per suite (default: 200)")
    p.add_argument("--broker", default=None,
                   help="an anonymous MQTT broker (default: mosquitto started with the shipped "
                        "configuration)")
    p.add_argument("--interval-ms", type=float, default=0.0,
                   help="radio connection interval (0 = latency model off)")
    p = sub.add_parser("provision-module",
                       help="a factory step for the simulator: certify a simulated module's "
                            "keys and install its trust anchors")
    p.add_argument("--state", required=True,
                   help="platform state directory (ledger, CA keys); created if missing")
    p.add_argument("--module-state", required=True, help="the wearable-sim state directory")
    p.add_argument("--days", type=int, default=365, help="validity (default: 365)")
    args = parser.parse_args(argv)
    if args.cmd == "bench" and args.n < 1:
        parser.error("-n must be at least 1")
    sys.exit(run(args))


def run(args: argparse.Namespace) -> int:
    """Carry out one parsed command; its exit status."""
    if args.cmd == "demo":
        from .demo import main as demo_main

        return demo_main(interactive=args.interactive, broker=args.broker,
                         broker_dir=args.broker_dir)
    if args.cmd == "bench":
        from .bench import main as bench_main

        return bench_main(args.n, args.broker, args.interval_ms)
    return provision(Path(args.state), Path(args.module_state), args.days)


def provision(state: Path, module_state: Path, days: int) -> int:
    """``provision-module``: a refusal (unsafe state directory, bad CA files) is exit 1."""
    from blegw_platform.ledger import LedgerError
    from blegw_platform.platform import Platform, PlatformError
    from e2e import E2EError
    from wearable_sim.state import StateError

    from .provision import provision_module

    try:
        platform = Platform(state)
        try:
            provision_module(platform, module_state, days)
        finally:
            platform.close()
    except (PlatformError, LedgerError, E2EError, StateError, ValueError, OSError) as exc:
        print(f"blegw-harness provision-module: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    main()
