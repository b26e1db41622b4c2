"""The platform's HTTP+JSON API for terminals (aiohttp). See docs/http-api.md.

* ``POST /v1/transactions`` with an ``Idempotency-Key`` header: create (201) or return the same
  transaction for a repeated key (200); the same key with another body is 409.
* ``GET /v1/transactions/{id}``: read it.
* ``GET /v1/transactions/{id}/outcome?timeout=S``: long-poll until it is final (or S seconds).
Malformed JSON or fields get 400 with ``{"error": ..., "detail": ...}``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from .platform import Platform, PlatformError, TransactionInput

__all__ = ["make_app"]

PLATFORM_KEY: web.AppKey[Platform] = web.AppKey("platform", Platform)


_TOKEN = re.compile(r"[0-9a-f]{32,128}")


def _error(status: int, error: str, detail: str) -> web.Response:
    return web.json_response({"error": error, "detail": detail}, status=status)


def _tx_id(request: web.Request) -> bytes | None:
    try:
        raw = bytes.fromhex(request.match_info["tx"])
    except ValueError:
        return None
    return raw if len(raw) == 16 else None


async def create(request: web.Request) -> web.Response:
    platform = request.app[PLATFORM_KEY]
    key = request.headers.get("Idempotency-Key", "")
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "malformed_json", "the body is not JSON")
    try:
        data = TransactionInput.from_json(body)
        record, created = await platform.create(data, key)
    except PlatformError as exc:
        return _error(exc.status, "invalid_request", str(exc))
    return web.json_response(record.public(), status=201 if created else 200)


async def read(request: web.Request) -> web.Response:
    tx_id = _tx_id(request)
    if tx_id is None:
        return _error(400, "invalid_id", "a transaction id is 32 hex characters")
    record = await request.app[PLATFORM_KEY].get(tx_id)
    if record is None:
        return _error(404, "not_found", "no such transaction")
    return web.json_response(record.public())


async def outcome(request: web.Request) -> web.Response:
    tx_id = _tx_id(request)
    if tx_id is None:
        return _error(400, "invalid_id", "a transaction id is 32 hex characters")
    try:
        timeout = float(request.query.get("timeout", "30"))
    except ValueError:
        return _error(400, "invalid_timeout", "timeout is a number of seconds")
    if not 0 <= timeout <= 120:
        return _error(400, "invalid_timeout", "timeout must be 0..120 s")
    record = await request.app[PLATFORM_KEY].wait(tx_id, timeout)
    if record is None:
        return _error(404, "not_found", "no such transaction")
    return web.json_response(record.public())


async def ca(request: web.Request) -> web.Response:
    return web.json_response(request.app[PLATFORM_KEY].ca_keys())


async def enroll(request: web.Request) -> web.Response:
    try:
        body: Any = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "malformed_json", "the body is not JSON")
    fields = ("certificate", "account", "gateway_id", "enrollment_code", "revocation_token")
    if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in fields):
        return _error(400, "invalid_request", "certificate (hex), account, gateway_id, "
                                              "enrollment_code (from the account holder) and "
                                              "revocation_token required")
    if not _TOKEN.fullmatch(body["revocation_token"]):
        return _error(400, "invalid_request", "revocation_token: 32 to 128 hex digits")
    try:
        cert_bytes = bytes.fromhex(body["certificate"])
    except ValueError:
        return _error(400, "invalid_request", "certificate must be hex")
    try:
        cert = await request.app[PLATFORM_KEY].enroll(
            cert_bytes, body["account"], body["gateway_id"], code=body["enrollment_code"],
            revocation_token=body["revocation_token"])
    except PlatformError as exc:
        if exc.status == 403:
            return _error(403, "enrollment_not_authorized", str(exc))
        return _error(422, "enrollment_refused", str(exc))
    return web.json_response({"module_id": cert.module_id.hex(), "suite": cert.suite.label,
                              "account": body["account"]}, status=201)


async def revoke(request: web.Request) -> web.Response:
    try:
        module_id = bytes.fromhex(request.match_info["module"])
    except ValueError:
        return _error(400, "invalid_id", "module id is hex")
    auth = request.headers.get("Authorization", "")
    token = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
    if not _TOKEN.fullmatch(token):
        return _error(401, "revocation_token_required",
                      "Authorization: Bearer <the revocation token given at enrollment>")
    try:
        count = await request.app[PLATFORM_KEY].revoke(module_id, token)
    except PlatformError as exc:
        return _error(exc.status, "revocation_not_authorized", str(exc))
    if not count:
        return _error(404, "not_found", "no active enrollment for that module")
    return web.json_response({"revoked": count})


def make_app(platform: Platform) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[PLATFORM_KEY] = platform
    app.router.add_post("/v1/transactions", create)
    app.router.add_get("/v1/transactions/{tx}", read)
    app.router.add_get("/v1/transactions/{tx}/outcome", outcome)
    app.router.add_get("/v1/ca", ca)
    app.router.add_post("/v1/modules", enroll)
    app.router.add_delete("/v1/modules/{module}", revoke)
    return app
