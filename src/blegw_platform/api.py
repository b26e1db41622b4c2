"""The platform's HTTP+JSON API for terminals (aiohttp). See docs/http-api.md.

* ``POST /v1/transactions`` with ``Authorization: Bearer <terminal key>`` and an
  ``Idempotency-Key`` header: create (201) or return the same transaction for a repeated key
  (200); the same key with another body is 409; a payee the terminal does not collect for 403.
* ``GET /v1/transactions/{id}``: read it (the calling terminal's own transactions only); with
  ``?wait=S&after=T`` a long-poll that answers as soon as it changed after ``T`` (its
  ``updated`` as last seen: progress such as ``awaiting_owner``, or the outcome).
* ``GET /v1/transactions/{id}/outcome?timeout=S``: long-poll until it is final (or S seconds).
* ``POST /v1/transactions/{id}/cancel``: cancel a pending one (idempotent); 409
  ``already_final`` when an outcome came first.

Every byte of a request is hostile until checked. The body is read whole (64 KiB at most),
must be UTF-8 JSON nested at most :data:`MAX_DEPTH` deep, with integers of at most
:data:`MAX_INT_DIGITS` digits, no duplicate keys, no NaN/Infinity and no lone surrogates; it is
refused with a 4xx ``{"error": <code>, "detail": <text>}`` before any field is looked at. A
handler that fails anyway answers 500 ``internal_error`` and is logged; the server keeps
serving.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .ledger import TerminalRecord
from .platform import LEDGER_FAULTS, Platform, PlatformError, TransactionInput, ledger_fault

__all__ = ["MAX_BODY", "MAX_DEPTH", "MAX_INT_DIGITS", "MAX_WAIT", "make_app"]

log = logging.getLogger("blegw.platform.api")

PLATFORM_KEY: web.AppKey[Platform] = web.AppKey("platform", Platform)

MAX_BODY = 64 * 1024
"""Largest request body read (413 ``body_too_large`` beyond)."""
MAX_DEPTH = 8
"""Deepest JSON nesting accepted; the bodies this API takes are flat objects."""
MAX_INT_DIGITS = 19
"""Longest JSON integer accepted: larger than any amount, far below Python's int-to-str limit."""
MAX_WAIT = 120.0
"""Longest long-poll, in seconds (``?wait=`` and ``?timeout=``)."""

_TOKEN = re.compile(r"[0-9a-f]{32,128}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(r"[\[\]{}]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class BadBody(PlatformError):
    """The request body is not acceptable JSON (always a 400, or 413 for its size)."""


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def _refuse(request: web.Request, exc: PlatformError) -> web.Response:
    log.info("%s %s refused: %s (%s)", request.method, request.path, exc.code, exc)
    answer = _error(exc.status, exc.code, str(exc))
    if exc.code == "ledger_unavailable":
        answer.headers["Retry-After"] = "1"
    return answer


def _depth(text: str) -> int:
    """How deep the JSON text nests, strings skipped; linear, no recursion."""
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise BadBody(f"integers have at most {MAX_INT_DIGITS} digits", code="number_too_large")
    return int(digits)


def _no_constant(name: str) -> Any:
    raise BadBody(f"{name} is not JSON", code="malformed_json")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise BadBody("a key appears twice in one object", code="malformed_json")
    return result


def _check_strings(value: Any) -> None:
    """Refuse lone surrogates anywhere (keys too): they cannot be stored, signed or shown."""
    if isinstance(value, str):
        if _SURROGATE.search(value):
            raise BadBody("text must be valid Unicode (a lone surrogate was sent)",
                          code="invalid_text")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON, checked as the module docstring says, or :class:`BadBody`."""
    raw = await request.read()          # aiohttp refuses more than client_max_size: 413
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadBody("the body is not UTF-8", code="malformed_json") from exc
    if _depth(text) > MAX_DEPTH:
        raise BadBody(f"JSON nested deeper than {MAX_DEPTH}", code="too_deep")
    try:
        body = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant,
                          object_pairs_hook=_no_duplicates)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise BadBody("the body is not JSON", code="malformed_json") from exc
    _check_strings(body)
    return body


def _tx_id(request: web.Request) -> bytes | None:
    text = request.match_info["tx"]
    if not re.fullmatch(r"[0-9a-fA-F]{32}", text):
        return None
    return bytes.fromhex(text)


async def _terminal(request: web.Request) -> TerminalRecord:
    return await request.app[PLATFORM_KEY].authenticate(request.headers.get("Authorization", ""))


async def create(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM_KEY]
    try:
        terminal = await _terminal(request)
        body = await _json_body(request)
        data = TransactionInput.from_json(body)
        record, created = await platform.create(data, request.headers.get("Idempotency-Key", ""),
                                                terminal)
    except PlatformError as exc:
        return _refuse(request, exc)
    return web.json_response(record.public(), status=201 if created else 200)


def _seconds(text: str, name: str, low: float, high: float) -> float:
    """A finite query number in ``low..high`` or a 400 ``invalid_<name>``."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # NaN fails too
        raise PlatformError(f"{name} must be a number {low:g}..{high:g}", code=f"invalid_{name}")
    return value


async def read(request: web.Request) -> web.Response:
    try:
        terminal = await _terminal(request)
        wait = _seconds(request.query.get("wait", "0"), "wait", 0, MAX_WAIT)
        after = _seconds(request.query.get("after", "0"), "after", 0, 2.0**40)
    except PlatformError as exc:
        return _refuse(request, exc)
    tx_id = _tx_id(request)
    if tx_id is None:
        return _error(400, "invalid_id", "a transaction id is 32 hex characters")
    platform = request.app[PLATFORM_KEY]
    record = (await platform.watch(tx_id, after, wait, terminal) if wait
              else await platform.get(tx_id, terminal))
    if record is None:
        return _error(404, "not_found", "no such transaction")
    return web.json_response(record.public())


async def outcome(request: web.Request) -> web.Response:
    try:
        terminal = await _terminal(request)
    except PlatformError as exc:
        return _refuse(request, exc)
    tx_id = _tx_id(request)
    if tx_id is None:
        return _error(400, "invalid_id", "a transaction id is 32 hex characters")
    try:
        timeout = float(request.query.get("timeout", "30"))
    except ValueError:
        return _error(400, "invalid_timeout", "timeout is a number of seconds")
    if not 0 <= timeout <= 120:
        return _error(400, "invalid_timeout", "timeout must be 0..120 s")
    record = await request.app[PLATFORM_KEY].wait(tx_id, timeout, terminal)
    if record is None:
        return _error(404, "not_found", "no such transaction")
    return web.json_response(record.public())


async def cancel(request: web.Request) -> web.Response:
    """Cancel a pending transaction; the body, if any, is not read."""
    try:
        terminal = await _terminal(request)
    except PlatformError as exc:
        return _refuse(request, exc)
    tx_id = _tx_id(request)
    if tx_id is None:
        return _error(400, "invalid_id", "a transaction id is 32 hex characters")
    try:
        record = await request.app[PLATFORM_KEY].cancel(tx_id, terminal)
    except PlatformError as exc:
        return _refuse(request, exc)
    return web.json_response(record.public())


async def ca(request: web.Request) -> web.Response:
    return web.json_response(request.app[PLATFORM_KEY].ca_keys())


async def enroll(request: web.Request) -> web.Response:
    try:
        body = await _json_body(request)
    except PlatformError as exc:
        return _refuse(request, exc)
    fields = ("certificate", "account", "gateway_id", "enrollment_code", "revocation_token")
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in fields):
        return _error(400, "invalid_request", "certificate (hex), account, gateway_id, "
                                              "enrollment_code (from the account holder) and "
                                              "revocation_token required")
    if not _TOKEN.fullmatch(body["revocation_token"]):
        return _error(400, "invalid_request", "revocation_token: 32 to 128 hex digits")
    if not body["enrollment_code"].isascii() or len(body["enrollment_code"]) > 64:
        return _error(400, "invalid_request", "enrollment_code: the code the platform gave")
    try:
        cert_bytes = bytes.fromhex(body["certificate"])
    except ValueError:
        return _error(400, "invalid_request", "certificate must be hex")
    try:
        cert = await request.app[PLATFORM_KEY].enroll(
            cert_bytes, body["account"], body["gateway_id"], code=body["enrollment_code"],
            revocation_token=body["revocation_token"])
    except PlatformError as exc:
        return _refuse(request, exc)
    return web.json_response({"module_id": cert.module_id.hex(), "suite": cert.suite.label,
                              "account": body["account"]}, status=201)


def _revocation_token(request: web.Request) -> str | None:
    """The revocation token of ``Authorization: Bearer <token>`` (given at enrollment, for a
    module or a card), or None when it is missing or malformed."""
    auth = request.headers.get("Authorization", "")
    token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
    return token if _TOKEN.fullmatch(token) else None


def _revocation_token_required() -> web.Response:
    return _error(401, "revocation_token_required",
                  "Authorization: Bearer <the revocation token given at enrollment>")


async def revoke(request: web.Request) -> web.Response:
    try:
        module_id = bytes.fromhex(request.match_info["module"])
    except ValueError:
        return _error(400, "invalid_id", "module id is hex")
    token = _revocation_token(request)
    if token is None:
        return _revocation_token_required()
    try:
        count = await request.app[PLATFORM_KEY].revoke(module_id, token)
    except PlatformError as exc:
        return _error(exc.status, exc.code, str(exc))
    if not count:
        return _error(404, "not_found", "no active enrollment for that module")
    return web.json_response({"revoked": count})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON answer; none stops the server.

    aiohttp's own refusals (unknown route, wrong method, a body over ``MAX_BODY``) keep their
    status with a JSON body; a ledger that cannot answer now (:data:`LEDGER_FAULTS`, from any
    handler's read or write) is 503 ``ledger_unavailable`` with ``Retry-After``, so a terminal
    retries; anything a handler did not foresee is logged with the request and answered 500
    ``internal_error``.
    """
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, _HTTP_CODES.get(exc.status, "http_error"), exc.reason)
    except LEDGER_FAULTS as exc:
        fault = ledger_fault(f"answer {request.method} {request.path}", exc)
        answer = _error(fault.status, fault.code, str(fault))
        answer.headers["Retry-After"] = "1"
        return answer
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return _error(500, "internal_error", "the request failed; it was logged")


def make_app(platform: Platform) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors])
    app[PLATFORM_KEY] = platform
    app.router.add_post("/v1/transactions", create)
    app.router.add_get("/v1/transactions/{tx}", read)
    app.router.add_get("/v1/transactions/{tx}/outcome", outcome)
    app.router.add_post("/v1/transactions/{tx}/cancel", cancel)
    app.router.add_get("/v1/ca", ca)
    app.router.add_post("/v1/modules", enroll)
    app.router.add_delete("/v1/modules/{module}", revoke)
    from .code_api import add_routes  # here: code_api imports this module
    add_routes(app)
    from .events_api import add_routes as add_event_routes  # imports this module too
    add_event_routes(app)
    from .card_api import add_routes as add_card_routes
    add_card_routes(app)
    from .dynamic_code_api import add_routes as add_dynamic_code_routes
    add_dynamic_code_routes(app)
    return app
