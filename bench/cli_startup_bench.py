"""How long the operator's commands take to answer, beside a bare interpreter start.

    .venv/bin/python bench/cli_startup_bench.py [-n 21] [--config blegw.toml]

Runs each command N times as a subprocess, round-robin (so a burst of load on the machine falls
on every command alike), and prints the median, the p90 and the ratio of each median to
``python -c pass`` measured in the same run. The ratio is the figure to compare between runs on
a loaded machine; the goal is a median under 150 ms for each command on a quiet one.

Without ``--config`` the commands read a scratch configuration with one paired module, and
``blegw status`` / ``devices`` talk to a stand-in control socket served by this script (one
canned status answer per connection, as the daemon's socket gives). That socket is the only
stand-in: the commands themselves are the installed console scripts, run as the operator runs
them. With ``--config`` they ask the real daemon of that configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from blegw.registry import Registry, RegistryEntry

GOAL_MS = 150.0
MODULE_ID = "0123456789abcdef0123456789abcdef"


def scratch_config(root: Path) -> Path:
    """A gateway configuration, a registry with one module, and the control socket's path."""
    registry = root / "registry.json"
    Registry(registry).add(RegistryEntry(
        module_id=MODULE_ID, address="AA:BB:CC:DD:EE:01", name="band", account="alice",
        suites=("p256", "sm2"), paired_at=time.time() - 60))
    config = root / "blegw.toml"
    config.write_text(f"""[gateway]
id = "gw-bench"
registry = "{registry}"
control_socket = "{root / 'control.sock'}"
platform_url = "http://127.0.0.1:8080"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[ble]
adapter = "hci0"
""")
    return config


def serve_status(path: Path, stop: threading.Event) -> threading.Thread:
    """Answer every connection to ``path`` with one status line, as the daemon does."""
    answer = json.dumps({"ok": True, "status": {
        "gateway": "gw-bench", "uplink": "connected", "outbox": 0, "malformed_requests": 0,
        "last_errors": [], "time": time.time(),
        "modules": [{"module_id": MODULE_ID, "connected": True, "queue": 0, "in_flight": False,
                     "handled": 3, "failures": 0, "last_error": "", "last_seen": time.time(),
                     "counter": 3}]}}).encode() + b"\n"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(0.2)

    def loop() -> None:
        with server:
            while not stop.is_set():
                try:
                    conn, _ = server.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    try:
                        conn.recv(4096)
                        conn.sendall(answer)
                    except OSError:
                        pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=21, help="runs of each command (default: 21)")
    parser.add_argument("--config", type=Path, default=None,
                        help="a real gateway configuration (default: a scratch one)")
    args = parser.parse_args()
    bindir = Path(sys.executable).parent
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        config = args.config
        if config is None:
            config = scratch_config(Path(tmp))
            serve_status(Path(tmp) / "control.sock", stop)
        env = {**os.environ, "BLEGW_CONFIG": str(config)}
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "blegw --help": [str(bindir / "blegw"), "--help"],
            "blegw status": [str(bindir / "blegw"), "status"],
            "blegw devices": [str(bindir / "blegw"), "devices"],
            "blegw-platform --help": [str(bindir / "blegw-platform"), "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for name, argv in commands.items():  # once each, unmeasured: a warm file cache
            run = subprocess.run(argv, env=env, capture_output=True, check=False)
            if run.returncode != 0:
                print(f"{name}: exit {run.returncode}: {run.stderr.decode()[-300:]}",
                      file=sys.stderr)
                return 1
        for _ in range(args.n):
            for name, argv in commands.items():
                started = time.perf_counter()
                subprocess.run(argv, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
                times[name].append((time.perf_counter() - started) * 1000)
        stop.set()
    base = statistics.median(times["python -c pass"])
    print(f"{'command':<24} {'median':>9} {'p90':>9} {'x python':>9}   (n={args.n}, "
          f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores)")
    worst = 0.0
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<24} {median:7.1f}ms {p90(values):7.1f}ms {median / base:8.1f}x")
        if name != "python -c pass":
            worst = max(worst, median)
    print(f"slowest command median {worst:.1f} ms (goal: under {GOAL_MS:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
