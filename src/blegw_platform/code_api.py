"""HTTP handlers for transaction codes (flow F-D). See docs/transaction-codes.md.

* ``POST /v1/codes/countersigned`` ``{"request": "<BGC1: text or hex>"}``: a scanning terminal
  submits the request its own module countersigned; 201 with the settled transaction (200 for a
  retry of the same submission);
* ``POST /v1/codes/presented`` ``{"code": "<BGC1: text>", "account", "amount_minor",
  "currency"}``: a terminal without a module presents a payment code for one of its payees;
* ``GET /v1/codes/{code_id}?wait=S``: the transaction that paid a code, for the side that
  showed it (the id is a hash of the code's signed bytes: only someone who saw the code can
  ask); with ``wait``, a long-poll until it is final (at most ``MAX_WAIT`` seconds).

A code the platform's policy has the payer confirm (``code_confirmation``) is answered 202 with
the pending transaction; the scanning terminal long-polls ``GET /v1/transactions/{id}/outcome``.

Both POSTs take the terminal's API key like ``POST /v1/transactions``. Bodies go through the
same hostile-JSON checks as the rest of the API; refusals are ``{"error": <code>}`` with the
typed error's code.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from e2e.messages import MAX_AMOUNT_MINOR, is_currency
from transaction_code import CodeError, from_text

from .api import MAX_WAIT, PLATFORM_KEY, _error, _json_body, _refuse, _seconds, _terminal
from .code_payments import CodePayments, code_status
from .ledger import ACCOUNT_RULE, TransactionRecord, is_account_name
from .platform import PlatformError

__all__ = ["CODES_KEY", "add_routes"]

CODES_KEY: web.AppKey[CodePayments] = web.AppKey("code_payments", CodePayments)

_CODE_ID = re.compile(r"[0-9a-f]{64}")


def _view(record: TransactionRecord) -> dict[str, Any]:
    return record.public()


def _created(record: TransactionRecord, created: bool) -> int:
    """201 settled at once, 202 waiting for the payer's confirmation (long-poll the
    transaction), 200 a retry of an earlier submission (as it is now)."""
    if not created:
        return 200
    return 202 if record.state == "pending" else 201


def _code_bytes(value: Any, name: str) -> bytes:
    """A code or request in its text form (``BGC1:`` + base45)."""
    if not isinstance(value, str):
        raise PlatformError(f"{name}: the code's text (BGC1:...)", 400, "malformed_code")
    try:
        return from_text(value)
    except CodeError as exc:
        raise PlatformError(f"{name}: {exc}", code_status(exc), exc.code) from exc


async def countersigned(request: web.Request) -> web.Response:
    codes = request.app[CODES_KEY]
    try:
        terminal = await _terminal(request)
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"request"}:
            raise PlatformError('the body is {"request": "BGC1:..."}')
        data = _code_bytes(body["request"], "request")
        record, created = await codes.submit_countersigned(data, terminal)
    except PlatformError as exc:
        return _refuse(request, exc)
    return web.json_response(_view(record), status=_created(record, created))


async def presented(request: web.Request) -> web.Response:
    codes = request.app[CODES_KEY]
    try:
        terminal = await _terminal(request)
        body = await _json_body(request)
        if not isinstance(body, dict) or set(body) != {"code", "account", "amount_minor",
                                                        "currency"}:
            raise PlatformError("the body has code, account, amount_minor and currency")
        if not is_account_name(body["account"]):
            raise PlatformError(f"account: {ACCOUNT_RULE}", code="invalid_account")
        amount = body["amount_minor"]
        if not isinstance(amount, int) or isinstance(amount, bool) \
                or not 0 < amount <= MAX_AMOUNT_MINOR:
            raise PlatformError(f"amount_minor: an integer 1..{MAX_AMOUNT_MINOR}",
                                code="invalid_amount")
        if not is_currency(body["currency"]):
            raise PlatformError("currency: an ISO 4217 code", code="invalid_currency")
        code = _code_bytes(body["code"], "code")
        record, created = await codes.submit_presented(code, body["account"], amount,
                                                       body["currency"], terminal)
    except PlatformError as exc:
        return _refuse(request, exc)
    return web.json_response(_view(record), status=_created(record, created))


async def status(request: web.Request) -> web.Response:
    text = request.match_info["code"]
    if not _CODE_ID.fullmatch(text):
        return _error(400, "invalid_id", "a code id is 64 lowercase hex characters")
    try:
        wait = _seconds(request.query.get("wait", "0"), "wait", 0, MAX_WAIT)
    except PlatformError as exc:
        return _refuse(request, exc)
    record = await request.app[CODES_KEY].status(bytes.fromhex(text), wait)
    if record is None:
        return _error(404, "not_found", "no payment of that code")
    return web.json_response(_paid_view(record))


def _paid_view(record: TransactionRecord) -> dict[str, Any]:
    """What anyone who saw a code may learn about its payment: whether and when it was paid,
    and how much. Not who paid whom: a printed collection code at a till is seen by everyone
    queueing, and the showing side already knows its own account."""
    return {"id": record.id.hex(), "state": record.state, "reason": record.reason,
            "amount_minor": record.amount_minor, "currency": record.currency,
            "updated": record.updated}


def add_routes(app: web.Application) -> None:
    """Register the code routes on the platform's app (``api.make_app`` calls this)."""
    app[CODES_KEY] = CodePayments(app[PLATFORM_KEY])
    app.router.add_post("/v1/codes/countersigned", countersigned)
    app.router.add_post("/v1/codes/presented", presented)
    app.router.add_get("/v1/codes/{code}", status)
