"""The daemon's store of code notices (``blegw.code_notices``), without a broker: hostile
payloads are typed refusals that keep nothing, waits end on the notice or their timeout, memory
stays bounded. The path through mosquitto and the daemon is tests/blegw/test_codes.py."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from blegw.code_notices import MAX_KEPT, CodeNotices, NoticeRefused
from relay_contract import CodeNotice, NoticeRole, NoticeState


def _notice(n: int, state: NoticeState = NoticeState.SETTLED) -> CodeNotice:
    return CodeNotice(n.to_bytes(32, "big"), bytes(16), NoticeRole.PAYEE, "shop-42", state,
                      "", 990, "EUR", 1_800_000_000)


@pytest.mark.parametrize("payload", [
    "a string", None, b"", b"\xa0", b"\x00" * 10_000,
    _notice(1).encode()[:-1], _notice(1).encode() + b"\x00",
    _notice(1).encode().replace(b"shop-42", b"shop\x1b42"),
])
async def test_a_hostile_notice_is_a_typed_refusal_and_nothing_is_kept(payload: object) -> None:
    notices = CodeNotices()
    with pytest.raises(NoticeRefused) as refused:
        notices.receive(payload)
    assert refused.value.code == "malformed_notice"
    assert (notices.refused, notices.received, len(notices.kept)) == (1, 0, 0)
    notices.receive(_notice(1).encode())       # the next real one is still taken
    assert await notices.wait(_notice(1).code_id, 0) == _notice(1)


async def test_a_waiting_caller_gets_the_notice_when_it_arrives() -> None:
    notices = CodeNotices()
    waiting = asyncio.create_task(notices.answer({"cmd": "code_outcome",
                                                  "code_id": (7).to_bytes(32, "big").hex(),
                                                  "wait": 30}))
    await asyncio.sleep(0)
    notices.receive(_notice(7, NoticeState.DECLINED).encode())
    answer = await asyncio.wait_for(waiting, 5)
    assert answer["ok"] and answer["outcome"]["state"] == "declined"
    late = await notices.answer({"code_id": (8).to_bytes(32, "big").hex(), "wait": 0.01})
    assert (late["ok"], late["code"]) == (False, "timeout")
    for bad in ({"code_id": "AB" * 32}, {"code_id": "00" * 32, "wait": True},
                {"code_id": "00" * 32, "wait": float("nan")}, {"code_id": 5}):
        assert (await notices.answer(bad))["code"] == "bad_request"
    assert notices._waiters == {}


async def test_a_gateway_serving_both_sides_keeps_each_sides_notice() -> None:
    notices = CodeNotices()
    payee = _notice(3)
    payer = CodeNotice(payee.code_id, payee.transaction_id, NoticeRole.PAYER, "alice-001",
                       NoticeState.SETTLED, "", 990, "EUR", payee.at)
    waiting = asyncio.create_task(notices.wait(payee.code_id, 30, NoticeRole.PAYER))
    await asyncio.sleep(0)
    notices.receive(payee.encode())
    assert not waiting.done()                  # the payee's notice is not the payer's
    notices.receive(payer.encode())
    assert await asyncio.wait_for(waiting, 5) == payer
    answer = await notices.answer({"code_id": payee.code_id.hex(), "role": "payee"})
    assert answer["outcome"]["account"] == "shop-42"
    answer = await notices.answer({"code_id": payee.code_id.hex(), "role": "owner"})
    assert answer["code"] == "bad_request"


async def test_the_kept_notices_are_bounded() -> None:
    notices = CodeNotices()
    for n in range(MAX_KEPT + 10):
        notices.receive(_notice(n).encode())
    assert len(notices.kept) == MAX_KEPT
    assert await notices.wait(_notice(0).code_id, 0) is None        # the oldest went first
    assert await notices.wait(_notice(MAX_KEPT + 9).code_id, 0) is not None


def test_random_payloads_on_the_note_path_are_refused_or_taken_never_raised() -> None:
    """Random bytes and honest notices with random bytes changed: each is a typed refusal or
    a valid notice (then kept); nothing else escapes."""
    import random

    rng = random.Random(16)
    honest = _notice(9).encode()
    payloads = [rng.randbytes(rng.randrange(0, 300)) for _ in range(500)]
    for _ in range(1500):
        changed = bytearray(honest)
        for _ in range(rng.randrange(1, 4)):
            changed[rng.randrange(len(changed))] = rng.randrange(256)
        payloads.append(bytes(changed))
    notices = CodeNotices()
    for payload in payloads:
        with contextlib.suppress(NoticeRefused):
            notices.receive(payload)
    assert notices.received + notices.refused == len(payloads)
    assert notices.refused > len(payloads) // 2
