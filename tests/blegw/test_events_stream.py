"""Server-sent events of a transaction, read by a real HTTP client over the real chain (the
platform's HTTP API and SQLite ledger, mosquitto, the gateway, bleak and bless over the virtual
BlueZ, the simulated module; only the radio is virtual): the terminal sees ``pending``, then
``awaiting_owner`` while the owner decides, then the outcome, after which the server closes the
stream; a quiet stream carries heartbeats and ends after its lifetime; the stream takes the
long-poll's authentication, and hostile parameters get typed 4xx answers.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import ClientResponse, ClientSession

from blegw_harness.chain import Chain, running_chain

from .conftest import Mosquitto
from .test_wait_and_cancel import Owner, balances, cancel, create, honest_payment_settles


async def _events(response: ClientResponse) -> list[tuple[str, Any]]:
    """Every event and comment until the server closes the stream: (kind, data), with
    comments as ("comment", text) and the retry hint as ("retry", ms)."""
    seen: list[tuple[str, Any]] = []
    kind, data = "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith(":"):
            seen.append(("comment", line[1:].strip()))
        elif line.startswith("retry: "):
            seen.append(("retry", int(line[7:])))
        elif line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and kind:
            seen.append((kind, json.loads(data)))
            kind, data = "", ""
    return seen


def _url(chain: Chain, tx: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"{chain.base_url}/v1/transactions/{tx}/events" + (f"?{params}" if params else "")


async def test_stream_shows_the_wait_then_the_outcome_and_closes(mosquitto: Mosquitto) -> None:
    owner = Owner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        before = await balances(chain)
        record = await create(chain, 250, "events-settle-01")
        async with chain.http.get(_url(chain, record["id"], heartbeat="1")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["Cache-Control"] == "no-cache"
            reading = asyncio.ensure_future(_events(response))
            await asyncio.wait_for(owner.asked.wait(), 15)
            await asyncio.sleep(1.3)  # quiet while the owner decides: heartbeats
            assert owner._answer is not None
            owner._answer.set_result(True)
            seen = await asyncio.wait_for(reading, 20)  # the server closed the stream
        kinds = [kind for kind, _ in seen]
        assert kinds[0] == "retry" and kinds[-1] == "final"
        states = [data for kind, data in seen if kind == "state"]
        assert states[0]["state"] == "pending"
        assert any(s["progress"] == "awaiting_owner" for s in states)
        assert ("comment", "keepalive") in seen
        final = seen[-1][1]
        assert (final["id"], final["state"], final["progress"]) == (record["id"], "settled", "")
        assert [s["updated"] for s in states] == sorted(set(s["updated"] for s in states))
        assert await balances(chain) == (before[0] - 250, before[1] + 250)

        # Opened on a final transaction: the final event at once, then closed.
        async with chain.http.get(_url(chain, record["id"])) as response:
            assert [k for k, _ in await _events(response)] == ["retry", "final"]
        await honest_payment_settles(chain)


async def test_stream_ends_after_its_lifetime_and_resumes_from_the_last_event(
        mosquitto: Mosquitto) -> None:
    owner = Owner()
    async with running_chain(owner, broker_url=mosquitto.url) as chain:
        record = await create(chain, 300, "events-life-0001")
        await asyncio.wait_for(owner.asked.wait(), 15)
        started = time.monotonic()
        async with chain.http.get(_url(chain, record["id"], lifetime="0.6",
                                       heartbeat="1")) as response:
            seen = await asyncio.wait_for(_events(response), 10)
        assert time.monotonic() - started < 3  # bounded, not left open
        assert seen[-1] == ("reconnect", {})
        last = [data for kind, data in seen if kind == "state"][-1]
        # Resumed with Last-Event-ID: nothing repeated, the cancel's outcome arrives.
        headers = {"Last-Event-ID": repr(last["updated"])}
        async with chain.http.get(_url(chain, record["id"], heartbeat="1"),
                                  headers=headers) as response:
            reading = asyncio.ensure_future(_events(response))
            await asyncio.sleep(0.3)
            status, body = await cancel(chain, record["id"])
            assert (status, body["state"]) == (200, "cancelled")
            resumed = await asyncio.wait_for(reading, 10)
        assert all(data["updated"] > last["updated"] for kind, data in resumed
                   if kind in ("state", "final"))  # nothing it already had
        assert resumed[-1][0] == "final" and resumed[-1][1]["state"] == "cancelled"


async def test_stream_takes_the_long_polls_authentication_and_refuses_hostile_input(
        mosquitto: Mosquitto) -> None:
    async with running_chain(Owner(), broker_url=mosquitto.url) as chain:
        record = await create(chain, 100, "events-auth-0001")
        async with ClientSession() as anonymous:
            async with anonymous.get(_url(chain, record["id"])) as response:
                assert response.status == 401
                assert (await response.json())["error"] == "unauthorized"
            async with anonymous.get(_url(chain, record["id"]), headers={
                    "Authorization": "Bearer someone.0123456789abcdef"}) as response:
                assert response.status == 401
        for query, code in (({"lifetime": "nan"}, "invalid_lifetime"),
                            ({"lifetime": "1e9"}, "invalid_lifetime"),
                            ({"heartbeat": "0"}, "invalid_heartbeat")):
            async with chain.http.get(_url(chain, record["id"], **query)) as response:
                assert (response.status, (await response.json())["error"]) == (400, code)
        async with chain.http.get(_url(chain, record["id"]),
                                  headers={"Last-Event-ID": "-1"}) as response:
            assert (await response.json())["error"] == "invalid_last_event_id"
        async with chain.http.get(_url(chain, "zz" * 16)) as response:
            assert (response.status, (await response.json())["error"]) == (400, "invalid_id")
        async with chain.http.get(_url(chain, "ab" * 16)) as response:
            assert (response.status, (await response.json())["error"]) == (404, "not_found")
        # The service still serves streams and payments after all that.
        status, _ = await cancel(chain, record["id"])
        assert status == 200
        async with chain.http.get(_url(chain, record["id"])) as response:
            assert (await _events(response))[-1][1]["state"] == "cancelled"
