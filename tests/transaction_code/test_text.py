"""The text form: base45 (RFC 9285) with the BGC1: prefix."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transaction_code import MalformedCode, from_text, to_text
from transaction_code.text import ALPHABET, b45decode, b45encode


@pytest.mark.parametrize(("raw", "text"), [
    (b"AB", "BB8"), (b"Hello!!", "%69 VD92EX0"), (b"base-45", "UJCLQE7W581"),
    (b"ietf!", "QED8WEX0"), (b"", ""),
])
def test_the_rfc_9285_examples(raw: bytes, text: str) -> None:
    assert b45encode(raw) == text
    assert b45decode(text) == raw


@given(st.binary(max_size=600))
def test_text_round_trips_in_the_qr_alphanumeric_alphabet(data: bytes) -> None:
    text = to_text(data)
    assert set(text) <= set(ALPHABET) | set("BGC1:")
    assert from_text(text) == data


@given(st.text(max_size=300))
def test_any_text_is_bytes_or_a_typed_error(text: str) -> None:
    with contextlib.suppress(MalformedCode):
        from_text(text)


@pytest.mark.parametrize("text", ["BGC1:A", "BGC1:GGW", "BGC1:ZZ", "BGC1:ab", "HC1:BB8",
                                  "BGC1:" + "0" * 5000])
def test_bad_text_is_refused(text: str) -> None:
    with pytest.raises(MalformedCode):
        from_text(text)
