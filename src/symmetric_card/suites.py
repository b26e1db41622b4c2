"""The two symmetric suites and their primitives: a 128-bit block cipher in GCM and the hash
its KDF uses.

| suite | id | AEAD | KDF hash | key diversification |
|---|---|---|---|---|
| international | 1 | AES-128-GCM | SHA-256 | AES-128 ECB |
| national | 2 | SM4-GCM (GB/T 36624, as in RFC 8998) | SM3 | SM4 ECB |

The ids match the public-key module's suites (1 P-256/SHA-256, 2 SM2/SM3), so one payment
carries one suite number whichever kind of module approves it. Every primitive comes from
``cryptography`` (OpenSSL 3): it offers SM4 in GCM mode through its ``Cipher`` interface, so
both suites use the same AEAD construction and no encrypt-then-MAC composition is needed.
"""

from __future__ import annotations

from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import Tampered, UnsupportedSuite

__all__ = ["KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "CardSuite", "aead_open", "aead_seal",
           "digest", "ecb_encrypt_block", "hkdf"]

KEY_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16


class CardSuite(IntEnum):
    AES128_GCM_SHA256 = 1
    SM4_GCM_SM3 = 2

    @classmethod
    def parse(cls, value: int) -> CardSuite:
        try:
            return cls(value)
        except ValueError:
            raise UnsupportedSuite("unknown card suite") from None

    @property
    def label(self) -> str:
        return {CardSuite.AES128_GCM_SHA256: "aes", CardSuite.SM4_GCM_SM3: "sm4"}[self]

    def _cipher(self, key: bytes) -> algorithms.AES128 | algorithms.SM4:
        if self is CardSuite.AES128_GCM_SHA256:
            return algorithms.AES128(key)
        return algorithms.SM4(key)

    def _hash(self) -> hashes.HashAlgorithm:
        return hashes.SHA256() if self is CardSuite.AES128_GCM_SHA256 else hashes.SM3()


def _check_key(key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError("a card suite key is 16 bytes")


def ecb_encrypt_block(suite: CardSuite, key: bytes, block: bytes) -> bytes:
    """One block through the suite's cipher: the issuer's diversification step."""
    _check_key(key)
    if len(block) != 16:
        raise ValueError("one 16-byte block")
    # one block through the raw cipher, as the diversification standards specify: ECB of a
    # single block is the block cipher itself, not a mode over a message
    encryptor = Cipher(suite._cipher(key), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(block) + encryptor.finalize()


def hkdf(suite: CardSuite, ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF (extract then expand) with the suite's hash."""
    return HKDF(suite._hash(), length, salt, info).derive(ikm)


def digest(suite: CardSuite, data: bytes) -> bytes:
    """The suite's hash (32 bytes)."""
    h = hashes.Hash(suite._hash())
    h.update(data)
    return h.finalize()


def aead_seal(suite: CardSuite, key: bytes, nonce: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """Ciphertext || 16-byte tag."""
    _check_key(key)
    if len(nonce) != NONCE_SIZE:
        raise ValueError("a 12-byte nonce")
    encryptor = Cipher(suite._cipher(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(ad)
    body = encryptor.update(plaintext) + encryptor.finalize()
    return body + encryptor.tag


def aead_open(suite: CardSuite, key: bytes, nonce: bytes, sealed: bytes, ad: bytes) -> bytes:
    """The plaintext, or :class:`Tampered` if the tag does not verify."""
    _check_key(key)
    if len(nonce) != NONCE_SIZE or len(sealed) < TAG_SIZE:
        raise Tampered("sealed data too short")
    decryptor = Cipher(suite._cipher(key),
                       modes.GCM(nonce, sealed[-TAG_SIZE:])).decryptor()
    decryptor.authenticate_additional_data(ad)
    try:
        return decryptor.update(sealed[:-TAG_SIZE]) + decryptor.finalize()
    except InvalidTag:
        raise Tampered("the message's tag does not verify") from None
