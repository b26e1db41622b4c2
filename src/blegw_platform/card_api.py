"""HTTP handlers for symmetric-key cards paired by a gateway (flow F-C). See
docs/symmetric-card.md and docs/http-api.md.

* ``GET /v1/cards/challenge?suite=N``: ``{"challenge": hex}``, a card challenge with the
  platform's time in card suite N (1 AES, 2 SM4), for the gateway to relay to the card it is
  pairing (the gateway reads no card message: it neither makes the challenge nor reads the
  hello). Unauthenticated, like ``GET /v1/ca``: it is the platform's clock, in clear.
* ``POST /v1/cards`` ``{"card_ref", "hello", "link", "gateway_id", "enrollment_code",
  "revocation_token"}``: ``blegw pair`` enrolls the card it just bonded. ``hello`` is the card's
  answer (hex) to a card challenge the gateway made; the platform opens it against the issuer's
  register (the card holds the key issued for that ref) with the channel id recomputed from
  ``link`` (``{"card": "AA:..", "central": "AA:.."}``, or null from a gateway that cannot say).
  The account is the card's bound user; the enrollment code must be that account holder's.
  201 ``{"card_ref", "account", "suites"}``.
* ``DELETE /v1/cards/{card_ref}`` with ``Authorization: Bearer <revocation token>``: the gateway
  that paired the card revokes it (``blegw forget``, or a pairing that failed after enrolling).

Refusals are ``{"error": <code>, "detail"}``: 400 ``invalid_request``, 403
``enrollment_not_authorized`` / ``revocation_not_authorized``, 422 ``enrollment_refused`` or
``card:<code>`` (the card's hello refused, with the card protocol's error code), 404.
"""

from __future__ import annotations

import re
import time

from aiohttp import web

from symmetric_card import CardChallenge, CardError, CardSuite, LinkAddresses, encode

from .api import (
    _TOKEN,
    PLATFORM_KEY,
    _error,
    _json_body,
    _refuse,
    _revocation_token,
    _revocation_token_required,
)
from .card_payments import CardPaymentError
from .platform import PlatformError, _code_hash, _token_hash

__all__ = ["add_routes"]

_REF = re.compile(r"[0-9a-f]{16}")
_HEX = re.compile(r"(?:[0-9a-f]{2}){1,1024}")
_FIELDS = {"card_ref", "hello", "link", "gateway_id", "enrollment_code", "revocation_token"}


def _link(value: object) -> LinkAddresses | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"card", "central"} or not all(
            isinstance(v, str) for v in value.values()):
        raise PlatformError('link: {"card": "AA:BB:CC:DD:EE:FF", "central": ...} or null')
    try:
        return LinkAddresses(value["card"], value["central"])
    except ValueError as exc:
        raise PlatformError(f"link: {exc}") from None


async def challenge(request: web.Request) -> web.Response:
    try:
        suite = CardSuite.parse(int(request.query.get("suite", "")))
    except (ValueError, CardError):
        return _error(400, "invalid_request", "suite: 1 (AES) or 2 (SM4)")
    return web.json_response(
        {"challenge": encode(CardChallenge(suite, int(time.time()))).hex()})


async def enroll_card(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM_KEY]
    try:
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != _FIELDS:
            raise PlatformError(f"the body has exactly: {', '.join(sorted(_FIELDS))}")
        texts = {k: body[k] for k in _FIELDS - {"link"}}
        if not all(isinstance(v, str) for v in texts.values()):
            raise PlatformError("card_ref, hello, gateway_id, enrollment_code and "
                                "revocation_token are text")
        if not _REF.fullmatch(texts["card_ref"]):
            raise PlatformError("card_ref: 16 lowercase hex digits")
        if not _HEX.fullmatch(texts["hello"]):
            raise PlatformError("hello: the card's hello, lowercase hex, at most 1024 bytes")
        if not _TOKEN.fullmatch(texts["revocation_token"]):
            raise PlatformError("revocation_token: 32 to 128 hex digits")
        code = texts["enrollment_code"]
        if not code.isascii() or not 0 < len(code) <= 64:
            raise PlatformError("enrollment_code: the code the platform gave")
        link = _link(body["link"])
    except PlatformError as exc:
        return _refuse(request, exc)
    try:
        enrollment, suites = await platform.cards.enroll_paired(
            bytes.fromhex(texts["card_ref"]), bytes.fromhex(texts["hello"]), link,
            texts["gateway_id"], _code_hash(code), _token_hash(texts["revocation_token"]))
    except CardPaymentError as exc:
        return _refuse(request, PlatformError(str(exc), exc.status, exc.code))
    return web.json_response({"card_ref": enrollment.card_ref.hex(),
                              "account": enrollment.account,
                              "suites": [s.label for s in suites]}, status=201)


async def revoke_card(request: web.Request) -> web.Response:
    ref = request.match_info["card"]
    if not _REF.fullmatch(ref):
        return _error(400, "invalid_id", "a card ref is 16 lowercase hex digits")
    token = _revocation_token(request)
    if token is None:
        return _revocation_token_required()
    try:
        count = await request.app[PLATFORM_KEY].cards.revoke(bytes.fromhex(ref),
                                                             _token_hash(token))
    except CardPaymentError as exc:
        return _error(exc.status, exc.code, str(exc))
    if not count:
        return _error(404, "not_found", "no active enrollment for that card")
    return web.json_response({"revoked": count})


def add_routes(app: web.Application) -> None:
    """Register the card routes on the platform's app (``api.make_app`` calls this)."""
    app.router.add_get("/v1/cards/challenge", challenge)
    app.router.add_post("/v1/cards", enroll_card)
    app.router.add_delete("/v1/cards/{card}", revoke_card)
