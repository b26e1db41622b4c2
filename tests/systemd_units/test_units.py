"""The systemd units verify, and the daemon speaks the notify protocol on a real socket."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from blegw_harness.chain import GATEWAY_ID
from tests.blegw.conftest import Mosquitto

UNITS = sorted((Path(__file__).parents[2] / "systemd").glob("*.service"))


MISSING_HERE = ("bluetooth.target", "mosquitto.service", "network-online.target")
"""Units a unit may depend on that a build machine need not have; only "not found" lines that
name one of them are tolerated."""


def unit_problems(text: str, name: str, tmp_path: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about a unit, as this checkout installs it."""
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: scripts/bootstrap installs the 'systemd' package")
    # systemd-analyze checks that ExecStart exists: point it at this checkout's venv.
    venv_bin = Path(sys.executable).parent
    copy = tmp_path / name
    copy.write_text(text.replace("/opt/blegw/.venv/bin", str(venv_bin)))
    result = subprocess.run([exe, "verify", "--man=no", str(copy)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()
                and not (any(dep in line for dep in MISSING_HERE) and "not found" in line)]
    if result.returncode != 0 and not problems:
        problems = [f"systemd-analyze exited {result.returncode}"]
    return problems


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    assert unit_problems(unit.read_text(), unit.name, tmp_path) == []


@pytest.mark.parametrize("change", [("Type=notify", "Type=notifyy"),
                                    ("NoNewPrivileges=yes", "NoNewPrivilegs=yes"),
                                    ("/opt/blegw/.venv/bin/blegw ", "/opt/blegw/.venv/bin/nope ")],
                         ids=["bad-value", "unknown-key", "missing-executable"])
def test_verification_catches_a_broken_unit(change: tuple[str, str], tmp_path: Path) -> None:
    """The check above can fail: a typo in a value, in a key, or a missing executable."""
    text = (Path(__file__).parents[2] / "systemd" / "blegw.service").read_text()
    assert change[0] in text
    assert unit_problems(text.replace(change[0], change[1]), "blegw.service", tmp_path)


def test_units_are_sandboxed() -> None:
    gateway = (Path(__file__).parents[2] / "systemd" / "blegw.service").read_text()
    for setting in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "NoNewPrivileges=yes",
                    "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
                    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "StateDirectory=",
                    "ConfigurationDirectory=", "RuntimeDirectory=",
                    "SupplementaryGroups=bluetooth",
                    "After=bluetooth.target network-online.target"):
        assert setting in gateway, setting


async def test_notify_protocol(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """READY only once the uplink is up, WATCHDOG at half WATCHDOG_USEC, STOPPING on SIGTERM."""
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.setblocking(False)
    config = tmp_path / "blegw.toml"
    config.write_text(f'[gateway]\nid = "{GATEWAY_ID}"\n[mqtt]\nurl = "{mosquitto.url}"\n')
    await mosquitto.stop()  # not ready while the broker is down
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "run", "--config", str(config), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    env.pop("WATCHDOG_PID", None)
    loop = asyncio.get_running_loop()
    received: list[tuple[float, str]] = []

    async def collect(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(loop.sock_recv(server, 4096), left)
            except TimeoutError:
                return
            received.append((time.monotonic(), data.decode()))

    try:
        await collect(1.5)
        assert not any("READY=1" in m for _, m in received), received
        watchdogs = [t for t, m in received if m == "WATCHDOG=1"]
        assert len(watchdogs) >= 4  # every 0.2 s while waiting for the broker
        gaps = [b - a for a, b in itertools.pairwise(watchdogs)]
        assert max(gaps) < 0.4
        await mosquitto.start()
        await collect(3.0)
        ready = [m for _, m in received if "READY=1" in m]
        assert len(ready) == 1, received
        assert "STATUS=online" in ready[0]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        await collect(0.5)
        assert any("STOPPING=1" in m for _, m in received)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        server.close()
