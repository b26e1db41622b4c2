"""The app's side of asking a module for codes (flow F-D): build the request, check the answer.

An app on the gateway's host (``blegw code`` / ``blegw scan-code``, the next step) sends a
:class:`~e2e.messages.CodeSignRequest` or :class:`~e2e.messages.CountersignRequest` to its
paired module and must show or submit only what it asked for: :func:`read_code_answer` and
:func:`read_countersign_answer` accept the module's answer only if it is a signed code (or
countersigned request) with exactly the requested fields, and turn the module's refusal into a
typed :class:`ModuleRefused`.
"""

from __future__ import annotations

import secrets

from e2e.errors import ErrorCode
from e2e.messages import CodeSignRequest, CodeSignResponse, CountersignRequest, ErrorResponse
from e2e.suites import Suite

from .errors import CodeError, MalformedCode
from .payload import CodeKind, CountersignedCode, TransactionCode

__all__ = ["ModuleRefused", "code_request", "countersign_request", "read_code_answer",
           "read_countersign_answer"]


class ModuleRefused(CodeError):
    """The module answered with an error: the owner declined, did not answer, the request was
    cancelled or refused (``reason`` is the module's error code)."""

    code = "module_refused"

    def __init__(self, reason: ErrorCode, detail: str) -> None:
        super().__init__(f"{reason.name.lower()}: {detail}")
        self.reason = reason


def code_request(kind: CodeKind, suite: Suite, account: str, *, amount_minor: int | None = None,
                 currency: str | None = None, lifetime: int = 120) -> CodeSignRequest:
    """A request for a new code, with a fresh request id."""
    return CodeSignRequest(secrets.token_bytes(16), int(kind), suite, account, amount_minor,
                           currency, lifetime)


def countersign_request(code: bytes, suite: Suite, account: str, amount_minor: int,
                        currency: str) -> CountersignRequest:
    """A request to countersign a scanned code, with a fresh request id."""
    return CountersignRequest(secrets.token_bytes(16), code, suite, account, amount_minor,
                              currency)


def _signed(request: CodeSignRequest | CountersignRequest, answer: object) -> bytes:
    if isinstance(answer, ErrorResponse) and answer.transaction_id in (request.request_id, b""):
        raise ModuleRefused(answer.code, answer.detail)
    if not isinstance(answer, CodeSignResponse) or answer.request_id != request.request_id:
        raise MalformedCode("the module's answer is not the signed code of this request")
    return answer.signed


def read_code_answer(request: CodeSignRequest, answer: object) -> TransactionCode:
    """The signed code, if it is exactly the code asked for."""
    code = TransactionCode.decode(_signed(request, answer))
    asked = (request.kind, request.suite, request.account, request.amount_minor,
             request.currency, request.lifetime)
    got = (int(code.kind), code.suite, code.account, code.amount_minor, code.currency,
           code.expires_at - code.issued_at)
    if got != asked or not code.signed:
        raise MalformedCode("the module signed another code than the one asked for")
    return code


def read_countersign_answer(request: CountersignRequest, answer: object) -> CountersignedCode:
    """The countersigned request, if it countersigns exactly the scanned code and amount."""
    countersigned = CountersignedCode.decode(_signed(request, answer))
    asked = (request.code, request.suite, request.account, request.amount_minor,
             request.currency)
    got = (countersigned.code, countersigned.suite, countersigned.account,
           countersigned.amount_minor, countersigned.currency)
    if got != asked:
        raise MalformedCode("the module countersigned another request than the one asked for")
    return countersigned
