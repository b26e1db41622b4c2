"""A module's link that is used only over the bond the registry recorded.

Before each exchange it asks the guard (``pairing_guard``) whether the bond may be used; an
exchange that fails on the link's security (BlueZ's re-pairing refused by the daemon's agent,
or by the module) marks the module and is raised as :class:`BondNotTrusted`, which the relay
answers ``NEEDS_RE_PAIRING``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from . import faults
from .link import (
    DeadlinePassed,
    ExchangeCancelled,
    ExchangeTimings,
    LinkError,
    ModuleLink,
    ModuleUnreachable,
)
from .link_protocol import KeepaliveSeen
from .pairing_guard import BondNotTrusted, PairingGuard

__all__ = ["GuardedLink"]

ABORT_GRACE = 0.25
"""Seconds a connect whose link came up and went has to fail on its own before it is taken
for ``le-connection-abort-by-local``."""
LOST = ("link_lost", "module_silent", "other")
"""Faults of an exchange whose link went away: the host may be why (``_host_failure``)."""
KEY_MISSING = ("was lost on the module: it no longer has the key (BlueZ's encryption failed"
               " with PIN or Key Missing)")


class GuardedLink(ModuleLink):
    """A module's link that is used only over the bond the registry recorded."""

    def __init__(self, address: str, adapter: str, *, guard: PairingGuard, module_id: bytes,
                 connect_timeout: float = 10.0, label: str = "") -> None:
        super().__init__(address, adapter, connect_timeout=connect_timeout, label=label)
        self._guard = guard
        self._module_id = module_id
        self.connect_attempts = 0
        """Connection attempts made (first tries and retries), for the metrics."""

    async def _connect_once(self, timeout: float | None = None) -> None:
        self.connect_attempts += 1
        started = time.monotonic()
        try:
            await self._attempt(timeout)
        except ModuleUnreachable as exc:
            if not (faults.is_key_missing(f"{exc} {exc.__cause__ or ''}")
                    or self._guard.auth_failed_since(self.address, started)):
                if exc.fault is None and self._guard.dropped_since(self.address, started) \
                        and faults.classify(exc.__cause__ or exc, self.adapter).code == \
                        "connect_timeout":
                    # The link came up and went during a connect that then timed out: BlueZ
                    # aborted it (le-connection-abort-by-local) and bleak retried to the end.
                    aborted = faults.classify("le-connection-abort-by-local", self.adapter,
                                              self.address)
                    raise ModuleUnreachable(aborted.text(), aborted) from exc.__cause__
                raise
            # The module lost its key: BlueZ's encryption with the stored one failed and
            # BlueZ never pairs again here. Not worth a retry: the module needs pairing.
            marked = self._guard.mark(self._module_id, KEY_MISSING)
            if marked is None:
                raise
            raise ModuleUnreachable(marked.text(), marked) from exc

    async def _attempt(self, timeout: float | None) -> None:
        """One connect attempt that ends when BlueZ aborts it: bleak 3.1 retries
        ``le-connection-abort-by-local`` itself, silently, until its timeout; as
        bleak-retry-connector does, each abort here is one failed attempt, retried with the
        link's backoff (and named in the log and status), not a hidden loop against BlueZ."""
        flicker = self._guard.flicker(self.address)
        attempt = asyncio.ensure_future(super()._connect_once(timeout))
        try:
            await asyncio.wait({attempt, flicker}, return_when=asyncio.FIRST_COMPLETED)
            if not attempt.done():
                # The link came up and went: let a connect that fails on its own say why
                # (key missing comes the same way), else it is an abort bleak would retry.
                await asyncio.wait({attempt}, timeout=ABORT_GRACE)
        except asyncio.CancelledError:
            attempt.cancel()
            raise
        finally:
            self._guard.unwatch(self.address, flicker)
        if attempt.done():
            return attempt.result()
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError, LinkError):
            await attempt
        await self.close()
        aborted = faults.classify("le-connection-abort-by-local", self.adapter, self.address)
        raise ModuleUnreachable(aborted.text(), aborted)

    async def exchange(self, envelope: bytes, deadline: float, *,
                       on_keepalive: KeepaliveSeen | None = None,
                       cancel: asyncio.Event | None = None
                       ) -> tuple[bytes, ExchangeTimings]:
        await self._checked()
        started = time.monotonic()
        try:
            return await super().exchange(envelope, deadline, on_keepalive=on_keepalive,
                                          cancel=cancel)
        except (DeadlinePassed, ExchangeCancelled):
            raise
        except LinkError as exc:
            error = await self._bond_failure(exc, started)
            if error is exc:
                error = await self._host_failure(exc, started)
            raise error from exc

    async def bring_up(self) -> None:
        """The keeper's attempt, over the recorded bond only: a connect to a module whose
        bond is gone would subscribe, and the subscription needs encryption, which BlueZ
        would get by pairing again."""
        try:
            await self._guard.check(self._module_id)
        except LinkError as exc:
            await self.close()
            if exc.fault is not None:
                self.background_failed(exc.fault, str(exc))
            return
        await super().bring_up()

    async def _host_failure(self, exc: LinkError, started: float) -> LinkError:
        """A link lost in the middle of an exchange because bluetoothd or the adapter went
        is the host's fault, not the module's: say which (the answer's status is kept)."""
        code = exc.fault.code if exc.fault is not None else \
            faults.classify(exc.__cause__ or exc, self.adapter).code
        if code not in LOST:
            return exc
        fault = await self._guard.host_fault(started)
        if fault is None:
            return exc
        error = (ModuleUnreachable if isinstance(exc, ModuleUnreachable) else LinkError)(
            fault.text(), fault)
        error.__cause__ = exc.__cause__
        return error

    async def ping(self, timeout: float = 10.0) -> ExchangeTimings:
        await self._checked()
        started = time.monotonic()
        try:
            return await super().ping(timeout)
        except DeadlinePassed:
            raise
        except LinkError as exc:
            raise await self._bond_failure(exc, started) from exc

    async def _checked(self) -> None:
        try:
            await self._guard.check(self._module_id)
        except BondNotTrusted:
            await self.close()  # no link stays up to a module whose bond is not trusted
            raise

    async def _bond_failure(self, exc: LinkError, started: float) -> LinkError:
        """The error to raise for a failed exchange: BondNotTrusted if the failure was the
        bond's (the agent refused the re-pairing this exchange set off, or BlueZ refused the
        link's security)."""
        record = self._guard.records.get(self._module_id)
        if record is None:
            return exc
        security = faults.is_security_failure(f"{exc} {exc.__cause__ or ''}")
        if not security or record.needs_re_pairing:
            # Another failure, even with a refusal at the same moment (someone else asking
            # to pair under the module's address): not the bond's fault.
            reason = record.needs_re_pairing
        elif self._guard.refused_since(record.address, started):
            reason = "was lost: BlueZ tried to pair again and the gateway refused"
        else:
            reason = "was refused by BlueZ (the link's security failed)"
        if reason:
            fault = self._guard.mark(self._module_id, reason)
            await self.close()
            if fault is not None:
                return BondNotTrusted(fault.text(), fault)
        return exc
