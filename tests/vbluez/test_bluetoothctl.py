"""An independent client: BlueZ's own bluetoothctl sees the virtual adapters and devices."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest

from vbluez import VirtualBluez

from .conftest import Peripheral


async def _bluetoothctl(radio: VirtualBluez, *args: str, timeout: float = 15) -> str:
    exe = shutil.which("bluetoothctl")
    if exe is None:
        pytest.fail("bluetoothctl is missing: scripts/bootstrap installs the 'bluez' package")
    proc = await asyncio.create_subprocess_exec(
        exe, *args, env={**os.environ, **radio.environ()}, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return out.decode(errors="replace")


async def test_bluetoothctl_lists_adapters_and_sees_the_peripheral(
        vbluez: VirtualBluez, peripheral: Peripheral) -> None:
    listing = await _bluetoothctl(vbluez, "list")
    for adapter in vbluez.adapters:
        assert adapter.address in listing
    await _bluetoothctl(vbluez, "--timeout", "2", "scan", "on")
    devices = await _bluetoothctl(vbluez, "devices")
    assert f"Device {peripheral.address} VPeriph" in devices
