"""The module-info characteristic: what a gateway learns before it sends anything.

Deterministic CBOR map with integer keys (1 model, 2 firmware, 3 protocol versions, 4 suites,
5 module id, 6 max message size). Deterministic, so the same module always reads the same bytes
(they can be logged, compared and pinned); decoding accepts only that canonical form and rejects
anything else, so a hostile or broken module cannot make the gateway guess.

Every field is bounded so the largest valid encoding fits in one ATT attribute (512 bytes) and a
single long read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from .errors import ModuleInfoError

__all__ = ["CARD_PROTOCOL_VERSION", "E2E_PROTOCOL_VERSION", "MAX_INFO_SIZE", "ModuleInfo"]

E2E_PROTOCOL_VERSION = 1
"""Protocol version of a public-key module: MSG carries e2e.cddl envelopes."""
CARD_PROTOCOL_VERSION = 0x0C01
"""Protocol version of a symmetric-key card: MSG carries symmetric-card.cddl messages. A card
lists only this one, so a gateway tells the kinds apart from module info; a gateway that
predates it still parses the info (any 16-bit number is valid) and, asking the card for a
certificate at pairing, gets a card error message that is no e2e envelope: the pairing is
refused with a typed error (``certificate``), nothing is enrolled."""

_KEYS = {1: "model", 2: "firmware", 3: "protocol_versions", 4: "suites", 5: "module_id",
         6: "max_message_size"}
MAX_INFO_SIZE = 512
"""The ATT maximum attribute value length: a characteristic value cannot be longer."""
_MAX_LIST = 16


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What a module is and speaks, read before the first request.

    ``protocol_versions`` and ``suites`` let the gateway negotiate (this profile has no service
    revision characteristic); ``max_message_size`` caps what the gateway may send.
    """

    model: str
    firmware: str
    protocol_versions: tuple[int, ...]
    suites: tuple[int, ...]
    module_id: bytes
    max_message_size: int

    @property
    def is_card(self) -> bool:
        """A symmetric-key card (flow F-C), not a public-key module."""
        return CARD_PROTOCOL_VERSION in self.protocol_versions

    def __post_init__(self) -> None:
        try:
            model, firmware = self.model.encode(), self.firmware.encode()
        except UnicodeEncodeError as exc:
            raise ModuleInfoError("model and firmware must be valid text") from exc
        if not (0 < len(model) <= 64 and 0 < len(firmware) <= 32):
            raise ModuleInfoError("model (1..64 bytes) and firmware (1..32 bytes) UTF-8")
        if not (0 < len(self.protocol_versions) <= _MAX_LIST and 0 < len(self.suites) <= _MAX_LIST):
            raise ModuleInfoError(f"1..{_MAX_LIST} protocol versions and suites")
        if any(not 0 <= v <= 0xFFFF for v in (*self.protocol_versions, *self.suites)):
            raise ModuleInfoError("versions and suites are 16-bit numbers")
        if not 4 <= len(self.module_id) <= 32:
            raise ModuleInfoError("module id is 4..32 bytes")
        if not 64 <= self.max_message_size <= 0xFFFF:
            raise ModuleInfoError("max message size must be 64..65535")

    def encode(self) -> bytes:
        """The characteristic value: canonical CBOR, at most MAX_INFO_SIZE bytes."""
        return bytes(cbor2.dumps({1: self.model, 2: self.firmware,
                                  3: list(self.protocol_versions), 4: list(self.suites),
                                  5: self.module_id, 6: self.max_message_size},
                                 canonical=True))

    @classmethod
    def decode(cls, data: bytes) -> ModuleInfo:
        """Parse the characteristic value; anything but a valid canonical map: ModuleInfoError."""
        if len(data) > MAX_INFO_SIZE:
            raise ModuleInfoError(f"module info of {len(data)} bytes is too long")
        try:
            raw: Any = cbor2.loads(data)
        except Exception as exc:  # cbor2 raises several types for garbage
            raise ModuleInfoError(f"module info is not CBOR: {exc}") from exc
        if not isinstance(raw, dict) or set(raw) != set(_KEYS):
            raise ModuleInfoError("module info must be a map with keys 1..6")
        try:
            info = cls(model=_typed(raw[1], str), firmware=_typed(raw[2], str),
                       protocol_versions=tuple(_ints(raw[3])), suites=tuple(_ints(raw[4])),
                       module_id=_typed(raw[5], bytes),
                       max_message_size=_typed(raw[6], int))
        except TypeError as exc:
            raise ModuleInfoError(f"module info field has the wrong type: {exc}") from exc
        if info.encode() != bytes(data):
            raise ModuleInfoError("module info is not canonically encoded")
        return info


def _typed(value: Any, kind: type) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
    return value


def _ints(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return [_typed(v, int) for v in value]
