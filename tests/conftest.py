"""Project-wide test fixtures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest_asyncio


@pytest_asyncio.fixture(autouse=True)
async def _close_bleak_manager() -> AsyncIterator[None]:
    """Close bleak's per-event-loop BlueZ manager connection when a test's loop ends.

    bleak keeps one manager (and one D-Bus connection) per event loop and never closes it; each
    test has its own loop and its own virtual radio, so the connection must go with the test or
    it leaks a socket. This touches bleak's private ``_global_instances`` (pinned to bleak 3.1 in
    pyproject.toml).
    """
    yield
    from bleak.backends.bluezdbus import manager

    instance = manager._global_instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(instance, "_bus", None)
    if bus is not None:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.wait_for_disconnect(), 2)


# The ledger's databases (tests/ledger_backends.py): ``ledger_at`` runs a test on SQLite and
# on a real PostgreSQL server started once per session.
from tests.ledger_backends import ledger_at, postgres_server  # noqa: E402, F401
