"""Hostile requests sent to the module over the link (bleak over the virtual radio): every one
gets exactly one answer, the request task never dies, an honest request is signed after."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2

from e2e import ErrorCode as E2ECode
from e2e import ErrorResponse, Suite
from vbluez import VirtualBluez

from .conftest import assert_signs_honest_request, make_request, start_module

TX = b"\x07" * 16


def _raw(value: Any) -> bytes:
    return bytes(cbor2.dumps(value, canonical=True))


async def test_huge_integers_and_wrong_types_do_not_kill_the_request_task(
        vbluez: VirtualBluez, tmp_path: Path, link_to: Any) -> None:
    """A 5000-digit integer used to raise a plain ValueError inside the request task: no
    answer, and the gateway waited until its deadline."""
    module, _, cas, certs = await start_module(vbluez, tmp_path / "m", "approve")
    try:
        link = await link_to(module)
        _, request = make_request(Suite.P256_SHA256, tx=TX)
        body = request.body()
        huge = 10**5000
        hostile = [
            (_raw({1: huge, 2: 1, 3: body}), TX),                   # version
            (_raw({1: 1, 2: huge, 3: body}), TX),                   # message type
            (_raw({1: 1, 2: 1, 3: {**body, 10: huge}}), TX),        # suite
            (_raw({1: 1, 2: 1, 3: {**body, 6: -huge}}), TX),        # amount
            (_raw({1: True, 2: 1, 3: body}), TX),                   # version true
            (_raw({1: 1.0, 2: 1, 3: body}), TX),                    # version 1.0
            (_raw({1: 1, 2: 1, 3: {**body, 6: "1250"}}), TX),       # amount as text
            (_raw({1: 1, 2: 1, 3: {**body, 9: 1.5e9}}), TX),        # expiry as float
            (_raw({1: 1, 2: 1, 3: {**body, 5: None}}), TX),         # description null
            (_raw({1: 1, 2: 4, 3: {1: huge}}), b""),                # certificate request
        ]
        for payload, tx in hostile:
            reply = await link.request(payload)
            assert isinstance(reply, ErrorResponse), reply
            assert reply.code is E2ECode.MALFORMED
            assert reply.transaction_id == tx
        assert module.handled.count("malformed") == len(hostile)
        await assert_signs_honest_request(link, certs, cas, Suite.P256_SHA256)
        assert module.element.state.counter() == 1
    finally:
        await module.stop()
