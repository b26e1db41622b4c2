"""Attacks through the broker on the real chain: a real mosquitto, the real platform and gateway
daemon, the simulated module over the virtual radio (only the radio is simulated).

Each test publishes what an attacker with access to the broker can publish, then checks that no
process stopped, the balances are what honest payments make them, and an honest payment still
settles afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import aiomqtt
import cbor2

from blegw.service import MAX_QUEUED_INCOMING
from blegw_harness.chain import GATEWAY_ID, PAYEE, PAYER, Chain, running_chain
from blegw_platform.platform import MAX_TIMINGS, Platform
from e2e import Suite
from relay_contract import RelayRequest, RelayResponse, RelayStatus, topic
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto

START = 1_000_000


async def _balances(chain: Chain) -> tuple[int, int]:
    ledger = chain.platform.ledger
    return (await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE))


@contextlib.asynccontextmanager
async def _attacker(mosquitto: Mosquitto, *subscribe: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="mallory") as client:
        for name in subscribe:
            await client.subscribe(name, qos=1)
        yield client


async def _start_payment(chain: Chain, amount: int, key: str) -> bytes:
    body = {"payer": PAYER, "payee": PAYEE, "order_reference": key[:20],
            "order_description": "hostile test", "amount_minor": amount, "currency": "EUR",
            "suite": "p256"}
    async with chain.http.post(f"{chain.base_url}/v1/transactions", json=body,
                               headers={"Idempotency-Key": key}) as resp:
        assert resp.status in (200, 201), await resp.text()
        return bytes.fromhex((await resp.json())["id"])


async def _outcome(chain: Chain, tx_id: bytes) -> dict[str, Any]:
    async with chain.http.get(f"{chain.base_url}/v1/transactions/{tx_id.hex()}/outcome",
                              params={"timeout": "30"}) as resp:
        outcome: dict[str, Any] = await resp.json()
        return outcome


async def _honest_payment_settles(chain: Chain, key: str) -> None:
    before = await _balances(chain)
    outcome = await asyncio.wait_for(chain.pay(100, "honest", Suite.P256_SHA256, key), 40)
    assert outcome["state"] == "settled", outcome
    assert await _balances(chain) == (before[0] - 100, before[1] + 100)


def _platform_uplink(chain: Chain) -> asyncio.Task[Any]:
    task = next(t for t in asyncio.all_tasks() if t.get_name() == "platform-uplink")
    return task


async def test_huge_integer_envelope_on_resp_does_not_stop_the_platform(
        mosquitto: Mosquitto) -> None:
    """A status-0 response whose envelope is {1: 10**5000, 2: 2, 3: {}} for a pending payment
    stopped `blegw-platform serve`; now it is an invalid answer and the platform goes on."""
    async with running_chain(FixedPolicy(True, delay=2.0), broker_url=mosquitto.url) as chain:
        tx_id = await _start_payment(chain, 321, "huge-int-0001")
        hostile = RelayResponse(tx_id, RelayStatus.OK,
                                bytes(cbor2.dumps({1: 10**5000, 2: 2, 3: {}}, canonical=True)))
        async with _attacker(mosquitto) as mallory:
            await mallory.publish(topic(GATEWAY_ID, "resp"), hostile.encode(), qos=1)
        outcome = await _outcome(chain, tx_id)
        assert (outcome["state"], outcome["reason"]) == ("rejected", "malformed_answer:malformed")
        assert await _balances(chain) == (START, 0)
        assert not _platform_uplink(chain).done()
        await _honest_payment_settles(chain, "huge-int-0002")


async def test_garbage_on_resp_topics_is_counted_and_the_reader_goes_on(
        mosquitto: Mosquitto) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        async with _attacker(mosquitto) as mallory:
            for payload in (b"", b"\xff" * 10, b"\x00" * 40000,
                            bytes(cbor2.dumps({1: 10**5000}, canonical=True)),
                            bytes(cbor2.dumps({1: b"\x01" * 16, 2: 0, 3: b"", 4: "",
                                               5: {"x": float("nan")}}))):
                await mallory.publish(topic(GATEWAY_ID, "resp"), payload, qos=1)
        for _ in range(100):
            if chain.platform.counters["malformed_responses"] >= 5:
                break
            await asyncio.sleep(0.05)
        assert chain.platform.counters["malformed_responses"] == 5
        assert chain.platform.counters["reader_errors"] == 0
        assert not _platform_uplink(chain).done()
        await _honest_payment_settles(chain, "garbage-resp-01")


async def test_response_on_another_gateways_topic_is_ignored(mosquitto: Mosquitto) -> None:
    """Gateway H (who may publish only on its own topics) answers G's pending payment: the
    platform ignores it and waits for G's answer."""
    async with running_chain(FixedPolicy(True, delay=2.0), broker_url=mosquitto.url) as chain:
        tx_id = await _start_payment(chain, 500, "foreign-gw-001")
        forged = RelayResponse(tx_id, RelayStatus.MODULE_UNREACHABLE, detail="not me")
        async with _attacker(mosquitto) as mallory:
            await mallory.publish(topic("gw-h", "resp"), forged.encode(), qos=1)
        for _ in range(100):
            if chain.platform.counters["foreign_responses"]:
                break
            await asyncio.sleep(0.02)
        assert chain.platform.counters["foreign_responses"] == 1
        record = await chain.platform.get(tx_id)
        assert record is not None and record.state == "pending"
        outcome = await _outcome(chain, tx_id)
        assert outcome["state"] == "settled", outcome
        assert await _balances(chain) == (START - 500, 500)
        await _honest_payment_settles(chain, "foreign-gw-002")


async def test_readable_id_with_a_bad_field_gets_status_7(mosquitto: Mosquitto) -> None:
    """docs/mqtt-contract.md promises exactly one response to every request whose id can be
    read; a deadline of the wrong type used to get none."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        module_id = chain.module.element.module_id
        rid = b"\x5a" * 16
        bad_requests = [
            {1: rid, 2: module_id, 3: b"\xa0", 4: "tomorrow"},          # deadline is text
            {1: rid[:15] + b"\x01", 2: module_id, 3: b"\xa0", 4: float("nan")},   # NaN
            {1: rid[:15] + b"\x02", 2: module_id, 3: b"\xa0", 4: float("inf")},   # infinity
            {1: rid[:15] + b"\x03", 2: 10**5000, 3: b"\xa0", 4: time.time() + 30},
            {1: rid[:15] + b"\x04", 2: module_id, 3: b"\xa0", 4: time.time() + 30, 5: 1},
        ]
        expected = {r[1] for r in bad_requests}
        answers: list[RelayResponse] = []
        async with _attacker(mosquitto, topic(GATEWAY_ID, "resp")) as mallory:
            for request in bad_requests:
                await mallory.publish(topic(GATEWAY_ID, "req"),
                                      bytes(cbor2.dumps(request, canonical=True)), qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    async for message in mallory.messages:
                        assert isinstance(message.payload, bytes)
                        answers.append(RelayResponse.decode(message.payload))
                        if len(answers) == len(expected):
                            await asyncio.sleep(0.5)   # and nothing more arrives
                            break
        assert sorted(a.request_id for a in answers) == sorted(expected)
        assert {a.status for a in answers} == {RelayStatus.MALFORMED_REQUEST}
        assert chain.gateway.malformed == len(bad_requests)
        assert chain.gateway.reader_errors == 0
        await _honest_payment_settles(chain, "status-seven-01")


async def test_oversized_request_is_refused_unread_with_bounded_memory(
        mosquitto: Mosquitto) -> None:
    """Payloads far beyond the contract's 16 KiB are refused before decoding and counted; the
    gateway's incoming queue is bounded, so a flood cannot grow its memory without limit."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        assert chain.gateway._client()._queue.maxsize == MAX_QUEUED_INCOMING
        huge = RelayRequest(b"\x33" * 16, chain.module.element.module_id, b"\xa0",
                            time.time() + 30).encode() + b"\x00" * (4 << 20)
        async with _attacker(mosquitto) as mallory:
            for _ in range(3):
                await mallory.publish(topic(GATEWAY_ID, "req"), huge, qos=1)
        for _ in range(200):
            if chain.gateway.oversized >= 3:
                break
            await asyncio.sleep(0.05)
        assert chain.gateway.oversized == 3
        status = chain.gateway.status()
        assert status["oversized_requests"] == 3 and status["reader_errors"] == 0
        assert "refused unread" in status["last_errors"][-1]
        await _honest_payment_settles(chain, "oversized-req-01")


async def test_hostile_control_socket_requests_are_answered(mosquitto: Mosquitto) -> None:
    """Over-long lines, bad JSON and JSON nested 20,000 deep each get an error answer; the
    socket keeps serving `blegw status`."""
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url) as chain:
        path = chain.gateway.config.control_socket

        async def ask(line: bytes) -> dict[str, Any]:
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                writer.write(line)
                await writer.drain()
                answer: dict[str, Any] = json.loads(await asyncio.wait_for(reader.readline(), 10))
                return answer
            finally:
                writer.close()

        for line in (b"x" * 100_000 + b"\n", b"{not json\n", b"[" * 20_000 + b"\n",
                     b'{"cmd": "ping", "module": ' + b"9" * 5000 + b"}\n", b"\xff\xfe\n",
                     b'{"cmd": "ping", "module": {"a": 1}}\n'):
            answer = await ask(line)
            assert answer["ok"] is False, answer
        assert chain.gateway.control_errors >= 4
        status = await ask(b'{"cmd": "status"}\n')
        assert status["ok"] and status["status"]["gateway"] == GATEWAY_ID
        await _honest_payment_settles(chain, "control-sock-01")


def test_platform_timings_stay_bounded(tmp_path: Path) -> None:
    """`Platform.timings` grew by one entry per payment for ever."""
    platform = Platform(tmp_path / "platform")
    try:
        for i in range(MAX_TIMINGS + 500):
            platform._start_timing(i.to_bytes(16, "big"))
        assert len(platform.timings) == MAX_TIMINGS
        assert (MAX_TIMINGS + 499).to_bytes(16, "big") in platform.timings
        assert (0).to_bytes(16, "big") not in platform.timings
    finally:
        platform.close()


def _hostile_payloads(seed: int, count: int) -> list[bytes]:
    """Random bytes, and honest relay payloads with random bytes changed (most hostile input
    is almost right)."""
    import random

    rng = random.Random(seed)
    honest = [RelayResponse(b"\x01" * 16, RelayStatus.OK, b"\xa0", "ok", {"ble": 0.1}).encode(),
              RelayRequest(b"\x02" * 16, b"\x03" * 8, b"\xa3\x01\x01", 1e9).encode()]
    out = []
    for i in range(count):
        if i % 3 == 0:
            out.append(rng.randbytes(rng.randrange(0, 200)))
        else:
            data = bytearray(rng.choice(honest))
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            out.append(bytes(data))
    return out


async def test_random_payloads_on_the_platforms_response_path_never_raise(
        tmp_path: Path) -> None:
    platform = Platform(tmp_path / "platform")
    try:
        for payload in _hostile_payloads(11, 3000):
            assert await platform.handle_response(payload, "gw-1") is None
        assert sum(platform.counters.values()) == 3000
    finally:
        await platform.aclose()


async def test_random_payloads_on_the_gateways_request_path_never_raise(tmp_path: Path) -> None:
    """Every payload is refused, or answered (status 7, or unknown module: this gateway serves
    none); the reader's handler never raises (the reader counts any exception it catches)."""
    from types import SimpleNamespace

    from blegw.config import GatewayConfig
    from blegw.service import GatewayService

    service = GatewayService(GatewayConfig(
        gateway_id="gw-1", registry=str(tmp_path / "registry.json"),
        control_socket=str(tmp_path / "control.sock")))
    payloads = _hostile_payloads(12, 3000)

    async def messages() -> AsyncIterator[SimpleNamespace]:
        for mid, payload in enumerate(payloads):
            yield SimpleNamespace(payload=payload, mid=mid,
                                  topic=SimpleNamespace(value="blegw/v1/gw/gw-1/req"))

    await service._read(cast(aiomqtt.Client, SimpleNamespace(messages=messages())))
    from e2e import MalformedMessage

    valid = 0
    for payload in payloads:
        with contextlib.suppress(MalformedMessage):
            RelayRequest.decode(payload)
            valid += 1
    assert service.malformed + valid == len(payloads)
    assert service.reader_errors == 0
    assert service.outbox.qsize() >= valid
    while not service.outbox.empty():
        response = service.outbox.get_nowait()
        assert response.status in (RelayStatus.MALFORMED_REQUEST, RelayStatus.UNKNOWN_MODULE)
        RelayResponse.decode(response.encode())
