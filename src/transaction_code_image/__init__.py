"""Transaction codes as QR images: rendered with segno, read back with zxing-cpp.

An adapter (I/O on images), kept out of the sans-IO ``transaction_code`` core so neither the
platform nor a module has to load an imaging stack. See docs/transaction-codes.md for the
version and error-correction choice.

* :func:`render` makes the QR code of a code's text form (``BGC1:`` + base45, alphanumeric
  mode) at error correction M in the smallest version that holds it (never above the suite's
  :data:`MAX_VERSIONS`);
* :func:`terminal_text` draws it with half-block characters that show in an SSH session;
* :func:`png` and :func:`svg` write the image formats;
* :func:`read_png` decodes a PNG (a photo or a screenshot) with zxing-cpp and returns the
  code's bytes; every image is hostile: its size and pixel count are bounded before decoding,
  and anything but exactly one transaction-code QR code is :class:`ImageUnreadable`.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import segno

from e2e.suites import Suite
from transaction_code import MalformedCode, from_text, to_text

__all__ = ["ERROR_LEVEL", "MAX_PIXELS", "MAX_PNG", "MAX_VERSIONS", "ImageUnreadable", "png",
           "read_png", "read_qr_text", "render", "svg", "terminal_text"]

ERROR_LEVEL = "M"
"""15 % of the symbol may be lost (glare on a phone screen, a crease on paper) and it still
reads. L (7 %) is too little for a screen at a till; Q and H cost two to four versions more for
damage a displayed code does not suffer."""

MAX_VERSIONS = {Suite.P256_SHA256: 11, Suite.SM2_SM3: 11}
"""The largest version a code of each suite needs at level M: its largest code (a 64-character
account, the largest amount, the longest signature: about 211 bytes, 322 characters) is
version 11 (61x61 modules); a code with a short account is version 8 or 9 (49x49, 53x53).
Measured by ``bench/code_bench.py`` and checked by the tests. The smallest version that fits is
used, not a fixed one: fewer, larger modules read from further away, and at version 11 a module
is still about 1 mm in 7 cm of phone screen, which a till's camera reads at arm's length."""

MAX_PNG = 4 * 1024 * 1024
MAX_PIXELS = 9_000_000
"""A 4K camera frame (3840x2160) fits; a few kilobytes of PNG declaring more are refused before
any pixel is decompressed."""


class ImageUnreadable(MalformedCode):
    """The image holds no transaction code, more than one, or is not an acceptable PNG."""

    code = "image_unreadable"


def render(code: bytes, suite: Suite) -> segno.QRCode:
    """The segno QR code of ``code`` (its text form) at level M, the smallest version."""
    qr = segno.make_qr(to_text(code), error=ERROR_LEVEL, mode="alphanumeric",
                       boost_error=False)
    # a code larger than any this layer makes, or a Micro QR version (a str)
    if not isinstance(qr.version, int) or qr.version > MAX_VERSIONS[suite]:
        raise MalformedCode(f"the code needs QR version {qr.version}, above "
                            f"{MAX_VERSIONS[suite]}")
    return qr


def terminal_text(code: bytes, suite: Suite) -> str:
    """Half-block text (two modules a character row) with the quiet zone a reader needs."""
    out = io.StringIO()
    render(code, suite).terminal(out=out, compact=True, border=4)
    return out.getvalue()


def png(code: bytes, suite: Suite, *, scale: int = 6) -> bytes:
    out = io.BytesIO()
    render(code, suite).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def svg(code: bytes, suite: Suite, *, scale: int = 6) -> bytes:
    out = io.BytesIO()
    render(code, suite).save(out, kind="svg", scale=scale, border=4, xmldecl=True)
    return out.getvalue()


def read_qr_text(data: bytes, unreadable: Callable[[str], Exception]) -> str:
    """The text of the one QR code in a PNG, within the limits on hostile images (size,
    pixels, one code); any other image raises ``unreadable(reason)``. The dynamic codes'
    adapter reads its images through this too."""
    import zxingcpp
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes) or len(data) > MAX_PNG:
        raise unreadable(f"a PNG of at most {MAX_PNG} bytes is expected")
    try:
        with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise unreadable("the image has too many pixels")
            image.load()
            grey = image.convert("L")
    # Pillow's PNG reader raises SyntaxError for a broken chunk (found by fuzzing), EOFError
    # and struct.error for truncated ones, OSError and ValueError for the rest.
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error,
            Image.DecompressionBombError) as exc:
        raise unreadable(f"not a readable PNG ({type(exc).__name__})") from None
    found = zxingcpp.read_barcodes(
        grey, formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode))
    texts = [result.text for result in found if result.valid]
    if len(texts) != 1:
        raise unreadable(f"the image holds {len(texts)} QR codes, not one")
    return str(texts[0])


def read_png(data: bytes) -> bytes:
    """The code's bytes from a PNG holding exactly one transaction-code QR code."""
    text = read_qr_text(data, ImageUnreadable)
    try:
        return from_text(text)
    except MalformedCode as exc:
        raise ImageUnreadable(f"the QR code is not a transaction code: {exc}") from None
