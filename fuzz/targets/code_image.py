"""``read_png``: a transaction code read from an image anyone can show to a scanner's camera
(Pillow opens the PNG, zxing-cpp finds the QR code, the text form is decoded)."""

from __future__ import annotations

import secrets
import time

import zxingcpp  # noqa: F401  -- loaded with the target, not timed inside the first input
from PIL import PngImagePlugin  # noqa: F401

from e2e import Suite, generate_private_key
from transaction_code import CodeError, CodeKind, TransactionCode
from transaction_code_image import png, read_png

from ..engine import FuzzOracleError, Target


def one_input(data: bytes) -> None:
    code = read_png(data)
    try:
        TransactionCode.decode(code)
    except CodeError:
        return  # a QR code holding other bytes in the text form: the caller's decoder refuses
    if not code:
        raise FuzzOracleError("an empty code was read")


def seeds() -> list[bytes]:
    now = int(time.time())
    out = []
    for suite in Suite:
        code = TransactionCode(CodeKind.PAYMENT, suite, bytes(16), "alice", 1250, "EUR", now,
                               now + 120, secrets.token_bytes(16)
                               ).sign(generate_private_key(suite)).encode()
        out += [png(code, suite, scale=1), png(code, suite, scale=2)]
    return out


TARGET = Target("code_image", one_input, (CodeError,), seeds, memory_base=4 * 1024 * 1024,
                max_len=4096)
