"""The channel's primitives against other implementations: the SM2 point multiplication
against gmalglib and gmssl, ECDH agreeing both ways, the key schedule's HKDF-Expand-Label
against cryptography's HKDFExpand, and points off the curve refused (invalid-curve attack)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from hypothesis import given, settings
from hypothesis import strategies as st

from secure_channel import primitives
from secure_channel.errors import Malformed
from secure_channel.primitives import SM2_G, SM2_N, ecdh, ephemeral_key, expand_label
from secure_channel.suites import HashName

scalars = st.integers(1, SM2_N - 2)


@settings(max_examples=40, deadline=None)
@given(scalars, scalars)
def test_sm2_point_multiplication_matches_gmalglib_and_gmssl(k: int, j: int) -> None:
    gmalglib = pytest.importorskip("gmalglib")
    from gmssl import sm2

    point = bytes(gmalglib.sm2_get_pk(j.to_bytes(32, "big")))
    assert primitives._sm2_mul(k, SM2_G) == bytes(gmalglib.sm2_get_pk(k.to_bytes(32, "big")))
    crypt = sm2.CryptSM2(private_key="", public_key="")
    assert primitives._sm2_mul(k, point)[1:] == bytes.fromhex(crypt._kg(k, point[1:].hex()))


@pytest.mark.parametrize("sm2", [True, False], ids=["sm2", "p256"])
def test_ecdh_agrees_both_ways(sm2: bool) -> None:
    import secrets

    a, big_a = ephemeral_key(sm2, secrets.token_bytes)
    b, big_b = ephemeral_key(sm2, secrets.token_bytes)
    assert ecdh(sm2, a, big_b) == ecdh(sm2, b, big_a)


@pytest.mark.parametrize("sm2", [True, False], ids=["sm2", "p256"])
def test_invalid_curve_point_is_refused(sm2: bool) -> None:
    off = bytearray(SM2_G if sm2 else ephemeral_key(False, lambda n: b"\x07" * n)[1])
    off[-1] ^= 1
    for bad in (bytes(off), b"\x04" + b"\x00" * 64, SM2_G[:33], b"\x02" + SM2_G[1:33]):
        with pytest.raises(Malformed):
            ecdh(sm2, b"\x05" * 32, bad)


@pytest.mark.parametrize("name", list(HashName))
def test_expand_label_is_hkdf_expand_with_the_tls13_label(name: HashName) -> None:
    secret, context = bytes(range(32)), b"ctx"
    label = b"blegw-sc key"
    info = (16).to_bytes(2, "big") + bytes([len(label)]) + label + bytes([3]) + context
    algorithm = hashes.SM3() if name is HashName.SM3 else hashes.SHA256()
    assert expand_label(name, secret, "key", context, 16) == HKDFExpand(
        algorithm, 16, info).derive(secret)
    assert len(expand_label(name, secret, "long", b"", 80)) == 80
