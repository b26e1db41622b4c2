"""Fingerprints, simulated: feature vectors, matching with a threshold, a sensor with a test
interface, and the settlement server's encrypted template store.

A real sensor's matcher compares minutiae; here a finger's features are a 256-bit vector (the
shape of binarised biometric codes) and a capture flips a few of its bits at random, as two
presses of one finger never give the same image. Two captures of one finger differ in about
2 x :data:`NOISE_BITS` bits; a different finger differs in about 128 bits (binomial, standard
deviation 8). :data:`MATCH_THRESHOLD` (64 bits, 25 %) lies eight standard deviations below
the impostor mean and far above the genuine distance, so the simulation neither falsely accepts
nor falsely rejects in any test run; what a deployment's matcher sets is its own false-accept
rate, the same decision as here.

Templates at the settlement server are kept encrypted (AES-256-GCM under the server's template
key, bound to the device id as associated data), together with the salt of the owner binding
in the device's certificate (``certificates.owner_binding``): a copy of the database alone
reveals no template.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from e2e.cbor import dumps, loads
from e2e.errors import MalformedMessage

from .certificates import owner_binding
from .errors import FingerprintMismatch, NoFingerPresented, OwnerBindingMismatch

__all__ = ["FEATURE_SIZE", "MATCH_THRESHOLD", "NOISE_BITS", "TEMPLATE_DOMAIN", "Finger",
           "SimulatedSensor", "TemplateVault", "distance", "matches"]

FEATURE_SIZE = 32
MATCH_THRESHOLD = 64
"""At most this many of the 256 bits may differ for a match."""
NOISE_BITS = 12
TEMPLATE_DOMAIN = b"blegw/owner-template/v1\x00"


def distance(a: bytes, b: bytes) -> int:
    if len(a) != FEATURE_SIZE or len(b) != FEATURE_SIZE:
        raise FingerprintMismatch("features of the wrong size")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def matches(template: bytes, features: bytes) -> bool:
    return distance(template, features) <= MATCH_THRESHOLD


@dataclass(frozen=True, slots=True)
class Finger:
    """A simulated finger: its ideal features. ``Finger.new()`` for a fresh person."""

    ideal: bytes

    @classmethod
    def new(cls) -> Finger:
        return cls(secrets.token_bytes(FEATURE_SIZE))


class SimulatedSensor:
    """A fingerprint sensor on a mobile or merchant device; tests put a finger on it."""

    def __init__(self) -> None:
        self._finger: Finger | None = None

    def present(self, finger: Finger | None) -> None:
        """The test interface: the finger now on the sensor (None: lifted)."""
        self._finger = finger

    def capture(self) -> bytes:
        """Features of one press: the finger's, with :data:`NOISE_BITS` bits flipped."""
        if self._finger is None:
            raise NoFingerPresented("no finger on the sensor")
        value = int.from_bytes(self._finger.ideal, "big")
        for bit in secrets.SystemRandom().sample(range(FEATURE_SIZE * 8), NOISE_BITS):
            value ^= 1 << bit
        return value.to_bytes(FEATURE_SIZE, "big")

    def enroll(self) -> bytes:
        """An enrollment template: a press, as a real enrollment keeps its best one."""
        return self.capture()


class TemplateVault:
    """The settlement server's template key and its only use: seal a template at enrollment,
    match features against a sealed one at payment. The key never leaves the object."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("a template key is 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> tuple[TemplateVault, bytes]:
        """A new vault and its key, for the server's owner-only key file."""
        key = AESGCM.generate_key(bit_length=256)
        return cls(key), key

    def seal(self, device_id: bytes, template: bytes) -> tuple[bytes, bytes]:
        """(owner binding for the certificate, sealed record for the store)."""
        if len(template) != FEATURE_SIZE:
            raise ValueError(f"a template is {FEATURE_SIZE} bytes")
        salt = secrets.token_bytes(32)
        nonce = secrets.token_bytes(12)
        record = nonce + self._aead.encrypt(nonce, dumps({1: salt, 2: template}),
                                            TEMPLATE_DOMAIN + device_id)
        return owner_binding(salt, template), record

    def match(self, device_id: bytes, record: bytes | None, binding: bytes,
              features: bytes) -> None:
        """Check that ``record`` opens the certificate's ``binding`` and that ``features``
        match its template; :class:`OwnerBindingMismatch` or :class:`FingerprintMismatch`."""
        if record is None or len(record) < 12 + 16:
            raise OwnerBindingMismatch("no enrolled template for this device")
        try:
            body = loads(self._aead.decrypt(record[:12], record[12:],
                                            TEMPLATE_DOMAIN + device_id), max_size=128)
        except (InvalidTag, MalformedMessage):
            raise OwnerBindingMismatch("the stored template does not open") from None
        salt, template = body[1], body[2]
        if not hmac.compare_digest(owner_binding(salt, template), binding):
            raise OwnerBindingMismatch("the certificate binds another template")
        if not matches(template, features):
            raise FingerprintMismatch("the finger does not match the owner's")
