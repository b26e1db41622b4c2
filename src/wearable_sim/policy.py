"""How the simulated module asks its owner: approve, decline, ask on the terminal, or a button.

A real module shows the amount and payee on its own display and waits for a button, a PIN or a
fingerprint. The simulator offers the same shapes of behaviour for tests, demos and rigs:

* ``approve`` / ``decline``: answers at once (optionally after a delay);
* ``ask``: prints what is being approved on the terminal and reads ``y``/``n``;
* ``button``: waits for ``approve`` or ``decline`` on a local Unix socket (``state/button.sock``,
  mode 0600), as a hardware-in-the-loop rig presses a button; ``never`` is a button nobody
  presses.

The caller bounds every wait with the request's deadline and cancels it on CANCEL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from terminal_input import read_line, sanitise

__all__ = ["ButtonPolicy", "FixedPolicy", "Prompt", "TerminalPolicy", "UserPolicy",
           "make_policy", "sanitise"]

@dataclass(frozen=True, slots=True)
class Prompt:
    """What the owner is shown: exactly the fields the signature will bind."""

    amount_minor: int
    currency: str
    payee: str
    order_reference: str
    description: str

    def text(self) -> str:
        """One line for the owner; every field an untrusted party chose goes through
        :func:`sanitise` (the signature binds the raw fields, the owner reads these)."""
        amount = Decimal(self.amount_minor).scaleb(-2)
        return (f"Pay {amount} {sanitise(self.currency, 3)} to {sanitise(self.payee, 64)} "
                f"(order {sanitise(self.order_reference, 64)}: {sanitise(self.description)})")


class UserPolicy(Protocol):
    name: str
    """``presence`` when a person acts (button, terminal), ``none`` when nobody does."""
    verification: str

    async def decide(self, prompt: Prompt) -> bool: ...

    async def close(self) -> None: ...


class FixedPolicy:
    def __init__(self, approve: bool, delay: float = 0.0) -> None:
        self.name = "approve" if approve else "decline"
        self.verification = "none"
        self._approve = approve
        self._delay = delay

    async def decide(self, prompt: Prompt) -> bool:
        if self._delay:
            await asyncio.sleep(self._delay)
        return self._approve

    async def close(self) -> None:
        return None


class TerminalPolicy:
    """Ask on the controlling terminal; the loop watches stdin, so Ctrl-C never waits for Enter."""

    name = "ask"
    verification = "presence"

    async def decide(self, prompt: Prompt) -> bool:
        while True:
            print(f"\n[module] {prompt.text()}\n[module] approve? [y/n] ", end="", flush=True)
            line = await read_line()
            if line == "":
                return False  # end of input: nobody is there to approve
            answer = line.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no"):
                return False

    async def close(self) -> None:
        return None


class ButtonPolicy:
    """A button on a Unix socket: a client writes ``approve`` or ``decline`` and a newline."""

    verification = "presence"

    def __init__(self, socket_path: Path, *, pressable: bool = True) -> None:
        self.name = "button" if pressable else "never"
        self.socket_path = socket_path
        self._pressable = pressable
        self._server: asyncio.AbstractServer | None = None
        self._waiting: asyncio.Future[bool] | None = None

    async def start(self) -> None:
        if not self._pressable:
            return
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._client, path=self.socket_path)
        finally:
            os.umask(old)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = (await asyncio.wait_for(reader.readline(), 10)).decode(errors="replace")
            word = line.strip().lower()
            if word not in ("approve", "decline"):
                writer.write(b"error: say 'approve' or 'decline'\n")
            elif self._waiting is None or self._waiting.done():
                writer.write(b"error: no request is waiting\n")
            else:
                self._waiting.set_result(word == "approve")
                writer.write(b"ok\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    async def decide(self, prompt: Prompt) -> bool:
        print(f"[module] {prompt.text()} -- waiting for the button", flush=True)
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            return await self._waiting
        finally:
            self._waiting = None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()


async def make_policy(name: str, state_dir: Path, *, delay: float = 0.0) -> UserPolicy:
    """Build the policy named on the command line."""
    if name in ("approve", "decline"):
        return FixedPolicy(name == "approve", delay)
    if name == "ask":
        return TerminalPolicy()
    if name in ("button", "never"):
        policy = ButtonPolicy(state_dir / "button.sock", pressable=name == "button")
        await policy.start()
        return policy
    raise ValueError(f"unknown policy {name!r}: use approve, decline, ask, button or never")
