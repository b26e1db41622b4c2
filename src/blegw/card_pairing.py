"""``blegw pair`` for a symmetric-key card (flow F-C): what differs from a public-key module.

A card has no certificate for the gateway to check; what shows it is a card the issuer made is
its key, which only the platform can check. So, once bonded (BlueZ's bond is the same for both
kinds), the tool makes a card challenge with its own clock, relays it to the card like any
request, and posts the card's hello to the platform (``POST /v1/cards``) with the link's
addresses as BlueZ names them and the account holder's enrollment code. The platform opens the
hello against the issuer's register (card ref, key, bound user), recomputes the channel id from
the link, claims the code and enrolls the card for the account it was issued to; the tool then
records the card in the registry as ``kind = "card"``. The gateway never holds a card key.
"""

from __future__ import annotations

import time

from aiohttp import ClientError, ClientSession

from ble_profile import ModuleInfo
from symmetric_card import (
    CardChallenge,
    CardError,
    CardErrorMessage,
    CardSuite,
    MessageType,
    SealedMessage,
    decode,
    encode,
)

from .daemon_client import ToolError
from .link import ModuleLink

__all__ = ["card_hello", "enroll_card"]


async def card_hello(link: ModuleLink, info: ModuleInfo, timeout: float) -> bytes:
    """The card's hello to a challenge in the first suite it offers (this gateway's clock)."""
    suites: list[CardSuite] = []
    for number in info.suites:
        try:
            suites.append(CardSuite.parse(number))
        except CardError:
            continue          # a suite this gateway does not know: not enrolled, not an error
    if not suites:
        raise ToolError("the card offers no suite this gateway knows", "certificate")
    challenge = encode(CardChallenge(suites[0], int(time.time())))
    hello, _ = await link.exchange(challenge, time.time() + timeout)
    try:
        message = decode(hello)
    except CardError as exc:
        raise ToolError(f"the card's answer is not a card message: {exc}",
                        "certificate") from exc
    if isinstance(message, CardErrorMessage):
        raise ToolError(f"the card refused the challenge: {message.code.name.lower()}",
                        "certificate")
    if not isinstance(message, SealedMessage) or message.message_type is not MessageType.HELLO \
            or message.card_ref != info.module_id:
        raise ToolError("the card did not answer with its own hello", "certificate")
    return hello


async def enroll_card(http: ClientSession, url: str, info: ModuleInfo, hello: bytes,
                      link: tuple[str, str] | None, gateway_id: str, code: str, token: str,
                      enrolled: list[str]) -> tuple[str, tuple[str, ...]]:
    """``POST /v1/cards``; the account the platform enrolled the card for and its suites.

    ``enrolled`` gets the card ref as soon as the platform answered 201, so a failure after it
    revokes the enrollment (``tools._revoke``)."""
    body = {"card_ref": info.module_id.hex(), "hello": hello.hex(), "gateway_id": gateway_id,
            "enrollment_code": code, "revocation_token": token,
            "link": None if link is None else {"card": link[0], "central": link[1]}}
    try:
        async with http.post(f"{url}/v1/cards", json=body) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 201:
                detail = answer.get("detail") if isinstance(answer, dict) else None
                raise ToolError(f"the platform refused the card's enrollment: "
                                f"{detail or resp.status}", "platform")
    except (ClientError, OSError, TimeoutError, ValueError) as exc:
        raise ToolError(f"enrollment at {url} failed: {exc}", "platform") from exc
    enrolled.append(info.module_id.hex())
    account = answer.get("account") if isinstance(answer, dict) else None
    suites = answer.get("suites") if isinstance(answer, dict) else None
    if not isinstance(account, str) or not isinstance(suites, list) or not all(
            isinstance(s, str) for s in suites):
        raise ToolError("the platform's answer to the card's enrollment is unusable",
                        "platform")
    return account, tuple(suites)
