"""The channel's cryptographic primitives, on ``cryptography`` and the SM2 curve arithmetic.

Everything random is drawn from a caller's ``rng(n) -> n bytes`` so the published test vectors
are exact; the handshake gives ``secrets.token_bytes`` in use.

* Hashes, HMAC, HKDF-Extract and a TLS 1.3-style ``HKDF-Expand-Label`` (RFC 8446 §7.1) with the
  prefix ``"blegw-sc "``, over SHA-256 or SM3.
* AEAD: AES-128/256-GCM and SM4-GCM (RFC 8998 uses SM4-GCM in TLS 1.3), 16-byte tags.
* Key transport: SM2 public-key encryption (GB/T 32918.4, ciphertext as the DER ``SM2Cipher``
  that OpenSSL and GmSSL read), and for P-256 an ECIES: ephemeral P-256 key, ECDH, HKDF-SHA256,
  AES-128-GCM (docs/secure-channel.md gives it byte by byte).
* Key agreement: ECDH on P-256, and plain ECDH on the SM2 curve (not the GB/T 32918.3 key
  exchange protocol: ECDHE under signatures gives the same forward secrecy with one round
  trip fewer and a shape shared with the P-256 suite). Peer points are checked on the curve.
"""

from __future__ import annotations

import hmac
import secrets
import struct
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as _hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from .errors import BadRecord, DecryptFailed, Malformed
from .suites import Aead, HashName

__all__ = ["LABEL_PREFIX", "Rng", "aead_open", "aead_seal", "digest", "ecdh",
           "ecies_decrypt", "ecies_encrypt", "ephemeral_key", "expand_label", "extract",
           "mac", "sm2_decrypt", "sm2_encrypt", "sm2_public"]

Rng = Callable[[int], bytes]
LABEL_PREFIX = b"blegw-sc "
TAG_SIZE = 16

# SM2 curve (GB/T 32918.5)
SM2_P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
SM2_A = SM2_P - 3
SM2_B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
SM2_N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
SM2_G = bytes.fromhex(
    "0432C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7"
    "BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0")
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _hash(name: HashName) -> hashes.HashAlgorithm:
    return hashes.SM3() if name is HashName.SM3 else hashes.SHA256()


def digest(name: HashName, data: bytes) -> bytes:
    h = hashes.Hash(_hash(name))
    h.update(data)
    return h.finalize()


def mac(name: HashName, key: bytes, data: bytes) -> bytes:
    h = _hmac.HMAC(key, _hash(name))
    h.update(data)
    return h.finalize()


def extract(name: HashName, salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract (RFC 5869): HMAC(salt, ikm)."""
    return mac(name, salt, ikm)


def expand_label(name: HashName, secret: bytes, label: str, context: bytes,
                 length: int) -> bytes:
    """HKDF-Expand(secret, HkdfLabel, length) with RFC 8446's HkdfLabel:
    ``uint16 length || uint8 len || "blegw-sc " + label || uint8 len || context``."""
    full = LABEL_PREFIX + label.encode("ascii")
    info = struct.pack(">HB", length, len(full)) + full + struct.pack(">B", len(context)) + context
    return HKDFExpand(_hash(name), length, info).derive(secret)


def aead_seal(aead: Aead, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    if aead is Aead.SM4_GCM:
        enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
        enc.authenticate_additional_data(aad)
        return enc.update(plaintext) + enc.finalize() + enc.tag
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(aead: Aead, key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    """The plaintext, or :class:`BadRecord` when the tag does not verify."""
    if len(sealed) < TAG_SIZE:
        raise BadRecord("record shorter than its tag")
    try:
        if aead is Aead.SM4_GCM:
            dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, sealed[-TAG_SIZE:])).decryptor()
            dec.authenticate_additional_data(aad)
            return dec.update(sealed[:-TAG_SIZE]) + dec.finalize()
        return AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise BadRecord("record does not authenticate") from None


# --- scalars and points ----------------------------------------------------------------------

def _scalar(rng: Rng, order: int) -> int:
    """A uniform scalar in [1, order-1] by rejection."""
    while True:
        k = int.from_bytes(rng(32), "big")
        if 1 <= k < order:
            return k


def _sm2_on_curve(point: bytes) -> tuple[int, int]:
    if len(point) != 65 or point[0] != 0x04:
        raise Malformed("an SM2 point is 65 bytes, uncompressed")
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    if not (x < SM2_P and y < SM2_P) or (y * y - x * x * x - SM2_A * x - SM2_B) % SM2_P:
        raise Malformed("point is not on the SM2 curve")
    return x, y


def _sm2_mul(k: int, point: bytes) -> bytes:
    """k * point on the SM2 curve (the point already checked); 65-byte SEC1.

    Pure Python in Jacobian coordinates (a = -3 doubling), about five times faster than gmssl's
    hex-string arithmetic; used where no C backend offers the operation (ECDH on the SM2 curve)
    and as the fallback for the rest. Like any Python big-integer code it is not constant-time.
    """
    x, y = int.from_bytes(point[1:33], "big"), int.from_bytes(point[33:], "big")
    k %= SM2_N
    if k == 0:
        raise Malformed("point at infinity")
    p = SM2_P
    rx, ry, rz = 0, 1, 0  # infinity
    for bit in bin(k)[2:]:
        if rz:  # double (dbl-2001-b, a = -3)
            delta = rz * rz % p
            gamma = ry * ry % p
            beta = rx * gamma % p
            alpha = 3 * (rx - delta) * (rx + delta) % p
            nx = (alpha * alpha - 8 * beta) % p
            rz = ((ry + rz) ** 2 - gamma - delta) % p
            ry = (alpha * (4 * beta - nx) - 8 * gamma * gamma) % p
            rx = nx
        if bit == "1":
            if not rz:
                rx, ry, rz = x, y, 1
                continue
            # mixed addition (madd-2007-bl) of the affine point
            z2 = rz * rz % p
            u2 = x * z2 % p
            s2 = y * rz * z2 % p
            h = (u2 - rx) % p
            r = (s2 - ry) % p
            if h == 0:
                if r:
                    rx, ry, rz = 0, 1, 0
                    continue
                raise Malformed("doubling through addition")  # k*P with P of small order
            hh = h * h % p
            hhh = h * hh % p
            v = rx * hh % p
            nx = (r * r - hhh - 2 * v) % p
            ry = (r * (v - nx) - ry * hhh) % p
            rz = rz * h % p
            rx = nx
    if not rz:
        raise Malformed("point at infinity")
    zi = pow(rz, -1, p)
    zi2 = zi * zi % p
    return b"\x04" + (rx * zi2 % p).to_bytes(32, "big") + (ry * zi2 * zi % p).to_bytes(
        32, "big")


def _gmalglib() -> Any:
    """gmalglib when installed (C: k*G, encryption and decryption about 15x faster than the
    pure-Python arithmetic), else None."""
    try:
        import gmalglib
    except ImportError:
        return None
    return gmalglib


def sm2_public(scalar: bytes) -> bytes:
    fast = _gmalglib()
    if fast is not None:
        return bytes(fast.sm2_get_pk(scalar))
    return _sm2_mul(int.from_bytes(scalar, "big"), SM2_G)


def ephemeral_key(sm2: bool, rng: Rng) -> tuple[bytes, bytes]:
    """(32-byte scalar, 65-byte public point) on the SM2 curve or P-256."""
    if sm2:  # [1, n-2]: an SM2 private key d needs 1 + d invertible (gmalglib checks it)
        scalar = _scalar(rng, SM2_N - 1).to_bytes(32, "big")
        return scalar, sm2_public(scalar)
    k = _scalar(rng, P256_N)
    pub = ec.derive_private_key(k, ec.SECP256R1()).public_key()
    return k.to_bytes(32, "big"), pub.public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)


def ecdh(sm2: bool, scalar: bytes, peer: bytes) -> bytes:
    """The x coordinate of scalar * peer (32 bytes); :class:`Malformed` for a bad point."""
    if sm2:
        _sm2_on_curve(peer)
        return _sm2_mul(int.from_bytes(scalar, "big"), peer)[1:33]
    if len(peer) != 65 or peer[0] != 0x04:
        raise Malformed("a P-256 point is 65 bytes, uncompressed")
    try:
        peer_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer)
    except ValueError:
        raise Malformed("point is not on P-256") from None
    own = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    return own.exchange(ec.ECDH(), peer_key)


# --- key transport: SM2 encryption -----------------------------------------------------------

def _sm2_kdf(z: bytes, length: int) -> bytes:
    """GB/T 32918.4's KDF: SM3(Z || counter32) from counter 1, which is ANSI X9.63's."""
    return X963KDF(hashes.SM3(), length, None).derive(z)


def sm2_encrypt(public: bytes, message: bytes, rng: Rng | None) -> bytes:
    """SM2 encryption of ``message`` to ``public``; DER ``SM2Cipher {x, y, C3, C2}``. With
    ``rng`` None the C backend draws k itself; with an ``rng`` (the test vectors) k comes from
    it and the arithmetic is the pure-Python one."""
    _sm2_on_curve(public)
    fast = _gmalglib()
    if rng is None and fast is not None:
        raw = bytes(fast.sm2_encrypt(public, message))  # C1 (65) || C3 (32) || C2
        return _der_seq(_der_int(raw[1:33]) + _der_int(raw[33:65]) +
                        _der_tlv(0x04, raw[65:97]) + _der_tlv(0x04, raw[97:]))
    rng = rng or secrets.token_bytes
    while True:
        k = _scalar(rng, SM2_N)
        c1 = _sm2_mul(k, SM2_G)
        shared = _sm2_mul(k, public)
        t = _sm2_kdf(shared[1:], len(message))
        if any(t):
            break
    c2 = bytes(a ^ b for a, b in zip(message, t, strict=True))
    c3 = digest(HashName.SM3, shared[1:33] + message + shared[33:])
    return _der_seq(_der_int(c1[1:33]) + _der_int(c1[33:]) + _der_tlv(0x04, c3) +
                    _der_tlv(0x04, c2))


def sm2_decrypt(scalar: bytes, ciphertext: bytes) -> bytes:
    """The message in a DER ``SM2Cipher``; :class:`DecryptFailed` for anything wrong."""
    try:
        x, y, c3, c2 = _der_sm2cipher(ciphertext)
        c1 = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
        _sm2_on_curve(c1)
    except Malformed as exc:
        raise DecryptFailed(f"not an SM2 ciphertext: {exc}") from None
    fast = _gmalglib()
    if fast is not None:
        try:
            return bytes(fast.sm2_decrypt(scalar, c1 + c3 + c2))
        except (ValueError, RuntimeError, OverflowError):
            raise DecryptFailed("SM2 ciphertext does not check") from None
    shared = _sm2_mul(int.from_bytes(scalar, "big"), c1)
    t = _sm2_kdf(shared[1:], len(c2))
    message = bytes(a ^ b for a, b in zip(c2, t, strict=True))
    if not any(t) or not hmac.compare_digest(
            digest(HashName.SM3, shared[1:33] + message + shared[33:]), c3):
        raise DecryptFailed("SM2 ciphertext does not check")
    return message


def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else b"\x82" + n.to_bytes(
        2, "big")


def _der_tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(value)) + value


def _der_int(unsigned: bytes) -> bytes:
    value = unsigned.lstrip(b"\x00") or b"\x00"
    if value[0] & 0x80:
        value = b"\x00" + value
    return _der_tlv(0x02, value)


def _der_seq(body: bytes) -> bytes:
    return _der_tlv(0x30, body)


def _der_read(data: bytes, pos: int, tag: int) -> tuple[bytes, int]:
    if pos + 2 > len(data) or data[pos] != tag:
        raise Malformed("unexpected DER tag")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first in (0x81, 0x82):
        size = first - 0x80
        if pos + size > len(data):
            raise Malformed("DER length runs past the end")
        length = int.from_bytes(data[pos:pos + size], "big")
        if length < 0x80 or (size == 2 and length < 0x100):
            raise Malformed("DER length not minimal")
        pos += size
    else:
        raise Malformed("DER length too long")
    if pos + length > len(data):
        raise Malformed("DER value runs past the end")
    return data[pos:pos + length], pos + length


def _der_sm2cipher(data: bytes) -> tuple[int, int, bytes, bytes]:
    body, end = _der_read(data, 0, 0x30)
    if end != len(data):
        raise Malformed("bytes after the SM2 ciphertext")
    fields: list[bytes] = []
    pos = 0
    for tag in (0x02, 0x02, 0x04, 0x04):
        value, pos = _der_read(body, pos, tag)
        fields.append(value)
    if pos != len(body):
        raise Malformed("extra fields in the SM2 ciphertext")
    for raw in fields[:2]:
        if not raw or raw[0] & 0x80 or (len(raw) > 1 and raw[0] == 0 and not raw[1] & 0x80):
            raise Malformed("SM2 ciphertext coordinate is not a minimal positive integer")
        if len(raw.lstrip(b"\x00")) > 32:
            raise Malformed("SM2 ciphertext coordinate longer than 32 bytes")
    if len(fields[2]) != 32:
        raise Malformed("SM2 ciphertext hash is 32 bytes")
    return (int.from_bytes(fields[0], "big"), int.from_bytes(fields[1], "big"), fields[2],
            fields[3])


# --- key transport: ECIES on P-256 -----------------------------------------------------------

ECIES_INFO = b"blegw-sc ecies v1"


def _ecies_keys(z: bytes, eph: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 28, salt=None, info=ECIES_INFO + eph + recipient).derive(z)
    return okm[:16], okm[16:]


def ecies_encrypt(recipient: bytes, message: bytes, rng: Rng | None) -> bytes:
    """``E || AES-128-GCM(k, n, message, aad=E)`` where E is a fresh P-256 point and
    ``k || n = HKDF-SHA256(salt="", ikm=ECDH.x, info="blegw-sc ecies v1" || E || recipient)``."""
    scalar, eph = ephemeral_key(False, rng or secrets.token_bytes)
    key, nonce = _ecies_keys(ecdh(False, scalar, recipient), eph, recipient)
    return eph + AESGCM(key).encrypt(nonce, message, eph)


def ecies_decrypt(scalar: bytes, recipient: bytes, blob: bytes) -> bytes:
    if len(blob) < 65 + TAG_SIZE:
        raise DecryptFailed("ECIES ciphertext too short")
    eph = blob[:65]
    try:
        z = ecdh(False, scalar, eph)
    except Malformed as exc:
        raise DecryptFailed(f"ECIES point: {exc}") from None
    key, nonce = _ecies_keys(z, eph, recipient)
    try:
        return AESGCM(key).decrypt(nonce, blob[65:], eph)
    except InvalidTag:
        raise DecryptFailed("ECIES ciphertext does not authenticate") from None
