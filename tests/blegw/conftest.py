"""Real mosquitto brokers per test, on a free loopback port: an anonymous plain one (the
relay tests) and one with the shipped secure configuration (the uplink tests)."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio


async def daemon_status(control: Path) -> dict[str, Any]:
    """The running daemon's ``status`` over its control socket (what ``blegw status`` reads)."""
    reader, writer = await asyncio.open_unix_connection(str(control))
    try:
        writer.write(b'{"cmd": "status"}\n')
        await writer.drain()
        answer = json.loads(await asyncio.wait_for(reader.readline(), 10))
    finally:
        writer.close()
    assert answer["ok"], answer
    status: dict[str, Any] = answer["status"]
    return status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                            if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            pytest.fail("mosquitto is missing: scripts/bootstrap installs it")
        self.exe = exe
        self.port = _free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             "set_tcp_nodelay true\n"
                             f"persistence true\npersistence_location {workdir}/\n")
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.exe, "-c", str(self.conf), stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        for _ in range(100):
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 10)
        self.proc = None


@pytest_asyncio.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


class SecureMosquitto:
    """mosquitto with the shipped configuration (``blegw-platform broker-setup``): TLS only,
    no anonymous clients, client ids bound to user names, per-gateway ACLs, a packet limit.

    Its CA and server certificate are made by broker-setup with ``cryptography`` in the test's
    own directory; each test adds the gateway accounts it needs.
    """

    def __init__(self, workdir: Path) -> None:
        from blegw_platform.broker_process import MosquittoProcess
        from blegw_platform.broker_setup import setup

        self.dir = workdir / "broker"
        self.port = _free_port()
        setup(self.dir, port=self.port, listen="127.0.0.1", hosts=("127.0.0.1", "localhost"))
        self.conf = self.dir / "mosquitto.conf"
        self.process = MosquittoProcess(self.conf, self.port, self.dir / "mosquitto.log")

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    @property
    def ca(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def platform_password(self) -> str:
        return (self.dir / "platform.password").read_text().strip()

    def add_gateway(self, gateway_id: str, password_file: Path | None = None) -> str:
        """A gateway account (or a new password for it); :meth:`reload` applies it to a
        running broker."""
        from blegw_platform.broker_setup import add_gateway

        return add_gateway(self.dir, gateway_id, password_file)

    async def reload(self) -> None:
        """SIGHUP: mosquitto rereads its password and ACL files."""
        assert self.process.proc is not None
        self.process.proc.send_signal(signal.SIGHUP)
        await asyncio.sleep(0.5)

    def log(self) -> str:
        return (self.dir / "mosquitto.log").read_text(errors="replace")

    async def start(self) -> None:
        await self.process.start()

    async def stop(self) -> None:
        await self.process.stop()


@pytest_asyncio.fixture
async def secure_mosquitto(tmp_path: Path) -> AsyncIterator[SecureMosquitto]:
    broker = SecureMosquitto(tmp_path)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
