"""A mosquitto process started from a broker directory (the demo chain and the tests).

The demo runs the same broker and the same configuration a deployment runs, so what the demo
shows (authenticated gateways over TLS, per-gateway ACLs) is what production does.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from pathlib import Path

from .broker_setup import BrokerSetupError

__all__ = ["MosquittoProcess", "mosquitto_executable"]

START_TIMEOUT = 10.0


def mosquitto_executable() -> str:
    """The mosquitto binary (Debian installs it in /usr/sbin, often not on a user's PATH)."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto"
                                        if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        raise BrokerSetupError("mosquitto is not installed (scripts/bootstrap installs it; "
                               "apt-get install mosquitto)")
    return exe


class MosquittoProcess:
    """``mosquitto -c CONF`` listening on ``port`` of 127.0.0.1; its log goes to ``log``."""

    def __init__(self, conf: Path, port: int, log: Path) -> None:
        self.conf, self.port, self.log = conf, port, log
        self.proc: asyncio.subprocess.Process | None = None

    async def _running(self, seen: int, deadline: float) -> bool:
        """Wait for mosquitto's "running" line: it opens its listeners before it installs its
        signal handlers, so a SIGHUP (reload) sent as soon as the port accepts can kill it."""
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            if self.proc is None or self.proc.returncode is not None:
                return False
            text = await asyncio.to_thread(self._log_since, seen)
            if " running" in text:
                return True
            await asyncio.sleep(0.02)
        return False

    def _log_since(self, offset: int) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    async def start(self) -> None:
        """Start and wait until the listener accepts connections (or say why it did not)."""
        exe = mosquitto_executable()
        seen = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-c", str(self.conf), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=log)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while loop.time() < deadline:
            if self.proc.returncode is not None:
                break
            try:
                _reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), 1.0)
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            if await self._running(seen, deadline):
                return
            break
        await self.stop()
        tail = (await asyncio.to_thread(self.log.read_text, errors="replace"))[-2000:]
        raise BrokerSetupError(f"mosquitto did not start on port {self.port}:\n{tail}")

    async def stop(self) -> None:
        """SIGTERM (mosquitto saves its sessions), SIGKILL after 10 s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
