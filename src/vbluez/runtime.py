"""Start and stop a whole virtual radio: a private dbus-daemon plus the emulator process.

``VirtualBluez`` is the entry point for tests and tools::

    async with VirtualBluez(adapters=2) as radio:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = radio.bus_address
        ...  # unmodified bleak and bless now talk to the virtual radio

By default the emulator runs in a child process (its own event loop, like the real bluetoothd),
so a busy test loop cannot distort the radio's timing. Everything it started is stopped on exit,
including when the body raises or the task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from types import TracebackType

from .config import RadioConfig
from .control import AdapterInfo, RadioControl
from .dbus_daemon import DBusDaemon, die_with_parent
from .errors import VBluezError
from .hil_guard import guard
from .radio import VirtualRadio

__all__ = ["VirtualBluez", "VirtualBluezError"]

READY_LINE = "vbluez-ready"


class VirtualBluezError(VBluezError):
    """The virtual radio could not be started."""


class VirtualBluez:
    def __init__(self, adapters: int = 2, *, config: RadioConfig | None = None,
                 in_process: bool = False, start_timeout: float = 20.0) -> None:
        self.config = config or RadioConfig(adapters=adapters)
        if config is None:
            self.config.adapters = adapters
        self.in_process = in_process
        self.start_timeout = start_timeout
        self.bus_address = ""
        self.adapters: list[AdapterInfo] = []
        self._daemon = DBusDaemon()
        self._proc: asyncio.subprocess.Process | None = None
        self._radio: VirtualRadio | None = None
        self._control: RadioControl | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr_tail: list[str] = []

    @property
    def control(self) -> RadioControl:
        if self._control is None:
            raise VirtualBluezError("the virtual radio is not running")
        return self._control

    def environ(self) -> dict[str, str]:
        """Environment variables that point bleak, bless and bluetoothctl at this radio."""
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.bus_address}

    async def start(self) -> None:
        guard("starting a virtual radio (VirtualBluez)")
        try:
            self.bus_address = await asyncio.to_thread(self._daemon.start)
            if self.in_process:
                self._radio = VirtualRadio(self.config)
                await self._radio.start(self.bus_address)
            else:
                await self._start_process()
            self._control = RadioControl(self.bus_address)
            await self._control.__aenter__()
            self.adapters = await self._control.adapters()
        except BaseException:
            await self.stop()
            raise

    async def _start_process(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vbluez", "serve", "--bus", self.bus_address,
            "--config-json", self.config.to_json(),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True,
            preexec_fn=die_with_parent,  # the child must not outlive us
        )
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        self._stderr_task = asyncio.ensure_future(self._drain_stderr(self._proc.stderr))
        try:
            while True:
                line = await asyncio.wait_for(self._proc.stdout.readline(), self.start_timeout)
                if not line:
                    await asyncio.sleep(0.1)
                    raise VirtualBluezError(
                        "the emulator exited during start-up:\n" + "".join(self._stderr_tail))
                if line.decode().strip() == READY_LINE:
                    return
        except TimeoutError as exc:
            raise VirtualBluezError(
                f"the emulator did not become ready within {self.start_timeout} s") from exc

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode(errors="replace")
            self._stderr_tail = ([*self._stderr_tail, text])[-50:]
            if os.environ.get("VBLUEZ_ECHO_LOG"):
                sys.stderr.write("[vbluez] " + text)

    async def stop(self) -> None:
        if self._control is not None:
            with contextlib.suppress(Exception):
                await self._control.__aexit__(None, None, None)
            self._control = None
        if self._radio is not None:
            with contextlib.suppress(Exception):
                await self._radio.stop()
            self._radio = None
        if self._proc is not None:
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self._proc.wait(), 5)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self._proc.kill()
                    await self._proc.wait()
            self._proc = None
        if self._stderr_task is not None:
            self._stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._stderr_task
            self._stderr_task = None
        await asyncio.to_thread(self._daemon.stop)

    @property
    def log_tail(self) -> str:
        """The emulator's last log lines (for failure messages)."""
        return "".join(self._stderr_tail)

    async def __aenter__(self) -> VirtualBluez:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.shield(self.stop())
