"""Connect faults that last, seen from outside the daemon: status names the cause with advice
and clears when the fault goes.

bleak retries ``le-connection-abort-by-local`` itself until its timeout, so a few injected
aborts never reach the daemon; here vbluez keeps failing every connect until the test lifts
the fault (``vbluez ctl connect-fault ... until-lifted``), so the daemon's own retry classes
run to their end. The gateway is a real subprocess (`blegw -v run`) over the virtual BlueZ,
mosquitto and the platform; only the radio is simulated. Each test checks the payment is
answered explicitly (never lost), `blegw status` shows the cause and advice, the retries are
logged, the daemon lives, and after the fault is lifted a payment settles, the fault clears and
the books balance.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .conftest import Mosquitto
from .test_recovery import Daemon, running_daemon

pytestmark = pytest.mark.timeout(120)


@pytest_asyncio.fixture
async def daemon(mosquitto: Mosquitto, tmp_path: Path) -> AsyncIterator[Daemon]:
    async with running_daemon(mosquitto, tmp_path) as running:
        yield running


async def _fault_until_lifted(daemon: Daemon, kind: str, code: str, advice: str) -> None:
    radio = daemon.chain.radio.control
    short = daemon.module_id[:8]
    assert (await daemon.pay(100, f"{code}-warm-000"))["state"] == "settled"
    await daemon.drop_link()
    await radio.connect_fault("hci0", daemon.module_address, kind, -1)
    started = time.monotonic()
    outcome = await daemon.pay(110, f"{code}-pay-0001")
    assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:module_unreachable")
    assert time.monotonic() - started < 20  # bounded by the retries, not the 120 s expiry
    module = await daemon.module()
    assert module["link"] == "failing" and module["last_error_code"] == code, module
    assert advice in module["last_error"] and module["last_error_at"]
    assert module["connect_retries"] == 3  # the daemon's four attempts ran
    text = daemon.log_text()
    assert f"WARNING module {short}: connect attempt 3 of 4 failed" in text
    assert f"WARNING module {short}: request " in text
    await radio.connect_fault("hci0", daemon.module_address, kind, 0)  # lifted
    again = await daemon.pay(120, f"{code}-pay-0002")
    assert again["state"] == "settled", again
    module = await daemon.module()
    assert (module["last_error"], module["last_error_code"], module["link"]) == \
        (None, None, "connected")
    assert f"INFO module {short}: recovered (was: {code})" in daemon.log_text()
    assert module["outcomes"] == {"ok": 2, "module_unreachable": 1}
    await daemon.books_balance()


@pytest.mark.needs_vbluez_control("via _fault_until_lifted")
async def test_in_progress_until_lifted_is_shown_with_advice_and_clears(
        daemon: Daemon) -> None:
    """Another program keeps BlueZ busy with the module (every Connect answered
    InProgress): retried with backoff, then answered; status says what to stop."""
    await _fault_until_lifted(daemon, "in-progress", "in_progress",
                              "another program is using the module")


@pytest.mark.needs_vbluez_control("via _fault_until_lifted")
async def test_abort_by_local_until_lifted_is_shown_with_advice_and_clears(
        daemon: Daemon) -> None:
    """Interference that lasts: every connect aborted by the controller; bleak's own retries
    hide each abort, the daemon still names the cause (the link flickered up and down during
    each attempt) rather than a plain timeout."""
    await _fault_until_lifted(daemon, "abort-by-local", "abort_by_local",
                              "move the gateway closer to the module")
