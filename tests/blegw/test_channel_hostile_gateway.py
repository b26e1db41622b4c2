"""A hostile gateway in front of the real daemon (``blegw run``, a process) while payments
travel inside the secure channel: it alters the order record on its way to the module, then
answers an order with a recorded approval record. Real parts as in test_card_payments.py: the
virtual radio, mosquitto, the platform on SQLite, the module's GATT server (bless).

Each attack ends the payment ``rejected`` with a channel reason, no money moves, the daemon
keeps running and an honest payment settles after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from blegw_harness.chain import running_chain
from e2e import Suite
from relay_contract import RelayRequest, RelayResponse, RelayStatus, topic
from secure_channel.carriage import ChannelUnits, decode_carried
from secure_channel.errors import ChannelError
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto
from .test_card_payments import HOLD, REAL_GATEWAY, HostileGateway, _daemon, _online, _stop
from .test_channel_chain import balances, with_channel


def _record(envelope: bytes) -> ChannelUnits | None:
    """The envelope's units if it carries one record (0x17) to the module."""
    with contextlib.suppress(ChannelError):
        carried = decode_carried(envelope, to_module=True)
        if isinstance(carried, ChannelUnits) and carried.units[0][:1] == b"\x17":
            return carried
    return None


async def test_hostile_gateway_alters_and_replays_channel_records_in_front_of_the_daemon(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             with_gateway=False) as chain:
        with_channel(chain)
        config = tmp_path / "blegw.toml"
        config.write_text(
            f'[gateway]\nid = "{REAL_GATEWAY}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
            f'[ble]\nadapter = "hci0"\n'
            f'[[modules]]\nid = "{chain.module.element.module_id.hex()}"\n'
            f'address = "{chain.radio.adapters[1].address}"\n')
        env = {**os.environ, **chain.radio.environ()}
        hostile = HostileGateway(mosquitto.port)
        mitm = asyncio.create_task(hostile.run())
        daemon = await _daemon(config, env, tmp_path / "daemon.log")
        try:
            await _online(mosquitto, REAL_GATEWAY)
            outcome = await chain.pay(1500, "honest", Suite.P256_SHA256, "channel-mitm-01")
            assert outcome["state"] == "settled", outcome
            recorded_answer = hostile.log[-1][1].envelope       # the module's approval record

            # 1. one bit of the order record flipped on its way to the module
            async def alter(request: RelayRequest) -> RelayResponse | None:
                carried = _record(request.envelope)
                if carried is None:
                    return None
                unit = bytearray(carried.units[0])
                unit[-3] ^= 0x01
                tampered = RelayRequest(request.request_id, request.module_id,
                                        ChannelUnits((bytes(unit),), True).encode(),
                                        request.deadline)
                assert hostile._client is not None
                await hostile._client.publish(topic(REAL_GATEWAY, "req"), tampered.encode(),
                                              qos=1)
                return HOLD                 # the module's answer comes back through us

            hostile.intercept = alter
            before = await balances(chain)
            outcome = await chain.pay(1500, "altered", Suite.P256_SHA256, "channel-mitm-02")
            assert (outcome["state"], outcome["reason"]) == ("rejected", "channel:peer_10")
            assert await balances(chain) == before     # the module's bad_record, nothing paid

            # 2. a new order answered with the recorded approval, the module never asked
            async def replay(request: RelayRequest) -> RelayResponse | None:
                if _record(request.envelope) is None:
                    return None
                return RelayResponse(request.request_id, RelayStatus.OK, recorded_answer)

            hostile.intercept = replay
            outcome = await chain.pay(1500, "replayed", Suite.P256_SHA256, "channel-mitm-03")
            assert outcome["state"] == "rejected"
            assert outcome["reason"].startswith("channel:"), outcome
            assert await balances(chain) == before

            hostile.intercept = None
            outcome = await chain.pay(1500, "honest after", Suite.P256_SHA256,
                                      "channel-mitm-04")
            assert outcome["state"] == "settled", outcome
            assert await balances(chain) == (before[0] - 1500, before[1] + 1500)
            assert daemon.returncode is None
        finally:
            mitm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await mitm
            await _stop(daemon)
        ledger = chain.platform.ledger
        assert await ledger.run(ledger.audit) == []
