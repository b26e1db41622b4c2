"""Suites, strict handshake-unit decoding, certificates and the key schedule."""

from __future__ import annotations

import hmac as _hmac
from dataclasses import dataclass

import cbor2

from . import crypto


class OutsideError(Exception):
    """A typed refusal; ``code`` is the page's error code number."""

    def __init__(self, code: int, why: str) -> None:
        super().__init__(f"{code}: {why}")
        self.code = code


MALFORMED, BAD_SIGNATURE, CERT_INVALID, BAD_FINISHED, BAD_RECORD = 1, 7, 5, 9, 10
RECORD_REPLAY, RECORD_OUT_OF_ORDER, RECORD_TOO_LARGE = 11, 12, 13


@dataclass(frozen=True)
class Suite:
    """One row of the page's suite table."""

    ident: int
    family: str  # "sm2" or "p256"
    ephemeral: bool
    aead: str  # "sm4" or "aes"
    key_len: int

    @property
    def cert_suite(self) -> int:
        """The e2e certificate suite number (1 p256-sha256, 2 sm2-sm3)."""
        return 2 if self.family == "sm2" else 1


SUITES = {s.ident: s for s in (
    Suite(0x11, "sm2", False, "sm4", 16), Suite(0x12, "sm2", True, "sm4", 16),
    Suite(0x21, "p256", False, "aes", 16), Suite(0x22, "p256", True, "aes", 16),
    Suite(0x31, "p256", False, "aes", 32), Suite(0x32, "p256", True, "aes", 32))}


def decode_handshake(unit: bytes) -> dict[int, object]:
    """A 0x16 unit's map, refused unless deterministic CBOR that re-encodes identically."""
    if not unit or unit[0] != 0x16 or len(unit) > 2048:
        raise OutsideError(MALFORMED, "not a handshake unit")
    try:
        body = cbor2.loads(unit[1:])
    except Exception as exc:  # cbor2 raises several types on hostile bytes
        raise OutsideError(MALFORMED, "cbor") from exc
    if not isinstance(body, dict) or cbor2.dumps(body, canonical=True) != unit[1:]:
        raise OutsideError(MALFORMED, "not deterministic")
    return body


def encode_handshake(body: dict[int, object]) -> bytes:
    """0x16 || deterministic CBOR."""
    return b"\x16" + cbor2.dumps(body, canonical=True)


@dataclass(frozen=True)
class Certificate:
    """The fields of a compact CBOR certificate this peer uses."""

    raw: bytes
    subject: bytes
    suite: int
    public: bytes
    not_before: int
    not_after: int
    usage: int


def check_certificate(raw: bytes, ca_public: bytes, cert_suite: int, usage: int,
                      now: int) -> Certificate:
    """Decode {1: TBS bytes, 2: CA signature} and check issuer, signature, validity, usage."""
    try:
        outer = cbor2.loads(raw)
        tbs = cbor2.loads(outer[1])
        cert = Certificate(raw, tbs[3], tbs[4], tbs[5], tbs[6], tbs[7], tbs[8])
        sig = outer[2]
    except Exception as exc:
        raise OutsideError(CERT_INVALID, "undecodable certificate") from exc
    family = "sm2" if cert_suite == 2 else "p256"
    if cert.suite != cert_suite or tbs[2] != __import__("hashlib").sha256(ca_public).digest()[:8]:
        raise OutsideError(CERT_INVALID, "suite or issuer")
    try:
        crypto.verify(family, ca_public, outer[1], sig)
    except crypto.CryptoFailure as exc:
        raise OutsideError(CERT_INVALID, "CA signature") from exc
    if not cert.not_before <= now <= cert.not_after or cert.usage != usage:
        raise OutsideError(CERT_INVALID, "validity or usage")
    return cert


def unsigned(unit: bytes, key: int) -> bytes:
    """The unit re-encoded without its signature key."""
    body = decode_handshake(unit)
    return encode_handshake({k: v for k, v in body.items() if k != key})


PLATFORM_LABEL = b"blegw-sc platform signature\x00"
MODULE_LABEL = b"blegw-sc module signature\x00"


def signed_bytes(suite: Suite, label: bytes, before: bytes, unit: bytes, key: int) -> bytes:
    """label || 0x00 || H(T_before || unsigned(unit))."""
    return label + crypto.hash_fn(suite.family)(before + unsigned(unit, key))


def certificates_digest(suite: Suite, channel_cert: bytes, module_cert: bytes) -> bytes:
    """CD = H(H(channel certificate) || H(module certificate))."""
    h = crypto.hash_fn(suite.family)
    return h(h(channel_cert) + h(module_cert))


def handshake_secret(suite: Suite, random_m: bytes, random_p: bytes, ikm: bytes) -> bytes:
    """HS = HKDF-Extract(random_m || random_p, IKM)."""
    return crypto.hkdf_extract(suite.family, random_m + random_p, ikm)


def finished_mac(suite: Suite, hs: bytes, cd: bytes, transcript: bytes, side: str) -> bytes:
    """HMAC(FK, CD || H(T) || "<side> finished")."""
    fk = crypto.expand_label(suite.family, hs, "finished", b"", 32)
    h = crypto.hash_fn(suite.family)
    return crypto.hmac(suite.family, fk, cd + h(transcript) + side.encode() + b" finished")


def check_finished(suite: Suite, hs: bytes, cd: bytes, transcript: bytes, side: str,
                   unit: bytes) -> None:
    """Refuse a finished unit whose MAC is not the expected one (constant time)."""
    body = decode_handshake(unit)
    if set(body) != {1, 2} or body[1] != 5 or not isinstance(body[2], bytes):
        raise OutsideError(MALFORMED, "finished shape")
    if not _hmac.compare_digest(body[2], finished_mac(suite, hs, cd, transcript, side)):
        raise OutsideError(BAD_FINISHED, side)


@dataclass(frozen=True)
class Secrets:
    """What the key schedule yields after both finished units."""

    m2p: bytes
    p2m: bytes
    resumption: bytes


def traffic_secrets(suite: Suite, hs: bytes, transcript: bytes) -> Secrets:
    """Traffic and resumption secrets from HS and Th_end."""
    th = crypto.hash_fn(suite.family)(transcript)
    return Secrets(*(crypto.expand_label(suite.family, hs, label, th, 32)
                     for label in ("m2p traffic", "p2m traffic", "resumption")))


def key_iv(suite: Suite, traffic: bytes) -> tuple[bytes, bytes]:
    """A direction's AEAD key and iv."""
    return (crypto.expand_label(suite.family, traffic, "key", b"", suite.key_len),
            crypto.expand_label(suite.family, traffic, "iv", b"", 12))
