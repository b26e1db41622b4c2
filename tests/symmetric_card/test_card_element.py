"""The simulated card's secure element with a card the platform's issuer provisioned: real
state files, the module's owner policies (a button on a real Unix socket, a button nobody
presses), the server's checks. The radio is not involved in this step."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from blegw_platform.issuer_keys import FileIssuerKeys, IssuedCards, issue_card
from private_files import write_atomic
from symmetric_card import (
    CardChallenge,
    CardErrorCode,
    CardErrorMessage,
    CardSuite,
    CardVerifier,
    Decision,
    OutOfOrder,
    StaleTimeFactor,
    TransactionInfo,
    UnsupportedSuite,
    WrongChannel,
    decode,
    encode,
)
from symmetric_card.session import CardRecord
from wearable_sim.card_element import CLOCK_FILE, CardElement
from wearable_sim.policy import ButtonPolicy, FixedPolicy
from wearable_sim.state import StateError

NOW = 1_800_000_000
CARD, CENTRAL = "C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13"


class Issued:
    def __init__(self, root: Path, suites: tuple[CardSuite, ...] = tuple(CardSuite)) -> None:
        self.keys = FileIssuerKeys(root / "platform")
        self.register = IssuedCards(root / "platform")
        self.card = issue_card(self.keys, self.register, bound_user="alice", suites=suites,
                               now=NOW - 86400)
        self.directory = root / "card"
        self.directory.mkdir(mode=0o700)
        write_atomic(self.directory / "card.cbor", self.card.encode())
        self.verifier = CardVerifier()

    def record(self) -> CardRecord:
        issued = self.register.get(self.card.card_ref)
        assert issued is not None
        return issued.record(self.keys)

    def transaction(self, amount: int = 2000) -> TransactionInfo:
        import secrets

        return TransactionInfo(secrets.token_bytes(16), amount, "CNY", "breakfast-shop", NOW,
                               "canteen", self.card.info.card_number, "alice")


@pytest.fixture(params=list(CardSuite), ids=lambda s: s.label)
def suite(request: pytest.FixtureRequest) -> CardSuite:
    return CardSuite(request.param)


async def _pay(issued: Issued, element: CardElement, suite: CardSuite, policy: object,
               *, now: int = NOW, timeout: float = 5.0) -> Decision:
    element.connected(CARD, CENTRAL)
    hello = element.hello(encode(CardChallenge(suite, now)))
    server = issued.verifier.open_hello(hello, card=issued.record(), now=now)
    request = server.transaction_request(issued.transaction(), now=now)
    info = element.receive(request)
    result = await element.ask_owner(info, policy, timeout)  # type: ignore[arg-type]
    return server.read_result(result, now=now).decision


async def test_a_provisioned_card_pays_and_remembers_the_confirmed_time(
        tmp_path: Path, suite: CardSuite) -> None:
    issued = Issued(tmp_path)
    element = CardElement(issued.directory)
    assert await _pay(issued, element, suite, FixedPolicy(True)) is Decision.APPROVE
    clock = issued.directory / CLOCK_FILE
    assert clock.read_text() == str(NOW)
    assert stat.S_IMODE(clock.stat().st_mode) == 0o600
    # a second payment in the same second gets a strictly larger time factor, not a replay
    assert await _pay(issued, element, suite, FixedPolicy(False)) is Decision.DECLINE
    assert clock.read_text() == str(NOW + 1)


async def test_the_owner_presses_the_button(tmp_path: Path, suite: CardSuite) -> None:
    issued = Issued(tmp_path)
    element = CardElement(issued.directory)
    button = ButtonPolicy(tmp_path / "button.sock")
    await button.start()
    try:
        payment = asyncio.create_task(_pay(issued, element, suite, button))
        for _ in range(100):                        # until the card waits for the button
            if button._waiting is not None:
                break
            await asyncio.sleep(0.02)
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "button.sock"))
        writer.write(b"approve\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"ok\n"
        writer.close()
        assert await asyncio.wait_for(payment, 5) is Decision.APPROVE
    finally:
        await button.close()


async def test_owner_never_presses_the_button_on_the_card(tmp_path: Path,
                                                          suite: CardSuite) -> None:
    """A button nobody presses: the card answers its authenticated timeout, the server reads
    a non-approval, and the next payment still works."""
    issued = Issued(tmp_path)
    element = CardElement(issued.directory)
    never = ButtonPolicy(tmp_path / "never.sock", pressable=False)
    assert await _pay(issued, element, suite, never, timeout=0.2) is Decision.TIMEOUT
    assert await _pay(issued, element, suite, FixedPolicy(True), now=NOW + 5) is \
        Decision.APPROVE


async def test_forged_future_challenge_spoils_one_connection_not_the_card(
        tmp_path: Path, suite: CardSuite) -> None:
    """A hostile gateway sends a challenge from the year 2096: the server refuses the hello,
    and the card's next connection uses the honest time again."""
    issued = Issued(tmp_path)
    element = CardElement(issued.directory)
    element.connected(CARD, CENTRAL)
    hello = element.hello(encode(CardChallenge(suite, NOW + 2_000_000_000)))
    with pytest.raises(StaleTimeFactor):
        issued.verifier.open_hello(hello, card=issued.record(), now=NOW)
    assert not (issued.directory / CLOCK_FILE).exists()
    assert await _pay(issued, element, suite, FixedPolicy(True)) is Decision.APPROVE


def test_card_without_a_key_in_the_suite_refuses(tmp_path: Path) -> None:
    issued = Issued(tmp_path, suites=(CardSuite.SM4_GCM_SM3,))
    element = CardElement(issued.directory)
    element.connected(CARD, CENTRAL)
    with pytest.raises(UnsupportedSuite):
        element.hello(encode(CardChallenge(CardSuite.AES128_GCM_SHA256, NOW)))
    with pytest.raises(OutOfOrder):
        element.answer(True)
    element.hello(encode(CardChallenge(CardSuite.SM4_GCM_SM3, NOW)))


def test_card_state_readable_by_others_or_corrupt_is_refused(tmp_path: Path) -> None:
    issued = Issued(tmp_path)
    path = issued.directory / "card.cbor"
    path.chmod(0o644)
    with pytest.raises(StateError, match="readable by others"):
        CardElement(issued.directory)
    path.chmod(0o600)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(StateError, match="corrupt"):
        CardElement(issued.directory)
    path.unlink()
    with pytest.raises(StateError, match="provision"):
        CardElement(issued.directory)


def test_the_element_shows_facts_but_no_key(tmp_path: Path) -> None:
    issued = Issued(tmp_path)
    element = CardElement(issued.directory)
    facts = element.facts()
    assert facts.card_number == issued.card.info.card_number
    assert set(facts.suites) == set(CardSuite)
    text = repr(element) + repr(facts) + repr(element.__dict__)
    for _version, key in issued.card.keys.values():
        assert key.material().hex() not in text and repr(key.material()) not in text
    assert issued.card.info.card_number[-4:] in repr(element)
    assert issued.card.info.card_number not in repr(element)


async def test_respond_answers_every_message_and_refusals_carry_their_code(
        tmp_path: Path, suite: CardSuite) -> None:
    """The GATT-facing call: a whole payment through it, then garbage, a hello reflected back,
    and a request for another link, each answered with a card error the server reads as the
    same typed refusal."""
    issued = Issued(tmp_path)
    element = CardElement(issued.directory)
    element.connected(CARD, CENTRAL)
    approve = FixedPolicy(True)
    hello = await element.respond(encode(CardChallenge(suite, NOW)), approve, 5)
    server = issued.verifier.open_hello(hello, card=issued.record(), now=NOW)
    request = server.transaction_request(issued.transaction(), now=NOW)
    result = await element.respond(request, approve, 5)
    assert server.read_result(result, now=NOW).approved

    garbage = decode(await element.respond(b"\xff" * 40, approve, 5))
    assert isinstance(garbage, CardErrorMessage) and garbage.code is CardErrorCode.MALFORMED
    reflected = decode(await element.respond(hello, approve, 5))
    assert isinstance(reflected, CardErrorMessage)
    assert reflected.code is CardErrorCode.OUT_OF_ORDER
    # a request made for this card's previous connection
    hello2 = await element.respond(encode(CardChallenge(suite, NOW + 1)), approve, 5)
    server2 = issued.verifier.open_hello(hello2, card=issued.record(), now=NOW + 1)
    element.connected(CARD, CENTRAL)
    await element.respond(encode(CardChallenge(suite, NOW + 2)), approve, 5)
    refusal = await element.respond(server2.transaction_request(issued.transaction(),
                                                                now=NOW + 2), approve, 5)
    with pytest.raises(WrongChannel):
        server2.read_result(refusal, now=NOW + 2)
    assert server2.outcome is None
    # and the honest path still works on the new connection
    assert await _pay(issued, element, suite, approve, now=NOW + 3) is Decision.APPROVE
