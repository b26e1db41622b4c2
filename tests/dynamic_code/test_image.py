"""Dynamic codes as PNG images: the largest codes draw within the version bound and read back
exactly; images that hold no dynamic code are refused with a typed error."""

from __future__ import annotations

import io

import pytest
import segno
from PIL import Image

from dynamic_code import MerchantUnit, Role, Verification
from dynamic_code_image import MAX_VERSION, DynamicImageUnreadable, png, read_png, render
from e2e.suites import Suite
from transaction_code import to_text as transaction_text

from .world import World


def test_the_largest_codes_fit_and_read_back() -> None:
    world = World(Suite.SM2_SM3)
    cert = world.issue(world.merchant_key, Role.MERCHANT, "x" * 64, "m" * 64)
    merchant = MerchantUnit(world.merchant_key, cert, world.ca.public_key)
    payer = world.payer("p" * 64, Verification.FEATURES)
    shown = merchant.consumption_code(10**15, "EUR", now=world.now)
    code = payer.unit.pay(shown, now=world.now, verification=Verification.FEATURES,
                          features=payer.sensor.capture())
    for data in (shown, code):
        assert render(data).version <= MAX_VERSION
        assert read_png(png(data)) == data


@pytest.mark.parametrize("image", ["not a png", "transaction code", "two codes", "empty"])
def test_images_without_one_dynamic_code_are_refused(image: str) -> None:
    if image == "not a png":
        data = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
    elif image == "transaction code":
        out = io.BytesIO()
        segno.make_qr(transaction_text(b"\xa0"), error="M").save(out, kind="png", scale=4)
        data = out.getvalue()
    elif image == "two codes":
        one = Image.open(io.BytesIO(png(b"\xa1\x01\x01")))
        both = Image.new("L", (one.width * 2, one.height), 255)
        both.paste(one, (0, 0))
        both.paste(one, (one.width, 0))
        out = io.BytesIO()
        both.save(out, format="PNG")
        data = out.getvalue()
    else:
        data = b""
    with pytest.raises(DynamicImageUnreadable):
        read_png(data)
