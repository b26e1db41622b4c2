"""The module's own verification of its owner: a PIN and a (simulated) fingerprint sensor.

Both live on the module's side only: the PIN is set at provisioning and stored as a salted
scrypt hash (``pin``, 0600 in the state directory), entered through the owner's input (the
policy interface, :class:`OwnerInput`), and never sent over any link; what leaves the module is
the verification it did, in its signed approval. ``pin-tries`` counts wrong entries in a row
(persisted before the answer, so a restart does not reset it); after :data:`PIN_TRIES` the PIN
is locked and nothing is asked any more until provisioning sets a new one.

The fingerprint sensor is simulated: an enrolled template of :data:`TEMPLATE_BITS` random bits
(``finger``, 0600), a capture is the template seen through noise (a matching finger) or an
unrelated pattern (another finger), and a capture matches when at least
:data:`MATCH_THRESHOLD` of its bits agree with the template. Tests and rigs choose which
finger is presented (:class:`ScriptedInput`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Protocol

from .policy import Prompt
from .state import ModuleState, StateError

__all__ = [
    "MATCH_THRESHOLD",
    "PIN_TRIES",
    "FingerprintSensor",
    "NoMatch",
    "NotEnrolled",
    "OwnerInput",
    "PinLocked",
    "PinStore",
    "ScriptedInput",
    "VerificationError",
    "WrongPin",
]

PIN_TRIES = 3
TEMPLATE_BITS = 256
MATCH_THRESHOLD = 0.9
"""Fraction of template bits a capture must share (a matching capture shares about 97%,
another finger about 50%)."""
_NOISE = 0.03
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}


class VerificationError(Exception):
    """The owner was not verified; ``reason`` is what the module's refusal says."""

    reason = "verification_failed"


class WrongPin(VerificationError):
    reason = "pin_wrong"

    def __init__(self, left: int) -> None:
        super().__init__(f"wrong PIN, {left} tries left")
        self.left = left


class PinLocked(VerificationError):
    reason = "pin_locked"


class NoMatch(VerificationError):
    reason = "finger_no_match"


class NotEnrolled(VerificationError):
    """No PIN set or no finger enrolled at provisioning."""

    reason = "not_enrolled"


class OwnerInput(Protocol):
    """How the owner enters a PIN or presents a finger on the module (its keypad, its
    sensor). Each call is bounded by the caller's deadline."""

    async def pin(self, prompt: Prompt) -> str: ...

    async def finger(self, prompt: Prompt) -> str:
        """``match`` (the enrolled finger) or ``other``."""
        ...


@dataclass
class ScriptedInput:
    """A keypad and sensor whose answers a test or the demo sets before a payment."""

    next_pin: str = ""
    next_finger: str = "match"

    async def pin(self, prompt: Prompt) -> str:
        return self.next_pin

    async def finger(self, prompt: Prompt) -> str:
        return self.next_finger


class PinStore:
    """The PIN's hash and the wrong-entry counter, in the module's state directory."""

    def __init__(self, state: ModuleState) -> None:
        self.state = state
        self._path = state.directory / "pin"
        self._tries = state.directory / "pin-tries"

    def set(self, pin: str) -> None:
        """Provisioning: store a new PIN (4 to 12 digits) and clear the counter."""
        if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
            raise ValueError("a PIN is 4 to 12 digits")
        salt = secrets.token_bytes(16)
        self.state.write_secret(self._path, salt + hashlib.scrypt(pin.encode(), salt=salt,
                                                                   **_SCRYPT))
        self.state.write_secret(self._tries, b"0")

    @property
    def is_set(self) -> bool:
        return self.state.read_secret(self._path) is not None

    def wrong_entries(self) -> int:
        raw = self.state.read_secret(self._tries)
        if raw is None:
            return 0
        if not raw.isdigit():
            raise StateError(f"{self._tries} is corrupt")
        return int(raw)

    def check(self, pin: str) -> None:
        """Raise unless ``pin`` is the PIN; count wrong entries and lock after PIN_TRIES.
        Blocking (scrypt, file writes): call it off the event loop."""
        stored = self.state.read_secret(self._path)
        if stored is None or len(stored) != 48:
            raise NotEnrolled("no PIN set")
        wrong = self.wrong_entries()
        if wrong >= PIN_TRIES:
            raise PinLocked("PIN locked after too many wrong entries")
        entered = hashlib.scrypt(pin.encode("utf-8", "replace")[:64], salt=stored[:16],
                                 **_SCRYPT)
        if hmac.compare_digest(entered, stored[16:]):
            if wrong:
                self.state.write_secret(self._tries, b"0")
            return
        wrong += 1
        self.state.write_secret(self._tries, str(wrong).encode())
        if wrong >= PIN_TRIES:
            raise PinLocked("PIN locked after too many wrong entries")
        raise WrongPin(PIN_TRIES - wrong)


class FingerprintSensor:
    """A simulated sensor with one enrolled template."""

    def __init__(self, state: ModuleState) -> None:
        self.state = state
        self._path = state.directory / "finger"

    def enroll(self) -> None:
        """Provisioning: enroll the owner's finger (a fresh random template)."""
        self.state.write_secret(self._path, secrets.token_bytes(TEMPLATE_BITS // 8))

    def _template(self) -> bytes:
        template = self.state.read_secret(self._path)
        if template is None or len(template) != TEMPLATE_BITS // 8:
            raise NotEnrolled("no finger enrolled")
        return template

    def capture(self, finger: str) -> bytes:
        """What the sensor reads when ``finger`` (``match`` or ``other``) is presented."""
        template = self._template()
        if finger != "match":
            return secrets.token_bytes(len(template))
        noise = bytearray(len(template))
        for _ in range(int(TEMPLATE_BITS * _NOISE)):
            bit = secrets.randbelow(TEMPLATE_BITS)
            noise[bit // 8] |= 1 << (bit % 8)
        return bytes(a ^ b for a, b in zip(template, noise, strict=True))

    def verify(self, capture: bytes) -> None:
        template = self._template()
        differing = sum(bin(a ^ b).count("1") for a, b in zip(template, capture, strict=False))
        if len(capture) != len(template) or 1 - differing / TEMPLATE_BITS < MATCH_THRESHOLD:
            raise NoMatch("the finger does not match the enrolled one")


async def verify_pin(store: PinStore, owner: OwnerInput, prompt: Prompt) -> None:
    """Ask the owner for the PIN and check it (locked PINs are refused before asking)."""
    if await asyncio.to_thread(store.wrong_entries) >= PIN_TRIES:
        raise PinLocked("PIN locked after too many wrong entries")
    entered = await owner.pin(prompt)
    await asyncio.to_thread(store.check, entered)


async def verify_finger(sensor: FingerprintSensor, owner: OwnerInput, prompt: Prompt) -> None:
    finger = await owner.finger(prompt)
    capture = await asyncio.to_thread(sensor.capture, finger)
    await asyncio.to_thread(sensor.verify, capture)
