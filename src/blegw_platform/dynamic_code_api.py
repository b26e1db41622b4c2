"""HTTP handlers for dynamic codes (flow F-E). See docs/dynamic-codes.md.

* ``GET /v1/dynamic-codes/settlement-certificate/{suite}`` (``p256`` or ``sm2``): the
  settlement server's device certificate, hex, which the merchant's unit checks against the CA
  before it encrypts a payment to it (public: it is a certificate);
* ``POST /v1/dynamic-codes`` ``{"request": "<BDC1: text>"}``: a merchant device's terminal
  submits the settlement request its unit sealed; 201 with the settled transaction, 200 for a
  retry of the same bytes from the same terminal. It takes the terminal's API key like
  ``POST /v1/transactions``; refusals are ``{"error": <code>}`` with the typed error's code.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from dynamic_code import DynamicCodeError, from_text
from e2e.suites import Suite

from .api import PLATFORM_KEY, _error, _json_body, _refuse, _terminal
from .dynamic_code_payments import DynamicCodePayments, dynamic_status
from .platform import PlatformError

__all__ = ["DYNAMIC_KEY", "add_routes"]

DYNAMIC_KEY: web.AppKey[DynamicCodePayments] = web.AppKey("dynamic_code_payments",
                                                          DynamicCodePayments)
_SUITES = {suite.label: suite for suite in Suite}


async def submit(request: web.Request) -> web.Response:
    payments = request.app[DYNAMIC_KEY]
    try:
        terminal = await _terminal(request)
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"request"} \
                or not isinstance(body["request"], str):
            raise PlatformError('the body is {"request": "BDC1:..."}',
                                code="malformed_dynamic_code")
        try:
            data = from_text(body["request"])
        except DynamicCodeError as exc:
            raise PlatformError(str(exc), dynamic_status(exc), exc.code) from exc
        record, created = await payments.submit(data, terminal)
    except PlatformError as exc:
        return _refuse(request, exc)
    return web.json_response(record.public(), status=201 if created else 200)


async def settlement_certificate(request: web.Request) -> web.Response:
    suite = _SUITES.get(request.match_info["suite"])
    if suite is None:
        return _error(404, "unknown_suite", "a suite is p256 or sm2")
    cert = await asyncio.to_thread(request.app[DYNAMIC_KEY].authority.certificate, suite,
                                   int(time.time()))
    return web.json_response({"suite": suite.label, "certificate": cert.hex()})


async def _close(app: web.Application) -> None:
    app[DYNAMIC_KEY].close()


def add_routes(app: web.Application) -> None:
    """Register the dynamic-code routes on the platform's app (``api.make_app`` calls this)."""
    app[DYNAMIC_KEY] = DynamicCodePayments(app[PLATFORM_KEY])
    app.on_cleanup.append(_close)
    app.router.add_post("/v1/dynamic-codes", submit)
    app.router.add_get("/v1/dynamic-codes/settlement-certificate/{suite}",
                       settlement_certificate)
