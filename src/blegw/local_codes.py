"""The daemon's local signing requests (flow F-D): ``code`` and ``countersign`` on the control
socket.

An app on the gateway's host (``blegw code``, ``blegw scan-code``) asks a paired module to sign
a transaction code or countersign a scanned one. The request goes through the module's relay
worker like a platform request (one exchange at a time per module, the same bounded queue,
keepalives, CANCEL at the deadline), so the owner sees it on the module and it never interleaves
with a payment. Only the owner of the socket (the daemon's user) can ask: the socket is 0600.

Every field of the control request is hostile until checked; every failure is a
:class:`LocalCodeError` whose ``code`` crosses the socket (docs/cli.md lists them). The answer
is accepted only if it signs exactly what was asked (``transaction_code.app``).

``transaction_code`` is imported here, and this module only when such a request arrives, so
the daemon's start-up and ``blegw status`` do not load it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from e2e import E2EError
from e2e.errors import ErrorCode
from e2e.messages import (
    MAX_AMOUNT_MINOR,
    CodeSignRequest,
    CountersignRequest,
    decode_envelope,
    encode_envelope,
)
from e2e.suites import Suite
from relay_contract import RelayStatus
from transaction_code import (
    CodeError,
    CodeKind,
    ModuleRefused,
    TransactionCode,
    code_request,
    countersign_request,
    from_text,
    read_code_answer,
    read_countersign_answer,
    to_text,
)

if TYPE_CHECKING:
    from .relay import Relay

_Ask = TypeVar("_Ask", CodeSignRequest, CountersignRequest)
_Answer = TypeVar("_Answer")

__all__ = ["MODULE_WAIT", "LocalCodeError", "answer", "unless_the_caller_leaves"]

MODULE_WAIT = 75.0
"""Seconds a local request may take: the module gives its owner 60 s to decide (then answers
USER_TIMEOUT), plus queueing and connecting; past it the gateway sends CANCEL."""

_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
"""The account rule of a code (docs/transaction-codes.md): checked here so an account the
module could never sign into a code does not reach its owner's prompt."""
_SUITES = {suite.label: suite for suite in Suite}
_KINDS = {"payment": CodeKind.PAYMENT, "collection": CodeKind.COLLECTION}
_STATUS_CODES = {RelayStatus.DEADLINE_PASSED: "timeout", RelayStatus.QUEUE_FULL: "busy",
                 RelayStatus.MODULE_UNREACHABLE: "module_unreachable",
                 RelayStatus.SHUTTING_DOWN: "shutting_down", RelayStatus.CANCELLED: "cancelled",
                 RelayStatus.UNKNOWN_MODULE: "unknown_module"}


class LocalCodeError(Exception):
    """A local signing request that did not produce a signed code; ``code`` crosses the socket
    (``bad_request``, ``unknown_module``, ``bad_code``, ``module_refused`` with the module's
    ``reason``, ``timeout``, ``busy``, ``module_unreachable``, ``link_error``,
    ``shutting_down``, ``cancelled``)."""

    def __init__(self, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason

    def as_answer(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "code": self.code, "error": str(self)}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise LocalCodeError("bad_request", f"{key}: a non-empty string is expected")
    return value


def _account(request: dict[str, Any]) -> str:
    account = _text(request, "account")
    if _ACCOUNT.fullmatch(account) is None:
        raise LocalCodeError("bad_request", "account: 1-64 of A-Z a-z 0-9 . _ @ -, starting "
                                            "with a letter or digit")
    return account


def _amount(request: dict[str, Any]) -> tuple[int | None, str | None]:
    amount, currency = request.get("amount_minor"), request.get("currency")
    if amount is None and currency is None:
        return None, None
    if (not isinstance(amount, int) or isinstance(amount, bool)
            or not 0 < amount <= MAX_AMOUNT_MINOR or not isinstance(currency, str)):
        raise LocalCodeError("bad_request", f"amount_minor (1..{MAX_AMOUNT_MINOR}) and "
                                            "currency go together")
    return amount, currency


def _module(request: dict[str, Any], relay: Relay[Any]) -> bytes:
    try:
        module_id = bytes.fromhex(_text(request, "module"))
    except ValueError:
        raise LocalCodeError("bad_request", "module: the module id in hex") from None
    if module_id not in relay.workers:
        raise LocalCodeError("unknown_module", f"module {module_id.hex()} is not served by "
                                               "this gateway (blegw devices lists them)")
    return module_id


def _suite(request: dict[str, Any]) -> Suite:
    suite = _SUITES.get(str(request.get("suite", "p256")))
    if suite is None:
        raise LocalCodeError("bad_request", f"suite: one of {', '.join(_SUITES)}")
    return suite


async def _exchange(relay: Relay[Any], module_id: bytes, envelope: bytes) -> object:
    response = await relay.local(module_id, envelope, time.time() + MODULE_WAIT)
    if response.status is not RelayStatus.OK:
        code = _STATUS_CODES.get(response.status, "link_error")
        raise LocalCodeError(code, f"the module did not answer: {response.status.name.lower()}"
                                   f"{': ' + response.detail if response.detail else ''}")
    try:
        return decode_envelope(response.envelope)
    except E2EError as exc:
        raise LocalCodeError("link_error", f"the module's answer is unreadable: {exc}"
                             ) from None


async def _ask(relay: Relay[Any], module_id: bytes, ask: _Ask,
               read: Callable[[_Ask, object], _Answer], what: str) -> tuple[_Answer, float]:
    """Send ``ask`` to the module and read its answer with ``read``, which accepts only an
    answer that signs exactly what was asked; (that answer, seconds the module took)."""
    started = time.perf_counter()
    answer = await _exchange(relay, module_id, encode_envelope(ask))
    try:
        return read(ask, answer), time.perf_counter() - started
    except ModuleRefused as exc:
        raise _refused(exc) from None
    except CodeError as exc:
        raise LocalCodeError("link_error", f"the module's answer is not the {what} asked for: "
                                           f"{exc}") from None


def _refused(exc: ModuleRefused) -> LocalCodeError:
    words = {ErrorCode.DECLINED: "the owner declined on the module",
             ErrorCode.USER_TIMEOUT: "the owner did not answer on the module in time",
             ErrorCode.CANCELLED: "the request was cancelled on the module",
             ErrorCode.EXPIRED: "the code has expired"}
    return LocalCodeError("module_refused", f"{words.get(exc.reason, 'the module refused')}: "
                                            f"{exc}", exc.reason.name.lower())


async def make_code(request: dict[str, Any], relay: Relay[Any]) -> dict[str, Any]:
    """{"cmd": "code", "module", "kind", "suite", "account", "amount_minor", "currency",
    "lifetime"}: a new code signed by the module, in its text form."""
    module_id = _module(request, relay)
    kind = _KINDS.get(str(request.get("kind", "payment")))
    if kind is None:
        raise LocalCodeError("bad_request", "kind: payment or collection")
    amount, currency = _amount(request)
    lifetime = request.get("lifetime", 120)
    if not isinstance(lifetime, int) or isinstance(lifetime, bool):
        raise LocalCodeError("bad_request", "lifetime: whole seconds")
    try:
        ask = code_request(kind, _suite(request), _account(request),
                           amount_minor=amount, currency=currency, lifetime=lifetime)
    except E2EError as exc:
        raise LocalCodeError("bad_request", str(exc)) from None
    code, seconds = await _ask(relay, module_id, ask, read_code_answer, "code")
    return {"ok": True, "code": to_text(code.encode()), "code_id": code.code_id().hex(),
            "suite": code.suite.label, "expires_at": code.expires_at,
            "module_seconds": seconds}


async def countersign(request: dict[str, Any], relay: Relay[Any]) -> dict[str, Any]:
    """{"cmd": "countersign", "module", "code" (BGC1:...), "suite", "account", "amount_minor",
    "currency"}: the module's countersigned request for a scanned code, in its text form. The
    amount is the code's when it has one (a different one is refused here), else required."""
    module_id = _module(request, relay)
    try:
        data = from_text(_text(request, "code"))
        scanned = TransactionCode.decode(data)
    except CodeError as exc:
        raise LocalCodeError("bad_code", f"the scanned code: {exc}") from None
    amount, currency = _amount(request)
    if scanned.amount_minor is not None:
        if amount is not None and (amount, currency) != (scanned.amount_minor,
                                                         scanned.currency):
            raise LocalCodeError("bad_request", "the code fixes its amount: "
                                                f"{scanned.amount_minor} {scanned.currency}")
        amount, currency = scanned.amount_minor, scanned.currency
    if amount is None or currency is None:
        raise LocalCodeError("bad_request", "the code has no amount: give amount_minor and "
                                            "currency")
    try:
        ask = countersign_request(data, _suite(request), _account(request), amount,
                                  currency)
    except E2EError as exc:
        raise LocalCodeError("bad_request", str(exc)) from None
    signed, seconds = await _ask(relay, module_id, ask, read_countersign_answer,
                                 "countersignature")
    return {"ok": True, "request": to_text(signed.encode()), "code_id": scanned.code_id().hex(),
            "amount_minor": amount, "currency": currency, "payer_or_payee": scanned.account,
            "kind": "payment" if scanned.kind is CodeKind.PAYMENT else "collection",
            "module_seconds": seconds}


async def answer(request: dict[str, Any], relay: Relay[Any],
                 caller: asyncio.StreamReader | None = None) -> dict[str, Any]:
    """The control socket's answer to a ``code`` or ``countersign`` request.

    While the module waits for its owner, the caller's connection is watched: a caller that
    goes away (``blegw code`` interrupted) withdraws the request, and the module gets CANCEL
    instead of asking its owner for a code nobody will show.
    """
    work = make_code(request, relay) if request.get("cmd") == "code" else countersign(
        request, relay)
    return await unless_the_caller_leaves(work, caller)


async def unless_the_caller_leaves(work: Coroutine[Any, Any, dict[str, Any]],
                                   caller: asyncio.StreamReader | None) -> dict[str, Any]:
    """Run one local request's ``work`` while watching its caller's connection: a caller that
    goes away (closes its end, or sends more than its line) withdraws it — the task is
    cancelled, so the module gets CANCEL — and the answer is ``cancelled``; a
    :class:`LocalCodeError` becomes its answer. Every task started here ends here."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(caller.read(1)) if caller is not None else None
    try:
        if gone is not None:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():  # the caller closed its end (or sent more than its line)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LocalCodeError):
                    await task
                return LocalCodeError("cancelled", "the caller went away").as_answer()
        return await task
    except LocalCodeError as exc:
        return exc.as_answer()
    finally:
        if gone is not None and gone.done() and not gone.cancelled():
            gone.exception()  # a reset connection is just a caller gone: retrieved, not raised
        for pending in (task, gone):
            if pending is not None and not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, LocalCodeError):
                    await pending
