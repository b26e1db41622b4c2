"""Start and stop: nothing is left running, also when the body fails; the CLI's contract."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from vbluez import VirtualBluez


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text().lower()


def _socket_path(address: str) -> Path:
    return Path(address.split("unix:path=", 1)[1].split(",", 1)[0])


@pytest.mark.needs_vbluez_control("starts its own radio")
async def test_context_manager_starts_and_stops_everything() -> None:
    async with VirtualBluez(adapters=3) as radio:
        assert [a.name for a in radio.adapters] == ["hci0", "hci1", "hci2"]
        assert len({a.address for a in radio.adapters}) == 3
        sock = _socket_path(radio.bus_address)
        assert sock.exists()
        assert radio._proc is not None
        emulator_pid = radio._proc.pid
        daemon_pid = radio._daemon._proc.pid  # type: ignore[union-attr]
    assert not sock.exists()
    assert not _alive(emulator_pid)
    assert not _alive(daemon_pid)


@pytest.mark.needs_vbluez_control("starts its own radio")
async def test_cleanup_when_the_body_raises() -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with VirtualBluez() as radio:
            sock = _socket_path(radio.bus_address)
            pid = radio._proc.pid  # type: ignore[union-attr]
            raise Boom
    assert not sock.exists()
    assert not _alive(pid)


@pytest.mark.needs_vbluez_control("starts its own radio")
async def test_cleanup_when_cancelled() -> None:
    started = asyncio.Event()
    seen: dict[str, object] = {}

    async def body() -> None:
        async with VirtualBluez() as radio:
            seen["sock"] = _socket_path(radio.bus_address)
            seen["pid"] = radio._proc.pid  # type: ignore[union-attr]
            started.set()
            await asyncio.sleep(60)

    task = asyncio.ensure_future(body())
    await asyncio.wait_for(started.wait(), 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not seen["sock"].exists()  # type: ignore[attr-defined]
    assert not _alive(seen["pid"])  # type: ignore[arg-type]


@pytest.mark.needs_vbluez_control("runs the vbluez CLI")
def test_cli_prints_address_first_and_stops_on_sigterm() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "vbluez", "--adapters", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _drive_cli(proc)


def _drive_cli(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first.startswith("unix:path="), first
        lines = [proc.stdout.readline().split() for _ in range(2)]
        assert [line[0] for line in lines] == ["hci0", "hci1"]
        ctl = subprocess.run([sys.executable, "-m", "vbluez", "ctl", "--bus", first, "adapters"],
                             capture_output=True, text=True, timeout=20, check=True)
        assert ctl.stdout.split()[0::2] == ["hci0", "hci1"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert not _socket_path(first).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_rejects_an_invalid_setting() -> None:
    result = subprocess.run([sys.executable, "-m", "vbluez", "--mtu", "5"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "mtu must be 23..517" in result.stderr


def test_ctl_without_a_bus_says_so() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
    result = subprocess.run([sys.executable, "-m", "vbluez", "ctl", "links"], env=env,
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "no bus" in result.stderr


@pytest.mark.needs_vbluez_control("starts its own radio")
def test_nothing_outlives_a_killed_owner() -> None:
    """SIGKILL the process that owns a radio: its dbus-daemon and emulator go too."""
    script = (
        "import asyncio, sys\n"
        "from vbluez import VirtualBluez\n"
        "async def main():\n"
        "    async with VirtualBluez() as r:\n"
        "        print(r._proc.pid, r._daemon._proc.pid, flush=True)\n"
        "        await asyncio.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                          text=True) as owner:
        assert owner.stdout is not None
        pids = [int(x) for x in owner.stdout.readline().split()]
        assert all(_alive(p) for p in pids)
        owner.kill()
        owner.wait()
    import time
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)
