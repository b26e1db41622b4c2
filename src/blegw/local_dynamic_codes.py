"""The daemon's local dynamic-code requests (flow F-E): ``dynamic_offer``, ``dynamic_pay`` and
``dynamic_accept`` on the control socket.

An app on the gateway's host (``blegw dynamic-code ...``) asks the module's secure unit for one
operation: the merchant's unit makes a consumption code, the payer's unit pays one (its owner
approves on the module), the merchant's unit accepts a payment code and seals it to the
settlement server. Each request goes through the module's relay worker like F-D's local
requests (one exchange at a time per module, the bounded queue, keepalives, CANCEL at the
deadline). The socket is owner-only.

Every field of the control request is hostile until checked; every failure is a
:class:`~blegw.local_codes.LocalCodeError` whose ``code`` crosses the socket; a unit's refusal
is ``module_refused`` with the unit's wire code as ``reason`` (``stale_perturbation``,
``fingerprint_mismatch``, ``declined``...). The answer is accepted only if it answers this
request and holds a code of the kind asked for (strictly decoded).

``dynamic_code`` is imported here, and this module only when such a request arrives.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from dynamic_code import DynamicCodeError, Verification, from_text, to_text
from dynamic_code.messages import ConsumptionCode, PaymentCode, SettlementRequest
from dynamic_code.radio import (
    Accept,
    AcceptResult,
    Forward,
    Offer,
    Operation,
    Pay,
    UnitAnswer,
    UnitRequest,
    decode_answer,
)
from e2e.messages import MAX_AMOUNT_MINOR, is_currency
from relay_contract import RelayStatus

from .local_codes import MODULE_WAIT, LocalCodeError, unless_the_caller_leaves

if TYPE_CHECKING:
    from .relay import Relay

__all__ = ["COMMANDS", "answer"]

COMMANDS = frozenset({"dynamic_offer", "dynamic_pay", "dynamic_accept"})
_STATUS_CODES = {RelayStatus.DEADLINE_PASSED: "timeout", RelayStatus.QUEUE_FULL: "busy",
                 RelayStatus.MODULE_UNREACHABLE: "module_unreachable",
                 RelayStatus.SHUTTING_DOWN: "shutting_down", RelayStatus.CANCELLED: "cancelled",
                 RelayStatus.UNKNOWN_MODULE: "unknown_module"}
_VERIFICATIONS = {"features": Verification.FEATURES, "device": Verification.DEVICE}


def _module(request: dict[str, Any], relay: Relay[Any]) -> bytes:
    value = request.get("module")
    try:
        module_id = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        module_id = b""
    if not module_id:
        raise LocalCodeError("bad_request", "module: the module id in hex")
    if module_id not in relay.workers:
        raise LocalCodeError("unknown_module", f"module {module_id.hex()} is not served by "
                                               "this gateway (blegw devices lists them)")
    return module_id


def _code(request: dict[str, Any], key: str) -> bytes:
    value = request.get(key)
    if not isinstance(value, str):
        raise LocalCodeError("bad_request", f"{key}: a BDC1: text is expected")
    try:
        return from_text(value)
    except DynamicCodeError as exc:
        raise LocalCodeError("bad_code", f"{key}: {exc}") from None


async def _unit(relay: Relay[Any], module_id: bytes, operation: Operation) -> UnitAnswer:
    """One unit request to the module and its checked answer (``ok`` only)."""
    ask = UnitRequest(secrets.token_bytes(16), operation)
    response = await relay.local(module_id, ask.encode(), time.time() + MODULE_WAIT)
    if response.status is not RelayStatus.OK:
        code = _STATUS_CODES.get(response.status, "link_error")
        raise LocalCodeError(code, f"the module did not answer: {response.status.name.lower()}"
                                   f"{': ' + response.detail if response.detail else ''}")
    try:
        answer = decode_answer(response.envelope, ask)
    except DynamicCodeError as exc:
        raise LocalCodeError("link_error", f"the module's answer is unreadable: {exc}"
                             ) from None
    if answer.code != "ok":
        raise LocalCodeError("module_refused", f"the module's unit refused: {answer.message}",
                             answer.code)
    return answer


def _checked(result: object, decode: Any, what: str) -> bytes:
    if not isinstance(result, bytes):
        raise LocalCodeError("link_error", f"the module's answer holds no {what}")
    try:
        decode(result)
    except DynamicCodeError as exc:
        raise LocalCodeError("link_error", f"the module's {what} is malformed: {exc}") from None
    return result


async def offer(request: dict[str, Any], relay: Relay[Any]) -> dict[str, Any]:
    """{"cmd": "dynamic_offer", "module", "amount_minor", "currency", "lifetime"}: the
    merchant unit's consumption code, in its text form."""
    module_id = _module(request, relay)
    amount, currency = request.get("amount_minor"), request.get("currency")
    lifetime = request.get("lifetime", 120)
    if type(amount) is not int or not 0 < amount <= MAX_AMOUNT_MINOR \
            or not is_currency(currency) \
            or type(lifetime) is not int or not 0 < lifetime <= 600:
        raise LocalCodeError("bad_request", f"amount_minor (1..{MAX_AMOUNT_MINOR}), currency "
                                            "(three capital letters) and lifetime (1..600 s)")
    started = time.perf_counter()
    answer = await _unit(relay, module_id, Offer(amount, currency, lifetime))
    data = _checked(answer.result, ConsumptionCode.decode, "consumption code")
    code = ConsumptionCode.decode(data)
    if (code.amount_minor, code.currency) != (amount, currency):
        raise LocalCodeError("link_error", "the module's code is for another amount")
    return {"ok": True, "code": to_text(data), "expires_at": code.expires_at,
            "module_seconds": time.perf_counter() - started}


async def pay(request: dict[str, Any], relay: Relay[Any]) -> dict[str, Any]:
    """{"cmd": "dynamic_pay", "module", "code" (BDC1: consumption code), "verification"
    (features | device), "sensor" (phone | till)}: the payer unit's payment code after its
    owner approved on the module."""
    module_id = _module(request, relay)
    data = _code(request, "code")
    try:
        code = ConsumptionCode.decode(data)
    except DynamicCodeError as exc:
        raise LocalCodeError("bad_code", f"not a consumption code: {exc}") from None
    verification = _VERIFICATIONS.get(str(request.get("verification")))
    sensor = request.get("sensor", "phone")
    if verification is None or sensor not in ("phone", "till"):
        raise LocalCodeError("bad_request", "verification: features or device; sensor: phone "
                                            "or till")
    started = time.perf_counter()
    answer = await _unit(relay, module_id, Pay(data, verification, sensor == "phone"))
    payment = _checked(answer.result, PaymentCode.decode, "payment code")
    return {"ok": True, "code": to_text(payment), "amount_minor": code.amount_minor,
            "currency": code.currency, "module_seconds": time.perf_counter() - started}


async def accept(request: dict[str, Any], relay: Relay[Any]) -> dict[str, Any]:
    """{"cmd": "dynamic_accept", "module", "code" (BDC1: payment code), "settlement_certificate"
    (hex), "till_sensor" (bool)}: the merchant unit accepts the payment code and seals it to
    the settlement server; the settlement request in its text form."""
    module_id = _module(request, relay)
    data = _code(request, "code")
    try:
        PaymentCode.decode(data)
        certificate = bytes.fromhex(str(request.get("settlement_certificate")))
    except DynamicCodeError as exc:
        raise LocalCodeError("bad_code", f"not a payment code: {exc}") from None
    except ValueError:
        raise LocalCodeError("bad_request", "settlement_certificate: hex") from None
    till_sensor = request.get("till_sensor", False)
    if type(till_sensor) is not bool or not 0 < len(certificate) <= 1024:
        raise LocalCodeError("bad_request", "till_sensor: true or false; a certificate")
    started = time.perf_counter()
    accepted = (await _unit(relay, module_id, Accept(data))).result
    if not isinstance(accepted, AcceptResult):
        raise LocalCodeError("link_error", "the module's answer holds no accepted payment")
    if accepted.needs_features and not till_sensor:
        raise LocalCodeError("bad_request", "the payer's device captured no finger: the "
                                            "till's sensor must (--till-sensor)")
    forwarded = (await _unit(relay, module_id, Forward(accepted.handle, certificate,
                                                       till_sensor))).result
    settlement = _checked(forwarded, SettlementRequest.decode, "settlement request")
    return {"ok": True, "request": to_text(settlement), "payer": accepted.payer_account,
            "amount_minor": accepted.amount_minor, "currency": accepted.currency,
            "verification": accepted.verification.name.lower(),
            "module_seconds": time.perf_counter() - started}


async def answer(request: dict[str, Any], relay: Relay[Any],
                 caller: asyncio.StreamReader | None = None) -> dict[str, Any]:
    """The control socket's answer to a dynamic-code request. A caller that goes away while
    the module waits for its owner withdraws the request (the module gets CANCEL)."""
    cmd = request.get("cmd")
    work: Coroutine[Any, Any, dict[str, Any]] = (
        offer(request, relay) if cmd == "dynamic_offer" else
        pay(request, relay) if cmd == "dynamic_pay" else accept(request, relay))
    return await unless_the_caller_leaves(work, caller)
