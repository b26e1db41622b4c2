"""Primitives: hashes, HKDF-Expand-Label, AEADs, SM2 (pure Python) and P-256 (cryptography)."""

from __future__ import annotations

import hashlib
import hmac as _hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hmac import HMAC
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Rng = Callable[[int], bytes]


class CryptoFailure(Exception):
    """A signature, a tag or a point did not check out."""


def sm3(data: bytes) -> bytes:
    """SM3 through OpenSSL."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def hash_fn(family: str) -> Callable[[bytes], bytes]:
    """The suite family's hash: SM3 for SM2 suites, SHA-256 for P-256 suites."""
    return sm3 if family == "sm2" else (lambda d: hashlib.sha256(d).digest())


def _algo(family: str) -> hashes.HashAlgorithm:
    return hashes.SM3() if family == "sm2" else hashes.SHA256()


def hmac(family: str, key: bytes, data: bytes) -> bytes:
    """HMAC with the suite's hash."""
    m = HMAC(key, _algo(family))
    m.update(data)
    return m.finalize()


def hkdf_extract(family: str, salt: bytes, ikm: bytes) -> bytes:
    """RFC 5869 extract: HMAC(salt, IKM)."""
    return hmac(family, salt, ikm)


def hkdf_expand(family: str, prk: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 expand, written out (T(i) = HMAC(PRK, T(i-1) || info || i))."""
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac(family, prk, block + info + bytes([i]))
        out += block
        i += 1
    return out[:length]


def expand_label(family: str, secret: bytes, label: str, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label as RFC 8446 section 7.1 with the prefix "blegw-sc "."""
    full = b"blegw-sc " + label.encode("ascii")
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return hkdf_expand(family, secret, info, length)


def aead_seal(aead: str, key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-GCM or SM4-GCM; returns ciphertext || 16-byte tag."""
    if aead == "aes":
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    return enc.update(plaintext) + enc.finalize() + enc.tag


def aead_open(aead: str, key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    """Inverse of :func:`aead_seal`; :class:`CryptoFailure` on a bad tag."""
    if len(data) < 16:
        raise CryptoFailure("short")
    try:
        if aead == "aes":
            return AESGCM(key).decrypt(nonce, data, aad)
        dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-16:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(data[:-16]) + dec.finalize()
    except InvalidTag as exc:
        raise CryptoFailure("tag") from exc


# ---- SM2 curve, affine arithmetic (not constant time: a test peer) ----------------------
P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = P - 3
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0
Point = tuple[int, int] | None
G: Point = (GX, GY)
SM2_ID = b"1234567812345678"


def _add(p1: Point, p2: Point) -> Point:
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    (x1, y1), (x2, y2) = p1, p2
    if x1 == x2:
        if (y1 + y2) % P == 0:
            return None
        lam = (3 * x1 * x1 + A) * pow(2 * y1, -1, P) % P
    else:
        lam = (y2 - y1) * pow(x2 - x1, -1, P) % P
    x3 = (lam * lam - x1 - x2) % P
    return (x3, (lam * (x1 - x3) - y1) % P)


def sm2_mul(k: int, pt: Point) -> Point:
    """k * pt by double-and-add."""
    acc: Point = None
    while k:
        if k & 1:
            acc = _add(acc, pt)
        pt = _add(pt, pt)
        k >>= 1
    return acc


def sm2_decode_point(data: bytes) -> tuple[int, int]:
    """SEC1 uncompressed, on the curve, or :class:`CryptoFailure`."""
    if len(data) != 65 or data[0] != 4:
        raise CryptoFailure("point encoding")
    x, y = int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:], "big")
    if x >= P or y >= P or (y * y - x * x * x - A * x - B) % P:
        raise CryptoFailure("point not on the curve")
    return (x, y)


def sm2_encode_point(pt: Point) -> bytes:
    """SEC1 uncompressed."""
    assert pt is not None
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def sm2_z(pub: bytes) -> bytes:
    """Z = SM3(ENTL || ID || a || b || xG || yG || xA || yA), GB/T 32918.2."""
    return sm3((len(SM2_ID) * 8).to_bytes(2, "big") + SM2_ID + b"".join(
        v.to_bytes(32, "big") for v in (A, B, GX, GY)) + pub[1:])


def _der_int(v: int) -> bytes:
    raw = v.to_bytes((v.bit_length() + 8) // 8 or 1, "big")
    return b"\x02" + bytes([len(raw)]) + raw


def _der_seq(body: bytes) -> bytes:
    if len(body) < 128:
        return b"\x30" + bytes([len(body)]) + body
    return b"\x30\x81" + bytes([len(body)]) + body


def _der_parse(data: bytes, kinds: str) -> list[bytes]:
    """A DER SEQUENCE of the given kinds ('i' INTEGER, 'o' OCTET STRING), strict."""
    if len(data) < 2 or data[0] != 0x30:
        raise CryptoFailure("der")
    pos, ln = 2, data[1]
    if ln == 0x81:
        ln, pos = data[2], 3
        if ln < 128:
            raise CryptoFailure("der length")
    elif ln >= 0x80:
        raise CryptoFailure("der length")
    if pos + ln != len(data):
        raise CryptoFailure("der length")
    out = []
    for kind in kinds:
        if pos + 2 > len(data) or data[pos] != (0x02 if kind == "i" else 0x04):
            raise CryptoFailure("der tag")
        ln = data[pos + 1]
        if ln >= 0x80:
            raise CryptoFailure("der length")
        val = data[pos + 2:pos + 2 + ln]
        if len(val) != ln or (kind == "i" and (ln == 0 or val[0] & 0x80 or (
                ln > 1 and val[0] == 0 and not val[1] & 0x80))):
            raise CryptoFailure("der integer")
        out.append(val)
        pos += 2 + ln
    if pos != len(data):
        raise CryptoFailure("der trailing")
    return out


def sm2_sign(priv: int, msg: bytes, k: int) -> bytes:
    """GB/T 32918.2 signature over SM3(Z || msg) with nonce k, DER."""
    pub = sm2_encode_point(sm2_mul(priv, G))
    e = int.from_bytes(sm3(sm2_z(pub) + msg), "big")
    while True:
        x1 = sm2_mul(k, G)[0]  # type: ignore[index]
        r = (e + x1) % N
        s = pow(1 + priv, -1, N) * (k - r * priv) % N
        if r and r + k != N and s:
            return _der_seq(_der_int(r) + _der_int(s))
        k = k % (N - 1) + 1


def sm2_verify(pub: bytes, msg: bytes, sig: bytes) -> None:
    """Raises :class:`CryptoFailure` unless sig is the key's signature on msg."""
    point = sm2_decode_point(pub)
    r, s = (int.from_bytes(v, "big") for v in _der_parse(sig, "ii"))
    if not (0 < r < N and 0 < s < N):
        raise CryptoFailure("range")
    e = int.from_bytes(sm3(sm2_z(pub) + msg), "big")
    t = (r + s) % N
    if t == 0:
        raise CryptoFailure("t")
    x1 = _add(sm2_mul(s, G), sm2_mul(t, point))
    if x1 is None or (e + x1[0]) % N != r:
        raise CryptoFailure("sm2 signature")


def sm3_kdf(z: bytes, length: int) -> bytes:
    """The SM3 KDF of GB/T 32918 (ANSI X9.63, counter from 1)."""
    out, ctr = b"", 1
    while len(out) < length:
        out += sm3(z + ctr.to_bytes(4, "big"))
        ctr += 1
    return out[:length]


def sm2_encrypt(pub: bytes, msg: bytes, k: int) -> bytes:
    """GB/T 32918.4, C1 C3 C2 order, DER as OpenSSL/GmSSL."""
    point = sm2_decode_point(pub)
    x1, y1 = sm2_mul(k, G)  # type: ignore[misc]
    x2, y2 = sm2_mul(k, point)  # type: ignore[misc]
    xb, yb = x2.to_bytes(32, "big"), y2.to_bytes(32, "big")
    c2 = bytes(a ^ b for a, b in zip(msg, sm3_kdf(xb + yb, len(msg)), strict=True))
    c3 = sm3(xb + msg + yb)
    body = _der_int(x1) + _der_int(y1) + b"\x04\x20" + c3 + b"\x04" + bytes([len(c2)]) + c2
    return _der_seq(body)


def sm2_decrypt(priv: int, data: bytes) -> bytes:
    """Inverse of :func:`sm2_encrypt`; :class:`CryptoFailure` on anything wrong."""
    x1b, y1b, c3, c2 = _der_parse(data, "iioo")
    c1 = sm2_decode_point(b"\x04" + int.from_bytes(x1b, "big").to_bytes(32, "big")
                          + int.from_bytes(y1b, "big").to_bytes(32, "big"))
    if len(c3) != 32:
        raise CryptoFailure("c3")
    x2, y2 = sm2_mul(priv, c1)  # type: ignore[misc]
    xb, yb = x2.to_bytes(32, "big"), y2.to_bytes(32, "big")
    msg = bytes(a ^ b for a, b in zip(c2, sm3_kdf(xb + yb, len(c2)), strict=True))
    if not _hmac.compare_digest(sm3(xb + msg + yb), c3):
        raise CryptoFailure("c3 mismatch")
    return msg


# ---- P-256 ----------------------------------------------------------------------------
def p256_public(data: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 point from SEC1 uncompressed bytes (cryptography checks it is on the curve)."""
    if len(data) != 65 or data[0] != 4:
        raise CryptoFailure("point encoding")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), data)
    except ValueError as exc:
        raise CryptoFailure("point") from exc


def p256_encode(key: ec.EllipticCurvePublicKey) -> bytes:
    """SEC1 uncompressed."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def p256_private(scalar: int) -> ec.EllipticCurvePrivateKey:
    """A private key from its scalar."""
    return ec.derive_private_key(scalar, ec.SECP256R1())


def ecies_seal(channel_point: bytes, ms: bytes, e: ec.EllipticCurvePrivateKey) -> bytes:
    """The page's ECIES: E || AES-128-GCM(k, n, ms, aad E)."""
    big_e = p256_encode(e.public_key())
    z = e.exchange(ec.ECDH(), p256_public(channel_point))
    kn = HKDF(hashes.SHA256(), 28, b"", b"blegw-sc ecies v1" + big_e + channel_point).derive(z)
    return big_e + AESGCM(kn[:16]).encrypt(kn[16:], ms, big_e)


def ecies_open(channel: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """Inverse of :func:`ecies_seal`."""
    big_e = data[:65]
    z = channel.exchange(ec.ECDH(), p256_public(big_e))
    kn = HKDF(hashes.SHA256(), 28, b"", b"blegw-sc ecies v1" + big_e
              + p256_encode(channel.public_key())).derive(z)
    try:
        return AESGCM(kn[:16]).decrypt(kn[16:], data[65:], big_e)
    except InvalidTag as exc:
        raise CryptoFailure("ecies") from exc


def p256_verify(pub: bytes, msg: bytes, sig: bytes) -> None:
    """ECDSA P-256 / SHA-256 over msg, DER."""
    try:
        p256_public(pub).verify(sig, msg, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise CryptoFailure("ecdsa") from exc


@dataclass(frozen=True)
class SigningKey:
    """A private scalar of one family, able to sign and to give its public point."""

    family: str
    scalar: int

    def public(self) -> bytes:
        """SEC1 uncompressed public point."""
        if self.family == "sm2":
            return sm2_encode_point(sm2_mul(self.scalar, G))
        return p256_encode(p256_private(self.scalar).public_key())

    def sign(self, msg: bytes, rng: Rng) -> bytes:
        """SM2/SM3 with the standard id, or ECDSA P-256/SHA-256; DER."""
        if self.family == "sm2":
            return sm2_sign(self.scalar, msg, random_scalar("sm2", rng))
        return p256_private(self.scalar).sign(msg, ec.ECDSA(hashes.SHA256()))


def verify(family: str, pub: bytes, msg: bytes, sig: bytes) -> None:
    """Verify a signature of the family; :class:`CryptoFailure` if it does not hold."""
    (sm2_verify if family == "sm2" else p256_verify)(pub, msg, sig)


P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def random_scalar(family: str, rng: Rng) -> int:
    """32 bytes from ``rng`` as a big-endian integer, drawn again until in [1, n-1]."""
    order = N if family == "sm2" else P256_N
    while True:
        scalar = int.from_bytes(rng(32), "big")
        if 1 <= scalar < order:
            return scalar


def ecdh_keypair(family: str, rng: Rng) -> tuple[int, bytes]:
    """A fresh ephemeral scalar and its point on the family's curve."""
    scalar = random_scalar(family, rng)
    return scalar, SigningKey(family, scalar).public()


def ecdh(family: str, scalar: int, peer: bytes) -> bytes:
    """x coordinate of scalar * peer (32 bytes); the peer point must be on the curve."""
    if family == "sm2":
        shared = sm2_mul(scalar, sm2_decode_point(peer))
        if shared is None:
            raise CryptoFailure("infinity")
        return shared[0].to_bytes(32, "big")
    return p256_private(scalar).exchange(ec.ECDH(), p256_public(peer))
