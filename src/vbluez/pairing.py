"""LE Secure Connections pairing-method selection, from both sides' IO capabilities.

Bluetooth Core Vol 3 Part H 2.3.5.1, table 2.8 (LE Secure Connections). BlueZ maps an agent's
capability string to these; with no agent it pairs as NoInputNoOutput (just works).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["IoCapability", "PairingMethod", "PairingPlan", "plan_pairing"]


class IoCapability(Enum):
    DISPLAY_ONLY = "DisplayOnly"
    DISPLAY_YES_NO = "DisplayYesNo"
    KEYBOARD_ONLY = "KeyboardOnly"
    NO_INPUT_NO_OUTPUT = "NoInputNoOutput"
    KEYBOARD_DISPLAY = "KeyboardDisplay"

    @classmethod
    def from_agent(cls, capability: str) -> IoCapability:
        """BlueZ's agent capability string; the empty string means KeyboardDisplay."""
        if capability == "":
            return cls.KEYBOARD_DISPLAY
        return cls(capability)


class PairingMethod(Enum):
    JUST_WORKS = "just-works"
    NUMERIC_COMPARISON = "numeric-comparison"
    PASSKEY_ENTRY = "passkey-entry"


@dataclass(frozen=True, slots=True)
class PairingPlan:
    """Who does what. For passkey entry, each side either displays or types the passkey."""

    method: PairingMethod
    initiator_displays: bool = False
    responder_displays: bool = False

    @property
    def authenticated(self) -> bool:
        """Whether the resulting key is MITM-protected (needed by encrypt-authenticated-*)."""
        return self.method is not PairingMethod.JUST_WORKS


_D, _Y, _K, _N, _KD = (
    IoCapability.DISPLAY_ONLY,
    IoCapability.DISPLAY_YES_NO,
    IoCapability.KEYBOARD_ONLY,
    IoCapability.NO_INPUT_NO_OUTPUT,
    IoCapability.KEYBOARD_DISPLAY,
)
_JW = PairingPlan(PairingMethod.JUST_WORKS)
_NC = PairingPlan(PairingMethod.NUMERIC_COMPARISON)
_PK_INIT_SHOWS = PairingPlan(PairingMethod.PASSKEY_ENTRY, initiator_displays=True)
_PK_RESP_SHOWS = PairingPlan(PairingMethod.PASSKEY_ENTRY, responder_displays=True)
_PK_BOTH_TYPE = PairingPlan(PairingMethod.PASSKEY_ENTRY)

# rows: initiator, columns: responder
_TABLE: dict[tuple[IoCapability, IoCapability], PairingPlan] = {
    (_D, _D): _JW, (_D, _Y): _JW, (_D, _K): _PK_INIT_SHOWS, (_D, _N): _JW,
    (_D, _KD): _PK_INIT_SHOWS,
    (_Y, _D): _JW, (_Y, _Y): _NC, (_Y, _K): _PK_INIT_SHOWS, (_Y, _N): _JW, (_Y, _KD): _NC,
    (_K, _D): _PK_RESP_SHOWS, (_K, _Y): _PK_RESP_SHOWS, (_K, _K): _PK_BOTH_TYPE, (_K, _N): _JW,
    (_K, _KD): _PK_RESP_SHOWS,
    (_N, _D): _JW, (_N, _Y): _JW, (_N, _K): _JW, (_N, _N): _JW, (_N, _KD): _JW,
    (_KD, _D): _PK_RESP_SHOWS, (_KD, _Y): _NC, (_KD, _K): _PK_INIT_SHOWS, (_KD, _N): _JW,
    (_KD, _KD): _NC,
}  # fmt: skip


def plan_pairing(initiator: IoCapability, responder: IoCapability) -> PairingPlan:
    """The pairing method for LE Secure Connections between these two capabilities."""
    return _TABLE[(initiator, responder)]
