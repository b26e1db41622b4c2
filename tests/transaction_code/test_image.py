"""QR images: rendered with segno, decoded from the PNG with zxing-cpp (nothing handed over in
memory), per suite, with and without an amount; hostile images get a typed error."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from e2e import Suite
from transaction_code import CodeKind
from transaction_code_image import (
    MAX_VERSIONS,
    ImageUnreadable,
    png,
    read_png,
    render,
    svg,
    terminal_text,
)

from .test_payload import make_code


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize("amount", [None, (1250, "EUR")])
@pytest.mark.parametrize("kind", list(CodeKind))
def test_a_rendered_code_is_read_back_from_its_png(suite: Suite, amount: tuple[int, str] | None,
                                                   kind: CodeKind) -> None:
    data = make_code(suite, kind, "shop-42", amount).encode()
    image = png(data, suite)
    assert image.startswith(b"\x89PNG")
    assert read_png(image) == data
    qr = render(data, suite)
    assert qr.error == "M" and qr.mode == "alphanumeric" and qr.version <= 9


@pytest.mark.parametrize("suite", list(Suite))
def test_the_largest_code_of_a_suite_fits_its_version_and_still_reads(suite: Suite) -> None:
    data = make_code(suite, CodeKind.COLLECTION, "x" * 64, (10**15, "EUR")).encode()
    assert render(data, suite).version == MAX_VERSIONS[suite]
    assert read_png(png(data, suite, scale=3)) == data


def test_a_code_read_from_a_photo_like_image_still_decodes() -> None:
    """Downscaled, blurred by resampling and pasted off-centre on a grey background."""
    data = make_code().encode()
    qr = Image.open(io.BytesIO(png(data, Suite.P256_SHA256, scale=8))).convert("L")
    qr = qr.resize((qr.width * 3 // 5, qr.height * 3 // 5), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (qr.width + 300, qr.height + 200), 180)
    canvas.paste(qr, (170, 60))
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    assert read_png(out.getvalue()) == data


def test_terminal_and_svg_forms() -> None:
    data = make_code().encode()
    text = terminal_text(data, Suite.P256_SHA256)
    lines = text.splitlines()
    assert len(lines) >= 25 and set("".join(lines)) <= {"█", "▀", "▄", " "}
    root = ET.fromstring(svg(data, Suite.P256_SHA256))
    assert root.tag.endswith("svg")


def _png_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_hostile_images_get_a_typed_error() -> None:
    import segno

    data = make_code().encode()
    other_qr = io.BytesIO()
    segno.make_qr("https://example.invalid/pay?to=mallory").save(other_qr, kind="png", scale=6)
    two = Image.new("L", (900, 450), 255)
    code = Image.open(io.BytesIO(png(data, Suite.P256_SHA256)))
    two.paste(code, (0, 0))
    two.paste(code, (450, 0))
    bomb = io.BytesIO()
    Image.new("1", (4000, 4000), 1).save(bomb, format="PNG")
    cases = {
        "not a png": b"GIF89a" + b"\x00" * 100,
        "truncated": png(data, Suite.P256_SHA256)[:200],
        "another QR code": other_qr.getvalue(),
        "blank": _png_of(Image.new("L", (200, 200), 255)),
        "two codes": _png_of(two),
        "too many pixels": bomb.getvalue(),
        "too large": b"\x89PNG" + b"\x00" * (5 * 1024 * 1024),
    }
    for name, image in cases.items():
        with pytest.raises(ImageUnreadable):
            read_png(image)
        assert name
    assert read_png(png(data, Suite.P256_SHA256)) == data  # the honest path after
