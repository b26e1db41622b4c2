"""Limits of the event streams (``GET /v1/transactions/{id}/events``) against a terminal that
opens as many as it can, over real HTTP on a real SQLite ledger; no gateway is needed (the
transactions stay pending, which is what keeps a stream open)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import ClientResponse, ClientSession, TCPConnector
from aiohttp.test_utils import TestServer

from blegw_platform.api import make_app
from blegw_platform.events_api import MAX_STREAMS_PER_TERMINAL
from blegw_platform.platform import Platform
from e2e import Suite, generate_private_key


class Api:
    def __init__(self, platform: Platform, http: ClientSession, url: str,
                 keys: dict[str, str]) -> None:
        self.platform, self.http, self.url, self.keys = platform, http, url, keys

    async def pending(self, terminal: str, n: int) -> str:
        body = {"payer": "alice", "payee": "shop", "order_reference": f"R-{terminal}-{n}",
                "order_description": "tea", "amount_minor": 100, "currency": "EUR",
                "suite": "p256"}
        async with self.http.post(f"{self.url}/v1/transactions", json=body, headers={
                "Authorization": f"Bearer {self.keys[terminal]}",
                "Idempotency-Key": f"stream-limit-{terminal}-{n}"}) as resp:
            answer = await resp.json()
            assert (resp.status, answer["state"]) == (201, "pending"), answer
            return str(answer["id"])

    @asynccontextmanager
    async def stream(self, terminal: str, tx: str, query: str = "heartbeat=60&lifetime=300"
                     ) -> AsyncIterator[ClientResponse]:
        async with self.http.get(f"{self.url}/v1/transactions/{tx}/events?{query}",
                                 headers={"Authorization": f"Bearer {self.keys[terminal]}"}
                                 ) as response:
            yield response


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    platform = Platform(tmp_path / "platform")
    for account in ("alice", "shop"):
        await platform.ledger.run(platform.ledger.add_account, account, "EUR", 100_000)
    now = int(time.time())
    key = generate_private_key(Suite.P256_SHA256)
    cert = platform.cas[Suite.P256_SHA256].issue(key.public_key, bytes(16), not_before=now - 60,
                                                 not_after=now + 3600).encode()
    await platform.enroll(cert, "alice", "gw-1")
    keys = {name: await platform.add_terminal(name, ["shop"]) for name in ("greedy", "other")}
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession(connector=TCPConnector(limit=0)) as http:
            yield Api(platform, http, str(server.make_url("")).rstrip("/"), keys)
    finally:
        await server.close()
        await platform.aclose()


async def test_one_terminal_cannot_take_every_event_stream(api: Api) -> None:
    """The only cap was 512 streams over all terminals: one terminal holding them all shut out
    every other terminal's streams (503)."""
    tx = await api.pending("greedy", 0)
    async with AsyncExitStack() as held:
        for _ in range(MAX_STREAMS_PER_TERMINAL):
            response = await held.enter_async_context(api.stream("greedy", tx))
            assert response.status == 200
        async with api.stream("greedy", tx) as refused:
            assert refused.status == 429
            assert (await refused.json())["error"] == "too_many_streams"
        other = await api.pending("other", 0)
        async with api.stream("other", other) as response:
            assert response.status == 200       # another terminal still gets its stream
    async with api.stream("greedy", tx) as response:   # closed ones are given back
        assert response.status == 200


async def test_a_heartbeat_below_one_second_is_refused(api: Api) -> None:
    """Each heartbeat looks at the ledger: 0.1 s on hundreds of streams made thousands of reads
    a second and slowed every payment."""
    tx = await api.pending("greedy", 1)
    async with api.stream("greedy", tx, "heartbeat=0.1") as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_heartbeat"
    async with api.stream("greedy", tx, "heartbeat=1&lifetime=0.2") as response:
        assert response.status == 200
        assert b"event: reconnect" in await response.read()


async def test_a_quiet_stream_keeps_alive_without_reading_the_ledger(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each heartbeat once read the transaction from the ledger: hundreds of quiet streams made
    hundreds of ledger reads a second. The reads are counted by wrapping the platform's real
    read (it still answers)."""
    tx = await api.pending("greedy", 2)
    reads: list[bytes] = []
    real_get = api.platform.get

    async def counted(tx_id: bytes, terminal: object = None) -> object:
        reads.append(tx_id)
        return await real_get(tx_id, terminal)  # type: ignore[arg-type]

    monkeypatch.setattr(api.platform, "get", counted)
    async with api.stream("greedy", tx, "heartbeat=1&lifetime=3.2") as response:
        assert response.status == 200
        body = await response.read()
    assert body.count(b": keepalive") >= 3 and body.endswith(b"event: reconnect\ndata: {}\n\n")
    assert len(reads) <= 2          # the handler's read and the stream's first: none per beat
    # a change still reaches a stream at once (the cancel wakes it; no heartbeat waited for)
    monkeypatch.undo()
    async with api.stream("greedy", tx, "heartbeat=60&lifetime=30") as response:
        first = await response.content.readuntil(b"\n\n")      # retry:
        state = await response.content.readuntil(b"\n\n")      # the pending state
        assert first.startswith(b"retry:") and b"event: state" in state
        async with api.http.post(f"{api.url}/v1/transactions/{tx}/cancel", headers={
                "Authorization": f"Bearer {api.keys['greedy']}"}) as cancelled:
            assert cancelled.status == 200
        final = await asyncio.wait_for(response.content.read(), 5)
    assert b"event: final" in final and b'"state":"cancelled"' in final
