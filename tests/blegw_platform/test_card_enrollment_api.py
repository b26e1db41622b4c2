"""``POST /v1/cards`` and ``DELETE /v1/cards/{ref}`` over real HTTP on a real SQLite ledger and
a real issuer (master keys, register), with a real card element answering the challenge: what
``blegw pair`` does for a card, and what a hostile API client or gateway tries instead. Each
refusal enrolls nothing; the honest enrollment works after it."""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from blegw_platform.api import make_app
from blegw_platform.issuer_keys import FileIssuerKeys, IssuedCards, issue_card
from blegw_platform.platform import Platform, _code_hash
from private_files import write_atomic
from symmetric_card import CardChallenge, CardSuite, SealedMessage, decode, encode
from wearable_sim.card_element import CARD_FILE, CardElement

CARD, CENTRAL = "C0:FF:EE:00:00:01", "00:1A:7D:DA:71:13"
TOKEN = "cd" * 32


@dataclass
class Api:
    platform: Platform
    http: ClientSession
    url: str
    card: CardElement
    card_ref: str

    def hello(self, suite: CardSuite = CardSuite.AES128_GCM_SHA256) -> str:
        """The card's hello to a fresh challenge on a fresh connection (CARD, CENTRAL)."""
        self.card.connected(CARD, CENTRAL)
        return self.card.hello(encode(CardChallenge(suite, int(time.time())))).hex()

    def body(self, code: str, **changes: Any) -> dict[str, Any]:
        body = {"card_ref": self.card_ref, "hello": self.hello(), "gateway_id": "gw-card",
                "enrollment_code": code, "revocation_token": TOKEN,
                "link": {"card": CARD, "central": CENTRAL}}
        body.update(changes)
        return body

    async def post(self, body: object) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.url}/v1/cards", json=body) as resp:
            return resp.status, await resp.json()

    async def enrolled(self) -> bool:
        return await self.platform.cards.card_for("carol") is not None


@pytest.fixture
async def api(tmp_path: Path, ledger_at: Path | str,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Api]:
    """On either ledger database (tests/ledger_backends.py)."""
    if isinstance(ledger_at, str):
        monkeypatch.setenv("BLEGW_LEDGER_URL", ledger_at)
    platform = Platform(tmp_path / "platform")
    for account in ("carol", "mallory"):
        await platform.ledger.run(platform.ledger.add_account, account, "EUR", 100)
    provision = issue_card(FileIssuerKeys(platform.state_dir), IssuedCards(platform.state_dir),
                           bound_user="carol")
    card_dir = tmp_path / "card"
    card_dir.mkdir(mode=0o700)
    write_atomic(card_dir / CARD_FILE, provision.encode())
    server = TestServer(make_app(platform))
    await server.start_server()
    try:
        async with ClientSession() as http:
            yield Api(platform, http, str(server.make_url("")).rstrip("/"),
                      CardElement(card_dir), provision.card_ref.hex())
    finally:
        await server.close()
        await platform.aclose()


async def test_card_enrolled_with_its_hello_then_revoked_only_with_the_token(api: Api) -> None:
    code = await api.platform.enrollment_code("carol")
    status, answer = await api.post(api.body(code))
    assert status == 201, answer
    assert answer == {"card_ref": api.card_ref, "account": "carol", "suites": ["aes", "sm4"]}
    card = await api.platform.cards.card_for("carol")
    assert card is not None and (card.card_ref.hex(), card.gateway_id) == (api.card_ref,
                                                                           "gw-card")
    # the same pairing may send it again (a retry): the code is the card's now
    assert (await api.post(api.body(code)))[0] == 201
    path = f"{api.url}/v1/cards/{api.card_ref}"
    async with api.http.delete(path) as resp:
        assert (resp.status, (await resp.json())["error"]) == (401, "revocation_token_required")
    async with api.http.delete(path, headers={"Authorization": f"Bearer {'0' * 64}"}) as resp:
        assert (resp.status, (await resp.json())["error"]) == (403, "revocation_not_authorized")
    assert await api.enrolled()
    async with api.http.delete(path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert (resp.status, await resp.json()) == (200, {"revoked": 1})
    assert not await api.enrolled()
    async with api.http.delete(path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 404


async def test_card_enrollment_with_another_accounts_code_is_refused(api: Api) -> None:
    """Mallory's code cannot bind Carol's card (the card's account is its issuer's record, and
    the code must be that account holder's)."""
    status, answer = await api.post(api.body(await api.platform.enrollment_code("mallory")))
    assert (status, answer["error"]) == (403, "enrollment_not_authorized")
    assert not await api.enrolled()
    assert (await api.post(api.body(await api.platform.enrollment_code("carol"))))[0] == 201


async def test_card_enrollment_code_used_by_a_module_is_refused(api: Api) -> None:
    code = await api.platform.enrollment_code("carol")
    await api.platform.ledger.run(api.platform.ledger.enroll_with_code, _code_hash(code),
                                  int(time.time()), bytes(16), "carol", "gw-card", 1,
                                  b"not checked here", None)
    status, answer = await api.post(api.body(code))
    assert (status, answer["error"]) == (403, "enrollment_not_authorized")
    assert not await api.enrolled()


async def test_card_enrollment_without_the_cards_key_is_refused(api: Api) -> None:
    """A card ref seen on the air, with a hello the card never made (a forged one, another
    card's, or the card's hello on another link): refused with the card's error code, nothing
    enrolled, the code still usable by the real card."""
    code = await api.platform.enrollment_code("carol")
    hello = decode(bytes.fromhex(api.hello()))
    assert isinstance(hello, SealedMessage)
    tampered = encode(dataclasses.replace(hello, ciphertext=bytes([hello.ciphertext[0] ^ 1])
                                          + hello.ciphertext[1:]))
    for body, error in (
            (api.body(code, hello=tampered.hex()), "card:tampered"),
            (api.body(code, hello=secrets.token_hex(140)), "card:malformed"),
            (api.body(code, link={"card": CARD, "central": "00:00:5E:00:53:01"}),
             "card:wrong_channel"),
            (api.body(code, card_ref="00" * 8), "enrollment_refused")):
        status, answer = await api.post(body)
        assert (status, answer["error"]) == (422, error), answer
    assert not await api.enrolled()
    assert (await api.post(api.body(code)))[0] == 201


@pytest.mark.parametrize("body", [
    [], {"card_ref": "00"}, "x",
    {"card_ref": "AB" * 8, "hello": "00", "gateway_id": "g", "enrollment_code": "c",
     "revocation_token": TOKEN, "link": None},
    {"card_ref": "ab" * 8, "hello": "0", "gateway_id": "g", "enrollment_code": "c",
     "revocation_token": TOKEN, "link": None},
    {"card_ref": "ab" * 8, "hello": "00", "gateway_id": "g", "enrollment_code": "c",
     "revocation_token": "short", "link": None},
    {"card_ref": "ab" * 8, "hello": "00", "gateway_id": "g", "enrollment_code": "c" * 65,
     "revocation_token": TOKEN, "link": None},
    {"card_ref": "ab" * 8, "hello": "00", "gateway_id": "g", "enrollment_code": "c",
     "revocation_token": TOKEN, "link": {"card": "nope", "central": CENTRAL}},
    {"card_ref": "ab" * 8, "hello": "00", "gateway_id": "g", "enrollment_code": "c",
     "revocation_token": TOKEN, "link": [CARD, CENTRAL]},
    {"card_ref": "ab" * 8, "hello": 0, "gateway_id": "g", "enrollment_code": "c",
     "revocation_token": TOKEN, "link": None},
])
async def test_hostile_card_enrollment_bodies_get_typed_errors(api: Api, body: object) -> None:
    status, answer = await api.post(body)
    assert (status, answer["error"]) == (400, "invalid_request"), answer
    assert not await api.enrolled()


async def test_bad_gateway_id_is_refused(api: Api) -> None:
    code = await api.platform.enrollment_code("carol")
    status, answer = await api.post(api.body(code, gateway_id="gw/#"))
    assert (status, answer["error"]) == (400, "invalid_gateway_id")
    assert not await api.enrolled()


async def test_card_challenge_comes_from_the_platforms_clock(api: Api) -> None:
    """What ``blegw pair`` relays to the card (the gateway reads no card message)."""
    for suite in CardSuite:
        async with api.http.get(f"{api.url}/v1/cards/challenge",
                                params={"suite": str(int(suite))}) as resp:
            assert resp.status == 200
            challenge = decode(bytes.fromhex((await resp.json())["challenge"]))
        assert isinstance(challenge, CardChallenge) and challenge.suite is suite
        assert abs(challenge.server_time - time.time()) < 5
    for bad in ("3", "0", "x", "", "1" * 30):
        async with api.http.get(f"{api.url}/v1/cards/challenge",
                                params={"suite": bad}) as resp:
            assert (resp.status, (await resp.json())["error"]) == (400, "invalid_request")


async def test_replayed_enrollment_cannot_move_the_card_nor_bring_back_a_revoked_one(
        api: Api) -> None:
    """The same hello and enrollment code posted again (by the gateway that paired the card, or
    anyone who saw the request) once moved the card to another gateway and revocation token,
    and re-activated a card its owner had revoked."""
    code = await api.platform.enrollment_code("carol")
    body = api.body(code)
    assert (await api.post(body))[0] == 201
    moved = dict(body, gateway_id="gw-other", revocation_token="ef" * 32)
    status, answer = await api.post(moved)
    assert (status, answer["error"]) == (403, "enrollment_not_authorized"), answer
    card = await api.platform.cards.card_for("carol")
    assert card is not None and card.gateway_id == "gw-card"
    path = f"{api.url}/v1/cards/{api.card_ref}"
    async with api.http.delete(path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
    status, answer = await api.post(body)             # the very same request, replayed
    assert (status, answer["error"]) == (403, "enrollment_not_authorized"), answer
    assert not await api.enrolled()
    # the owner pairs again with a new code: enrolled
    assert (await api.post(api.body(await api.platform.enrollment_code("carol"))))[0] == 201


async def test_enrollment_without_a_link_report_is_refused_when_the_platform_requires_it(
        api: Api) -> None:
    """`serve --require-card-link` held for payments but not for enrollment: a hello with no
    link report (a gateway relaying a card it is not connected to) enrolled the card."""
    api.platform.cards.require_link = True
    code = await api.platform.enrollment_code("carol")
    status, answer = await api.post(api.body(code, link=None))
    assert (status, answer["error"]) == (422, "card:wrong_channel"), answer
    assert not await api.enrolled()
    assert (await api.post(api.body(code)))[0] == 201        # with the link: enrolled
    api.platform.cards.require_link = False
    before = api.platform.counters["card_channel_unchecked"]
    fresh = await api.platform.enrollment_code("carol")
    assert (await api.post(api.body(fresh, link=None)))[0] == 201
    assert api.platform.counters["card_channel_unchecked"] == before + 1
