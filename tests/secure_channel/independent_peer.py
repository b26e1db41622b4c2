"""A second implementation of the secure channel, written from docs/secure-channel.md,
docs/e2e-messages.md ("Certificates") and the published vectors alone.

It imports neither ``secure_channel`` nor ``e2e``: only ``cryptography``, pure-Python
``gmssl`` and ``cbor2``. It is deliberately plain (no state machine classes beyond what the
flow needs, no hostile-input hardening): its job is to show that the documentation is enough
to interoperate, in both roles.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as chmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from gmssl import func, sm2, sm3

SM2_N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
P256_N = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
G_SM2 = sm2.default_ecc_table["g"]

# id -> (national, ephemeral, record key size); docs: "Suites"
SUITES = {0x11: (True, False, 16), 0x12: (True, True, 16), 0x21: (False, False, 16),
          0x22: (False, True, 16), 0x31: (False, False, 32), 0x32: (False, True, 32)}


class PeerFailed(Exception):
    pass


# --- primitives, as the doc names them ---------------------------------------------------------

def H(national: bool, data: bytes) -> bytes:
    if national:
        return bytes.fromhex(sm3.sm3_hash(func.bytes_to_list(data)))
    return hashlib.sha256(data).digest()


def HMAC(national: bool, key: bytes, data: bytes) -> bytes:
    m = chmac.HMAC(key, hashes.SM3() if national else hashes.SHA256())
    m.update(data)
    return m.finalize()


def expand_label(national: bool, secret: bytes, label: str, context: bytes, length: int) -> bytes:
    full = b"blegw-sc " + label.encode()
    info = struct.pack(">H", length) + bytes([len(full)]) + full + bytes([len(context)]) + context
    out, block, i = b"", b"", 1
    while len(out) < length:  # RFC 5869 HKDF-Expand
        block = HMAC(national, secret, block + info + bytes([i]))
        out += block
        i += 1
    return out[:length]


def _crypt(private_hex: str, point: bytes, mode: int = 0) -> sm2.CryptSM2:
    """gmssl's CryptSM2 for x||y of ``point``: set after construction, because the
    constructor's ``lstrip("04")`` eats every leading '0' and '4' of x (one key in eight)."""
    c = sm2.CryptSM2(private_key=private_hex, public_key="", mode=mode)
    c.public_key = point[1:].hex()
    return c


def sm2_sign(scalar: bytes, message: bytes) -> bytes:
    c = _crypt(scalar.hex(), sm2_point(scalar))
    rs = c.sign_with_sm3(message, func.random_hex(64))
    return encode_dss_signature(int(rs[:64], 16), int(rs[64:], 16))


def sm2_verify(point: bytes, message: bytes, der: bytes) -> bool:
    r, s = decode_dss_signature(der)
    c = _crypt("", point)
    return bool(c.verify_with_sm3(f"{r:064x}{s:064x}", message))


def sm2_point(scalar: bytes) -> bytes:
    c = sm2.CryptSM2(private_key="", public_key="")
    return b"\x04" + bytes.fromhex(c._kg(int.from_bytes(scalar, "big"), G_SM2))


def sm2_mul(scalar: bytes, point: bytes) -> bytes:
    c = sm2.CryptSM2(private_key="", public_key="")
    return b"\x04" + bytes.fromhex(c._kg(int.from_bytes(scalar, "big"), point[1:].hex()))


def p256_sign(scalar: bytes, message: bytes) -> bytes:
    key = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def p256_verify(point: bytes, message: bytes, der: bytes) -> bool:
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    try:
        key.verify(der, message, ec.ECDSA(hashes.SHA256()))
    except Exception:
        return False
    return True


def p256_point(scalar: bytes) -> bytes:
    return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1()).public_key(
    ).public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def p256_x(scalar: bytes, point: bytes) -> bytes:
    own = ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP256R1())
    return own.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), point))


def sign(national: bool, scalar: bytes, message: bytes) -> bytes:
    return sm2_sign(scalar, message) if national else p256_sign(scalar, message)


def verify(national: bool, point: bytes, message: bytes, der: bytes) -> bool:
    return sm2_verify(point, message, der) if national else p256_verify(point, message, der)


def new_scalar(national: bool) -> bytes:
    n = SM2_N if national else P256_N
    return (int.from_bytes(os.urandom(32), "big") % (n - 1) + 1).to_bytes(32, "big")


def point_of(national: bool, scalar: bytes) -> bytes:
    return sm2_point(scalar) if national else p256_point(scalar)


def ecdh_x(national: bool, scalar: bytes, point: bytes) -> bytes:
    return sm2_mul(scalar, point)[1:33] if national else p256_x(scalar, point)


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    length = bytes([n]) if n < 128 else bytes([0x81, n])
    return bytes([tag]) + length + body


def _der_uint(b: bytes) -> bytes:
    b = b.lstrip(b"\x00") or b"\x00"
    return _der(0x02, b"\x00" + b if b[0] & 0x80 else b)


def _der_fields(data: bytes) -> list[bytes]:
    def read(buf: bytes, i: int) -> tuple[bytes, int]:
        n = buf[i + 1]
        i += 2
        if n & 0x80:
            size = n & 0x7F
            n = int.from_bytes(buf[i:i + size], "big")
            i += size
        return buf[i:i + n], i + n
    body, _ = read(data, 0)
    out, i = [], 0
    while i < len(body):
        value, i = read(body, i)
        out.append(value)
    return out


def transport_encrypt(national: bool, recipient: bytes, ms: bytes) -> bytes:
    if national:
        # gmssl mode 1 gives C1 (x || y, 64 bytes) || C3 || C2; the doc's wire form is DER
        raw = _crypt("", recipient, mode=1).encrypt(ms)
        x, y, c3, c2 = raw[:32], raw[32:64], raw[64:96], raw[96:]
        return _der(0x30, _der_uint(x) + _der_uint(y) + _der(0x04, c3) + _der(0x04, c2))
    e = new_scalar(False)
    big_e = p256_point(e)
    okm = HKDF(hashes.SHA256(), 28, salt=None,
               info=b"blegw-sc ecies v1" + big_e + recipient).derive(p256_x(e, recipient))
    return big_e + AESGCM(okm[:16]).encrypt(okm[16:], ms, big_e)


def transport_decrypt(national: bool, scalar: bytes, recipient: bytes, blob: bytes) -> bytes:
    if national:
        x, y, c3, c2 = _der_fields(blob)
        raw = x[-32:].rjust(32, b"\x00") + y[-32:].rjust(32, b"\x00") + c3 + c2
        c = sm2.CryptSM2(private_key=scalar.hex(), public_key="", mode=1)
        out = c.decrypt(raw)
        if out is None:
            raise PeerFailed("SM2 decryption")
        return bytes(out)
    big_e = blob[:65]
    okm = HKDF(hashes.SHA256(), 28, salt=None,
               info=b"blegw-sc ecies v1" + big_e + recipient).derive(p256_x(scalar, big_e))
    return AESGCM(okm[:16]).decrypt(okm[16:], blob[65:], big_e)


def aead(national: bool, key: bytes, nonce: bytes, data: bytes, aad: bytes,
         seal: bool) -> bytes:
    if national:
        if seal:
            enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
            enc.authenticate_additional_data(aad)
            return enc.update(data) + enc.finalize() + enc.tag
        dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-16:])).decryptor()
        dec.authenticate_additional_data(aad)
        return dec.update(data[:-16]) + dec.finalize()
    return AESGCM(key).encrypt(nonce, data, aad) if seal else AESGCM(key).decrypt(
        nonce, data, aad)


# --- certificates (docs/e2e-messages.md, "Certificates") ---------------------------------------

def check_certificate(national: bool, cert: bytes, ca_point: bytes, usage: int,
                      now: int) -> tuple[bytes, bytes]:
    """(subject id, subject point) of a certificate the CA issued for ``usage``."""
    outer = cbor2.loads(cert)
    tbs = cbor2.loads(outer[1])
    if tbs[2] != hashlib.sha256(ca_point).digest()[:8]:
        raise PeerFailed("issuer")
    if not verify(national, ca_point, outer[1], outer[2]):
        raise PeerFailed("certificate signature")
    if not tbs[6] <= now <= tbs[7] or tbs[8] != usage or tbs[4] != (2 if national else 1):
        raise PeerFailed("certificate validity, usage or suite")
    return tbs[3], tbs[5]


# --- the handshake -------------------------------------------------------------------------------

def unit(m: dict[int, Any]) -> bytes:
    return b"\x16" + cbor2.dumps(m, canonical=True)


def parse(u: bytes) -> dict[int, Any]:
    if u[0] != 0x16:
        raise PeerFailed(f"peer sent content type {u[0]:#x}")
    m: dict[int, Any] = cbor2.loads(u[1:])
    return m


class _Common:
    national = False
    key_size = 16

    def __init__(self) -> None:
        self.t = b""
        self.hs = b""
        self.cd = b""
        self.send: list[Any] = []
        self.recv: list[Any] = []

    def h(self, data: bytes) -> bytes:
        return H(self.national, data)

    def finished(self, label: bytes) -> bytes:
        fk = expand_label(self.national, self.hs, "finished", b"", 32)
        return HMAC(self.national, fk, self.cd + self.h(self.t) + label)

    def traffic(self, module: bool) -> None:
        th = self.h(self.t)
        m2p = expand_label(self.national, self.hs, "m2p traffic", th, 32)
        p2m = expand_label(self.national, self.hs, "p2m traffic", th, 32)
        self.resumption_secret = expand_label(self.national, self.hs, "resumption", th, 32)
        mine, theirs = (m2p, p2m) if module else (p2m, m2p)
        self.send = [mine, 0, 0]  # secret, epoch, sequence
        self.recv = [theirs, 0, 0]

    def _kn(self, d: list[Any]) -> tuple[bytes, bytes]:
        key = expand_label(self.national, d[0], "key", b"", self.key_size)
        iv = expand_label(self.national, d[0], "iv", b"", 12)
        nonce = bytes(a ^ b for a, b in zip(iv, b"\x00" * 4 + d[2].to_bytes(8, "big"),
                                            strict=True))
        return key, nonce

    def seal(self, plaintext: bytes, kind: int = 0x17, pad_to: int = 0) -> bytes:
        key, nonce = self._kn(self.send)
        header = struct.pack(">BHI", kind, self.send[1], self.send[2])
        self.send[2] += 1
        inner = plaintext + b"\x80" + b"\x00" * max(0, pad_to - len(plaintext))
        out = header + aead(self.national, key, nonce, inner, header, True)
        if kind == 0x18:
            self.send = [expand_label(self.national, self.send[0], "traffic upd", b"", 32),
                         self.send[1] + 1, 0]
        return out

    def open(self, record: bytes) -> bytes | None:
        kind, epoch, seq = struct.unpack(">BHI", record[:7])
        if (epoch, seq) != (self.recv[1], self.recv[2]):
            raise PeerFailed("record out of sequence")
        key, nonce = self._kn(self.recv)
        inner = aead(self.national, key, nonce, record[7:], record[:7], False).rstrip(b"\x00")
        if inner[-1:] != b"\x80":
            raise PeerFailed("padding")
        plaintext = inner[:-1]
        self.recv[2] += 1
        if kind == 0x18:
            self.recv = [expand_label(self.national, self.recv[0], "traffic upd", b"", 32),
                         self.recv[1] + 1, 0]
            return None
        return plaintext


class Module(_Common):
    """The module's role."""

    def __init__(self, suites: list[int], scalar: bytes, certificate: bytes, ca_point: bytes,
                 now: int, resume: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.suites, self.scalar, self.cert, self.ca, self.now = suites, scalar, certificate, \
            ca_point, now
        self.resume = resume
        self.resumed = False

    def start(self) -> bytes:
        self.random = os.urandom(32)
        m = {1: 1, 2: [1], 3: self.suites, 4: self.random}
        if self.resume:
            m[5] = self.resume["id"]
        u = unit(m)
        self.t += u
        return u

    def receive(self, u: bytes) -> list[bytes]:
        m = parse(u)
        if m[1] == 3:  # server resume
            r = self.resume
            assert r is not None
            if m[3] != r["suite"]:
                raise PeerFailed("resumed another suite")
            self.national, _, self.key_size = SUITES[m[3]]
            self.t += u
            self.session_id, self.lifetime = m[6], m[7]
            self.hs = HMAC(self.national, self.random + m[4], r["secret"])
            self.cd = r["cd"]
            self.resumed = True
            return []
        if m[1] == 2:
            if m[2] != 1 or m[3] not in self.suites:
                raise PeerFailed("version or suite not offered")
            self.suite = m[3]
            self.national, ephemeral, self.key_size = SUITES[m[3]]
            self.session_id, self.lifetime = m[6], m[7]
            _, channel_point = check_certificate(self.national, m[5], self.ca, 3, self.now)
            if ephemeral:
                unsigned = unit({k: v for k, v in m.items() if k != 9})
                signed = b"blegw-sc platform signature\x00" + self.h(self.t + unsigned)
                if not verify(self.national, channel_point, signed, m[9]):
                    raise PeerFailed("platform signature")
            self.t += u
            if ephemeral:
                e = new_scalar(self.national)
                exchange, ikm = point_of(self.national, e), ecdh_x(self.national, e, m[8])
            else:
                ikm = os.urandom(48)
                exchange = transport_encrypt(self.national, channel_point, ikm)
            body = {1: 4, 2: self.cert, 3: exchange}
            signed = b"blegw-sc module signature\x00" + self.h(self.t + unit(body))
            body[4] = sign(self.national, self.scalar, signed)
            out = unit(body)
            self.t += out
            self.hs = HMAC(self.national, self.random + m[4], ikm)
            self.cd = self.h(self.h(m[5]) + self.h(self.cert))
            return [out]
        if m[1] == 5:
            if not hmac.compare_digest(m[2], self.finished(b"platform finished")):
                raise PeerFailed("platform finished")
            self.t += u
            out = unit({1: 5, 2: self.finished(b"module finished")})
            self.t += out
            self.traffic(module=True)
            return [out]
        raise PeerFailed(f"unexpected message {m[1]}")


class Platform(_Common):
    """The platform's role (full handshakes, and resumptions of its own sessions)."""

    def __init__(self, suites: list[int], channel: dict[bool, tuple[bytes, bytes]],
                 module_ca: dict[bool, bytes], now: int,
                 cache: dict[bytes, dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.suites, self.channel, self.module_ca, self.now = suites, channel, module_ca, now
        self.cache = {} if cache is None else cache
        self.module_id = b""

    def receive(self, u: bytes) -> list[bytes]:
        m = parse(u)
        if m[1] == 1:
            self.t += u
            self.random_m = m[4]
            entry = self.cache.pop(m.get(5, b""), None)
            chosen = [s for s in self.suites if s in m[3]]
            if not chosen or 1 not in m[2]:
                raise PeerFailed("nothing in common")
            self.random = os.urandom(32)
            if entry is not None and entry["suite"] in m[3]:
                self.suite = entry["suite"]
                self.national, _, self.key_size = SUITES[self.suite]
                out = unit({1: 3, 2: 1, 3: self.suite, 4: self.random,
                            6: os.urandom(16), 7: 600})
                self.session_id = cbor2.loads(out[1:])[6]
                self.t += out
                self.hs = HMAC(self.national, self.random_m + self.random, entry["secret"])
                self.cd, self.module_id = entry["cd"], entry["module_id"]
                fin = unit({1: 5, 2: self.finished(b"platform finished")})
                self.t += fin
                return [out, fin]
            self.suite = chosen[0]
            self.national, ephemeral, self.key_size = SUITES[self.suite]
            scalar, self.cert = self.channel[self.national]
            self.session_id = os.urandom(16)
            body = {1: 2, 2: 1, 3: self.suite, 4: self.random, 5: self.cert,
                    6: self.session_id, 7: 600}
            if ephemeral:
                self.e = new_scalar(self.national)
                body[8] = point_of(self.national, self.e)
                signed = b"blegw-sc platform signature\x00" + self.h(self.t + unit(body))
                body[9] = sign(self.national, scalar, signed)
            out = unit(body)
            self.t += out
            return [out]
        if m[1] == 4:
            _, ephemeral, _ = SUITES[self.suite]
            self.module_id, point = check_certificate(self.national, m[2],
                                                      self.module_ca[self.national], 1,
                                                      self.now)
            unsigned = unit({k: v for k, v in m.items() if k != 4})
            signed = b"blegw-sc module signature\x00" + self.h(self.t + unsigned)
            if not verify(self.national, point, signed, m[4]):
                raise PeerFailed("module signature")
            scalar, _ = self.channel[self.national]
            if ephemeral:
                ikm = ecdh_x(self.national, self.e, m[3])
            else:
                ikm = transport_decrypt(self.national, scalar, point_of(self.national, scalar),
                                        m[3])
            self.t += u
            self.hs = HMAC(self.national, self.random_m + self.random, ikm)
            self.cd = self.h(self.h(self.cert) + self.h(m[2]))
            fin = unit({1: 5, 2: self.finished(b"platform finished")})
            self.t += fin
            return [fin]
        if m[1] == 5:
            if not hmac.compare_digest(m[2], self.finished(b"module finished")):
                raise PeerFailed("module finished")
            self.t += u
            self.traffic(module=False)
            self.cache[self.session_id] = {"suite": self.suite, "secret":
                                           self.resumption_secret, "cd": self.cd,
                                           "module_id": self.module_id}
            return []
        raise PeerFailed(f"unexpected message {m[1]}")
