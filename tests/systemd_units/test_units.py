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


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_unit_verifies(unit: Path, tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: scripts/bootstrap installs the 'systemd' package")
    # systemd-analyze checks that ExecStart exists: point it at this checkout's venv.
    venv_bin = Path(sys.executable).parent
    text = unit.read_text().replace("/opt/blegw/.venv/bin", str(venv_bin))
    copy = tmp_path / unit.name
    copy.write_text(text)
    result = subprocess.run([exe, "verify", "--man=no", str(copy)], capture_output=True,
                            text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if unit.name in line or "Unknown" in line or "error" in line.lower()]
    problems = [p for p in problems if "bluetooth.target" not in p and "mosquitto" not in p
                and "network-online" not in p]
    assert result.returncode == 0 or not problems, result.stdout + result.stderr
    assert not problems, problems


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
