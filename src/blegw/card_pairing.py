"""``blegw pair`` for a symmetric-key card (flow F-C): what differs from a public-key module.

A card has no certificate for the gateway to check; what shows it is a card the issuer made is
its key, which only the platform can check, and the gateway reads no card message. So, once
bonded (BlueZ's bond is the same for both kinds), the tool fetches a card challenge from the
platform (``GET /v1/cards/challenge``, the platform's clock), relays it to the card like any
request, and posts the card's answer, unread, to the platform (``POST /v1/cards``) with the
link's addresses as BlueZ names them and the account holder's enrollment code. The platform
opens the hello against the issuer's register (card ref, key, bound user), recomputes the
channel id from the link, claims the code and enrolls the card for the account it was issued
to; the tool then records the card in the registry as ``kind = "card"``. The gateway never
holds a card key.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import ClientError, ClientSession

from ble_profile import ModuleInfo

from .daemon_client import ToolError
from .link import ModuleLink

__all__ = ["CARD_SUITES", "card_hello", "enroll_card"]

CARD_SUITES = (1, 2)
"""Card suites the platform's card route knows (1 AES-128-GCM, 2 SM4-GCM)."""


async def _json(http: ClientSession, method: str, url: str, *, want: int,
                **kwargs: Any) -> dict[str, Any]:
    try:
        async with http.request(method, url, **kwargs) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != want:
                detail = answer.get("detail") if isinstance(answer, dict) else None
                raise ToolError(f"the platform refused the card: {detail or resp.status}",
                                "platform")
    except (ClientError, OSError, TimeoutError, ValueError) as exc:
        raise ToolError(f"the platform at {url} cannot be used: {exc}", "platform") from exc
    if not isinstance(answer, dict):
        raise ToolError("the platform's answer is not a JSON object", "platform")
    return answer


async def card_hello(http: ClientSession, url: str, link: ModuleLink, info: ModuleInfo,
                     timeout: float) -> bytes:
    """The card's answer to a platform challenge in the first suite it offers (unread: the
    platform checks it)."""
    suites = [s for s in info.suites if s in CARD_SUITES]
    if not suites:
        raise ToolError("the card offers no suite this gateway knows", "certificate")
    answer = await _json(http, "GET", f"{url}/v1/cards/challenge", want=200,
                         params={"suite": str(suites[0])})
    try:
        challenge = bytes.fromhex(answer["challenge"])
    except (KeyError, TypeError, ValueError):
        raise ToolError("the platform's card challenge is unusable", "platform") from None
    hello, _ = await link.exchange(challenge, time.time() + timeout)
    return hello


async def enroll_card(http: ClientSession, url: str, info: ModuleInfo, hello: bytes,
                      link: tuple[str, str] | None, gateway_id: str, code: str, token: str,
                      enrolled: list[str]) -> tuple[str, tuple[str, ...]]:
    """``POST /v1/cards``; the account the platform enrolled the card for and its suites.

    ``enrolled`` gets the card ref as soon as the platform answered 201, so a failure after it
    revokes the enrollment (``tools._revoke``)."""
    answer = await _json(http, "POST", f"{url}/v1/cards", want=201, json={
        "card_ref": info.module_id.hex(), "hello": hello.hex(), "gateway_id": gateway_id,
        "enrollment_code": code, "revocation_token": token,
        "link": None if link is None else {"card": link[0], "central": link[1]}})
    enrolled.append(info.module_id.hex())
    account, suites = answer.get("account"), answer.get("suites")
    if not isinstance(account, str) or not isinstance(suites, list) or not all(
            isinstance(s, str) for s in suites):
        raise ToolError("the platform's answer to the card's enrollment is unusable",
                        "platform")
    return account, tuple(suites)
