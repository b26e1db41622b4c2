"""Failure paths through the whole chain: nobody answers, the link drops, the queue is full."""

from __future__ import annotations

import asyncio
import time

import pytest

from blegw_harness.chain import PAYEE, PAYER, running_chain
from e2e import Suite
from wearable_sim.policy import FixedPolicy, Prompt

from .conftest import Mosquitto


class Nobody:
    """An owner who never answers (the module's `never` policy)."""

    name = "never"
    verification = "presence"

    async def decide(self, prompt: Prompt) -> bool:
        await asyncio.Event().wait()
        return False

    async def close(self) -> None:
        return None


async def test_owner_never_answers(mosquitto: Mosquitto) -> None:
    """Silence is a timeout, never a decline (nobody declined) and never a settlement; the
    money stays where it was and the next payment goes through."""
    async with running_chain(Nobody(), broker_url=mosquitto.url, approval_window=3) as chain:
        ledger = chain.platform.ledger
        before = [await ledger.run(ledger.balance, who) for who in (PAYER, PAYEE)]
        started = time.monotonic()
        outcome = await chain.pay(700, "nobody home", Suite.P256_SHA256, "never-answer-01")
        assert outcome["state"] == "timed_out"
        # the gateway's deadline, the module's own cancel, or the platform's expiry sweep:
        # whichever comes first, each says that time ran out
        assert outcome["reason"] in ("gateway:deadline_passed", "module:cancelled",
                                     "module:user_timeout", "no_answer_before_expiry")
        assert [await ledger.run(ledger.balance, who) for who in (PAYER, PAYEE)] == before
        assert time.monotonic() - started < 20
        assert chain.module.handled[-1] in ("deadline", "cancelled")
        # the next payment is not blocked by the abandoned one
        chain.module.policy = FixedPolicy(True)
        assert (await chain.pay(10, "next", Suite.P256_SHA256, "never-answer-02"))["state"] \
            == "settled"


@pytest.mark.needs_vbluez_control("link_loss")
async def test_link_loss_mid_request_then_recovery(mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True, delay=1.0), broker_url=mosquitto.url) as chain:
        await chain.pay(1, "connect first", Suite.P256_SHA256, "linkloss-warm-1")
        pending = asyncio.create_task(chain.pay(500, "cut off", Suite.P256_SHA256,
                                                "linkloss-cut-01"))
        await asyncio.sleep(0.4)
        await chain.radio.control.link_loss("hci0", chain.radio.adapters[1].address)
        outcome = await asyncio.wait_for(pending, 30)
        assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:link_error")
        again = await chain.pay(500, "after reconnect", Suite.P256_SHA256, "linkloss-next-1")
        assert again["state"] == "settled"


async def test_full_queue_is_an_explicit_error(mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True, delay=1.5), broker_url=mosquitto.url,
                             queue_size=1) as chain:
        tasks = [asyncio.create_task(chain.pay(10 + i, f"queued {i}", Suite.P256_SHA256,
                                               f"queue-full-{i:03d}")) for i in range(3)]
        outcomes = [await asyncio.wait_for(t, 60) for t in tasks]
        states = sorted((o["state"], o["reason"]) for o in outcomes)
        assert ("rejected", "gateway:queue_full") in states
        assert states.count(("settled", "")) == 2


def test_connect_error_classification() -> None:
    from bleak.exc import BleakDBusError, BleakError

    from blegw.faults import classify

    assert classify(BleakDBusError("org.bluez.Error.InProgress", ["In Progress"]), "").transient
    assert classify(BleakDBusError("org.bluez.Error.Failed",
                                   ["le-connection-abort-by-local"]), "").transient
    assert not classify(BleakDBusError("org.bluez.Error.NotPermitted", ["Not paired"]),
                        "").transient
    assert "not found" in classify(BleakError("adapter 'hci7' not found"), "hci7").text()


async def test_unreachable_module_and_missing_adapter(vbluez: object, tmp_path: object) -> None:
    """A module that does not answer, and an adapter that does not exist, fail clearly."""
    from blegw.link import ModuleLink, ModuleUnreachable

    link = ModuleLink("5A:00:00:00:00:02", "hci0", connect_timeout=0.5)
    try:
        await link.connect()
    except ModuleUnreachable as exc:
        assert "not seen" in str(exc)
    else:
        raise AssertionError("connected to nothing")
    gone = ModuleLink("5A:00:00:00:00:02", "hci7", connect_timeout=0.5)
    try:
        await gone.connect()
    except ModuleUnreachable as exc:
        assert "hci7" in str(exc)
    else:
        raise AssertionError("connected through a missing adapter")
