"""The platform's own channel check over the real chain: the real gateway daemon (a subprocess,
on the virtual radio) reports the link of each answer, the platform recomputes the card's
channel id from it; a hostile gateway in front of the daemon that reports another link is
refused (``card:wrong_channel``) before the card is sent a request, and nothing moves. Real
mosquitto, SQLite, bless and bleak; only the radio is virtual.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import aiomqtt

from blegw_harness.chain import CARD_PAYER, running_chain
from e2e import Suite
from relay_contract import LinkReport, RelayResponse
from wearable_sim.policy import FixedPolicy

from .conftest import Mosquitto
from .test_card_payments import (
    REAL_GATEWAY,
    HostileGateway,
    _daemon,
    _online,
    _stop,
    balances,
    honest_card_payment,
)


class LyingGateway(HostileGateway):
    """Forwards everything, but rewrites the link report of the daemon's answers."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.rewrite: LinkReport | bool | None = True
        """True: pass the daemon's report on; None: strip it (an older gateway); a report:
        put that one in its place."""
        self.reports: list[LinkReport | None] = []

    async def _answer(self, client: aiomqtt.Client, response: RelayResponse) -> None:
        self.reports.append(response.link)
        if self.rewrite is not True:
            link = self.rewrite if isinstance(self.rewrite, LinkReport) else None
            response = dataclasses.replace(response, link=link)
        await super()._answer(client, response)


async def test_hostile_gateway_reporting_another_link_for_the_card_is_refused_on_the_platform(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with running_chain(FixedPolicy(True), broker_url=mosquitto.url,
                             card_policy=FixedPolicy(True), with_gateway=False) as chain:
        assert chain.card is not None
        card_ref = chain.card.card.facts().card_ref
        card_address, central = chain.radio.adapters[2].address, chain.radio.adapters[0].address
        config = tmp_path / "blegw.toml"
        config.write_text(
            f'[gateway]\nid = "{REAL_GATEWAY}"\n[mqtt]\nurl = "{mosquitto.url}"\n'
            f'[ble]\nadapter = "hci0"\n'
            f'[[modules]]\nid = "{card_ref.hex()}"\naddress = "{card_address}"\n')
        env = {**os.environ, **chain.radio.environ()}
        hostile = LyingGateway(mosquitto.port)
        mitm = asyncio.create_task(hostile.run())
        daemon = await _daemon(config, env, tmp_path / "daemon.log")
        try:
            await _online(mosquitto, REAL_GATEWAY)
            # the honest path: the daemon reports the link as BlueZ names it, which is the
            # link the card computed its channel id on
            await honest_card_payment(chain, "link-report-01")
            assert hostile.reports[-1] == LinkReport.from_text(card_address, central)
            assert chain.platform.counters["card_channel_unchecked"] == 0

            # a relay's link (another central) reported for the card's hello: refused on the
            # platform; the card answered the challenge and was never sent the request
            hostile.rewrite = LinkReport.from_text(card_address, "00:00:5E:00:53:01")
            before = await balances(chain)
            handled = len(chain.card.handled)
            outcome = await chain.pay(90, "relayed", Suite.SM2_SM3, "link-report-02",
                                      CARD_PAYER)
            assert (outcome["state"], outcome["reason"]) == ("rejected", "card:wrong_channel")
            assert await balances(chain) == before
            assert chain.card.handled[handled:] == ["card-hello"]

            # an older gateway (no report): accepted on the card's own check, counted
            hostile.rewrite = None
            await honest_card_payment(chain, "link-report-03", suite=Suite.SM2_SM3)
            assert chain.platform.counters["card_channel_unchecked"] == 1

            hostile.rewrite = True
            await honest_card_payment(chain, "link-report-04")
            assert chain.platform.counters["card_channel_unchecked"] == 1
            assert daemon.returncode is None
        finally:
            mitm.cancel()
            await asyncio.gather(mitm, return_exceptions=True)
            await _stop(daemon)
        violations, _ = await chain.platform.ledger.run(chain.platform.ledger.report)
        assert violations == []
