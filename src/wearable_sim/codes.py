"""What the module does with a transaction-code request (flow F-D), before and after its owner.

A code request comes from an app on the gateway's host, not from the platform: nothing vouches
for it, so the module trusts nothing in it beyond what it shows its owner. It picks the time
and the 16-byte random itself, names its own installed certificate as the signer, decodes a
scanned code itself to show who pays whom, and the element signs only a
:class:`~transaction_code.TransactionCode` or :class:`~transaction_code.CountersignedCode`,
whose signed bytes carry their own domain tag: no code request can make the module sign a
confirmation approval, or the reverse.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from decimal import Decimal

from e2e import ErrorCode as E2ECode
from e2e.messages import CodeSignRequest, CountersignRequest
from terminal_input import sanitise
from transaction_code import (
    AmountMismatch,
    CodeError,
    CodeExpired,
    CodeKind,
    CountersignedCode,
    TransactionCode,
    UnsupportedCode,
    parties,
)

from .policy import Prompt

__all__ = ["CodePrompt", "error_code", "prepare"]


@dataclass(frozen=True, slots=True)
class CodePrompt(Prompt):
    """A prompt whose line says what signing this code means for the owner."""

    line: str = ""

    def text(self) -> str:
        return self.line


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return "an amount the other side enters"
    return f"{Decimal(amount).scaleb(-2)} {sanitise(currency, 3)}"


def prepare(request: CodeSignRequest | CountersignRequest, signer: bytes, *, now: int
            ) -> tuple[TransactionCode | CountersignedCode, CodePrompt]:
    """The unsigned code or countersigned request for ``request`` and what its owner is shown.

    Raises :class:`~transaction_code.CodeError` for a request that cannot become a valid one
    (a bad account, an expired or malformed scanned code, an amount that differs from the
    scanned code's).
    """
    if isinstance(request, CodeSignRequest):
        kind = CodeKind(request.kind)
        code = TransactionCode(kind, request.suite, signer, request.account,
                               request.amount_minor, request.currency, now,
                               now + request.lifetime, secrets.token_bytes(16))
        money = _money(request.amount_minor, request.currency)
        account = sanitise(request.account, 64)
        line = (f"Show a payment code: pay {money} from {account}" if kind is CodeKind.PAYMENT
                else f"Show a collection code: collect {money} into {account}")
        line += f", valid {request.lifetime} s"
        return code, CodePrompt(request.amount_minor or 0, request.currency or "",
                                request.account, "transaction code", line, line)
    scanned = TransactionCode.decode(request.code)
    if now > scanned.expires_at:
        raise CodeExpired("the scanned code has expired")
    if scanned.amount_minor is not None and (request.amount_minor, request.currency) != (
            scanned.amount_minor, scanned.currency):
        raise AmountMismatch("the amount differs from the scanned code's")
    countersigned = CountersignedCode(request.code, request.suite, signer, request.account,
                                      request.amount_minor, request.currency, now)
    payer, payee = parties(scanned, request.account)
    money = _money(request.amount_minor, request.currency)
    line = (f"Pay {money} to {sanitise(payee, 64)} from {sanitise(payer, 64)} "
            + ("(their code)" if scanned.signed
               else "(their code is NOT signed by a module: check the payee)")
            if payer == request.account else
            f"Collect {money} from {sanitise(payer, 64)} into {sanitise(payee, 64)} "
            "(their payment code)")
    return countersigned, CodePrompt(request.amount_minor, request.currency, payee,
                                     "transaction code", line, line)


def error_code(exc: CodeError) -> E2ECode:
    """The wire code a refused code request is answered with."""
    if isinstance(exc, CodeExpired):
        return E2ECode.EXPIRED
    if isinstance(exc, UnsupportedCode):
        return E2ECode.UNSUPPORTED_SUITE
    return E2ECode.MALFORMED
