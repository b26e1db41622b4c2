"""Public-key encryption to a unit, in both suites, bound to one purpose.

* **SM2** (GB/T 32918.4): ``SM2Cipher`` DER of ``purpose || plaintext`` (the same encryption
  the secure channel uses for key transport, ``secure_channel.primitives``); decryption
  checks the SM3 hash C3 and then the purpose prefix.
* **P-256**: ECIES with a fresh P-256 key E, ECDH, HKDF-SHA256 (RFC 5869, salt empty,
  ``info = ECIES_INFO || purpose || E || recipient``) to a 16-byte AES key and a 12-byte
  nonce, AES-128-GCM with ``aad = purpose``; the ciphertext is ``E || AES-GCM output``. The
  info string differs from the secure channel's (``blegw-sc ecies v1``), so neither layer's
  ciphertext opens in the other.

Every purpose tag (:data:`PURPOSES`) begins ``blegw/dynamic-code/`` and ends ``-encryption/v1``
plus a zero byte; every signature tag of this layer ends ``/v1`` and a zero byte after another
word, and those of the other layers begin otherwise. So a plaintext never equals bytes any unit
signs, a ciphertext for the merchant never opens as one for the server (a test encrypts and
signs with one key pair to show the tags do the separating, not distinct keys), and a
signature is never a ciphertext of any purpose.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from e2e.suites import PublicKey, Suite
from secure_channel.errors import ChannelError
from secure_channel.primitives import Rng, ecdh, ephemeral_key, sm2_decrypt, sm2_encrypt

from .errors import DecryptFailed

__all__ = ["ECIES_INFO", "PAYMENT_PURPOSE", "PURPOSES", "SETTLEMENT_PURPOSE", "open_sealed",
           "seal"]

PAYMENT_PURPOSE = b"blegw/dynamic-code/payment-encryption/v1\x00"
"""The payer's unit to the merchant's unit."""
SETTLEMENT_PURPOSE = b"blegw/dynamic-code/settlement-encryption/v1\x00"
"""The merchant's unit to the settlement server."""
PURPOSES = (PAYMENT_PURPOSE, SETTLEMENT_PURPOSE)
ECIES_INFO = b"blegw/dynamic-code/ecies/v1\x00"
_TAG = 16


def _ecies_keys(shared: bytes, purpose: bytes, eph: bytes, recipient: bytes
                ) -> tuple[bytes, bytes]:
    okm = HKDF(hashes.SHA256(), 28, salt=None,
               info=ECIES_INFO + purpose + eph + recipient).derive(shared)
    return okm[:16], okm[16:]


def seal(recipient: PublicKey, purpose: bytes, plaintext: bytes, rng: Rng | None = None
         ) -> bytes:
    """Encrypt ``plaintext`` for ``purpose`` to ``recipient``; ``rng`` only for test vectors."""
    if purpose not in PURPOSES:
        raise ValueError("unknown purpose")
    point = recipient.encode()
    if recipient.suite is Suite.SM2_SM3:
        return sm2_encrypt(point, purpose + plaintext, rng)
    import secrets

    scalar, eph = ephemeral_key(False, rng or secrets.token_bytes)
    key, nonce = _ecies_keys(ecdh(False, scalar, point), purpose, eph, point)
    return eph + AESGCM(key).encrypt(nonce, plaintext, purpose)


def open_sealed(suite: Suite, scalar: bytes, recipient: bytes, purpose: bytes,
                ciphertext: bytes) -> bytes:
    """The plaintext sealed to this key for this purpose, or :class:`DecryptFailed`.

    Only a unit calls this, with its own scalar (``units``); nothing outside a unit sees one.
    """
    if purpose not in PURPOSES:
        raise ValueError("unknown purpose")
    if suite is Suite.SM2_SM3:
        try:
            message = sm2_decrypt(scalar, ciphertext)
        except ChannelError:
            raise DecryptFailed("not an SM2 ciphertext to this key") from None
        if not message.startswith(purpose):
            raise DecryptFailed("a ciphertext made for another purpose")
        return message[len(purpose):]
    if len(ciphertext) < 65 + _TAG:
        raise DecryptFailed("ECIES ciphertext too short")
    eph = ciphertext[:65]
    try:
        shared = ecdh(False, scalar, eph)
    except ChannelError:
        raise DecryptFailed("ECIES point not on P-256") from None
    key, nonce = _ecies_keys(shared, purpose, eph, recipient)
    try:
        return AESGCM(key).decrypt(nonce, ciphertext[65:], purpose)
    except InvalidTag:
        raise DecryptFailed("ECIES ciphertext does not authenticate (other key, purpose or "
                            "altered)") from None
