"""The gateway daemon as a real subprocess (`blegw run --config`): killed and restarted."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiomqtt

from blegw_harness.chain import GATEWAY_ID, running_chain
from e2e import Suite
from relay_contract import topic
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto


async def _status(mosquitto: Mosquitto) -> str:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe(topic(GATEWAY_ID, "status"), qos=1)
        async for message in client.messages:
            return bytes(message.payload).decode()  # type: ignore[arg-type]
    return ""


async def _wait_status(mosquitto: Mosquitto, wanted: str) -> None:
    for _ in range(100):
        if await asyncio.wait_for(_status(mosquitto), 5) == wanted:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"gateway status never became {wanted}")


async def _start_daemon(config: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "run", "--config", str(config), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def test_daemon_killed_and_restarted_with_requests_pending(mosquitto: Mosquitto,
                                                                 tmp_path: Path) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             with_gateway=False) as chain:
        config = tmp_path / "blegw.toml"
        config.write_text(
            f'[gateway]\nid = "{GATEWAY_ID}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
            f'[ble]\nadapter = "hci0"\n[[modules]]\n'
            f'id = "{chain.module.element.module_id.hex()}"\n'
            f'address = "{chain.radio.adapters[1].address}"\n')
        env = {**os.environ, **chain.radio.environ()}
        daemon = await _start_daemon(config, env)
        try:
            await _wait_status(mosquitto, "online")
            first = await chain.pay(100, "before the crash", Suite.P256_SHA256, "proc-key-0001")
            assert first["state"] == "settled"
            daemon.send_signal(signal.SIGKILL)
            await daemon.wait()
            await _wait_status(mosquitto, "offline")  # the last will
            pending = asyncio.create_task(chain.pay(200, "while it is down", Suite.SM2_SM3,
                                                    "proc-key-0002"))
            await asyncio.sleep(1.0)
            assert not pending.done()
            daemon = await _start_daemon(config, env)
            outcome = await asyncio.wait_for(pending, 60)
            assert outcome["state"] == "settled"  # delivered by the persistent session
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 20) == 0
            await _wait_status(mosquitto, "offline")
        finally:
            if daemon.returncode is None:
                daemon.kill()
                await daemon.wait()


async def test_invalid_config_stops_start_up(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[gateway]\nid = "gw"\n[[modules]]\nid = "zz"\naddress = "x"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "blegw", "run", "--config", str(config),
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert b"modules[0].id" in err
