"""The relay over a fake radio path: every frame a module can send, well-formed or not.

What is faked is the radio only: bleak's ``BleakClient`` under a real :class:`ModuleLink` is
replaced by :class:`FakeRadio`, which takes the link's writes and plays a scripted module's
notifications back through the link's own notification callback. The link's frame handling,
the relay's queue, answers, progress and cancels are the real code. One test uses
:class:`ThrowingLink`, a fake of the whole link (the ``Link`` protocol), for failures the real
link never raises.

Each test names what the module (or a hostile one) does, and checks after it that the request
got exactly one explicit answer, that the relay worker is alive and that an honest request
still settles (answered ``ok``) over the same relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ble_profile import Command, FrameAssembler, KeepaliveStatus, fragment, uuids
from ble_profile.codes import ErrorCode
from ble_profile.framing import error_frame, keepalive_frame
from blegw import faults
from blegw import link as link_module
from blegw.link import FRAME_BACKLOG, ExchangeTimings, LinkError, ModuleLink
from blegw.link_protocol import KeepaliveSeen
from blegw.relay import PROGRESS_INTERVAL, Relay
from relay_contract import (
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
)

MODULE = b"\x42" * 16
FRAGMENT = 247
ANSWER = b"the module's signed answer"

Script = Callable[["FakeRadio", bytes], Awaitable[None]]
"""What the scripted module does with one request (the MSG payload it received)."""


@dataclass
class _Characteristic:
    max_write_without_response_size: int = FRAGMENT - 3


class _Services:
    def get_characteristic(self, uuid: str) -> _Characteristic | None:
        return _Characteristic() if uuid == uuids.CONTROL_POINT else None


class FakeRadio:
    """Stands in for bleak's ``BleakClient`` (the radio): the link writes fragments into it,
    and the scripted module's frames come back through the link's notification callback."""

    def __init__(self, link: FakeRadioLink) -> None:
        self.link = link
        self.is_connected = True
        self.services = _Services()
        self._incoming = FrameAssembler(FRAGMENT)
        self._module: asyncio.Task[None] | None = None

    def notify(self, frame: bytes) -> None:
        if self.is_connected:
            self.link._on_notify(None, bytearray(frame))

    def notify_message(self, command: Command, payload: bytes) -> None:
        for frame in fragment(command, payload, FRAGMENT):
            self.notify(frame)

    def drop(self) -> None:
        """The link is lost (out of range, module reset): bleak calls the disconnect hook."""
        if self.is_connected:
            self.is_connected = False
            self.link._on_disconnect(self)  # type: ignore[arg-type]

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool = True) -> None:
        assert uuid == uuids.CONTROL_POINT
        if not self.is_connected:
            raise OSError("not connected")
        message = self._incoming.feed(data)
        if message is None:
            return
        self.link.received.append((message.command, message.payload))
        if message.command is Command.CANCEL:
            self.stop_module()
            self.notify_message(Command.MSG, b"cancelled by the gateway")
        elif message.command is Command.PING:
            self.notify_message(Command.PING, message.payload)
        elif message.command is Command.MSG:
            self._module = asyncio.create_task(self.link.script(self, message.payload))

    def stop_module(self) -> None:
        if self._module is not None:
            self._module.cancel()

    async def disconnect(self) -> None:
        self.stop_module()
        self.is_connected = False


class FakeRadioLink(ModuleLink):
    """The real link, connected to a :class:`FakeRadio` instead of BlueZ."""

    def __init__(self, script: Script) -> None:
        super().__init__("AA:BB:CC:DD:EE:01", "hci0", label="fake")
        self.script = script
        self.received: list[tuple[Command, bytes]] = []
        self.radios: list[FakeRadio] = []

    async def _connect_once(self, timeout: float | None = None) -> None:
        await self.close()
        self._frames = asyncio.Queue(FRAME_BACKLOG)
        radio = FakeRadio(self)
        self.radios.append(radio)
        self._control_point_length = FRAGMENT  # what the real connect reads from the module
        self._client = radio  # type: ignore[assignment]

    @property
    def radio(self) -> FakeRadio:
        return self.radios[-1]

    def shutdown(self) -> None:
        for radio in self.radios:
            radio.stop_module()


async def honest(radio: FakeRadio, request: bytes) -> None:
    """An honest module: asks its owner (two keepalives), then answers."""
    for _ in range(2):
        radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
        await asyncio.sleep(0.01)
    radio.notify_message(Command.MSG, ANSWER + b" to " + request)


@dataclass
class Harness:
    relay: Relay[FakeRadioLink]
    link: FakeRadioLink
    published: list[RelayResponse | RelayProgress] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    serial: int = 0

    async def publish(self, message: RelayResponse | RelayProgress) -> None:
        self.published.append(message)
        self.changed.set()

    def request(self, deadline_in: float = 30.0) -> RelayRequest:
        self.serial += 1
        rid = self.serial.to_bytes(16, "big")
        return RelayRequest(rid, MODULE, b"request-%d" % self.serial, time.time() + deadline_in)

    def responses(self, rid: bytes) -> list[RelayResponse]:
        return [m for m in self.published if isinstance(m, RelayResponse) and m.request_id == rid]

    def progress(self, rid: bytes) -> list[OwnerStatus]:
        return [m.status for m in self.published
                if isinstance(m, RelayProgress) and m.request_id == rid]

    async def until(self, ready: Callable[[], object], timeout: float = 10.0) -> None:
        """Wait, without polling, until ``ready()`` holds after some publication."""
        async with asyncio.timeout(timeout):
            while not ready():
                self.changed.clear()
                await self.changed.wait()

    async def answer(self, rid: bytes, timeout: float = 10.0) -> RelayResponse:
        """The one answer to ``rid``, waited for."""
        await self.until(lambda: self.responses(rid), timeout)
        await asyncio.sleep(0.05)  # a second answer would show up now
        answers = self.responses(rid)
        assert len(answers) == 1, answers
        return answers[0]

    async def pay(self, deadline_in: float = 30.0) -> RelayResponse:
        request = self.request(deadline_in)
        await self.relay.submit(request)
        return await self.answer(request.request_id)

    async def still_serves_honestly(self) -> None:
        """The worker is alive and the next honest request is answered with the module's
        bytes, unchanged."""
        worker = self.relay.workers[MODULE]
        assert worker.task is not None and not worker.task.done()
        self.link.script = honest
        response = await self.pay()
        assert response.status is RelayStatus.OK
        assert response.envelope.startswith(ANSWER)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    link = FakeRadioLink(honest)
    box: list[Harness] = []

    async def publish(message: RelayResponse | RelayProgress) -> None:
        await box[0].publish(message)

    relay: Relay[FakeRadioLink] = Relay({MODULE: link}, publish, queue_size=4)
    box.append(Harness(relay, link))
    relay.start()
    try:
        yield box[0]
    finally:
        link.shutdown()
        await relay.stop()


def scripted(*frames: bytes, then: Callable[[FakeRadio], None] | None = None) -> Script:
    async def script(radio: FakeRadio, request: bytes) -> None:
        for frame in frames:
            radio.notify(frame)
            await asyncio.sleep(0.005)
        if then is not None:
            then(radio)
    return script


async def test_honest_module_answer_is_relayed_unchanged_with_its_wait_forwarded(
        harness: Harness) -> None:
    request = harness.request()
    await harness.relay.submit(request)
    response = await harness.answer(request.request_id)
    assert (response.status, response.envelope) == (RelayStatus.OK, ANSWER + b" to request-1")
    # two keepalives 10 ms apart: the second is within PROGRESS_INTERVAL, so one message
    assert harness.progress(request.request_id) == [OwnerStatus.AWAITING_OWNER]
    assert harness.link.received == [(Command.MSG, b"request-1")]


async def test_keepalive_flood_is_throttled_but_a_status_change_goes_through(
        harness: Harness) -> None:
    async def flood(radio: FakeRadio, request: bytes) -> None:
        for status in [KeepaliveStatus.PROCESSING] * 50 + \
                [KeepaliveStatus.USER_ACTION_NEEDED] * 50:
            radio.notify(keepalive_frame(status))
            await asyncio.sleep(0.001)
        await asyncio.sleep(PROGRESS_INTERVAL + 0.1)
        radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
        await asyncio.sleep(0.01)
        radio.notify_message(Command.MSG, ANSWER)

    harness.link.script = flood
    response = await harness.pay()
    assert response.status is RelayStatus.OK
    assert harness.progress(response.request_id) == [
        OwnerStatus.PROCESSING, OwnerStatus.AWAITING_OWNER, OwnerStatus.AWAITING_OWNER]
    assert harness.published[-1] == response  # progress never follows the answer
    await harness.still_serves_honestly()


async def test_progress_still_queued_when_the_answer_goes_is_not_published_after_it() -> None:
    """A slow uplink holds the first progress message; the module's next KEEPALIVE and its
    answer come meanwhile. The answer goes at once; the KEEPALIVE still queued behind the
    held message is dropped, not published after the outcome."""
    held = asyncio.Event()
    release = asyncio.Event()
    published: list[RelayResponse | RelayProgress] = []

    answered = asyncio.Event()

    async def publish(message: RelayResponse | RelayProgress) -> None:
        if isinstance(message, RelayProgress) and not held.is_set():
            held.set()
            await release.wait()
        published.append(message)
        if isinstance(message, RelayResponse):
            answered.set()

    async def script(radio: FakeRadio, request: bytes) -> None:
        radio.notify(keepalive_frame(KeepaliveStatus.PROCESSING))
        await held.wait()  # the uplink is holding that one
        radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
        await asyncio.sleep(0.01)
        radio.notify_message(Command.MSG, ANSWER)

    link = FakeRadioLink(script)
    relay: Relay[FakeRadioLink] = Relay({MODULE: link}, publish)
    relay.start()
    try:
        rid = b"\x07" * 16
        await relay.submit(RelayRequest(rid, MODULE, b"r", time.time() + 30))
        await asyncio.wait_for(answered.wait(), 5)
        release.set()
        await asyncio.sleep(0.1)  # the pump takes what is left in its queue
        assert [(type(m).__name__, getattr(m, "status", None)) for m in published] == [
            ("RelayResponse", RelayStatus.OK), ("RelayProgress", OwnerStatus.PROCESSING)]
    finally:
        link.shutdown()
        await relay.stop()


async def test_keepalive_with_an_unknown_status_byte_is_proof_of_life_not_progress(
        harness: Harness) -> None:
    harness.link.script = scripted(bytes([Command.KEEPALIVE, 0, 1, 0x7F]),
                                   bytes([Command.KEEPALIVE, 0, 1, 0x00]),
                                   then=lambda r: r.notify_message(Command.MSG, ANSWER))
    response = await harness.pay()
    assert (response.status, response.envelope) == (RelayStatus.OK, ANSWER)
    assert harness.progress(response.request_id) == []
    await harness.still_serves_honestly()


@pytest.mark.parametrize("payload", [b"", b"\x02\x02", b"\x02" * 40],
                         ids=["empty", "two bytes", "forty bytes"])
async def test_keepalive_of_the_wrong_length_fails_only_that_request(
        harness: Harness, payload: bytes) -> None:
    harness.link.script = scripted(*fragment(Command.KEEPALIVE, payload, FRAGMENT))
    response = await harness.pay()
    assert response.status is RelayStatus.LINK_ERROR
    assert not harness.link.connected  # dropped: the module abandons the request
    assert harness.relay.workers[MODULE].failures == 0  # an answer, not a crash
    await harness.still_serves_honestly()
    assert len(harness.link.radios) == 2  # the honest request reconnected


@pytest.mark.parametrize("code", list(ErrorCode))
async def test_error_frame_answers_link_error(harness: Harness, code: ErrorCode) -> None:
    harness.link.script = scripted(error_frame(code))
    response = await harness.pay()
    assert response.status is RelayStatus.LINK_ERROR
    assert harness.relay.workers[MODULE].last_error
    await harness.still_serves_honestly()
    assert harness.relay.workers[MODULE].last_error == ""  # cleared on recovery


async def test_error_frame_with_an_unknown_code_or_length_answers_link_error(
        harness: Harness) -> None:
    for frame in (bytes([Command.ERROR, 0, 1, 0x55]), bytes([Command.ERROR, 0, 2, 6, 6]),
                  bytes([Command.ERROR, 0, 0])):
        harness.link.script = scripted(frame)
        assert (await harness.pay()).status is RelayStatus.LINK_ERROR
    await harness.still_serves_honestly()


async def test_garbled_fragments_answer_link_error(harness: Harness) -> None:
    """A continuation out of sequence, a continuation with no message started, a length
    beyond the largest message, an unknown command byte."""
    for frames in ((bytes([Command.MSG, 0, 250]) + b"x" * 244, b"\x05" + b"y" * 10),
                   (b"\x00abc",),
                   (bytes([Command.MSG, 0xFF, 0xFF]) + b"z",),
                   (bytes([0x99, 0, 1, 0]),)):
        harness.link.script = scripted(*frames)
        response = await harness.pay()
        assert response.status is RelayStatus.LINK_ERROR, frames
    await harness.still_serves_honestly()


async def test_a_message_of_another_kind_answers_link_error(harness: Harness) -> None:
    """A PING echo or a CANCEL where the answer should be."""
    for command in (Command.PING, Command.CANCEL):
        harness.link.script = scripted(*fragment(command, b"stray", FRAGMENT))
        assert (await harness.pay()).status is RelayStatus.LINK_ERROR
    await harness.still_serves_honestly()


async def test_answer_for_another_transaction_is_relayed_unchanged_for_the_platform_to_judge(
        harness: Harness) -> None:
    """The relay moves envelopes, it does not read them: a module answering some other
    transaction gets its bytes to the platform unchanged, which refuses them against the
    request it stored (``wrong_request``, tests/blegw_platform). Only one answer is taken."""
    harness.link.script = scripted(*fragment(Command.MSG, b"answer to another request",
                                             FRAGMENT),
                                   *fragment(Command.MSG, b"a second answer", FRAGMENT))
    response = await harness.pay()
    assert (response.status, response.envelope) == (RelayStatus.OK,
                                                    b"answer to another request")
    await harness.still_serves_honestly()
    # the stray second answer was discarded before the honest request, not taken for its answer


async def test_link_that_drops_mid_request_answers_link_error_and_reconnects(
        harness: Harness) -> None:
    harness.link.script = scripted(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED),
                                   then=FakeRadio.drop)
    response = await harness.pay()
    assert response.status is RelayStatus.LINK_ERROR
    assert harness.relay.workers[MODULE].last_error_code == faults.link_lost("").code
    await harness.still_serves_honestly()


async def test_module_that_never_answers_is_a_link_error_after_the_keepalive_timeout(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(link_module, "KEEPALIVE_TIMEOUT", 0.3)
    harness.link.script = scripted()
    started = time.monotonic()
    response = await harness.pay()
    assert response.status is RelayStatus.LINK_ERROR
    assert harness.relay.workers[MODULE].last_error_code == faults.module_silent("").code
    assert time.monotonic() - started < 3
    await harness.still_serves_honestly()


async def test_module_that_asks_past_the_deadline_is_cancelled_at_the_deadline(
        harness: Harness) -> None:
    async def forever(radio: FakeRadio, request: bytes) -> None:
        while True:
            radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
            await asyncio.sleep(0.05)

    harness.link.script = forever
    response = await harness.pay(deadline_in=0.6)
    assert response.status is RelayStatus.DEADLINE_PASSED
    assert (Command.CANCEL, b"") in harness.link.received
    assert harness.progress(response.request_id) == [OwnerStatus.AWAITING_OWNER]
    await harness.still_serves_honestly()


async def test_terminal_cancel_in_flight_sends_cancel_and_the_module_stops_asking(
        harness: Harness) -> None:
    asked = 0

    async def asking(radio: FakeRadio, request: bytes) -> None:
        nonlocal asked
        while True:
            asked += 1
            radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
            await asyncio.sleep(0.02)

    harness.link.script = asking
    request = harness.request()
    await harness.relay.submit(request)
    await harness.until(lambda: harness.progress(request.request_id))
    done = await harness.relay.cancel(RelayCancel(request.request_id, MODULE))
    assert done == "in flight: CANCEL sent"
    response = await harness.answer(request.request_id)
    assert response.status is RelayStatus.CANCELLED
    assert harness.link.received[-1] == (Command.CANCEL, b"")
    stopped_at = asked
    await asyncio.sleep(0.1)
    assert asked == stopped_at  # the module stopped asking
    # a repeated cancel (QoS 1 redelivery) changes nothing
    assert await harness.relay.cancel(RelayCancel(request.request_id, MODULE)) \
        == "already answered"
    assert len(harness.responses(request.request_id)) == 1
    await harness.still_serves_honestly()


async def test_terminal_cancel_of_a_queued_request_never_reaches_the_module(
        harness: Harness) -> None:
    gate = asyncio.Event()

    async def slow(radio: FakeRadio, request: bytes) -> None:
        await gate.wait()
        radio.notify_message(Command.MSG, ANSWER)

    harness.link.script = slow
    first, second, third = harness.request(), harness.request(), harness.request()
    for request in (first, second, third):
        await harness.relay.submit(request)
    await asyncio.sleep(0.05)
    assert await harness.relay.cancel(RelayCancel(second.request_id, MODULE)) \
        == "dropped from the queue"
    cancelled = await harness.answer(second.request_id)
    assert cancelled.status is RelayStatus.CANCELLED
    gate.set()
    assert (await harness.answer(first.request_id)).status is RelayStatus.OK
    assert (await harness.answer(third.request_id)).status is RelayStatus.OK
    sent = [payload for command, payload in harness.link.received if command is Command.MSG]
    assert sent == [b"request-1", b"request-3"]  # the cancelled one never went out


async def test_cancel_that_arrives_before_its_request_answers_it_cancelled_on_arrival(
        harness: Harness) -> None:
    request = harness.request()
    assert (await harness.relay.cancel(RelayCancel(request.request_id, MODULE))).startswith(
        "not seen yet")
    await harness.relay.submit(request)
    assert (await harness.answer(request.request_id)).status is RelayStatus.CANCELLED
    assert harness.link.received == []
    await harness.still_serves_honestly()


async def test_approval_that_races_the_cancel_is_relayed_once_for_the_ledger_to_decide(
        harness: Harness) -> None:
    """The module approves at the moment the cancel arrives: the gateway relays whichever
    came first, once; the platform's ledger decides which outcome counts."""
    async def approve_at_once(radio: FakeRadio, request: bytes) -> None:
        radio.notify_message(Command.MSG, ANSWER)

    harness.link.script = approve_at_once
    request = harness.request()
    await harness.relay.submit(request)
    await harness.relay.cancel(RelayCancel(request.request_id, MODULE))
    response = await harness.answer(request.request_id)
    assert response.status in (RelayStatus.OK, RelayStatus.CANCELLED)
    await harness.still_serves_honestly()


@dataclass
class ThrowingLink:
    """A fake of the whole link (the ``Link`` protocol): for failures the real link never
    raises, to show the relay contains them."""

    error: BaseException
    label: str = "throwing"
    adapter: str = "hci0"
    address: str = "AA:BB:CC:DD:EE:02"
    calls: int = 0

    async def exchange(self, envelope: bytes, deadline: float, *,
                       on_keepalive: KeepaliveSeen | None = None,
                       cancel: asyncio.Event | None = None
                       ) -> tuple[bytes, ExchangeTimings]:
        self.calls += 1
        if on_keepalive is not None:
            on_keepalive(KeepaliveStatus.PROCESSING)
        if self.calls % 2:
            raise self.error
        return ANSWER, ExchangeTimings()

    async def ping(self, timeout: float = 10.0) -> ExchangeTimings:
        raise LinkError("no ping here")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("error", [RuntimeError("a defect"), KeyError("x"),
                                   LinkError("a plain link error")],
                         ids=["RuntimeError", "KeyError", "LinkError"])
async def test_unexpected_exchange_failure_is_answered_and_the_worker_goes_on(
        error: BaseException) -> None:
    published: list[RelayResponse | RelayProgress] = []
    all_answered = asyncio.Event()

    async def publish(message: RelayResponse | RelayProgress) -> None:
        published.append(message)
        if sum(isinstance(m, RelayResponse) for m in published) == 4:
            all_answered.set()

    link = ThrowingLink(error)
    relay: Relay[ThrowingLink] = Relay({MODULE: link}, publish)
    relay.start()
    try:
        ids = [bytes([i]) * 16 for i in range(1, 5)]
        for rid in ids:
            await relay.submit(RelayRequest(rid, MODULE, b"r", time.time() + 30))
        await asyncio.wait_for(all_answered.wait(), 5)
        answers = {m.request_id: m.status for m in published if isinstance(m, RelayResponse)}
        assert [answers[rid] for rid in ids] == [RelayStatus.LINK_ERROR, RelayStatus.OK] * 2
        worker = relay.workers[MODULE]
        assert worker.task is not None and not worker.task.done()
        assert worker.failures == (0 if isinstance(error, LinkError) else 2)
    finally:
        with contextlib.suppress(Exception):
            await relay.stop()


async def test_a_local_request_waits_its_turn_and_its_answer_never_reaches_the_platform(
        harness: Harness) -> None:
    gate = asyncio.Event()

    async def slow(radio: FakeRadio, request: bytes) -> None:
        radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
        await gate.wait()
        radio.notify_message(Command.MSG, ANSWER + b" to " + request)

    harness.link.script = slow
    platform = harness.request()
    await harness.relay.submit(platform)
    local = asyncio.create_task(harness.relay.local(MODULE, b"local code", time.time() + 30))
    await asyncio.sleep(0.05)
    assert not local.done()  # queued behind the platform's request: one exchange at a time
    gate.set()
    answer = await asyncio.wait_for(local, 10)
    assert (answer.status, answer.envelope) == (RelayStatus.OK, ANSWER + b" to local code")
    assert (await harness.answer(platform.request_id)).status is RelayStatus.OK
    # the platform heard only about its own request: no answer, no progress of the local one
    assert {m.request_id for m in harness.published} == {platform.request_id}
    await harness.still_serves_honestly()


async def test_a_local_caller_that_goes_away_cancels_on_the_module_and_tells_the_platform_nothing(
        harness: Harness) -> None:
    async def asking(radio: FakeRadio, request: bytes) -> None:
        while True:
            radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
            await asyncio.sleep(0.02)

    harness.link.script = asking
    local = asyncio.create_task(harness.relay.local(MODULE, b"local code", time.time() + 30))
    await asyncio.sleep(0.1)
    local.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await local
    await asyncio.sleep(0.2)
    assert harness.link.received[-1] == (Command.CANCEL, b"")
    assert harness.published == []
    await harness.still_serves_honestly()


async def test_a_local_request_for_an_unknown_module_or_a_full_queue_is_answered_not_hung(
        harness: Harness) -> None:
    unknown = await harness.relay.local(b"\x00" * 16, b"x", time.time() + 5)
    assert unknown.status is RelayStatus.UNKNOWN_MODULE
    gate = asyncio.Event()

    async def slow(radio: FakeRadio, request: bytes) -> None:
        while not gate.is_set():  # the owner is deciding
            radio.notify(keepalive_frame(KeepaliveStatus.USER_ACTION_NEEDED))
            await asyncio.sleep(0.02)
        radio.notify_message(Command.MSG, ANSWER)

    harness.link.script = slow
    waiting = []
    for _ in range(5):  # one in flight, four queued: the queue is full
        waiting.append(asyncio.create_task(harness.relay.local(MODULE, b"x", time.time() + 30)))
        await asyncio.sleep(0.02)
    full = await harness.relay.local(MODULE, b"x", time.time() + 30)
    assert full.status is RelayStatus.QUEUE_FULL
    gate.set()
    assert [r.status for r in await asyncio.gather(*waiting)] == [RelayStatus.OK] * 5
    assert harness.published == []
