"""The shipped broker ACL for code notices (``blegw/v1/gw/G/note``), on a real mosquitto over
TLS: only the platform publishes a notice, only gateway G reads G's."""

from __future__ import annotations

from relay_contract import CodeNotice, NoticeRole, NoticeState, topic

from .conftest import SecureMosquitto
from .test_broker_attacks import G, _accounts, _alive, collect, connect


async def test_a_gateway_can_neither_read_nor_forge_another_gateways_code_notices(
        secure_mosquitto: SecureMosquitto) -> None:
    platform, g, h = _accounts(secure_mosquitto)
    await secure_mosquitto.reload()
    notice = CodeNotice(bytes(32), bytes(16), NoticeRole.PAYEE, "shop-42",
                        NoticeState.SETTLED, "", 1250, "EUR", 1_800_000_000).encode()
    forged = CodeNotice(bytes(32), bytes(16), NoticeRole.PAYEE, "shop-42",
                        NoticeState.DECLINED, "declined_by_user", 1250, "EUR",
                        1_800_000_000).encode()
    async with connect(secure_mosquitto, h) as attacker, connect(secure_mosquitto, g) as victim:
        for pattern in (topic(G, "note"), topic("+", "note"), "blegw/#", "#"):
            await attacker.subscribe(pattern, qos=1)
        await victim.subscribe(topic(G, "note"), qos=1)
        await attacker.publish(topic(G, "note"), forged, qos=1)     # dropped by the ACL
        async with connect(secure_mosquitto, platform) as sender:
            await sender.publish(topic(G, "note"), notice, qos=1)
        got = await collect(victim, 1.0)
        assert [bytes(m.payload) for m in got] == [notice]  # type: ignore[arg-type]
        assert await collect(attacker, 0.3) == []
    _alive(secure_mosquitto)
