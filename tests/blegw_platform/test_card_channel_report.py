"""The platform's own check of a card's channel: the gateway reports the link's addresses with
each answer (relay contract key 7), the platform recomputes the channel id from them and the
random in the card's hello, and a mismatch ends the payment ``rejected`` (``card:wrong_channel``)
before any transaction request goes to the card. Real SQLite ledger and card element; the test
plays the gateway (honest or hostile), as in test_card_payments.py.
"""

from __future__ import annotations

from relay_contract import LinkReport, RelayRequest, RelayResponse, RelayStatus

from . import test_card_payments as base
from .test_card_payments import World

world = base.world
"""The platform, its ledger and an issued card, as in test_card_payments.py."""

CARD, CENTRAL = "AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"
"""The link as the test's card was told it (``World``: ``card.connected(CARD, CENTRAL)``)."""


async def _deliver(world: World, request: RelayRequest, answer: bytes,
                   link: LinkReport | None) -> None:
    response = RelayResponse(request.request_id, RelayStatus.OK, answer, link=link)
    await world.platform.handle_response(response.encode(), "gw-card")


async def _pay_reporting(world: World, key: str, link: LinkReport | None,
                         amount: int = 100) -> str:
    record = await world.create(key, amount)
    challenge = world.sent()
    await _deliver(world, challenge, await world.card_answers(challenge), link)
    request = world.sent()
    await _deliver(world, request, await world.card_answers(request), link)
    final = await world.platform.get(record.id)
    assert final is not None
    return final.state


async def test_honest_gateway_reporting_the_link_settles_checked(world: World) -> None:
    assert await _pay_reporting(world, "card-link-00001", LinkReport.from_text(CARD, CENTRAL),
                                120) == "settled"
    assert world.platform.counters["card_channel_unchecked"] == 0
    assert await world.balances() == (10_000 - 120, 120)


async def test_hostile_gateway_reporting_another_link_is_rejected_before_the_card_is_asked(
        world: World) -> None:
    """A gateway (or a relay in front of it) whose link to the card is not the one the card
    computed its channel id on: the hello is refused, no transaction request is sent, nothing
    moves; the same card then pays over an honestly reported link."""
    for n, link in enumerate((LinkReport.from_text(CARD, "AA:BB:CC:DD:EE:99"),
                              LinkReport.from_text("AA:BB:CC:DD:EE:77", CENTRAL))):
        record = await world.create(f"card-link-bad-{n}", 500)
        challenge = world.sent()
        await _deliver(world, challenge, await world.card_answers(challenge), link)
        final = await world.platform.get(record.id)
        assert final is not None
        assert (final.state, final.reason) == ("rejected", "card:wrong_channel")
        assert world.platform._outbox.empty()          # the card never saw a request
        assert await world.balances() == (10_000, 0)
    assert await _pay_reporting(world, "card-link-00002", LinkReport.from_text(CARD, CENTRAL),
                                70) == "settled"
    assert await world.balances() == (10_000 - 70, 70)
    await world.assert_books_balance()


async def test_older_gateway_without_a_report_still_pays_and_is_counted(
        world: World) -> None:
    """An older gateway reports no link: the platform accepts on the card's own channel check
    and counts the hello as unchecked."""
    assert await _pay_reporting(world, "card-link-00003", None, 40) == "settled"
    assert world.platform.counters["card_channel_unchecked"] == 1
    assert await world.balances() == (10_000 - 40, 40)


async def test_platform_requiring_the_link_refuses_an_unreported_one(world: World) -> None:
    """``serve --require-card-link``: a gateway that reports no link (an older one, or one
    hiding it) gets the card's hello refused; nothing moves; a reported link pays."""
    world.platform.cards.require_link = True
    record = await world.create("card-link-req-01", 300)
    challenge = world.sent()
    await _deliver(world, challenge, await world.card_answers(challenge), None)
    final = await world.platform.get(record.id)
    assert final is not None
    assert (final.state, final.reason) == ("rejected", "card:wrong_channel")
    assert world.platform._outbox.empty()
    assert await world.balances() == (10_000, 0)
    assert await _pay_reporting(world, "card-link-req-02", LinkReport.from_text(CARD, CENTRAL),
                                30) == "settled"
    assert world.platform.counters["card_channel_unchecked"] == 0
