"""A module that sends malformed frames, and exchanges that fail in ways nobody planned: the
relay worker answers the request and keeps serving its queue."""

from __future__ import annotations

import asyncio
import time

import pytest

from ble_profile import Command, KeepaliveStatus, fragment
from blegw.link import ExchangeTimings, LinkError, ModuleLink
from blegw.link_protocol import KeepaliveSeen
from blegw.relay import Relay
from blegw_harness.chain import running_chain
from e2e import Suite
from relay_contract import RelayRequest, RelayResponse, RelayStatus
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto


@pytest.mark.parametrize(("command", "payload"), [
    (Command.KEEPALIVE, b""), (Command.KEEPALIVE, b"\x01\x02"),
    (Command.ERROR, b""), (Command.ERROR, b"\x7f\x7f\x7f"),
], ids=["empty-keepalive", "long-keepalive", "empty-error", "long-error"])
async def test_malformed_keepalive_or_error_frame_is_a_link_error(
        command: Command, payload: bytes) -> None:
    """A KEEPALIVE or ERROR whose payload is not one byte raised ShortFrameError, which is not
    a LinkError, out of the link. The radio is replaced by the frames it would deliver: the
    notification queue is fed directly (no BLE needed to reproduce a parser fault)."""
    link = ModuleLink("AA:BB:CC:DD:EE:FF", "hci0")
    for frame in fragment(command, payload, 20):
        link._frames.put_nowait(frame)
    with pytest.raises(LinkError, match="garbled"):
        link._session.send(Command.MSG, b"request", 20)
        await link._await_answer(time.time() + 5)


class FlakyLink(ModuleLink):
    """A link whose exchanges fail with errors of every kind, then work (no radio: the relay
    under test only sees ``exchange``)."""

    def __init__(self, failures: list[BaseException]) -> None:
        super().__init__("AA:BB:CC:DD:EE:FF", "hci0")
        self.failures = failures

    async def exchange(self, envelope: bytes, deadline: float, *,
                       on_keepalive: KeepaliveSeen | None = None,
                       cancel: asyncio.Event | None = None
                       ) -> tuple[bytes, ExchangeTimings]:
        if self.failures:
            raise self.failures.pop(0)
        return b"answer:" + envelope, ExchangeTimings()

    async def close(self) -> None:
        return None


async def test_an_unexpected_exchange_failure_does_not_stop_the_queue() -> None:
    """8 of 12 requests were never answered once the worker died; now each gets exactly one
    answer, in order, and the worker lives on."""
    from ble_profile import ShortFrameError

    failures: list[BaseException] = [ShortFrameError("1 byte expected"), RuntimeError("bug"),
                                      ValueError("x" * 10), KeyError("k")]
    answers: list[RelayResponse] = []

    async def publish(response: RelayResponse) -> None:
        answers.append(response)

    module_id = b"\x01" * 8
    relay = Relay({module_id: FlakyLink(failures)}, publish, queue_size=16)
    relay.start()
    try:
        ids = [bytes([i]) * 16 for i in range(12)]
        for rid in ids:
            await relay.submit(RelayRequest(rid, module_id, b"env" + rid[:1], time.time() + 30))
        for _ in range(200):
            if len(answers) == 12:
                break
            await asyncio.sleep(0.01)
        assert [a.request_id for a in answers] == ids
        assert [a.status for a in answers] == [RelayStatus.LINK_ERROR] * 4 + [RelayStatus.OK] * 8
        assert answers[-1].envelope == b"answer:env\x0b"
        worker = relay.workers[module_id]
        assert worker.task is not None and not worker.task.done()
        assert worker.failures == 4 and worker.handled == 12
        assert answers[1].detail == "internal error: RuntimeError"
        # Recorded as a fault like any other: in the recent faults, cleared on recovery.
        assert [": internal_error: internal error: " in line
                for _, line in relay.recent_faults] == [True] * 4
        assert (worker.last_error, worker.last_error_code) == ("", "")
    finally:
        await relay.stop()


async def test_malformed_keepalive_over_the_radio_does_not_kill_the_relay_worker(
        mosquitto: Mosquitto) -> None:
    """The module (over bless and the virtual BlueZ) sends a 2-byte KEEPALIVE while deciding:
    that payment fails as a link error, the next one settles through the same worker."""
    async with running_chain(FixedPolicy(True, delay=0.6), broker_url=mosquitto.url,
                             approval_window=8) as chain:
        module = chain.module
        honest = module._keepalives

        async def garbled_keepalives() -> None:
            size = 20
            frames = fragment(Command.KEEPALIVE,
                              bytes([KeepaliveStatus.USER_ACTION_NEEDED, 0]), size)
            while True:
                module._notify_frames(frames)
                await asyncio.sleep(0.2)

        module._keepalives = garbled_keepalives  # type: ignore[method-assign]
        outcome = await chain.pay(250, "garbled keepalive", Suite.P256_SHA256, "bad-ka-00001")
        assert (outcome["state"], outcome["reason"]) == ("rejected", "gateway:link_error")
        module._keepalives = honest  # type: ignore[method-assign]
        for i in range(3):
            again = await chain.pay(10 + i, "after", Suite.P256_SHA256, f"bad-ka-0001{i}")
            assert again["state"] == "settled", again
        worker = next(iter(chain.gateway.relay.workers.values()))
        assert worker.task is not None and not worker.task.done()
        assert worker.last_error == ""  # cleared when the module answered again
        assert any("garbled KEEPALIVE" in line
                   for _, line in chain.gateway.relay.recent_faults)
        assert worker.handled == 4


async def test_a_module_flooding_notifications_cannot_grow_the_gateways_memory() -> None:
    """Notifications between exchanges were queued without limit. The radio is replaced by the
    notification callback it would call."""
    from blegw.link import FRAME_BACKLOG

    link = ModuleLink("AA:BB:CC:DD:EE:FF", "hci0")
    for _ in range(FRAME_BACKLOG * 20):
        link._on_notify(None, bytearray(b"\x83\x00\x01\x01" + b"\x00" * 200))
    assert link._frames.qsize() == FRAME_BACKLOG
    assert link.dropped_frames == FRAME_BACKLOG * 19
    link._on_disconnect(None)  # type: ignore[arg-type]
    frames = [link._frames.get_nowait() for _ in range(link._frames.qsize())]
    assert frames[-1] == b""


def test_an_unencodable_detail_cannot_jam_the_outbox() -> None:
    response = RelayResponse(b"\x01" * 16, RelayStatus.LINK_ERROR, detail="bad \ud800 text")
    assert RelayResponse.decode(response.encode()).detail == "bad ? text"


async def test_a_fault_met_on_every_request_is_one_counted_line_in_status() -> None:
    """A module refused on every request (one that needs pairing again) filled the ten lines of
    ``blegw status`` with copies of one ~500-character error, pushing out every other module's
    fault. Now a repeated fault is one line saying how often and since when."""
    answers: list[RelayResponse] = []

    async def publish(response: RelayResponse) -> None:
        answers.append(response)

    noisy, quiet = b"\x01" * 8, b"\x02" * 8
    relay = Relay({noisy: FlakyLink([RuntimeError("bug") for _ in range(12)]),
                   quiet: FlakyLink([ValueError("other")])}, publish, queue_size=16)
    relay.start()
    try:
        await relay.submit(RelayRequest(b"q" * 16, quiet, b"env", time.time() + 30))
        for i in range(12):
            await relay.submit(RelayRequest(bytes([i]) * 16, noisy, b"env", time.time() + 30))
        for _ in range(300):
            if len(answers) == 13:
                break
            await asyncio.sleep(0.01)
        assert len(answers) == 13
        lines = sorted(line for _, line in relay.recent_faults)  # the workers run side by side
        assert len(lines) == 2, lines
        repeated, other = lines  # "...RuntimeError..." sorts before "...ValueError..."
        assert "internal error: ValueError" in other and "times since" not in other
        assert "internal error: RuntimeError" in repeated
        assert repeated.endswith(f"[12 times since {repeated[-9:-1]}]")
        assert repeated.count("internal error: RuntimeError") == 1  # the cause said once
    finally:
        await relay.stop()
