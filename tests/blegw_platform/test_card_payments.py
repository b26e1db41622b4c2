"""The platform's card payments on a real SQLite ledger, the gateway played by the test: the
platform's relay requests are taken from its outbox, given to a real card element (the
simulator's secure element, with its owner's policy) and its answers handed back as relay
responses, as the MQTT reader would. No radio: the relay is what is under attack here.

Each test asserts balances, the audit, and that an honest card payment still settles after.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from blegw_platform.card_payments import CardPaymentError
from blegw_platform.issuer_keys import FileIssuerKeys, IssuedCards, issue_card
from blegw_platform.ledger import TransactionRecord
from blegw_platform.platform import Platform, TransactionInput
from e2e import Suite
from private_files import write_atomic
from relay_contract import (
    OwnerStatus,
    RelayCancel,
    RelayProgress,
    RelayRequest,
    RelayResponse,
    RelayStatus,
    decode_from_platform,
    topic,
)
from symmetric_card import CardChallenge, decode
from wearable_sim.card_element import CARD_FILE, CardElement
from wearable_sim.policy import FixedPolicy

GATEWAY = "gw-card"
PAYER, PAYEE = "carol", "shop"


class World:
    """A platform on ``state`` and a card issued by it, linked by the test as a gateway."""

    def __init__(self, state: Path, card_dir: Path) -> None:
        self.state = state
        self.card_dir = card_dir
        self.platform = Platform(state)
        self.card = CardElement(card_dir)
        self.card.connected("AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02")
        self.policy = FixedPolicy(True)

    async def restart(self, approval_window: int = 60) -> None:
        """The platform process restarts on the same state (the card keeps its link)."""
        await self.platform.aclose()
        self.platform = Platform(self.state, approval_window=approval_window)

    async def create(self, key: str, amount: int = 100,
                     suite: Suite = Suite.P256_SHA256) -> TransactionRecord:
        record, created = await self.platform.create(
            TransactionInput(PAYER, PAYEE, key[:20], "card test", amount, "EUR", suite), key)
        assert created and record.state == "pending"
        return record

    def sent(self) -> RelayRequest:
        """The relay request the platform published last (its outbox, the MQTT side)."""
        topic_name, payload = self.platform._outbox.get_nowait()
        assert topic_name == topic(GATEWAY, "req")
        return RelayRequest.decode(payload)

    async def card_answers(self, request: RelayRequest) -> bytes:
        return await self.card.respond(request.envelope, self.policy, 5.0)

    async def deliver(self, request: RelayRequest, answer: bytes,
                      gateway: str = GATEWAY) -> TransactionRecord | None:
        response = RelayResponse(request.request_id, RelayStatus.OK, answer)
        return await self.platform.handle_response(response.encode(), gateway)

    async def pay(self, key: str, amount: int = 100,
                  suite: Suite = Suite.P256_SHA256) -> TransactionRecord:
        """An honest card payment, both exchanges."""
        await self.create(key, amount, suite)
        challenge = self.sent()
        await self.deliver(challenge, await self.card_answers(challenge))
        request = self.sent()
        record = await self.deliver(request, await self.card_answers(request))
        assert record is not None
        return record

    async def balances(self) -> tuple[int, int]:
        ledger = self.platform.ledger
        return await ledger.run(ledger.balance, PAYER), await ledger.run(ledger.balance, PAYEE)

    async def assert_books_balance(self) -> None:
        violations, _ = await self.platform.ledger.run(self.platform.ledger.report)
        assert violations == []


@pytest_asyncio.fixture
async def world(tmp_path: Path, ledger_at: Path | str,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    """On either ledger database (tests/ledger_backends.py)."""
    if isinstance(ledger_at, str):
        monkeypatch.setenv("BLEGW_LEDGER_URL", ledger_at)
    state, card_dir = tmp_path / "platform", tmp_path / "card"
    platform = Platform(state)
    await platform.ledger.run(platform.ledger.add_account, PAYER, "EUR", 10_000)
    await platform.ledger.run(platform.ledger.add_account, PAYEE, "EUR", 0)
    provision = issue_card(FileIssuerKeys(state), IssuedCards(state), bound_user=PAYER)
    card_dir.mkdir(mode=0o700)
    write_atomic(card_dir / CARD_FILE, provision.encode())
    await platform.cards.enroll(provision.card_ref, GATEWAY)
    platform.close()
    w = World(state, card_dir)
    try:
        yield w
    finally:
        await w.platform.aclose()


@pytest.mark.parametrize("suite", list(Suite), ids=lambda s: s.name)
async def test_card_payment_settles_once(world: World, suite: Suite) -> None:
    record = await world.pay("card-pay-000001", 250, suite)
    assert (record.state, record.reason) == ("settled", "")
    assert await world.balances() == (10_000 - 250, 250)
    await world.assert_books_balance()


async def test_duplicate_card_result_settles_once(world: World) -> None:
    await world.create("card-dup-000001", 300)
    challenge = world.sent()
    await world.deliver(challenge, await world.card_answers(challenge))
    request = world.sent()
    result = await world.card_answers(request)
    first = await world.deliver(request, result)
    again = await world.deliver(request, result)      # QoS 1 redelivery, or a gateway's replay
    assert first is not None and again is not None
    assert (first.state, again.state) == ("settled", "settled")
    assert await world.balances() == (10_000 - 300, 300)
    await world.assert_books_balance()


async def test_card_hello_replayed_after_a_platform_restart_is_refused(world: World) -> None:
    await world.create("card-replay-00001", 100)
    challenge = world.sent()
    hello = await world.card_answers(challenge)
    await world.deliver(challenge, hello)
    request = world.sent()
    await world.deliver(request, await world.card_answers(request))
    before = await world.balances()
    await world.restart()                               # the replay memory is in the ledger file
    await world.create("card-replay-00002", 100)
    challenge = world.sent()
    record = await world.deliver(challenge, hello)
    assert record is not None
    assert (record.state, record.reason) == ("rejected", "card:replay")
    assert not world.platform._outbox.qsize()     # no transaction request went out
    assert await world.balances() == before
    assert (await world.pay("card-replay-00003", 40)).state == "settled"
    await world.assert_books_balance()


async def test_card_result_after_a_platform_restart_is_refused_not_settled(
        world: World) -> None:
    await world.create("card-lost-000001", 100)
    challenge = world.sent()
    await world.deliver(challenge, await world.card_answers(challenge))
    request = world.sent()
    result = await world.card_answers(request)
    await world.restart()                               # the server session was in memory only
    record = await world.deliver(request, result)
    assert record is not None
    assert (record.state, record.reason) == ("rejected", "card:session_lost")
    assert await world.balances() == (10_000, 0)
    world.card.connected("AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02")
    assert (await world.pay("card-lost-000002", 40)).state == "settled"


async def test_card_answer_from_another_gateway_is_ignored(world: World) -> None:
    await world.create("card-foreign-0001", 100)
    challenge = world.sent()
    hello = await world.card_answers(challenge)
    assert await world.deliver(challenge, hello, gateway="gw-other") is None
    assert world.platform.counters["foreign_responses"] == 1
    await world.deliver(challenge, hello)         # the card's own gateway: the payment goes on
    request = world.sent()
    record = await world.deliver(request, await world.card_answers(request))
    assert record is not None and record.state == "settled"


async def test_card_error_and_relay_failure_end_the_payment_explicitly(world: World) -> None:
    await world.create("card-error-00001", 100)
    challenge = world.sent()
    # a gateway that sends the card something else than the challenge gets a card error,
    # which becomes the payment's outcome
    garbage = await world.card.respond(b"\xa0", world.policy, 1.0)
    record = await world.deliver(challenge, garbage)
    assert record is not None and (record.state, record.reason) == ("rejected",
                                                                   "card:malformed")
    await world.create("card-error-00002", 100)
    challenge = world.sent()
    response = RelayResponse(challenge.request_id, RelayStatus.LINK_ERROR, detail="link lost")
    failed = await world.platform.handle_response(response.encode(), GATEWAY)
    assert failed is not None
    assert (failed.state, failed.reason) == ("rejected", "gateway:link_error")
    assert await world.balances() == (10_000, 0)
    world.card.connected("AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02")
    assert (await world.pay("card-error-00003", 40)).state == "settled"


async def test_card_challenge_is_what_the_gateway_carries(world: World) -> None:
    """The first relay request carries a card challenge to the card ref, nothing else."""
    record = await world.create("card-challenge-01", 100)
    request = world.sent()
    assert request.module_id == record.module_id
    assert isinstance(decode(request.envelope), CardChallenge)


async def test_enrolling_a_card_the_issuer_never_issued_is_refused(world: World) -> None:
    with pytest.raises(CardPaymentError):
        await world.platform.cards.enroll(bytes(8), GATEWAY)
    with pytest.raises(CardPaymentError):
        await world.platform.cards.enroll(bytes(8), "gw/#")


async def test_card_payment_expires_at_its_deadline_and_a_late_result_settles_nothing(
        world: World) -> None:
    await world.restart(approval_window=1)
    await world.create("card-expire-00001", 100)
    challenge = world.sent()
    await world.deliver(challenge, await world.card_answers(challenge))
    request = world.sent()
    result = await world.card_answers(request)        # the owner answers, but too late
    await asyncio.sleep(3.2)                         # the expiry, and the sweep's 2 s margin
    await world.platform.expire()
    late = await world.deliver(request, result)
    assert late is not None
    assert (late.state, late.reason) == ("timed_out", "no_answer_before_expiry")
    assert await world.balances() == (10_000, 0)
    await world.restart()
    world.card.connected("AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02")
    assert (await world.pay("card-expire-00002", 40)).state == "settled"
    await world.assert_books_balance()


async def test_card_progress_is_shown_and_a_terminal_cancel_withdraws_the_cards_exchange(
        world: World) -> None:
    record = await world.create("card-cancel-00001", 100)
    challenge = world.sent()
    await world.deliver(challenge, await world.card_answers(challenge))
    request = world.sent()
    # the card's KEEPALIVE (its owner is asked), as the gateway reports it
    progress = RelayProgress(request.request_id, OwnerStatus.AWAITING_OWNER)
    assert await world.platform.handle_response(progress.encode(), "gw-other") is None
    shown = await world.platform.handle_response(progress.encode(), GATEWAY)
    assert shown is not None and shown.progress == "awaiting_owner"
    cancelled = await world.platform.cancel(record.id)
    assert (cancelled.state, cancelled.reason) == ("cancelled", "cancelled_by_terminal")
    topic_name, payload = world.platform._outbox.get_nowait()
    withdrawn = decode_from_platform(payload)
    assert topic_name == topic(GATEWAY, "req") and isinstance(withdrawn, RelayCancel)
    assert (withdrawn.request_id, withdrawn.module_id) == (request.request_id,
                                                          record.module_id)
    # the card's approval arrives anyway: the first outcome stays, nothing moves
    late = await world.deliver(request, await world.card_answers(request))
    assert late is not None and late.state == "cancelled"
    assert await world.balances() == (10_000, 0)
    assert (await world.pay("card-cancel-00002", 40)).state == "settled"
    await world.assert_books_balance()
