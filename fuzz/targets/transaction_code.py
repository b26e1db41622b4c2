"""Transaction codes (flow F-D): a code read from anyone's QR code, a countersigned request
from any terminal, and their text form. The first byte picks the parser: 0 the code, 1 the
countersigned request, anything else the text form (the rest as Latin-1 text)."""

from __future__ import annotations

import secrets
import time

from e2e import Suite, generate_private_key
from transaction_code import (
    CodeError,
    CodeKind,
    CountersignedCode,
    TransactionCode,
    from_text,
    to_text,
)

from ..engine import FuzzOracleError, Target


def one_input(data: bytes) -> None:
    if not data:
        return
    kind, body = data[0], data[1:]
    if kind == 0:
        code = TransactionCode.decode(body)
        if code.encode() != body:
            raise FuzzOracleError("code accepted in a form that does not re-encode")
    elif kind == 1:
        request = CountersignedCode.decode(body)
        if request.encode() != body:
            raise FuzzOracleError("request accepted in a form that does not re-encode")
    else:
        text = body.decode("latin-1")
        if to_text(from_text(text)) != text:
            raise FuzzOracleError("text accepted in a form that does not re-encode")


def seeds() -> list[bytes]:
    out: list[bytes] = []
    now = int(time.time())
    for suite in Suite:
        key = generate_private_key(suite)
        for kind in CodeKind:
            for amount in (None, 1250):
                code = TransactionCode(kind, suite, bytes(16), "shop-42", amount,
                                       None if amount is None else "EUR", now, now + 120,
                                       secrets.token_bytes(16)).sign(key).encode()
                request = CountersignedCode(code, suite, bytes(16), "alice", 1250, "EUR",
                                            now).sign(key).encode()
                out += [b"\x00" + code, b"\x01" + request, b"\x02" + to_text(code).encode()]
    unsigned = TransactionCode(CodeKind.COLLECTION, Suite.P256_SHA256, None, "shop", 500, "EUR",
                               now, now + 120, secrets.token_bytes(16)).encode()
    return [*out, b"\x00" + unsigned]


TARGET = Target("transaction_code", one_input, (CodeError,), seeds, max_len=2048)
