"""Dynamic codes as QR images: segno renders, zxing-cpp reads (an adapter, like
``transaction_code_image``, whose limits on hostile images it shares).

The consumption code carries the merchant's certificate and the payment code a whole
encrypted payment with the payer's certificate, so they are larger than a transaction code:
the smallest version that holds the ``BDC1:`` text at level M is used, at most
:data:`MAX_VERSION` (docs/dynamic-codes.md gives the measured versions).
"""

from __future__ import annotations

import io

import segno

from dynamic_code import MalformedDynamicCode, from_text, to_text
from transaction_code_image import ERROR_LEVEL, read_qr_text

__all__ = ["MAX_VERSION", "DynamicImageUnreadable", "png", "read_png", "render"]

MAX_VERSION = 25
"""117x117 modules: the largest SM2 payment code with features and 64-character accounts fits
(about 1 kB of base45 text); a code needing more is refused rather than drawn unreadably
small."""


class DynamicImageUnreadable(MalformedDynamicCode):
    """The image holds no dynamic code, more than one, or is not an acceptable PNG."""

    code = "image_unreadable"


def render(code: bytes) -> segno.QRCode:
    qr = segno.make_qr(to_text(code), error=ERROR_LEVEL, mode="alphanumeric",
                       boost_error=False)
    if not isinstance(qr.version, int) or qr.version > MAX_VERSION:
        raise MalformedDynamicCode(f"the code needs QR version {qr.version}, above "
                                   f"{MAX_VERSION}")
    return qr


def png(code: bytes, *, scale: int = 4) -> bytes:
    out = io.BytesIO()
    render(code).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def read_png(data: bytes) -> bytes:
    """The code's bytes from a PNG holding exactly one dynamic-code QR code."""
    text = read_qr_text(data, DynamicImageUnreadable)
    try:
        return from_text(text)
    except MalformedDynamicCode as exc:
        raise DynamicImageUnreadable(f"the QR code is not a dynamic code: {exc}") from None
